"""The index's timeline: what broke, since when, what changed just before — from the bundle's tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from rmsops.core.findings import Finding, Severity
from rmsops.render import timeline

T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
WINDOW = (T0, T0 + timedelta(hours=1))


def table(folder: Path, name: str, rows: list[dict]) -> None:
    runbook, check = timeline.TABLES[name]
    (folder / runbook / "tables").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / runbook / "tables" / f"{check}.csv", index=False)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


ELB, ELB_502, TARGET = "HTTPCode_ELB_5XX_Count", "HTTPCode_ELB_502_Count", "HTTPCode_Target_5XX_Count"


def incident(folder: Path) -> None:
    # The ELB's 502s are inside its 5XX count (CloudWatch publishes both); minutes 11-29 are silent.
    table(folder, "5xx", [{"timestamp": at(m), "id": f"m{i}", "label": label, "value": v}
                          for m, values in ((10, (1, 1, 1)), (30, (40, 40, 40)), (31, (90, 60, 10)))
                          for i, (label, v) in enumerate(zip((ELB, ELB_502, TARGET), values, strict=True))])
    table(folder, "changes", [{"time": at(25), "kind": "deployment", "what": "rms-backend -> rms-backend:2"},
                              {"time": at(25.5), "kind": "api change", "what": "UpdateService (ecs)"},
                              {"time": at(-30), "kind": "api change", "what": "before the window"}])
    table(folder, "alarms", [{"alarm": "rms-alb-5xx", "since": at(33)}])


def test_five_xx_counts_each_response_once_and_silent_periods_as_zeros(tmp_path):
    incident(tmp_path)
    rows = timeline.five_xx_metrics(tmp_path, 60, WINDOW)
    assert set(rows["label"]) == {ELB, TARGET}  # the 502 count is inside the ELB's 5XX count
    series = timeline.five_xx(rows)
    # from the window's start to the last datapoint (the latest minutes may not be published yet)
    assert series["timestamp"].tolist() == [pd.Timestamp(at(m)) for m in range(0, 32)]
    assert series["value"].tolist() == [0] * 10 + [2] + [0] * 19 + [80, 100]
    assert set(series["label"]) == {"ALB 5xx per period"}
    assert timeline.five_xx(timeline.five_xx_metrics(tmp_path))["value"].tolist() == [2, 80, 100]  # no period known


def test_markers_say_what_changed_just_before_and_since_when(tmp_path):
    incident(tmp_path)
    rows = timeline.five_xx_metrics(tmp_path, 60, WINDOW)
    marks = timeline.markers(tmp_path, rows, 50.0, WINDOW)
    assert marks == [(at(25), "deployment: rms-backend -> rms-backend:2 (+1 more)"),  # the same minute: one label
                     (at(31), "5xx above threshold from here"),  # minute 30's 80 is two counts of 40, each under 50
                     (at(33), "ALARM rms-alb-5xx")]


def test_the_picture_is_written_into_the_bundle_or_nothing_is_said(tmp_path):
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    assert timeline.write(quiet, WINDOW, []) is None and not (quiet / timeline.FILE).exists()
    incident(tmp_path)
    five = Finding("app.alb.5xx", Severity.CRITICAL, "alb:a", "t",
                   evidence={"threshold_per_period": 50, "period_seconds": 60})
    drawn = timeline.write(tmp_path, WINDOW, [five])
    assert drawn.file == timeline.FILE
    assert [label for _, label in drawn.marks] == ["deployment: rms-backend -> rms-backend:2 (+1 more)",
                                                  "5xx above threshold from here", "ALARM rms-alb-5xx"]
    assert drawn.marks[0][0] == f"{at(25):%Y-%m-%d %H:%M}"
    assert b"<svg" in (tmp_path / timeline.FILE).read_bytes()


def test_a_damaged_table_is_left_out_not_fatal(tmp_path):
    runbook, check = timeline.TABLES["5xx"]
    (tmp_path / runbook / "tables").mkdir(parents=True)
    (tmp_path / runbook / "tables" / f"{check}.csv").write_bytes(b'\x00\x01"unterminated\n')
    assert timeline.five_xx_metrics(tmp_path).empty


def test_a_long_mark_stays_inside_the_chart_and_is_shortened_visibly():
    """A change's label longer than the chart is high ran over the time axis's labels: it is cut to
    fit, with an ellipsis (the list under the picture has it whole)."""
    from rmsops.render import plots

    long = "deployment: rms-backend-payments-worker -> rms-backend-payments-worker:27 (+3 more)"
    series = pd.DataFrame({"timestamp": [at(0), at(60)], "value": [1.0, 2.0], "label": ["5xx", "5xx"]})
    figure = plots.timeseries(series, timeline.TITLE, "5xx responses", markers=[(at(30), long)], window=WINDOW)
    figure.canvas.draw()
    (ax,) = figure.axes
    (mark,) = [t for t in ax.texts if t.get_rotation() == 90]
    assert mark.get_text().endswith("…") and mark.get_text()[:-1] in long
    assert mark.get_window_extent().y0 >= ax.get_window_extent().y0


def test_drawn_while_escalation_runs_the_changes_come_from_its_check_not_its_table(demo_incident, tmp_path,
                                                                                  monkeypatch):
    """A triage draws the timeline while escalation runs, before its table exists: the job takes the
    recent changes from the check itself (in a triage, the shared cache's one result); the given
    frame is preferred to a table that says otherwise."""
    from rmsops.core import sharedcache
    from rmsops.core.window import resolve
    from rmsops.execution import triage

    monkeypatch.setenv(sharedcache.ENV, str(tmp_path / "shared"))
    staging = tmp_path / "bundle"
    staging.mkdir()
    window = resolve("1h")
    stale = (window.start + timedelta(minutes=5)).isoformat()
    table(staging, "changes", [{"time": stale, "kind": "deployment", "what": "from the stale table"}])
    drawn = triage._timeline_job(staging, window, [], str(demo_incident.env_file))
    labels = [label for _, label in drawn[1]]
    assert any(label.startswith("deployment: rms-backend") for label in labels), labels
    assert not any("stale table" in label for label in labels)
