"""How long do `rmsops check` and `rmsops triage` take when every AWS call takes as long as it does
against a real account?

    .venv/bin/python benchmarks/latency.py [--latency 0 0.05 0.1] [--repeat 1]

The demo's AWS emulator answers in a millisecond; a real account's API answers in tens to hundreds
of milliseconds. This serves the demo (the incident, or ``--scenario healthy``) and puts a proxy in
front of its emulator that holds every AWS call for ``--latency`` seconds before forwarding it (the
database, the health URLs and DNS stay local). Each command is timed from the process start at
each latency, with the AWS calls it made and, for `check`, its slowest checks (the chains of calls
one after another that a run cannot end before).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.triage import BIN, serve_demo  # noqa: E402

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
# Not forwarded: they describe one hop, and the answer is re-sent whole with its own length.
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


class _Forward(BaseHTTPRequestHandler):
    server: LatencyProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pooled connections expect

    def log_message(self, *_: object) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        scope = _SCOPE.search(self.headers.get("Authorization", ""))
        self.server.calls[scope.group(1) if scope else "?"] += 1
        time.sleep(self.server.latency)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        upstream = http.client.HTTPConnection(self.server.target.hostname, self.server.target.port, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in _HOP_HEADERS:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _forward


class LatencyProxy(ThreadingHTTPServer):
    """An HTTP proxy on 127.0.0.1 that holds each request ``latency`` seconds, then forwards it."""

    daemon_threads = True

    def __init__(self, target: str, latency: float) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.target = urlsplit(target)
        self.latency = latency
        self.calls: Counter[str] = Counter()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Seconds and exit code of ``command``, run from ``cwd``: not from a source tree, whose
    ``rmsops`` a warm process started with ``python -c`` would import before the installed one."""
    began = time.monotonic()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    return time.monotonic() - began, done.returncode


def slowest_checks(cache: Path, environment: str, most: int = 6) -> list[tuple[str, float]]:
    """The checks that took longest in ``environment``, as `check` remembered them (blended over runs)."""
    known = json.loads((cache / "check-seconds.json").read_text()).get(environment, {})
    return sorted(known.items(), key=lambda item: -item[1])[:most]


def diagnostics() -> list[str]:
    return sorted(p.stem for p in (ROOT / "notebooks").glob("[01]*.ipynb") if p.stem[:2] <= "16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.05, 0.1],
                        help="seconds each AWS call is held (default: 0 0.05 0.1)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command at each latency; medians quoted")
    parser.add_argument("--jobs", type=int, help="the triage's --jobs (default: its own)")
    parser.add_argument("--scenario", default="incident", help="the demo's scenario (default: incident, whose "
                        "payment gateway answers after 2.4 s; healthy has no slow dependency)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rmsops-latency-"))
    demo, env_file = serve_demo(args.scenario, work)
    try:
        settings = yaml.safe_load(env_file.read_text())
        emulator = settings["aws"]["endpoint_url"]
        # One cache for every run (service models parsed once); each latency is an environment of
        # its own name, so that the checks' remembered times (slowest started first) are its own.
        env = {**os.environ, "RMSOPS_CACHE_DIR": str(work / "cache")}
        slowest = {}
        print(f"{'AWS latency':>12} {'check':>8} {'triage':>8} {'AWS calls (check, triage)':>26}", flush=True)
        for latency in args.latency:
            proxy = LatencyProxy(emulator, latency)
            try:
                settings["aws"]["endpoint_url"] = proxy.url
                settings["name"] = name = f"demo-{latency * 1000:g}ms"
                slow = work / f"latency-{latency:g}.yaml"
                slow.write_text(yaml.safe_dump(settings))
                check = [str(BIN / "rmsops"), "check", "-e", str(slow), *diagnostics()]
                timed(check, env, work)  # learns how long each check takes at this latency, as a user's runs do
                row = {}
                for command_name in ("check", "triage"):
                    times, calls = [], []
                    for n in range(args.repeat):
                        proxy.calls.clear()
                        command = check if command_name == "check" else [
                            str(BIN / "rmsops"), "triage", "-e", str(slow), "-o", str(work / f"b-{latency:g}-{n}"),
                            *(["--jobs", str(args.jobs)] if args.jobs else [])]
                        seconds, _ = timed(command, env, work)
                        times.append(seconds)
                        calls.append(sum(proxy.calls.values()))
                    row[command_name] = (statistics.median(times), statistics.median(calls))
                slowest[latency] = slowest_checks(work / "cache", name)
                print(f"{latency * 1000:9.0f} ms {row['check'][0]:7.2f}s {row['triage'][0]:7.2f}s "
                      f"{row['check'][1]:>14.0f}, {row['triage'][1]:.0f}", flush=True)
            finally:
                proxy.stop()
        print("\nthe slowest checks (seconds each took in `check`, as it remembers them):")
        for latency, checks in slowest.items():
            print(f"{latency * 1000:9.0f} ms  " + ", ".join(f"{check} {seconds:.2f}" for check, seconds in checks))
    finally:
        demo.terminate()
        demo.wait(timeout=30)


if __name__ == "__main__":
    main()
