"""The parsed copies of botocore's models (rmsops.core.modelcache): read back instead of parsing
the JSON again, never trusted when stale, broken or writable by someone else, never a failure."""

from __future__ import annotations

import json
import os

import pytest

from rmsops.core import modelcache

MODEL = {"metadata": {"serviceId": "Demo"}, "operations": {"DescribeThings": {"input": {"shape": "In"}}},
         "shapes": {"In": {"type": "structure", "members": {}}}, "version": 2.0, "flag": True, "none": None}


@pytest.fixture
def source(tmp_path, monkeypatch):
    monkeypatch.setenv("RMSOPS_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "service-2.json"
    path.write_text(json.dumps(MODEL))
    return path


def parsing(path):
    calls = []

    def parse():
        calls.append(1)
        return json.loads(path.read_text())

    return parse, calls


def test_a_model_is_parsed_once_then_read_back_from_its_copy(source):
    parse, calls = parsing(source)
    assert modelcache.load(str(source), parse) == MODEL
    assert modelcache.load(str(source), parse) == MODEL
    assert len(calls) == 1
    copies = list(modelcache.folder().iterdir())
    assert len(copies) == 1 and not copies[0].stat().st_mode & 0o022


def test_a_changed_model_file_is_parsed_again(source):
    """An upgrade of botocore rewrites its model files."""
    parse, calls = parsing(source)
    modelcache.load(str(source), parse)
    changed = {**MODEL, "metadata": {"serviceId": "Omed"}}  # the same size: only the time tells
    source.write_text(json.dumps(changed))
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 1_000_000))
    assert modelcache.load(str(source), parse) == changed
    assert len(calls) == 2


@pytest.mark.parametrize("spoil", ["garbage", "truncated", "writable by others"])
def test_a_copy_that_is_broken_or_writable_by_others_is_not_read(source, spoil):
    parse, calls = parsing(source)
    modelcache.load(str(source), parse)
    (copy,) = modelcache.folder().iterdir()
    if spoil == "garbage":
        copy.write_bytes(b"\x00not marshal at all")
    elif spoil == "truncated":
        copy.write_bytes(copy.read_bytes()[:20])
    else:
        copy.write_bytes(__import__("marshal").dumps({"forged": True}))
        copy.chmod(0o666)
    assert modelcache.load(str(source), parse) == MODEL
    assert len(calls) == 2


def test_a_cache_folder_that_cannot_be_made_only_means_parsing(source, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("RMSOPS_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    parse, calls = parsing(source)
    assert modelcache.load(str(source), parse) == MODEL
    assert modelcache.load(str(source), parse) == MODEL
    assert len(calls) == 2


def test_writing_a_copy_forgets_those_not_written_for_a_month(source, tmp_path):
    """An upgrade leaves the previous version's copies behind: 10 MB each time."""
    stale = modelcache.folder() / "0123456789abcdef.marshal"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    recent = modelcache.folder() / "fedcba9876543210.marshal"
    recent.write_bytes(b"")
    long_ago = __import__("time").time() - (modelcache.KEEP_DAYS + 1) * 86400
    os.utime(stale, (long_ago, long_ago))
    parse, _ = parsing(source)
    modelcache.load(str(source), parse)
    assert not stale.exists() and recent.exists()
