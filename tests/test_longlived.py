"""Objects made once and kept: not collected while made, frozen afterwards."""

from __future__ import annotations

import gc

from rmsops.core import longlived


def test_what_is_made_while_setting_up_is_frozen_and_collection_resumes():
    gc.unfreeze()
    try:
        with longlived.setting_up():
            assert not gc.isenabled()
            kept = [{"made": n} for n in range(1000)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
        gc.enable()


def test_setting_up_leaves_a_disabled_collector_disabled():
    gc.disable()
    try:
        with longlived.setting_up():
            pass
        assert not gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()


def test_overlapping_set_ups_collect_again_only_when_the_last_one_ends():
    """A fleet's check sets up one environment per thread: the first to finish must not leave the
    collector off for good, nor turn it on under another that is still setting up."""
    gc.unfreeze()
    try:
        first, second = longlived.setting_up(), longlived.setting_up()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert not gc.isenabled(), "the second is still setting up"
        second.__exit__(None, None, None)
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()


def test_collecting_rarely_waits_for_many_young_objects_then_restores_the_thresholds():
    before = gc.get_threshold()
    rarely = (longlived.SHORT_LIFE_THRESHOLD, *before[1:])
    with longlived.collecting_rarely():
        assert gc.get_threshold() == rarely
    assert gc.get_threshold() == before
    first, second = longlived.collecting_rarely(), longlived.collecting_rarely()  # as two threads of a fleet
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold() == rarely  # the second is still inside
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before
