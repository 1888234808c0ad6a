"""The ``rmsops`` command line. Exit status: 0 all ok, 1 warning/critical, 2 bad input, 3 could not run."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rmsops import __version__, config, runbooks, thresholds
from rmsops.errors import UserError
from rmsops.findings import Finding, Severity, counts, document, exit_code
from rmsops.report import clean

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _colour(text: str, severity: Severity, stream=sys.stdout) -> str:
    if not stream.isatty() or os.environ.get("NO_COLOR"):
        return text
    code = {"critical": "31;1", "error": "35;1", "warning": "33;1", "info": "34", "ok": "32"}
    return f"\033[{code[severity.value]}m{text}\033[0m"


def print_findings(findings: list[Finding], show_ok: bool = True) -> None:
    from rmsops.findings import sort_by_urgency

    for f in sort_by_urgency(findings):
        if f.severity == Severity.OK and not show_ok:
            continue
        label = _colour(f"{f.severity.value.upper():8}", f.severity)
        print(f"  {label} {clean(f.check):28} {clean(f.title, 120)}")
        if f.severity in (Severity.ERROR, Severity.CRITICAL, Severity.WARNING) and f.detail:
            print(f"  {'':8} {'':28} {clean(f.detail, 160)}")


def print_tally(findings: list[Finding]) -> None:
    tally = counts(findings)
    print("  " + ", ".join(f"{n} {name}" for name, n in tally.items() if n))


def _window(args: argparse.Namespace):
    from rmsops.window import resolve

    return resolve(args.window, args.start or "", args.end or "")


def _add_window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", default="1h", help="how far back to look, ending now (default 1h)")
    parser.add_argument("--start", help="window start, ISO 8601 (instead of --window)")
    parser.add_argument("--end", help="window end, ISO 8601 (default now)")


def cmd_list(args: argparse.Namespace) -> int:
    from rmsops import registry
    from rmsops.runner import RESERVED_PARAMETERS, notebook_parameters

    for rb in runbooks.CATALOGUE:
        params = [p for p in notebook_parameters(rb) if p not in RESERVED_PARAMETERS]
        print(f"{rb.stem:34} {rb.guide_section}")
        for cid in rb.checks:
            print(f"    {cid:30} {registry.get(cid).summary}")
        if params:
            print(f"    parameters: {', '.join(params)}")
    print("\nthresholds (override with -p NAME=VALUE or in the environment file):")
    for name, value in thresholds.DEFAULTS.items():
        print(f"    {name:36} {value:g}")
    print(f"\nenvironments: {', '.join(config.known_environments()) or '(none)'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rmsops.runner import parse_overrides, run_runbook

    runbook = runbooks.find(args.runbook)
    settings = config.load(args.env)
    window = _window(args)
    params = parse_overrides(runbook, args.param or [])
    out = Path(args.output)
    print(f"running {runbook.stem} against {settings.name} ({window.start:%H:%M}–{window.end:%H:%M} UTC)…",
          file=sys.stderr)
    outcome = run_runbook(runbook, settings, window, out, params, timeout=args.timeout)
    print_findings(outcome.findings)
    print_tally(outcome.findings)
    if outcome.error:
        print(f"rmsops: runbook {runbook.stem} failed: {clean(outcome.error)}", file=sys.stderr)
    print(f"report: {outcome.html or outcome.notebook}")
    print(f"findings: {outcome.findings_json}")
    return exit_code(outcome.findings) if not outcome.error else 3


def cmd_check(args: argparse.Namespace) -> int:
    from rmsops.context import Context

    selected = [runbooks.find(name) for name in args.runbooks] or runbooks.diagnostic()
    settings = config.load(args.env)
    window = _window(args)
    ctx = Context(settings, window)
    findings: list[Finding] = []
    try:
        for rb in selected:
            for result in ctx.run_all(rb.stem):
                findings += result.findings
    finally:
        ctx.close()
    if args.json:
        json.dump(document(findings, settings.name, window.start, window.end), sys.stdout, indent=2)
        print()
    else:
        print_findings(findings, show_ok=not args.problems_only)
        print_tally(findings)
    return exit_code(findings)


def cmd_triage(args: argparse.Namespace) -> int:
    from rmsops import triage

    settings = config.load(args.env)
    selected = [runbooks.find(name) for name in args.runbook or []] or runbooks.diagnostic()
    result = triage.run(settings, _window(args), Path(args.output), selected, timeout=args.timeout)
    print_findings(result.findings, show_ok=False)
    print_tally(result.findings)
    print(f"report: {result.index}")
    return result.exit_code


def cmd_demo(args: argparse.Namespace) -> int:
    from rmsops.demo.cli import demo

    return demo(scenario=args.scenario, serve=args.serve, output=Path(args.output),
                env_file=Path(args.env_file) if args.env_file else None, lab=args.lab)


def cmd_action(args: argparse.Namespace) -> int:
    from rmsops import actions
    from rmsops.context import Context

    ctx = Context(config.load(args.env), _window(args), output_dir=Path(args.output) if args.output else None)
    plan = actions.plan(ctx, args.action, service=args.service)
    record = actions.execute(ctx, plan, confirm=args.confirm)
    print(f"{'DRY RUN' if record.dry_run else 'DONE'}: {plan.summary}")
    print(f"  AWS CLI equivalent: {plan.cli}")
    if record.dry_run:
        print(f"  to do it: add --confirm {plan.target}")
    print(f"  audit: {actions.base.audit_log_path(ctx)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rmsops", description="Executable runbooks for the RMS production system.")
    parser.add_argument("--version", action="version", version=f"rmsops {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="runbooks, their checks, parameters and thresholds").set_defaults(fn=cmd_list)

    run = sub.add_parser("run", help="one runbook through papermill: .ipynb, .html and findings.json")
    run.add_argument("runbook", help="stem or number, e.g. 01 or 01-application-not-responding")
    run.add_argument("-e", "--env", required=True, help="environment name in parameters/ or a YAML path")
    run.add_argument("-o", "--output", default="reports", help="output folder (default reports/)")
    run.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                     help="a notebook parameter or a threshold override")
    run.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    _add_window(run)
    run.set_defaults(fn=cmd_run)

    chk = sub.add_parser("check", help="the checks alone, no notebooks (for cron and alerting)")
    chk.add_argument("runbooks", nargs="*", help="runbooks to check (default: all diagnostic)")
    chk.add_argument("-e", "--env", required=True)
    chk.add_argument("--json", action="store_true", help="print findings.json to stdout")
    chk.add_argument("--problems-only", action="store_true", help="hide ok findings")
    _add_window(chk)
    chk.set_defaults(fn=cmd_check)

    tri = sub.add_parser("triage", help="every diagnostic runbook; one report folder")
    tri.add_argument("-e", "--env", required=True)
    tri.add_argument("-o", "--output", required=True, help="the bundle folder")
    tri.add_argument("--runbook", action="append", help="limit to these runbooks")
    tri.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    _add_window(tri)
    tri.set_defaults(fn=cmd_triage)

    demo = sub.add_parser("demo", help="an embedded demo environment with a seeded incident, triaged")
    demo.add_argument("--scenario", default="incident", help="incident (default) or healthy")
    demo.add_argument("--serve", action="store_true",
                      help="keep it running for `make lab` and papermill; writes parameters/demo.yaml")
    demo.add_argument("-o", "--output", default="reports/demo", help="where the triage report goes")
    demo.add_argument("--env-file", help="with --serve: where to write the environment file")
    demo.add_argument("--lab", action="store_true", help="serve it and open JupyterLab on notebooks/")
    demo.set_defaults(fn=cmd_demo)

    act = sub.add_parser("action", help="a guarded change from the guide (dry run unless --confirm)")
    act.add_argument("action", help="force-new-deployment")
    act.add_argument("-e", "--env", required=True)
    act.add_argument("--service", required=True)
    act.add_argument("--confirm", help="the target's name (required in a protected environment)")
    act.add_argument("-o", "--output", help="the incident folder whose audit.jsonl records the action")
    _add_window(act)
    act.set_defaults(fn=cmd_action)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.fn(args)
    except UserError as exc:
        print(f"rmsops: error: {clean(str(exc), 500)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("rmsops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
