"""The ``rmsops`` command line. Exit status: 0 all ok, 1 warning/critical, 2 bad input, 3 could not run."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from rmsops import __version__
from rmsops.core import budget, config, runbooks, secrets, thresholds
from rmsops.core.errors import UserError
from rmsops.core.findings import document, exit_code
from rmsops.render.report import clean
from rmsops.render.terminal import print_findings, print_tally, print_verdict, show_ok

EXIT_BAD_INPUT = 2
EXIT_COULD_NOT_RUN = 3
DEFAULT_CHECK_BUDGET_SECONDS = 45.0
DEFAULT_CHECK_JOBS = 16  # checks wait on the network far more than they compute
DEFAULT_TRIAGE_BUDGET_SECONDS = 240.0
FIRST_LOOK_HEAD_START_SECONDS = 1.5


def _process_start() -> float:
    """``time.monotonic()`` when this process started (Linux: from /proc), else now.

    "First finding after N s" and "took N s" count from the moment the person pressed Enter: the
    interpreter's own start and the imports before this module belong to the wait too."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic()
    return time.monotonic() - min(max(age, 0.0), 60.0)  # a clock oddity must not invent minutes


STARTED = _process_start()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _window(args: argparse.Namespace):
    from rmsops.core.window import resolve

    return resolve(args.window, args.start or "", args.end or "")


def _add_window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", default="1h", help="how far back to look, ending now (default 1h)")
    parser.add_argument("--start", help="window start, ISO 8601 (instead of --window)")
    parser.add_argument("--end", help="window end, ISO 8601 (default now)")


def cmd_list(args: argparse.Namespace) -> int:
    """From the catalogue alone: no check module, nbformat, pandas or AWS SDK is imported (it is fast)."""
    from rmsops.render import listing

    rows = thresholds.in_force(_env_thresholds(args.env), thresholds.parse_pairs(args.param))
    if args.thresholds:
        print(f"{'threshold':36} {'default':>10} {'in force':>10}  from")
        for name, default, value, source in rows:
            print(f"{name:36} {default:>10g} {value:>10g}  {source}")
        return 0
    values = {name: value for name, _, value, _ in rows}
    for rb in runbooks.CATALOGUE:
        print(f"{rb.stem:34} {rb.guide_section}")
        if rb.stem == runbooks.DAILY:
            print(f"    the quick checks of 01–16 ({len(runbooks.daily())} checks); `rmsops check` runs it")
            continue
        for entry in rb.entries:
            quick = "" if entry.quick else "  (not in the daily check)"
            print(f"    {entry.id:30} {entry.summary_with(values)}{quick}")
        params = [p for p in listing.notebook_parameter_names(rb) if p not in listing.RESERVED_PARAMETERS]
        if params:
            print(f"    parameters: {', '.join(params)}")
    changed = sum(source != "default" for *_, source in rows)
    print(f"\nthresholds in force ({changed} set by -e or -p; `rmsops list --thresholds` shows the defaults and "
          "where each value comes from; override with -p NAME=VALUE or under thresholds: in the environment file):")
    for name, value in values.items():
        print(f"    {name:36} {value:g}")
    print("\nactions (a dry run; add --confirm TARGET to do it):")
    for name in sorted(listing.ACTION_ARGUMENTS):
        print(f"    {listing.action_usage(name)}")
    print(f"\nenvironments: {', '.join(config.known_environments()) or '(none)'}")
    return 0


def _env_thresholds(env: str | None) -> dict[str, object]:
    """The thresholds an environment file sets itself (validated with the whole file), else none."""
    if not env:
        return {}
    settings = config.load(env)  # a bad file is one line and exit 2, as for every command
    raw = config.read_yaml(settings.path.read_text(encoding="utf-8")) or {}
    return {name: settings.thresholds[name] for name in raw.get("thresholds") or {}}


def cmd_run(args: argparse.Namespace) -> int:
    from rmsops.execution.runner import parse_overrides, run_runbook

    runbook = runbooks.find(args.runbook)
    settings = config.load(args.env)
    window = _window(args)
    params = parse_overrides(runbook, args.param or [])
    out = Path(args.output)
    _writable_folder(out)
    print(f"running {runbook.stem} against {settings.name} ({window.start:%H:%M}–{window.end:%H:%M} UTC)…",
          file=sys.stderr)
    outcome = run_runbook(runbook, settings, window, out, params, timeout=args.timeout)
    print_findings(outcome.findings, show_ok=show_ok(args.all), most_urgent_last=True)
    print_tally(outcome.findings)
    print_verdict(outcome.findings)
    if outcome.error:
        print(f"rmsops: runbook {runbook.stem} failed: {clean(outcome.error)}", file=sys.stderr)
    print(f"report: {outcome.html or outcome.notebook}")
    print(f"findings: {outcome.findings_json}")
    return exit_code(outcome.findings) if not outcome.error else 3


def _start_probes(settings, check_ids: set[str], overrides: dict[str, float]) -> None:
    """Send the selected checks' HTTP probes now, before the seconds of imports: a slow URL's wait
    then overlaps them (``rmsops.sources.probes``); the checks take the answers."""
    from rmsops.sources import probes

    timeout = thresholds.merge(settings.thresholds, overrides, source="threshold parameters")["health_timeout_seconds"]
    for check_id, field in probes.PROBED_URLS.items():
        if check_id in check_ids:
            probes.start(getattr(settings, field), timeout)


def cmd_check(args: argparse.Namespace) -> int:
    selected = [runbooks.find(name) for name in args.runbooks] or [runbooks.find("17")]
    if args.fleet or len(args.env or []) > 1:
        return _check_fleet(args, selected)
    settings = _settings(_one_env(args), args.region)
    window = _window(args)
    _positive(args.budget, "--budget")
    _positive(args.jobs, "--jobs")
    overrides = thresholds.parse_pairs(args.param)
    budget.start(args.budget)
    findings = _checked(settings, selected, window, overrides, args.jobs, args.budget)
    if args.json:
        json.dump(document(findings, settings.name, window.start, window.end), sys.stdout, indent=2)
        print()
    else:
        _print_checked(findings, args)
    return exit_code(findings)


def _checked(settings, selected, window, overrides: dict[str, float], jobs: int, seconds: float) -> list:
    """The findings of the selected runbooks' checks in one environment, ``jobs`` at once."""
    _start_probes(settings, {entry.id for rb in selected for entry in runbooks.runs(rb)}, overrides)

    from rmsops.core.longlived import collecting_rarely, setting_up

    with collecting_rarely():
        with setting_up():  # the checks' imports: 8% of a check's CPU went to collecting them
            from rmsops.core import registry
            from rmsops.core.context import Context
            from rmsops.execution import checkpool, durations

            ctx = Context(settings, window, overrides)
            specs = [spec for rb in selected for spec in registry.for_runbook(rb.stem)]
        results = checkpool.run_checks(ctx, specs, jobs=jobs, budget_seconds=seconds,
                                       usual_seconds=durations.load(settings.name))
    durations.remember(settings.name, results)
    if not checkpool.overran(results):  # else a check may still hold the session: the exit closes it
        ctx.close()
    return [f for result in results for f in result.findings]


def _print_checked(findings: list, args: argparse.Namespace) -> None:
    print_findings(findings, show_ok=show_ok(args.all) and not args.problems_only, most_urgent_last=True)
    print_tally(findings)
    print_verdict(findings)


def _check_fleet(args: argparse.Namespace, selected: list) -> int:
    """`rmsops check -e A -e B`: every environment at once (``--jobs`` shared), one section each."""
    from concurrent.futures import ThreadPoolExecutor

    from rmsops.execution import fleet

    members = fleet.members(args.env or [], args.fleet, region=args.region)
    window = _window(args)
    _positive(args.budget, "--budget")
    _positive(args.jobs, "--jobs")
    overrides = thresholds.parse_pairs(args.param)
    budget.start(args.budget)
    each = fleet.shares(len(members), args.jobs)[1]

    def check_one(member: fleet.Member) -> fleet.MemberResult:
        result = fleet.MemberResult(member)
        started = time.monotonic()
        try:
            settings = _settings(member.env, member.region)
            result.environment = settings.name
            result.findings = _checked(settings, selected, window, overrides, each, args.budget)
            result.exit_code = exit_code(result.findings)
        except UserError as exc:  # this environment's file or input: an error row, the others go on
            result.error, result.exit_code = clean(secrets.redact(str(exc)), 300), EXIT_BAD_INPUT
        result.seconds = time.monotonic() - started
        return result

    with ThreadPoolExecutor(max_workers=len(members), thread_name_prefix="rmsops-check") as pool:
        results = list(pool.map(check_one, members))
    if args.json:
        json.dump(fleet.findings_document(results, window), sys.stdout, indent=2, default=str)
        print()
        return fleet.exit_code(results)
    for result in results:
        print(f"\n== {result.member.label} ({result.member.region or 'its own region'}) ==")
        if result.error:
            print(f"  ERROR    {result.error}")
        else:
            _print_checked(result.findings, args)
    print("\nfleet, most serious first:")
    for result in fleet.ranked(results):
        print(f"  {fleet.summary_line(result)}")
    return fleet.exit_code(results)


def _one_env(args: argparse.Namespace) -> str:
    if not args.env:
        raise UserError("name the environment with -e NAME (or several, or --fleet FILE)")
    return args.env[0]


def _settings(env: str, region: str | None):
    """The environment file, in ``region`` when one is given (``--region``, a fleet member's)."""
    return config.in_region(config.load(env), region or "")


def _writable_folder(folder: Path) -> None:
    """An output folder that can be created and written, or one line saying why not (exit 2)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".rmsops-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to {folder}: {exc.strerror or exc}; choose another -o") from None


def _positive(value: float, option: str) -> None:
    if value <= 0:
        raise UserError(f"{option} must be more than 0 (got {value:g})")


def cmd_triage(args: argparse.Namespace) -> int:
    if args.fleet or len(args.env or []) > 1:
        return _triage_fleet(args)
    from rmsops.execution import bundle, firstlook, interrupts
    from rmsops.execution.zygote import Zygote
    from rmsops.render.progress import Progress

    env = _one_env(args)
    if args.region:  # read by every process of the run: the warm one, the kernels
        os.environ[config.REGION_OVERRIDE] = config.check_region(args.region)
    settings = config.load(env)
    window = _window(args)
    named = [runbooks.find(name) for name in args.runbook or []]
    out = Path(args.output).resolve()
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; choose another -o or pass --force to replace it")
    if args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    _positive(args.budget, "--budget")
    if args.sign:
        from rmsops.execution import signing

        signing.check_signing_spec(args.sign)
    bundle.prepare_folder(out)
    selected = named or runbooks.triage_selection()
    title = f"rmsops triage {settings.name} {window.start:%H:%M}–{window.end:%H:%M} UTC"
    progress = Progress([rb.stem for rb in selected], title=title, started=STARTED)
    overrides = thresholds.parse_pairs(args.param)  # before the zygote's folder exists: bad input leaves none
    zygote = Zygote()
    options = dict(jobs=args.jobs, timeout=args.timeout, force=args.force, zygote=zygote, progress=progress,
                   sign=args.sign or "", params={"thresholds": overrides} if overrides else None)
    # Input is valid: from here on a signal (Ctrl-C, SIGTERM) leaves a bundle marked incomplete.
    interrupts.install()
    try:
        try:
            budget.start(args.budget)  # before the zygote starts: every kernel inherits the deadline
            options["staging"] = bundle.make_staging(out)
            # Warms up (imports) while the rest is set up, and takes the first look on the way.
            zygote.start(first_look=firstlook.order(str(settings.path), window.start.isoformat(),
                                                    window.end.isoformat(), [rb.stem for rb in selected],
                                                    overrides))
            looked = _show_first_look(zygote, progress)
            with progress:
                # Give the first look a head start: the seconds of imports below would compete with it
                # for the cores, and nothing needs them before the zygote is warm.
                looked.wait(FIRST_LOOK_HEAD_START_SECONDS)
                from rmsops.execution import triage

                result = triage.run(settings, window, out, selected, **options)
        except KeyboardInterrupt:  # before the triage took over: a bundle that says nothing ran
            interrupts.hold()
            zygote.stop()
            from rmsops.execution import triage

            result = triage.run(settings, window, out, selected, **options, interrupted=True)
    except OSError as exc:  # the disk filled up, the folder went away: nothing is presented as done
        print(f"rmsops: error: could not write the bundle: {clean(exc.strerror or str(exc))} "
              f"({clean(str(exc.filename or out))}); {out} was not created", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    finally:
        zygote.stop()
        interrupts.restore()
    print_findings(result.findings, show_ok=show_ok(args.all), most_urgent_last=True)
    print_tally(result.findings)
    if result.status != "complete":
        print(f"rmsops: the triage was {clean(result.extra.get('stopped', 'interrupted'))}: the bundle is marked "
              "incomplete; finished runbooks keep their findings", file=sys.stderr)
    for outcome in result.outcomes:
        if outcome.status != "done":
            print(f"rmsops: {outcome.runbook.stem} {outcome.status}: {clean(outcome.error)}", file=sys.stderr)
    print_verdict(result.findings)
    print(f"report:   {result.index}")
    print(f"bundle:   {result.folder}  ({result.zip})")
    first = result.first_finding_seconds
    took = time.monotonic() - STARTED  # from the command's start, as the person waiting counts it
    print(f"took {took:.1f} s; " + (f"first finding after {first:.1f} s" if first else "no finding shown"))
    print(f"manifest sha256: {bundle.manifest_digest(result.folder)}")
    if result.extra.get("unsigned"):
        print(f"rmsops: error: the bundle is complete but NOT signed: {clean(result.extra['unsigned'])}",
              file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    return result.exit_code


def _triage_fleet(args: argparse.Namespace) -> int:
    """`rmsops triage -e A -e B -o DIR` / `--fleet FILE`: a triage per environment, one fleet index."""
    from rmsops.execution import fleet, interrupts

    members = fleet.members(args.env or [], args.fleet, region=args.region)
    window = _window(args)
    for name in args.runbook or []:
        runbooks.find(name)
    thresholds.parse_pairs(args.param)
    _positive(args.jobs, "--jobs")
    _positive(args.budget, "--budget")
    out = Path(args.output).resolve()
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; choose another -o or pass --force to replace it")
    _writable_folder(out)
    passed = [*(a for name in args.runbook or [] for a in ("--runbook", name)),
              *(a for pair in args.param or [] for a in ("-p", pair)),
              "--timeout", str(args.timeout), "--budget", str(args.budget),
              *(["--force"] if args.force else []), *(["--sign", args.sign] if args.sign else [])]

    def tell(line: str) -> None:
        print(f"{time.monotonic() - STARTED:6.1f} s  {line}", file=sys.stderr, flush=True)

    interrupts.install()  # Ctrl-C, SIGTERM: the running triages finish their bundles, the index is written
    try:
        results = fleet.run(members, out, window, args.jobs, passed, tell)
        interrupts.hold()
        index = fleet.write(out, results, window)
    finally:
        interrupts.restore()
    print("fleet, most serious first:")
    for result in fleet.ranked(results):
        print(f"  {fleet.summary_line(result)}")
    print(f"fleet index: {index}")
    print(f"findings:    {out / 'findings.json'}")
    print(f"took {time.monotonic() - STARTED:.1f} s")
    return fleet.exit_code(results)


def _show_first_look(zygote, progress) -> threading.Event:
    """Read the first look into the live view; the event is set at its first findings (or its end)."""
    from rmsops.execution import firstlook

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


def cmd_verify(args: argparse.Namespace) -> int:
    from rmsops.execution import bundle

    folder = Path(args.bundle)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder (verify takes the bundle folder, not the zip)")
    expected = bundle.parse_digest(args.digest) if args.digest is not None else None
    signing = None
    if args.key is not None or (folder / bundle.SIGNATURE).is_file():
        from rmsops.execution import signing

        signing.load_trusted_key(args.key)  # a bad --key is bad input: found before any check
    checked = bundle.verify(folder)
    for label, names in (("changed", checked.changed), ("missing", checked.missing), ("added", checked.added)):
        for name in names:
            print(f"  {label:8} {clean(name)}")
    for label, name in checked.zip.problems if checked.zip else []:
        print(f"  zip {label:10} {clean(name)}")
    passed, failed = [f"all {checked.checked} files match the manifest"], []
    counts = f"{len(checked.changed)} changed, {len(checked.missing)} missing, {len(checked.added)} added"
    if checked.files_ok:
        print(f"files:     ok, all {checked.checked} files match the manifest")
    else:
        print(f"files:     FAILED, {counts} (the manifest lists {checked.checked})")
        failed.append(counts)
    archive = checked.zip
    if archive is None:
        print(f"zip:       none beside the bundle ({clean(folder.resolve().name)}.zip), not checked")
    elif archive.ok:
        print(f"zip:       ok, all {archive.members} members of {clean(archive.path.name)} match the manifest "
              "(its manifest.json is the folder's)")
        passed.append("so does the zip")
    else:
        print(f"zip:       FAILED, {clean(archive.path.name)}: "
              f"{clean(archive.error) or f'{len(archive.problems)} members changed, missing, extra or different'}")
        failed.append("the zip does not match")
    digest = bundle.manifest_digest(folder)
    if expected is None:
        print(f"digest:    not given; manifest sha256: {digest} (compare it with the one recorded in the ticket)")
    elif digest == expected:
        print(f"digest:    ok, manifest sha256 {digest} is the one recorded")
        passed.append("the manifest is the one recorded")
    else:
        print(f"digest:    FAILED, manifest sha256 {digest} is not the recorded {expected}: the manifest was "
              "changed or regenerated since the digest was recorded")
        failed.append("the manifest is not the one recorded")
    signature = signing.verify_signature(folder, args.key) if signing else None
    if signature is None:
        print(f"signature: none, no {bundle.SIGNATURE}: the bundle is not signed")
    else:
        print(f"signature: {signature.status}, {clean(signature.detail, 600)}")
        if signature.present and signature.ok:
            passed.append(f"signature {signature.status}")
        elif not signature.unchecked:
            failed.append("the signature does not match")
    if failed:
        print(f"FAILED: {'; '.join(failed)}")
        return 1
    if signature is not None and signature.unchecked:
        raise UserError("the bundle's signature could not be checked (above); fix the access to KMS, "
                        "or pass --key with the signing key's public key")
    print(f"ok: {'; '.join(passed)}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from rmsops.execution import bundle

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


def cmd_postmortem(args: argparse.Namespace) -> int:
    from rmsops.execution import postmortem

    path = postmortem.write(Path(args.bundle), Path(args.output) if args.output else None, html=args.html,
                            after=Path(args.after) if args.after else None,
                            audit=Path(args.audit) if args.audit else None)
    print(path)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from rmsops.execution import notify, watch

    settings = config.load(args.env)
    targets = [notify.parse_target(spec) for spec in _notify_specs(args.notify or [])]
    options = watch.Options(interval=_duration(args.interval, "--interval"),
                            lookback=_duration(args.lookback, "--lookback"),
                            cooldown=_duration(args.cooldown, "--cooldown"),
                            triage_args=_triage_args(args))
    out = Path(args.output).resolve()
    _writable_folder(out)
    stop = threading.Event()
    with watch.Lock(out, settings.name), watch.stop_on_signals(stop):
        watcher = watch.Watcher(settings, out, targets, options)
        told = ", ".join(t.label for t in targets) or "nobody (no --notify)"
        every = "once" if args.once else f"every {options.interval.total_seconds():g} s"
        print(f"rmsops watch: {_watched(settings)} of {settings.name}, {every}; bundles in {out}; "
              f"notifies {told}", file=sys.stderr)
        return watcher.run(args.once, stop)


def _notify_specs(values: list[str]) -> list[str]:
    """``--notify`` values; ``@FILE`` reads one target per line, so a webhook's secret URL stays out
    of the process list and the shell history (``notify.parse_target`` masks its path in all output)."""
    specs: list[str] = []
    for value in values:
        if not value.startswith("@"):
            specs.append(value)
            continue
        try:
            lines = Path(value[1:]).expanduser().read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UserError(f"--notify {value}: cannot read: {exc.strerror or exc}") from None
        for line in (line.strip() for line in lines):
            if line and not line.startswith("#"):
                specs.append(line)
    return specs


def _duration(text: str, option: str) -> timedelta:
    from rmsops.core.window import parse_duration

    try:
        return parse_duration(text)
    except UserError:
        raise UserError(f"{option} {text!r} is not a duration; use e.g. 30s, 15m, 1h") from None


def _triage_args(args: argparse.Namespace) -> list[str]:
    """What `rmsops watch` passes on to each `rmsops triage`, checked now rather than at 3 a.m."""
    passed: list[str] = []
    for name in args.runbook or []:
        passed += ["--runbook", runbooks.find(name).stem]
    thresholds.parse_pairs(args.param)  # an unknown threshold is bad input now
    for pair in args.param or []:
        passed += ["-p", pair]
    if args.jobs is not None:
        _positive(args.jobs, "--jobs")
        passed += ["--jobs", str(args.jobs)]
    return passed


def _watched(settings) -> str:
    if settings.alarm_names or settings.alarm_prefix:
        named = [*settings.alarm_names, *([f"{settings.alarm_prefix}*"] if settings.alarm_prefix else [])]
        return f"the alarms {', '.join(named)}"
    return (f"the alarms on {settings.alb_name}, its {len(settings.target_groups)} target groups, "
            f"{len(settings.services)} services in {settings.cluster} and {settings.database.instance}")


def cmd_demo(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("moto") is None:  # the demo is an extra: the product runs without it
        raise UserError("the demo needs its extra: pip install 'rmsops[demo]' (an AWS emulator and a local "
                        "PostgreSQL); in a checkout, `make demo` installs it")
    from rmsops.demo.cli import demo

    code = demo(scenario=args.scenario, serve=args.serve, output=Path(args.output),
                env_file=Path(args.env_file) if args.env_file else None, lab=args.lab, region=args.region,
                workers=args.workers, target_groups=args.target_groups)
    # Everything the demo started is stopped by now; a seeding helper thread that is still
    # winding down (a ticker, a blocked lock waiter) must not keep the command alive.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_action(args: argparse.Namespace) -> int:
    from rmsops import actions
    from rmsops.core.context import Context

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


def _add_environments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-e", "--env", action="append",
                        help="environment name in parameters/ or a YAML path; repeat it for several at once")
    parser.add_argument("--fleet", metavar="FILE",
                        help="a YAML list of environments (names or paths, or {env: NAME, regions: [..]})")
    parser.add_argument("--region", help="look at the environment(s) in this region instead of their own")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rmsops", description="Executable runbooks for the RMS production system.")
    parser.add_argument("--version", action="version", version=f"rmsops {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    lst = sub.add_parser("list", help="runbooks, their checks, parameters, thresholds and actions")
    lst.add_argument("--thresholds", action="store_true",
                     help="every threshold: its default, the value in force and where that comes from")
    lst.add_argument("-e", "--env", help="with the thresholds of this environment file (name or YAML path)")
    lst.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                     help="a threshold override, NAME=VALUE as run, check and triage take it (repeatable)")
    lst.set_defaults(fn=cmd_list)

    run = sub.add_parser("run", help="one runbook through papermill: .ipynb, .html and findings.json")
    run.add_argument("runbook", help="stem or number, e.g. 01 or 01-application-not-responding")
    run.add_argument("-e", "--env", required=True, help="environment name in parameters/ or a YAML path")
    run.add_argument("-o", "--output", default="reports", help="output folder (default reports/)")
    run.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                     help="a notebook parameter or a threshold override")
    run.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    run.add_argument("--all", action="store_true", help="on a terminal, show ok findings too (a pipe gets them all)")
    _add_window(run)
    run.set_defaults(fn=cmd_run)

    chk = sub.add_parser("check", help="the checks alone, no notebooks (for cron and alerting)")
    chk.add_argument("runbooks", nargs="*",
                     help="runbooks to check, all their checks (default: the daily health check, "
                          "i.e. every quick check)")
    _add_environments(chk)
    chk.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                     help="a threshold override, e.g. -p slow_query_mean_ms=50 (repeatable; see "
                          "`rmsops list --thresholds`)")
    chk.add_argument("--all", action="store_true", help="on a terminal, show ok findings too (a pipe gets them all)")
    chk.add_argument("--json", action="store_true", help="print findings.json to stdout")
    chk.add_argument("--problems-only", action="store_true", help="hide ok findings")
    chk.add_argument("--jobs", type=int, default=DEFAULT_CHECK_JOBS,
                     help=f"checks at once (default {DEFAULT_CHECK_JOBS}; the slowest last time start first)")
    chk.add_argument("--budget", type=float, default=DEFAULT_CHECK_BUDGET_SECONDS,
                     help=f"seconds the whole check may take (default {DEFAULT_CHECK_BUDGET_SECONDS:g}); "
                          "what has not finished by then is an error finding")
    _add_window(chk)
    chk.set_defaults(fn=cmd_check)

    tri = sub.add_parser("triage", help="every diagnostic runbook; one report folder")
    _add_environments(tri)
    tri.add_argument("-o", "--output", required=True,
                     help="the bundle folder (several environments: one bundle each in DIR/NAME/, and the "
                          "fleet's index.html and findings.json)")
    tri.add_argument("--runbook", action="append", help="limit to these runbooks (repeatable)")
    tri.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                     help="a threshold override for every runbook (repeatable; `rmsops list --thresholds`)")
    tri.add_argument("--all", action="store_true", help="on a terminal, show ok findings too (a pipe gets them all)")
    tri.add_argument("--jobs", type=int, default=4,
                     help="runbooks at once (default 4), shared by all environments of a fleet")
    tri.add_argument("--timeout", type=int, default=300, help="seconds a runbook may take (default 300)")
    tri.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    tri.add_argument("--budget", type=float, default=DEFAULT_TRIAGE_BUDGET_SECONDS,
                     help=f"seconds the whole triage may take (default {DEFAULT_TRIAGE_BUDGET_SECONDS:g}); "
                          "runbooks unfinished by then are stopped and the bundle is marked incomplete")
    tri.add_argument("--sign", metavar="KEYFILE|kms:KEY_ID",
                     help="sign the manifest with an Ed25519 private key file or an AWS KMS key")
    _add_window(tri)
    tri.set_defaults(fn=cmd_triage)

    ver = sub.add_parser("verify", help="check every file of a bundle, and its zip, against its manifest's SHA-256")
    ver.add_argument("bundle", help="the bundle folder (its DIR.zip, if beside it, is checked too)")
    ver.add_argument("--digest", metavar="HEX",
                     help="the 'manifest sha256' the triage printed, as recorded in the ticket: proves the "
                          "manifest itself was not rewritten since")
    ver.add_argument("--key", metavar="FILE",
                     help="the public key (PEM or DER) the bundle must be signed with, or kms:KEY_ID")
    ver.set_defaults(fn=cmd_verify)

    dif = sub.add_parser("diff", help="findings resolved, new and still failing between two triages")
    dif.add_argument("before", help="the earlier bundle (or its findings.json)")
    dif.add_argument("after", help="the later bundle (or its findings.json)")
    dif.set_defaults(fn=cmd_diff)

    pm = sub.add_parser("postmortem", help="draft an incident write-up (Markdown or HTML) from a triage bundle")
    pm.add_argument("bundle", help="the triage bundle folder")
    pm.add_argument("after", nargs="?", help="a later bundle: adds 'Did the fix work?' (resolved, new, still failing)")
    pm.add_argument("-o", "--output", help="the draft's file (default: NAME-postmortem.md beside the bundle, "
                                          "never inside it)")
    pm.add_argument("--html", action="store_true", help="write HTML styled like the reports (also for -o *.html)")
    pm.add_argument("--audit", metavar="FILE", help="another audit.jsonl whose actions join the timeline")
    pm.set_defaults(fn=cmd_postmortem)

    demo = sub.add_parser("demo", help="an embedded demo environment with a seeded incident, triaged")
    from rmsops.demo.layout import ALB_TARGET_GROUPS, MAX_WORKERS
    from rmsops.demo.scenarios import DEFAULT_SCENARIO, SCENARIOS

    def worker_count(text: str) -> int:
        if not text.strip().isdigit() or int(text) > MAX_WORKERS:
            raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_WORKERS}, got {text!r}")
        return int(text)

    demo.add_argument("--scenario", default=DEFAULT_SCENARIO, choices=list(SCENARIOS), metavar="SCENARIO",
                      help="what the runbooks will find: " + "; ".join(
                          f"{name}{' (default)' if name == DEFAULT_SCENARIO else ''}: {spec.summary}".replace("%", "%%")
                          for name, spec in SCENARIOS.items()))
    demo.add_argument("--serve", action="store_true",
                      help="keep it running for `make lab` and papermill; writes parameters/demo.yaml")
    demo.add_argument("-o", "--output", default="reports/demo", help="where the triage report goes")
    demo.add_argument("--env-file", help="with --serve: where to write the environment file")
    demo.add_argument("--lab", action="store_true", help="serve it and open JupyterLab on notebooks/")
    demo.add_argument("--region", default="us-east-1",
                      help="the emulated environment's region (default us-east-1); CloudFront, its "
                           "certificate and WAF, and global CloudTrail events stay in us-east-1 as in AWS")
    demo.add_argument("--workers", type=worker_count, default=0, metavar="N",
                      help="also run N small, healthy worker services rms-worker-01 … rms-worker-NN in the "
                           f"cluster (not behind the ALB; 0-{MAX_WORKERS}, default 0), e.g. to time a triage over a "
                           "bigger estate; the environment file lists them all")
    demo.add_argument("--target-groups", type=int, default=ALB_TARGET_GROUPS, metavar="N",
                      help=f"the ALB's target groups (default {ALB_TARGET_GROUPS}: rms-backend's and rms-frontend's); "
                           "each one more puts a worker behind the ALB (rms-worker-01 first, so at most "
                           f"{ALB_TARGET_GROUPS} + --workers)")
    demo.set_defaults(fn=cmd_demo)

    wat = sub.add_parser("watch", help="when an alarm of the environment fires: triage, then notify")
    wat.add_argument("-e", "--env", required=True)
    wat.add_argument("-o", "--output", default="reports",
                     help="where the bundles go, one per incident: DIR/<UTC time>-<alarm>/ (default reports/)")
    wat.add_argument("--notify", action="append", metavar="TARGET",
                     help="told when a bundle is complete: an http(s) webhook URL (Slack-compatible JSON), "
                          "sns:TOPIC_ARN, cmd:PROGRAM (run with the findings.json path), or @FILE with one "
                          "target per line (keeps a webhook's secret URL out of `ps`); repeatable")
    wat.add_argument("--once", action="store_true",
                     help="look once (and triage, if an alarm fired), then exit: for cron")
    wat.add_argument("--interval", default="60s", help="how often to look at the alarms (default 60s)")
    wat.add_argument("--lookback", default="30m",
                     help="the triage's window starts this long before the alarm fired (default 30m)")
    wat.add_argument("--cooldown", default="15m",
                     help="an alarm firing within this time of a triage joins its incident (default 15m)")
    wat.add_argument("--runbook", action="append", help="triage only these runbooks (repeatable)")
    wat.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                     help="a threshold override for every triage (repeatable)")
    wat.add_argument("--jobs", type=int, help="runbooks at once in a triage (default: triage's)")
    wat.set_defaults(fn=cmd_watch)

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
        code = args.fn(args)
        sys.stdout.flush()  # a reader that went away (`rmsops list | head`) is found here, not at exit
        return code
    except BrokenPipeError:
        # Python's recipe (signal, "Note on SIGPIPE"): stdout to devnull, so the flush at exit cannot
        # fail again; the reader had what it wanted, so quietly exit 0.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file (captured): nothing will flush it to the pipe
            os.close(devnull)
        return 0
    except UserError as exc:
        print(f"rmsops: error: {clean(secrets.redact(str(exc)), 500)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # outside a triage (which writes its bundle and returns): nothing to keep
        print("rmsops: interrupted", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen failure: one line, never exit 1
        from rmsops.core import failure

        print(f"rmsops: error: could not run: {clean(failure.describe(exc), 500)} "
              "(an unexpected error; please report it with the command you ran)", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    finally:
        budget.clear()  # a run's deadline ends with it (main may be called again in one process)


_exit_status: int | None = None  # set by ``entry`` once ``main`` has returned


def entry() -> None:
    """The ``rmsops`` command: ``main``, then an exit that skips the interpreter's teardown.

    Python's teardown frees every object of pandas, botocore's models and matplotlib one by one:
    a fifth of a second after the last line was printed (a tenth of ``check``), with nothing left
    to do. The process ends as usual (threads joined, exit handlers run: temporary folders, the
    demo's servers), then leaves its memory to the operating system. Only here, not in ``main``,
    which tests and other programs call in a process that goes on."""
    global _exit_status
    # Registered first, it runs after every other exit handler. If one came before it (coverage
    # started from a .pth file saves its data at exit), the usual exit runs them all.
    if getattr(atexit, "_ncallbacks", lambda: 1)() == 0:
        atexit.register(_exit_without_teardown)
    code = main()
    _exit_status = code
    sys.exit(code)


def _exit_without_teardown() -> None:
    """The last exit handler: flush what was printed and end with ``main``'s status. Files are closed
    where they are written (``with``): only the two standard streams hold output still."""
    if _exit_status is None:  # not ended through ``entry``: leave the exit to Python
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a reader that went away (`| head`) loses nothing of ours
            stream.flush()
    os._exit(_exit_status)


if __name__ == "__main__":
    entry()
