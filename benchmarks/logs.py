"""How fast are ALB access logs read? The old line-by-line Python parser against DuckDB, same objects.

    .venv/bin/python benchmarks/logs.py [--sizes 1,10,100] [--file-mb 10] [--endpoint URL] [--repeat 1]

Starts a moto server of its own (or uses ``--endpoint``, e.g. a served demo's AWS), writes gzipped
ALB access-log objects of 1, 10 and 100 MB in all (in files of at most ``--file-mb``, as an ALB
writes a file per node every 5 minutes) to an S3 bucket, then reads each set, timed from the first
S3 call to the per-client frame:

* python: what ``security.alb.access_logs`` did before DuckDB: get each object, gunzip it in
  memory, parse every line with a regex tokenizer (``parse_alb_line`` below, kept here only for
  this comparison) and aggregate with pandas;
* duckdb: what it does now without Athena (``rmsops.sources.alblogs``): download the objects to a
  temporary folder (8 at once), then one SQL query through the view that cuts each line with the
  Athena table's regex.

Each read runs in a process of its own, forked for it, so that its peak memory (RSS) is its own.
Both give the same per-client frame (checked). Prints rows/s and peak memory per reader and size,
and the table for README's "Large logs".
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import pandas as pd  # noqa: E402

from rmsops.core.window import Window  # noqa: E402
from rmsops.sources import alblogs  # noqa: E402

BUCKET = "rmsops-bench-alb-logs"
ACCOUNT, REGION = "123456789012", "us-east-1"
ELB = "app/rms-alb/50dc6c495c0c9188"
MB = 1024 * 1024

# --- the old reader (security.alb.access_logs before DuckDB), for this comparison only ------------

_TOKEN = re.compile(r'"[^"]*"|\S+')


def parse_alb_line(line: str) -> dict[str, Any] | None:
    """One ALB access log entry: time, client, elb status, method, path (None for a malformed line)."""
    fields = _TOKEN.findall(line)
    if len(fields) < 13:
        return None
    try:
        when = datetime.fromisoformat(fields[1].replace("Z", "+00:00"))
    except ValueError:
        return None
    client = fields[3].rsplit(":", 1)[0] if ":" in fields[3] else fields[3]
    request = fields[12].strip('"').split(" ")
    method = request[0] if request else ""
    path = urlsplit(request[1]).path if len(request) > 1 else ""
    status = fields[8]
    return {"time": when, "client": client, "status": int(status) if status.isdigit() else None,
            "method": method, "path": path or "/"}


def aggregate_alb(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """Requests per client with 4xx/5xx counts and the most requested path."""
    if not entries:
        return pd.DataFrame(columns=alblogs.CLIENT_COLUMNS)
    frame = pd.DataFrame(entries)
    status = frame["status"].fillna(0)
    frame["is_4xx"] = (status >= 400) & (status < 500)
    frame["is_5xx"] = status >= 500
    per = frame.groupby("client").agg(requests=("path", "size"), status_4xx=("is_4xx", "sum"),
                                      status_5xx=("is_5xx", "sum"))
    paths = frame.groupby(["client", "path"]).size().reset_index(name="n")
    paths = paths.sort_values(["client", "n"], ascending=[True, False]).drop_duplicates("client").set_index("client")
    per["top_path"] = paths["path"]
    per["top_path_requests"] = paths["n"]
    per = per.reset_index().sort_values("requests", ascending=False, kind="stable").reset_index(drop=True)
    for column in ("requests", "status_4xx", "status_5xx", "top_path_requests"):
        per[column] = per[column].astype(int)
    return per[alblogs.CLIENT_COLUMNS]


def read_python(s3: Any, keys: list[str], window: Window) -> tuple[pd.DataFrame, int]:
    entries: list[dict[str, Any]] = []
    lines = 0
    for key in keys:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        for line in gzip.decompress(body).decode("utf-8", errors="replace").splitlines():
            lines += 1
            entry = parse_alb_line(line)
            if entry and window.start <= entry["time"] <= window.end:
                entries.append(entry)
    return aggregate_alb(entries), lines


class _Context:
    """What ``alblogs.download`` needs of a Context: an S3 client."""

    def __init__(self, s3: Any):
        self.s3 = s3

    def client(self, service: str, region: str | None = None) -> Any:
        return self.s3


def read_duckdb(s3: Any, keys: list[str], window: Window) -> pd.DataFrame:
    with tempfile.TemporaryDirectory(prefix="rmsops-bench-") as tmp:
        alblogs.download(_Context(s3), BUCKET, keys, Path(tmp))  # type: ignore[arg-type]
        files = sorted(str(p) for p in Path(tmp).rglob("*") if p.is_file())
        rows = alblogs.duckdb_query(files, alblogs.clients_sql(alblogs.TABLE, ELB, window, limit=None))
    return alblogs.client_frame(rows)[0]


# --- the objects -------------------------------------------------------------------------------

AGENTS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)",
          "python-requests/2.32.3", "curl/8.5.0", 'Mozilla/5.0 \\x22quoted\\x22 (compatible; bot)')
PATHS = ("/api/reservations", "/api/tables", "/api/health", "/api/login", "/", "/static/app.js", "/static/app.css")


def alb_line(rng: random.Random, at: datetime) -> str:
    client = f"198.51.100.{rng.randint(1, 254)}" if rng.random() < 0.7 else f"203.0.113.{rng.randint(1, 20)}"
    status = rng.choice((200, 200, 200, 200, 200, 201, 304, 401, 404, 502))
    when = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    target = f"10.0.{rng.randint(10, 12)}.{rng.randint(2, 250)}:8000"
    return (f'https {when} {ELB} {client}:{rng.randint(1024, 65535)} {target} 0.{rng.randint(0, 9):03d} '
            f'{rng.randint(1, 900) / 1000:.3f} 0.000 {status} {status} {rng.randint(200, 2000)} '
            f'{rng.randint(300, 40000)} "GET https://rms.example.com:443{rng.choice(PATHS)}?page={rng.randint(1, 50)} '
            f'HTTP/2.0" "{rng.choice(AGENTS)}" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
            f'arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/rms-backend/6d0ecf831eec9f09 '
            f'"Root=1-{int(at.timestamp()):08x}-{rng.getrandbits(96):024x}" "rms.example.com" '
            f'"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/1d9a6f7e" 0 {when} "forward" "-" "-" "{target}" '
            f'"{status}" "-" "-" TID_{rng.getrandbits(64):016x}')


def gzipped_file(rng: random.Random, size: int, start: datetime, seconds: float) -> tuple[bytes, int]:
    """A gzipped log file of about ``size`` bytes, its entries spread over ``seconds`` from ``start``."""
    out = io.BytesIO()
    lines = 0
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6) as gz:
        while out.tell() < size:
            batch = [alb_line(rng, start + timedelta(seconds=rng.uniform(0, seconds))) for _ in range(2000)]
            gz.write(("\n".join(batch) + "\n").encode())
            lines += len(batch)
    return out.getvalue(), lines


def put_set(s3: Any, total_mb: int, file_mb: int, end: datetime, rng: random.Random) -> tuple[list[str], int]:
    """``total_mb`` of gzipped logs in files of at most ``file_mb``, closing every 5 minutes up to ``end``."""
    count = max(1, -(-total_mb // file_mb))
    keys, lines = [], 0
    for k in range(count):
        closes = end - timedelta(minutes=5 * (count - 1 - k))
        body, n = gzipped_file(rng, int(total_mb * MB / count), closes - timedelta(minutes=5), 300)
        key = (f"bench{total_mb}/AWSLogs/{ACCOUNT}/elasticloadbalancing/{REGION}/{closes:%Y/%m/%d}/"
               f"{ACCOUNT}_elasticloadbalancing_{REGION}_{ELB.replace('/', '.')}_{closes:%Y%m%dT%H%MZ}_"
               f"10.0.0.{k % 250}_{rng.getrandbits(32):08x}.log.gz")
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        keys.append(key)
        lines += n
    return keys, lines


def start_moto() -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, url
        time.sleep(0.1)
    process.kill()
    raise SystemExit("moto_server did not start")


def timed(reader: str, url: str, keys: list[str], window: Window) -> tuple[float, float, float, pd.DataFrame]:
    """(wall seconds, CPU seconds, peak memory MB, frame) of one reader, in a fresh forked process so
    that its peak memory is its own."""
    import multiprocessing
    import resource

    def child(pipe: Any) -> None:
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=url)
        cpu, began = time.process_time(), time.monotonic()
        frame = read_python(s3, keys, window)[0] if reader == "python" else read_duckdb(s3, keys, window)
        wall, cpu = time.monotonic() - began, time.process_time() - cpu
        pipe.send((wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, frame))
        pipe.close()

    parent, other = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(target=child, args=(other,))
    process.start()
    result = parent.recv()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100", help="MB of gzipped logs per set (default 1,10,100)")
    parser.add_argument("--file-mb", type=int, default=10, help="largest object, MB (default 10)")
    parser.add_argument("--endpoint", help="an S3 endpoint to use (default: a moto server started here)")
    parser.add_argument("--repeat", type=int, default=1, help="reads per reader and size; the fastest counts")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server, url = (None, args.endpoint) if args.endpoint else start_moto()
    try:
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=url)
        s3.create_bucket(Bucket=BUCKET)
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        rng = random.Random(14)
        rows = []
        for total in (int(s) for s in args.sizes.split(",")):
            began = time.monotonic()
            keys, lines = put_set(s3, total, args.file_mb, end, rng)
            window = Window(end - timedelta(hours=24), end)
            print(f"{total} MB: {len(keys)} objects, {lines} lines written in {time.monotonic() - began:.1f} s",
                  flush=True)
            results = {}
            for reader in ("python", "duckdb"):
                best = min((timed(reader, url, keys, window) for _ in range(args.repeat)), key=lambda r: r[0])
                results[reader] = best
                print(f"  {reader:6} {best[0]:7.2f} s  {lines / best[0]:10,.0f} rows/s  CPU {best[1]:.2f} s  "
                      f"peak {best[2]:.0f} MB", flush=True)
            same = results["python"][3].reset_index(drop=True).equals(results["duckdb"][3].reset_index(drop=True))
            rows.append((total, len(keys), lines, results["python"], results["duckdb"], same))
        print(f"\n{os.cpu_count()} cores, DuckDB {__import__('duckdb').__version__}; rows/s from the first S3 call "
              "to the per-client frame\n")
        print("| gzipped logs | objects | rows | Python parser | DuckDB | DuckDB / Python "
              "| peak memory Python / DuckDB | same frame |")
        print("|---|---|---|---|---|---|---|---|")
        for total, objects, lines, python, duck, same in rows:
            print(f"| {total} MB | {objects} | {lines:,} | {lines / python[0]:,.0f} rows/s ({python[0]:.1f} s) | "
                  f"{lines / duck[0]:,.0f} rows/s ({duck[0]:.1f} s) | {python[0] / duck[0]:.1f}x | "
                  f"{python[2]:,.0f} MB / {duck[2]:,.0f} MB | {'yes' if same else 'NO'} |")
    finally:
        if server:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
