"""Execute runbook notebooks with papermill and turn them into reports.

A run writes ``<stem>.ipynb`` (executed, the evidence), ``<stem>.html`` (standalone,
plots embedded, code hidden) and ``findings.json`` into its output folder.
"""

from __future__ import annotations

import ast
import json
import logging
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmsops.core import registry, thresholds
from rmsops.core.config import Settings
from rmsops.core.errors import UserError
from rmsops.core.findings import MIME_TYPE, Finding, document, write_document
from rmsops.core.runbooks import Runbook
from rmsops.core.window import Window
from rmsops.execution import inline
from rmsops.render.listing import RESERVED_PARAMETERS

if TYPE_CHECKING:  # nbformat is imported where a notebook is read: a triage's command never needs it
    import nbformat

DEFAULT_TIMEOUT_SECONDS = 600


@dataclass
class RunOutcome:
    runbook: Runbook
    status: str  # done | failed
    findings: list[Finding]
    notebook: Path
    html: Path | None
    findings_json: Path
    seconds: float
    error: str = ""
    files: list[Path] = field(default_factory=list)


@cache
def notebook_parameters(runbook: Runbook) -> dict[str, Any]:
    """The notebook's parameters cell as {name: default value}."""
    cells = json.loads(runbook.notebook.read_text(encoding="utf-8"))["cells"]  # v4 JSON; nbformat costs 0.1 s
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell["source"]
            tree = ast.parse("".join(source) if isinstance(source, list) else source)
            return {node.targets[0].id: ast.literal_eval(node.value)
                    for node in tree.body
                    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    raise UserError(f"{runbook.notebook} has no cell tagged 'parameters'")


def parse_overrides(runbook: Runbook, pairs: list[str]) -> dict[str, Any]:
    """``-p NAME=VALUE`` items: notebook parameters (typed like their default) or threshold names."""
    known = notebook_parameters(runbook)
    params: dict[str, Any] = {}
    threshold_overrides: dict[str, float] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"-p {pair!r}: expected NAME=VALUE")
        if name in RESERVED_PARAMETERS:
            raise UserError(f"-p {name}: set it with the command's own option (-e, --window, --start, --end, -o)")
        if name in thresholds.DEFAULTS:
            threshold_overrides[name] = _typed(name, text, 0.0)
        elif name in known:
            params[name] = _typed(name, text, known[name])
        else:
            choices = sorted(set(known) - RESERVED_PARAMETERS | set(thresholds.DEFAULTS))
            raise UserError(f"-p {name}: runbook {runbook.stem} has no parameter {name!r}; "
                            f"known: {', '.join(choices)}")
    if threshold_overrides:
        params["thresholds"] = {**params.get("thresholds", {}), **threshold_overrides}
    if "thresholds" in params:
        thresholds.merge(params["thresholds"], source="-p thresholds")  # unknown names: exit 2 now
    return params


def _typed(name: str, text: str, default: Any) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if kind in (int, float):
            return kind(text)
        if kind in (dict, list):
            value = ast.literal_eval(text)
            if not isinstance(value, kind):
                raise ValueError(text)
            return value
        return text
    except (ValueError, SyntaxError):
        raise UserError(f"-p {name}={text}: expected {kind.__name__}") from None


def collect_findings(nb: nbformat.NotebookNode) -> list[Finding]:
    """Read back every finding a notebook recorded (see rmsops.notebook)."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            record = output.get("data", {}).get(MIME_TYPE)
            if record:  # as plain JSON values: a runner's outcome then unpickles without nbformat
                found += [Finding.from_dict(f) for f in json.loads(json.dumps(record["findings"]))]
    return found


def missing_check_findings(runbook: Runbook, findings: list[Finding], reason: str) -> list[Finding]:
    """``error`` findings for catalogue checks the notebook never reached."""
    seen = {f.check for f in findings}
    return [registry.error_finding(spec, reason).placed(runbook.stem, spec.section)
            for spec in registry.for_runbook(runbook.stem) if spec.id not in seen]


def run_runbook(runbook: Runbook, settings: Settings, window: Window, out_dir: Path,
                params: dict[str, Any] | None = None,
                timeout: int = DEFAULT_TIMEOUT_SECONDS, relocate: tuple[Path, Path] | None = None,
                source: Path | None = None, **engine_options: Any) -> RunOutcome:
    """Execute one notebook; never raises for a failing notebook — its checks become errors.

    ``relocate`` (staging, final): the run writes into a staging folder that is renamed into place
    afterwards; the executed notebook records the final paths, which exist when someone reads it.

    ``source``: the notebook to run, when not ``runbook.notebook`` (a runner in another process
    gets the path its command resolved). ``engine_options`` go to papermill's engine (e.g.
    ``kernel_manager_class`` for forked kernels, ``on_cell_executed`` to see findings as they arrive).
    """
    import papermill

    from rmsops.execution import engine

    engine_name = engine_options.pop("engine_name", engine.NAME)
    if engine_name == inline.ENGINE_NAME:
        from rmsops.execution import cellengine  # noqa: F401 - registers that engine with papermill

    logging.getLogger("papermill").setLevel(logging.WARNING)
    out_dir = out_dir.resolve()  # papermill chdirs while it runs: relative paths would move under us
    out_dir.mkdir(parents=True, exist_ok=True)
    notebook = out_dir / f"{runbook.stem}.ipynb"
    parameters = {"env": str(settings.path), "window": "", "start": window.start.isoformat(),
                  "end": window.end.isoformat(), "output_dir": str(out_dir.resolve()),
                  **(params or {})}
    source = source or runbook.notebook
    started = time.monotonic()
    error = ""
    executed = None
    try:
        executed = papermill.execute_notebook(
            str(source), str(notebook), parameters=parameters, kernel_name="python3",
            engine_name=engine_name,
            progress_bar=False, log_output=False, execution_timeout=timeout,
            cwd=str(source.parent),
            # The kernel talks over loopback only: its TCP-without-encryption warning is noise. No
            # input history: concurrent kernels would contend for one SQLite file, for nothing.
            extra_arguments=["--IPKernelApp.log_level=ERROR", "--HistoryManager.enabled=False"], **engine_options)
    except Exception as exc:  # noqa: BLE001 - papermill's errors (cell error, dead kernel, timeout)
        error = _papermill_error(exc)
    return finish_run(runbook, settings, window, out_dir, executed, error, started, relocate)


def finish_run(runbook: Runbook, settings: Settings, window: Window, out_dir: Path,
               executed: nbformat.NotebookNode | None, error: str, started: float,
               relocate: tuple[Path, Path] | None = None, seen: list[Finding] | None = None) -> RunOutcome:
    """The outcome of a run that ended (``error``: why it stopped early): the executed notebook
    (else the file, as far as it got), its findings and HTML report written beside it. ``seen``:
    the findings the run is known to have shown, when the notebook's file may predate some."""
    import nbformat

    from rmsops.execution import engine

    notebook = out_dir / f"{runbook.stem}.ipynb"
    if executed is None and notebook.exists():  # it failed: the file shows how far it got
        executed = nbformat.read(notebook, as_version=4)
    if relocate is not None and executed is not None:
        executed = relocated(executed, *relocate)
        engine.write_notebook(executed, notebook)
    findings = collect_findings(executed) if executed is not None else []
    if seen is not None:  # told as they were shown: a superset of what the file has
        findings = list(seen)
    if error:
        findings += missing_check_findings(runbook, findings, f"the runbook stopped: {error}")
    findings_json = out_dir / "findings.json"
    write_document(findings_json, document(findings, settings.name, window.start, window.end))
    html = export_html(executed, out_dir / f"{runbook.stem}.html") if executed is not None else None
    return RunOutcome(runbook, "failed" if error else "done", findings, notebook, html, findings_json,
                      time.monotonic() - started, error,
                      [p for p in (notebook, html, findings_json) if p and p.exists()])


def relocated(nb: nbformat.NotebookNode, staging: Path, final: Path) -> nbformat.NotebookNode:
    """The notebook with its injected parameters naming ``final`` where they named ``staging``."""
    old, new = str(staging.resolve()), str(final.resolve())
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = cell.source.replace(old, new)
    papermill_record = nb.metadata.get("papermill", {})
    recorded = papermill_record.get("parameters", {})
    for name, value in list(recorded.items()):
        if isinstance(value, str):
            recorded[name] = value.replace(old, new)
    if isinstance(papermill_record.get("output_path"), str):
        papermill_record["output_path"] = papermill_record["output_path"].replace(old, new)
    return nb


def _papermill_error(exc: Exception) -> str:
    name = getattr(exc, "ename", "") or type(exc).__name__
    value = getattr(exc, "evalue", "") or str(exc)
    first = value.strip().splitlines()[0] if value.strip() else ""
    return f"{name}: {first[:300]}"


# What a runbook's narrative uses: met once in a warm process, the markdown parser's patterns are
# compiled there and inherited by every runner forked from it.
_WARM_UP_MARKDOWN = """# 00 · Warm-up

Guide *Section → Part*. **Symptoms:** text with `code`, a [link](https://example.com) and — dashes.

## 1. Steps

- **Cause:** runbook 07 (slow statements); `fields @timestamp | sort @timestamp desc`.
  - nested item
- another item

1. first
2. second

> a quote

| a | b |
|---|---|
| 1 | 2 |

```
code block
```
"""


def warm_exporter() -> None:
    """Load the markdown parser and compile its patterns now, e.g. in the warm process."""
    from rmsops.render import notebook_html

    notebook_html.markdown(_WARM_UP_MARKDOWN)


def export_html(notebook: Path | nbformat.NotebookNode, target: Path) -> Path:
    """A standalone HTML report: outputs and narrative, code hidden, images embedded
    (``rmsops.render.notebook_html``)."""
    import nbformat

    from rmsops.render import notebook_html

    nb = nbformat.read(notebook, as_version=4) if isinstance(notebook, Path) else notebook
    target.write_text(notebook_html.page(nb, target.stem), encoding="utf-8")
    return target
