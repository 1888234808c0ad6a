"""The catalogue (rmsops/core/runbooks.py) is the one list of checks: the notebooks run its checks in its
order, every registered check is in it and every check in it is registered."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from rmsops.core import registry, runbooks, thresholds
from rmsops.core.runbooks import Check, format_summary, summary_thresholds
from rmsops.execution import firstlook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def ordered_calls(path: Path) -> list[tuple[str, str]]:
    """The notebook's ``rb.run("id")`` and ``rb.run_quick("runbook")`` calls, in cell order."""
    calls = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        found = [node for node in ast.walk(ast.parse(cell.source))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and isinstance(node.func.value, ast.Name) and node.func.value.id == "rb"
                 and node.func.attr in ("run", "run_quick")]
        for node in sorted(found, key=lambda n: (n.lineno, n.col_offset)):
            [arg, *_] = node.args
            assert isinstance(arg, ast.Constant), f"{path.name}: rb.{node.func.attr} with a non-literal argument"
            calls.append((node.func.attr, arg.value))
    return calls


def test_every_catalogue_runbook_has_its_notebook_and_every_notebook_is_catalogued():
    assert [p.stem for p in NOTEBOOKS] == [rb.stem for rb in runbooks.CATALOGUE]


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem != runbooks.DAILY], ids=lambda p: p.stem)
def test_each_notebook_runs_its_catalogue_checks_in_catalogue_order(path):
    calls = ordered_calls(path)
    assert all(kind == "run" for kind, _ in calls), f"{path.name} runs another runbook's quick checks"
    assert tuple(cid for _, cid in calls) == runbooks.find(path.stem).checks


def test_the_daily_health_check_notebook_runs_the_quick_checks_of_01_to_16_in_order():
    calls = ordered_calls(ROOT / "notebooks" / f"{runbooks.DAILY}.ipynb")
    assert all(kind == "run_quick" for kind, _ in calls)
    assert [runbooks.find(stem).stem for _, stem in calls] == \
        [rb.stem for rb in runbooks.diagnostic() if rb.stem != runbooks.DAILY]
    ran = [spec.id for _, stem in calls for spec in registry.for_runbook(stem, quick_only=True)]
    assert ran == [spec.id for spec in registry.daily_checks()]
    assert ran == [c.id for c in runbooks.daily()]


def test_every_registered_check_is_catalogued_and_every_catalogued_check_is_registered():
    registry.load_all()
    catalogued = [c.id for c in runbooks.checks()]
    assert len(catalogued) == len(set(catalogued)), "a check id is in the catalogue twice"
    assert set(catalogued) == set(registry.REGISTRY)


def test_the_registry_takes_runbook_section_summary_and_quick_from_the_catalogue():
    registry.load_all()
    for rb in runbooks.CATALOGUE:
        for entry in rb.entries:
            spec = registry.REGISTRY[entry.id]
            assert (spec.runbook, spec.section, spec.quick) == (rb.stem, rb.guide_section, entry.quick)
            assert spec.summary == format_summary(entry.summary, thresholds.DEFAULTS)


def test_registering_a_check_the_catalogue_does_not_know_is_refused():
    with pytest.raises(ValueError, match="not in the catalogue"):
        registry.check("nowhere.made.up")
    assert "nowhere.made.up" not in registry.REGISTRY


def test_the_first_look_checks_are_catalogued_in_their_order():
    assert firstlook.CHECKS == ("app.health.endpoint", "app.alb.target_health", "app.ecs.capacity",
                                "db.connectivity")
    assert set(firstlook.CHECKS) <= {c.id for c in runbooks.checks()}
    places = sorted(c.first_look for c in runbooks.checks() if c.first_look)
    assert places == list(range(1, len(firstlook.CHECKS) + 1)), "first-look places are 1, 2, 3, … once each"


def test_every_summary_names_only_known_thresholds_and_formats():
    for entry in runbooks.checks():
        assert set(summary_thresholds(entry.summary)) <= set(thresholds.DEFAULTS), entry.id
        text = entry.summary_with(thresholds.DEFAULTS)
        assert text and "{" not in text and "}" not in text, entry.id


def test_a_summary_shows_the_thresholds_in_force():
    assert "< 95% index use" in runbooks.summary("db.indexes.missing")
    assert "< 90% index use" in runbooks.summary("db.indexes.missing", {"missing_index_use_pct": 90.0})
    assert "≥ 10000 rows" in runbooks.summary("db.indexes.missing", {"missing_index_use_pct": 90.0})
    spec = registry.get("db.cache.hit_rate")
    assert spec.summary_with({**thresholds.DEFAULTS, "cache_hit_rate_pct": 97.5}).endswith("(≥ 97.5%).")
    assert spec.summary.endswith("(≥ 99%).")


def test_a_test_local_spec_without_a_template_keeps_its_summary():
    spec = registry.CheckSpec("test.x", "01-application-not-responding", "1.", lambda ctx: None, "fixed")
    assert spec.summary_with({"alb_5xx_per_minute": 1.0}) == "fixed"


def test_check_entries_are_frozen():
    entry = Check("a.b", "summary")
    with pytest.raises(AttributeError):
        entry.quick = False  # type: ignore[misc]
    assert runbooks.find("01").checks[0] == "app.health.endpoint"  # Runbook.checks: the ids


def test_the_catalogue_and_the_first_look_are_light_to_import():
    heavy = ("pandas", "numpy", "boto3", "botocore", "matplotlib", "yaml", "rmsops.checks", "rmsops.core.registry")
    code = ("import sys, rmsops.core.runbooks, rmsops.execution.firstlook; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_a_triage_command_imports_neither_pandas_nor_the_notebook_libraries():
    """The command of a triage starts the warm process, then only waits, shows and bundles: the
    runbooks' libraries (a second of CPU on a 2-core machine) are the warm process's to import."""
    heavy = ("pandas", "numpy", "psycopg", "boto3", "matplotlib", "nbformat", "papermill", "IPython", "rmsops.checks")
    code = ("import sys, rmsops.cli, rmsops.execution.triage, rmsops.core.failure, rmsops.core.registry; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_the_registry_does_not_import_the_checks_or_the_context_statically():
    source = (ROOT / "rmsops" / "core" / "registry.py").read_text()
    tree = ast.parse(source)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {"rmsops.checks", "rmsops.core.context"} & imported  # under TYPE_CHECKING too


def test_every_check_id_written_in_the_code_is_in_the_catalogue():
    """Ids are written once per module (a constant the decorator and the judges share) and in the
    escalation rules that read other checks' findings: a typo there would silently match nothing."""
    known = {cid for rb in runbooks.CATALOGUE for cid in rb.checks}
    prefixes = tuple({cid.split(".", 1)[0] + "." for cid in known})
    written = set()
    for path in (ROOT / "rmsops").rglob("*.py"):
        if path.name == "runbooks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(prefixes)
                    and re.fullmatch(r"[a-z]+(\.[a-z0-9_]+){2,}", node.value)  # one-dot ids look like config keys
                    and not re.fullmatch(r"db\.[a-z]\d+\w*\.\w+", node.value)):  # an RDS class: db.t3.medium
                written.add((path.name, node.value))
    assert {cid for cid in known if cid.count(".") >= 2} <= {value for _, value in written}  # it sees them all
    assert sorted((name, value) for name, value in written if value not in known) == []
