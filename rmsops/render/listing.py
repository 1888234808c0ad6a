"""What ``rmsops list`` shows besides the catalogue, without importing anything heavy.

``rmsops list`` must answer in a fraction of a second: it may not import nbformat (the notebook
parameters), the actions (pandas, boto3 through rmsops.core.failure) or the checks. So the notebook
parameters are read here from the notebooks' JSON, and the actions' arguments are described
statically; tests/test_cli.py checks both against the real thing (runner.notebook_parameters,
the planners' signatures).
"""

from __future__ import annotations

import ast
import json
import shlex
from collections.abc import Mapping
from typing import Any

from rmsops.core.runbooks import Runbook

# Set by the runner itself, never with -p (the runner imports this set).
RESERVED_PARAMETERS = frozenset({"env", "start", "end", "window", "output_dir"})


def notebook_parameter_names(runbook: Runbook) -> list[str]:
    """The names assigned in the notebook's cell tagged 'parameters' (empty when it has none)."""
    try:
        nb = json.loads(runbook.notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return []
            return [node.targets[0].id for node in tree.body
                    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)]
    return []


# Each action's arguments after the context, (name, required), as the planners in rmsops/actions/
# declare them. `service` is given with --service, the others with -a NAME=VALUE.
ACTION_ARGUMENTS: Mapping[str, tuple[tuple[str, bool], ...]] = {
    "force-new-deployment": (("service", True),),
    "invalidate-cloudfront": (("paths", False),),
    "raise-task-memory": (("service", True), ("memory", True)),
    "restore-rds-point-in-time": (("time", False), ("target", False)),
    "restore-rds-snapshot": (("snapshot", False), ("target", False)),
    "rollback-service": (("service", True), ("revision", True)),
    "scale-service": (("service", True), ("count", True)),
}


def action_usage(name: str, env: str = "ENV") -> str:
    """The command that plans the action (a dry run): ``rmsops action scale-service -e ENV
    --service SERVICE -a count=COUNT``; optional arguments in brackets."""
    parts = ["rmsops", "action", name, "-e", env]
    for arg, required in ACTION_ARGUMENTS[name]:
        option = f"--service {arg.upper()}" if arg == "service" else f"-a {arg}={arg.upper()}"
        parts.append(option if required else f"[{option}]")
    return " ".join(parts)


def action_arguments(arguments: Mapping[str, Any]) -> str:
    """Arguments of an action as the command line takes them: ``--service X -a count=6``."""
    parts = []
    for name, value in arguments.items():
        text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        parts += ["--service", shlex.quote(text)] if name == "service" else ["-a", shlex.quote(f"{name}={text}")]
    return " ".join(parts)
