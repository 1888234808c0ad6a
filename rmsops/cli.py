"""The ``rmsops`` command line. Exit status: 0 all ok, 1 warning/critical, 2 bad input, 3 could not run."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from rmsops import __version__, config, runbooks, secrets, thresholds
from rmsops.errors import UserError
from rmsops.findings import Finding, Severity, counts, document, exit_code
from rmsops.report import clean

EXIT_BAD_INPUT = 2
FIRST_LOOK_HEAD_START_SECONDS = 1.5
STARTED = time.monotonic()  # "first finding after N s" counts from here, not from when the triage began


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
        if rb.stem == registry.DAILY:
            print(f"    the quick checks of 01–16 ({len(registry.daily_checks())} checks); `rmsops check` runs it")
            continue
        for spec in registry.for_runbook(rb.stem):
            quick = "" if spec.quick else "  (not in the daily check)"
            print(f"    {spec.id:30} {spec.summary}{quick}")
        if params:
            print(f"    parameters: {', '.join(params)}")
    print("\nthresholds (override with -p NAME=VALUE or in the environment file):")
    for name, value in thresholds.DEFAULTS.items():
        print(f"    {name:36} {value:g}")
    from rmsops import actions

    print("\nactions (dry run unless --confirm):")
    for name, planner in sorted(actions.ACTIONS.items()):
        print(f"    {name:26} {actions.base.signature_text(planner)}")
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

    selected = [runbooks.find(name) for name in args.runbooks] or [runbooks.find("17")]
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
    from rmsops import firstlook
    from rmsops.progress import Progress
    from rmsops.zygote import Zygote

    settings = config.load(args.env)
    window = _window(args)
    named = [runbooks.find(name) for name in args.runbook or []]
    out = Path(args.output)
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; choose another -o or pass --force to replace it")
    if args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    from rmsops import bundle

    bundle.prepare_folder(out.resolve())
    # Warms up (imports) while the rest is set up, and takes the first look on the way.
    zygote = Zygote().start(first_look=firstlook.order(str(settings.path), window.start.isoformat(),
                                                       window.end.isoformat()))
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops as cleanly as Ctrl-C
    selected = named or runbooks.triage_selection()
    title = f"rmsops triage {settings.name} {window.start:%H:%M}–{window.end:%H:%M} UTC"
    progress = Progress([rb.stem for rb in selected], title=title, started=STARTED)
    looked = _show_first_look(zygote, progress)
    try:
        with progress:
            # Give the first look a head start: the seconds of imports below would compete with it
            # for the cores, and nothing needs them before the zygote is warm.
            looked.wait(FIRST_LOOK_HEAD_START_SECONDS)
            from rmsops import triage

            result = triage.run(settings, window, out, selected, jobs=args.jobs, timeout=args.timeout,
                                force=args.force, zygote=zygote, progress=progress)
    except OSError as exc:  # the disk filled up, the folder went away: nothing is presented as done
        print(f"rmsops: error: could not write the bundle: {clean(exc.strerror or str(exc))} "
              f"({clean(str(exc.filename or out))}); {out} was not created", file=sys.stderr)
        return 3
    finally:
        signal.signal(signal.SIGTERM, previous)
        zygote.stop()
    print_findings(result.findings, show_ok=False)
    print_tally(result.findings)
    if result.status != "complete":
        print("rmsops: the triage was interrupted: the bundle is marked incomplete", file=sys.stderr)
    for outcome in result.outcomes:
        if outcome.status != "done":
            print(f"rmsops: {outcome.runbook.stem} {outcome.status}: {clean(outcome.error)}", file=sys.stderr)
    print(f"report:   {result.index}")
    print(f"bundle:   {result.folder}  ({result.zip})")
    print(f"took {result.seconds:.1f} s; first finding after {result.first_finding_seconds or 0:.1f} s")
    return result.exit_code


def _show_first_look(zygote, progress) -> threading.Event:
    """Read the first look into the live view; the event is set at its first findings (or its end)."""
    from rmsops import firstlook

    looked = threading.Event()
    fd = zygote.take_first_look()
    if fd is None:
        looked.set()
        return looked

    def show(findings) -> None:
        progress.first_look(findings)
        looked.set()

    def read() -> None:
        try:
            firstlook.read(fd, show)
        finally:
            looked.set()

    threading.Thread(target=read, daemon=True, name="rmsops-first-look").start()
    return looked


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def cmd_verify(args: argparse.Namespace) -> int:
    from rmsops import bundle

    folder = Path(args.bundle)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder (verify takes the bundle folder, not the zip)")
    checked = bundle.verify(folder)
    for label, names in (("changed", checked.changed), ("missing", checked.missing), ("added", checked.added)):
        for name in names:
            print(f"  {label:8} {clean(name)}")
    if checked.ok:
        print(f"ok: all {checked.checked} files match the manifest")
        return 0
    print(f"FAILED: {len(checked.changed)} changed, {len(checked.missing)} missing, {len(checked.added)} added")
    return 1


def cmd_diff(args: argparse.Namespace) -> int:
    from rmsops import bundle

    result = bundle.diff(Path(args.before), Path(args.after))
    sections = (("resolved", [(f, None) for f in result.resolved]), ("new", [(None, f) for f in result.new]),
                ("still failing", result.still))
    for title, pairs in sections:
        print(f"{title} ({len(pairs)}):")
        for before, after in pairs:
            shown = after or before
            change = f" ({before.severity.value} → {after.severity.value})" if before and after else ""
            print(f"  {shown.severity.value.upper():8} {clean(shown.check):28} {clean(shown.resource, 50)}: "
                  f"{clean(shown.title, 90)}{change}")
    return 1 if result.new or result.still else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rmsops.demo.cli import demo

    code = demo(scenario=args.scenario, serve=args.serve, output=Path(args.output),
                env_file=Path(args.env_file) if args.env_file else None, lab=args.lab)
    # Everything the demo started is stopped by now; a seeding helper thread that is still
    # winding down (a ticker, a blocked lock waiter) must not keep the command alive.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_action(args: argparse.Namespace) -> int:
    from rmsops import actions
    from rmsops.context import Context

    ctx = Context(config.load(args.env), _window(args), output_dir=Path(args.output) if args.output else None)
    arguments = dict(_key_value(item) for item in args.arguments)
    if args.service:
        arguments["service"] = args.service
    plan = actions.plan(ctx, args.action, **arguments)
    record = actions.execute(ctx, plan, confirm=args.confirm)
    print(f"{'DRY RUN' if record.dry_run else 'DONE'}: {plan.summary}")
    print(f"  AWS CLI equivalent: {plan.cli}")
    if record.dry_run:
        print(f"  to do it: add --confirm {plan.target}")
    print(f"  audit: {actions.base.audit_log_path(ctx)}")
    return 0


def _key_value(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise UserError(f"action argument {item!r}: expected NAME=VALUE")
    return name.strip().replace("-", "_"), value


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
    chk.add_argument("runbooks", nargs="*",
                     help="runbooks to check, all their checks (default: the daily health check, "
                          "i.e. every quick check)")
    chk.add_argument("-e", "--env", required=True)
    chk.add_argument("--json", action="store_true", help="print findings.json to stdout")
    chk.add_argument("--problems-only", action="store_true", help="hide ok findings")
    _add_window(chk)
    chk.set_defaults(fn=cmd_check)

    tri = sub.add_parser("triage", help="every diagnostic runbook; one report folder")
    tri.add_argument("-e", "--env", required=True)
    tri.add_argument("-o", "--output", required=True, help="the bundle folder")
    tri.add_argument("--runbook", action="append", help="limit to these runbooks (repeatable)")
    tri.add_argument("--jobs", type=int, default=4, help="runbooks at once (default 4)")
    tri.add_argument("--timeout", type=int, default=300, help="seconds a runbook may take (default 300)")
    tri.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    _add_window(tri)
    tri.set_defaults(fn=cmd_triage)

    ver = sub.add_parser("verify", help="check every file of a bundle against its manifest's SHA-256")
    ver.add_argument("bundle", help="the bundle folder")
    ver.set_defaults(fn=cmd_verify)

    dif = sub.add_parser("diff", help="findings resolved, new and still failing between two triages")
    dif.add_argument("before", help="the earlier bundle (or its findings.json)")
    dif.add_argument("after", help="the later bundle (or its findings.json)")
    dif.set_defaults(fn=cmd_diff)

    demo = sub.add_parser("demo", help="an embedded demo environment with a seeded incident, triaged")
    demo.add_argument("--scenario", default="incident", help="incident (default) or healthy")
    demo.add_argument("--serve", action="store_true",
                      help="keep it running for `make lab` and papermill; writes parameters/demo.yaml")
    demo.add_argument("-o", "--output", default="reports/demo", help="where the triage report goes")
    demo.add_argument("--env-file", help="with --serve: where to write the environment file")
    demo.add_argument("--lab", action="store_true", help="serve it and open JupyterLab on notebooks/")
    demo.set_defaults(fn=cmd_demo)

    act = sub.add_parser("action", help="a guarded change from the guide (dry run unless --confirm)")
    act.add_argument("action", help="force-new-deployment, scale-service, rollback-service, ... "
                                     "(`rmsops list` shows them with their arguments)")
    act.add_argument("-a", "--arg", dest="arguments", action="append", default=[], metavar="NAME=VALUE",
                     help="an argument of the action, e.g. -a count=6 (repeatable)")
    act.add_argument("-e", "--env", required=True)
    act.add_argument("--service", help="the ECS service (same as service=NAME)")
    act.add_argument("--confirm", help="the target's name (required in a protected environment)")
    act.add_argument("-o", "--output", help="the incident folder whose audit.jsonl records the action")
    _add_window(act)
    act.set_defaults(fn=cmd_action)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # jsonschema (under nbformat) imports rfc3987_syntax when it is installed, and that compiles
    # three Earley grammars on import: 2 s of CPU before the first runbook starts. rmsops never
    # validates the IRI formats it serves, so this process goes without it.
    sys.modules.setdefault("rfc3987_syntax", None)
    try:
        args = build_parser().parse_args(argv)
        return args.fn(args)
    except UserError as exc:
        print(f"rmsops: error: {clean(secrets.redact(str(exc)), 500)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("rmsops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
