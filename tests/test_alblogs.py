"""ALB access logs read by DuckDB with the Athena table's columns and regex; the documented DDL and SQL run.

No AWS here: log files are written to a temporary folder in the layout of the ALB's (and WAF's) S3
keys, then read the way the checks read them. The Athena side (moto) is in tests/test_athena.py.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import logs as old_reader  # the line-by-line Python parser the check used before DuckDB
from rmsops.checks import security
from rmsops.core.window import Window
from rmsops.sources import alblogs, waf
from tests.judging import thresholds
from tests.test_checks_security import LB, alb_line

ROOT = Path(__file__).resolve().parent.parent
WINDOW = Window(datetime(2026, 11, 28, 23, 0, tzinfo=UTC), datetime(2026, 11, 29, 0, 0, tzinfo=UTC))
AT = datetime(2026, 11, 28, 23, 5, 1, 123456, tzinfo=UTC)


def write_logs(folder: Path, files: dict[str, list[str]], raw: dict[str, bytes] | None = None) -> list[str]:
    """Gzipped log files under ``folder``: {"2026/11/28/name.log.gz": lines}; the day folder is the partition."""
    for name, lines in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    for name, body in (raw or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(gzip.compress(body))
    return sorted(str(p) for p in folder.rglob("*.gz"))


def columns(files: list[str], names: str) -> list[tuple]:
    con = alblogs.duckdb_connect()
    con.execute(alblogs.duckdb_view_sql(files))
    return con.execute(f"SELECT {names} FROM {alblogs.TABLE} ORDER BY client_port NULLS LAST").fetchall()


# --- the columns of a line ----------------------------------------------------------------------

TRICKY = {
    "spaces in the agent": alb_line(AT, "198.51.100.1", agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Gecko"),
    "quotes as ALB writes them": alb_line(AT, "198.51.100.2", agent="sqlmap \\x22 OR 1=1 --\\x22"),
    "backslash-escaped quotes": alb_line(AT, "198.51.100.3", agent='curl \\"quoted\\" , | tab\there'),
    "a request ALB could not parse": (f'http {AT:%Y-%m-%dT%H:%M:%S.%f}Z {LB} 198.51.100.4:4 - -1 -1 -1 400 - 0 272 '
                                      '"- - - " "-" - - - "-" "-" "-" - 2026-11-28T23:05:01.000000Z "-" "-" "-" '
                                      '"-" "-" "-" "-"'),
    "no target (460)": alb_line(AT, "198.51.100.5", 460).replace(" 10.0.10.11:8000 ", " - ", 1).replace(
        " 460 460 ", " 460 - ", 1),
    "newer fields after the known ones": alb_line(AT, "198.51.100.6") + " TID_e7d5 some-future-field",
    "older lines end after the agent": alb_line(AT, "198.51.100.7").split(" ECDHE-")[0],
}


def test_duckdb_cuts_lines_into_the_athena_columns_even_tricky_ones(tmp_path):
    lines = list(TRICKY.values())
    lines = [line.replace(":51234 ", f":{5000 + i} ", 1) for i, line in enumerate(lines)]  # one port per line: order
    files = write_logs(tmp_path, {"2026/11/28/a.log.gz": [*lines, "not an access log line", ""]})
    rows = columns(files, "client_ip, client_port, target_ip, target_port, elb_status_code, target_status_code, "
                          "request_verb, request_url, request_proto, user_agent, conn_trace_id, \"time\", \"day\"")
    by_client = {row[0]: row for row in rows if row[0]}
    assert set(by_client) == {f"198.51.100.{n}" for n in range(1, 8)}
    assert by_client["198.51.100.1"][2:10] == ("10.0.10.11", 8000, 200, "200", "POST",
                                               "https://rms.example.com:443/api/login?x=1", "HTTP/2.0",
                                               "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Gecko")
    assert by_client["198.51.100.2"][9] == "sqlmap \\x22 OR 1=1 --\\x22"
    assert by_client["198.51.100.3"][9] == 'curl \\"quoted\\" , | tab\there'
    assert by_client["198.51.100.4"][2:10] == (None, None, 400, "-", "-", "-", "- ", "-")
    assert by_client["198.51.100.5"][2:6] == (None, None, 460, "-")
    assert by_client["198.51.100.6"][10] == "TID_e7d5"
    assert by_client["198.51.100.7"][9] == "Mozilla/5.0 (X11; Linux x86_64)" and by_client["198.51.100.7"][10] is None
    assert all(row[11] == "2026-11-28T23:05:01.123456Z" for row in rows if row[0] and row[0] != "198.51.100.4")
    assert {row[12] for row in rows} == {"2026/11/28"}  # the partition, from the folder
    unmatched = [row for row in rows if row[0] is None]
    assert len(unmatched) == 2 and all(v is None for row in unmatched for v in row[:12])  # as Athena's RegexSerDe


def test_a_line_that_is_not_utf8_still_counts(tmp_path):
    line = alb_line(AT, "203.0.113.66", agent="x").encode().replace(b'"x"', b'"\xff\xfe evil"')
    files = write_logs(tmp_path, {}, {"2026/11/28/a.log.gz": line + b"\n"})
    assert columns(files, "client_ip, user_agent") == [("203.0.113.66", "\xff\xfe evil")]


def test_the_regex_runs_once_a_line(tmp_path):
    """Filters pushed into the view would run the regex once per column they name (3-5x slower)."""
    files = write_logs(tmp_path, {"2026/11/28/a.log.gz": [alb_line(AT)]})
    con = alblogs.duckdb_connect()
    con.execute(alblogs.duckdb_view_sql(files))
    plan = con.execute("EXPLAIN " + alblogs.clients_sql(alblogs.TABLE, LB, WINDOW)).fetchall()[0][1]
    assert plan.count("regexp_extract(line") == 1


# --- the question -------------------------------------------------------------------------------

def test_clients_sql_names_the_days_of_the_window_and_the_load_balancer():
    sql = alblogs.clients_sql('"rms_logs"."alb_access_logs"', LB, WINDOW)
    assert "\"day\" BETWEEN '2026/11/28' AND '2026/11/29'" in sql  # a file closing after midnight: the next day
    assert f"elb = '{LB}'" in sql and 'FROM "rms_logs"."alb_access_logs"' in sql
    assert "\"time\" BETWEEN '2026-11-28T23:00:00.000000Z' AND '2026-11-29T00:00:00.000000Z'" in sql
    assert sql.rstrip().endswith(f"LIMIT {alblogs.MAX_CLIENT_ROWS}")
    assert "LIMIT" not in alblogs.clients_sql("t", LB, WINDOW, limit=None)
    assert "elb = 'app/it''s/1'" in alblogs.clients_sql("t", "app/it's/1", WINDOW)  # quoted as SQL text


def test_clients_per_client_with_statuses_top_path_and_the_window(tmp_path):
    after_midnight = datetime(2026, 11, 29, 0, 0, 0, tzinfo=UTC)
    lines = [alb_line(AT, "1.1.1.1", s, p) for s, p in ((200, "/a"), (404, "/b"), (502, "/b"), (401, "/b"))]
    lines += [alb_line(AT, "2.2.2.2", 200, "/z"), alb_line(AT, "2.2.2.2", 200, "/y")]  # a tie: the first path
    lines += [alb_line(AT - timedelta(hours=2), "3.3.3.3")]  # before the window
    lines += [alb_line(AT, "4.4.4.4").replace(f" {LB} ", " app/other-alb/1234 ", 1)]  # another load balancer
    files = write_logs(tmp_path, {"2026/11/28/a.log.gz": lines,
                                  "2026/11/29/b.log.gz": [alb_line(after_midnight, "2.2.2.2", 503, "")],
                                  "2026/11/30/c.log.gz": [alb_line(after_midnight, "5.5.5.5")]})  # not its day
    rows = alblogs.duckdb_query(files, alblogs.clients_sql(alblogs.TABLE, LB, WINDOW))
    frame, totals = alblogs.client_frame(rows)
    assert frame.to_dict("records") == [
        {"client": "1.1.1.1", "requests": 4, "status_4xx": 2, "status_5xx": 1, "top_path": "/b",
         "top_path_requests": 3},
        {"client": "2.2.2.2", "requests": 3, "status_4xx": 0, "status_5xx": 1, "top_path": "/", "top_path_requests": 1}]
    assert totals == {"entries": 7, "clients": 2, "clients_truncated": False}
    frame, totals = alblogs.client_frame(alblogs.duckdb_query(files, alblogs.clients_sql(alblogs.TABLE, LB, WINDOW,
                                                                                         limit=1)))
    assert list(frame["client"]) == ["1.1.1.1"] and totals == {"entries": 7, "clients": 2, "clients_truncated": True}


def test_no_file_gives_no_row():
    frame, totals = alblogs.client_frame(alblogs.duckdb_query([], alblogs.clients_sql(alblogs.TABLE, LB, WINDOW)))
    assert frame.empty and list(frame.columns) == alblogs.CLIENT_COLUMNS
    assert totals == {"entries": 0, "clients": 0, "clients_truncated": False}


def test_a_query_needs_only_duckdbs_engine_not_its_python_api(tmp_path):
    """``import duckdb`` costs 40 ms more than its engine; a query here imports only the engine (DuckDB 2)."""
    pytest.importorskip("_duckdb", reason="DuckDB 1.x keeps its engine inside the package")
    files = write_logs(tmp_path, {"2026/11/28/a.log.gz": [alb_line(AT, "1.1.1.1", 200, "/x")]})
    code = ("import sys, json; from rmsops.sources import alblogs; "
            f"rows = alblogs.duckdb_query({files!r}, 'SELECT count(*) AS n FROM ' + alblogs.TABLE); "
            "print(json.dumps([int(rows['n'][0]), 'duckdb' in sys.modules, '_duckdb' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(done.stdout) == [1, False, True]


@pytest.mark.parametrize("scenario", ["incident", "security-event"])
def test_the_demos_logs_give_the_findings_the_python_parser_gave(tmp_path, scenario):
    """The demo's generated lines, read by the old line-by-line parser and by DuckDB: same frame, same findings."""
    from rmsops.demo.areas.security import _alb_line

    rng = random.Random(7)
    end = datetime(2026, 11, 28, 23, 55, tzinfo=UTC)
    window = Window(end - timedelta(hours=1), end)
    regulars = [f"198.51.100.{n}" for n in range(20, 36)]
    entries = [(end - timedelta(seconds=rng.uniform(0, 3600)), rng.choice(regulars), "GET",
                rng.choice(("/api/reservations", "/", "/static/app.js")), rng.choice((200, 200, 502)),
                rng.choice(("rms-backend", "rms-frontend")), "Mozilla/5.0") for _ in range(400)]
    if scenario == "security-event":
        entries += [(end - timedelta(seconds=rng.uniform(0, 900)), "203.0.113.77", "POST", "/api/login",
                     rng.choice((401, 429)), "rms-backend", "python-requests/2.32.3") for _ in range(5300)]
    entries.sort(key=lambda e: e[0])
    lines = [_alb_line(e, LB, {"rms-backend": ["10.0.10.11"]}, {"rms-backend": "arn:tg/b"}, rng) for e in entries]
    lines += [alb_line(end - timedelta(hours=2), "9.9.9.9")]  # outside the window: neither counts it
    files = write_logs(tmp_path, {"2026/11/28/a.log.gz": lines})

    parsed = [old_reader.parse_alb_line(line) for line in lines]
    old = old_reader.aggregate_alb([e for e in parsed if e and window.start <= e["time"] <= window.end])
    new, totals = alblogs.client_frame(alblogs.duckdb_query(files, alblogs.clients_sql(alblogs.TABLE, LB, window)))
    pd.testing.assert_frame_equal(new, old, check_dtype=False)
    read = {"files": 1, "bucket": "b", "prefix": "p", **totals}
    judged = [f.to_dict() for f in security.judge_alb_clients(new, thresholds(), "rms-alb", read)]
    before = [f.to_dict() for f in security.judge_alb_clients(old, thresholds(), "rms-alb",
                                                               {**read, "entries": len(old) and int(old.requests.sum()),
                                                                "clients": len(old)})]
    assert judged == before
    assert [f["severity"] for f in judged] == (["warning"] if scenario == "security-event" else ["ok"])


# --- the documented tables, run by DuckDB -------------------------------------------------------

def hive_string(literal: str) -> str:
    """A Hive DDL string literal's value (backslash escapes, as Athena reads the DDL)."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), literal)


def ddl_columns(ddl: str) -> list[tuple[str, str]]:
    body = ddl.split("CREATE EXTERNAL TABLE", 1)[1].split("(", 1)[1].split("\n)\nPARTITIONED BY", 1)[0]
    return [(name.strip("`"), kind) for name, kind in (line.strip().rstrip(",").split(" ", 1)
                                                       for line in body.strip().splitlines())]


def test_the_documented_alb_table_is_the_one_duckdb_reads(tmp_path):
    ddl = (ROOT / "docs" / "athena" / "alb_access_logs.sql").read_text()
    regex = hive_string(re.search(r"'input\.regex' = '((?:[^'\\]|\\.)*)'", ddl).group(1))
    assert regex == alblogs.LINE_REGEX
    assert tuple(ddl_columns(ddl)) == alblogs.COLUMNS
    assert "PARTITIONED BY (\n    day string\n)" in ddl and "'projection.day.format' = 'yyyy/MM/dd'" in ddl
    assert ".../elasticloadbalancing/<REGION>/${day}'".replace("...", "AWSLogs/<ACCOUNT_ID>") in ddl

    # The check's SQL over a view built from the documented DDL (not from the module's constants).
    lines = [alb_line(AT, "1.1.1.1", 401), alb_line(AT, "1.1.1.1", 200, "/x"), alb_line(AT, "2.2.2.2", 503)]
    files = write_logs(tmp_path, {"2026/11/28/a.log.gz": lines + list(TRICKY.values())})
    con = alblogs.duckdb_connect()
    con.execute(alblogs.duckdb_view_sql(files, regex=regex, columns=tuple(ddl_columns(ddl))))
    frame, totals = alblogs.client_frame(con.execute(alblogs.clients_sql(alblogs.TABLE, LB, WINDOW)).df())
    assert dict(zip(frame["client"], frame["requests"], strict=True)) == {
        "1.1.1.1": 2, "2.2.2.2": 1, **{f"198.51.100.{n}": 1 for n in range(1, 8)}}
    assert frame.set_index("client").loc["1.1.1.1", "status_4xx"] == 1
    assert frame.set_index("client").loc["2.2.2.2", "status_5xx"] == 1
    assert totals["entries"] == 10


def duckdb_type(hive: str, keys: dict[str, str]) -> str:
    """A Hive column type as DuckDB's, struct fields named as in the JSON records (the JSON SerDe
    matches keys case-insensitively; DuckDB's read_json does not)."""
    hive = hive.strip()
    if hive.startswith("array<"):
        return duckdb_type(hive[6:-1], keys) + "[]"
    if hive.startswith("struct<"):
        fields, depth, current = [], 0, ""
        for char in hive[7:-1] + ",":
            if char == "," and depth == 0:
                name, kind = current.split(":", 1)
                fields.append(f'"{keys.get(name, name)}" {duckdb_type(kind, keys)}')
                current = ""
                continue
            depth += (char == "<") - (char == ">")
            current += char
        return "STRUCT(" + ", ".join(fields) + ")"
    return {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT"}[hive]


def waf_record(at: datetime, ip: str, action: str = "BLOCK", rule: str = "rate-limit", uri: str = "/api/login") -> str:
    return json.dumps({"timestamp": int(at.timestamp() * 1000), "formatVersion": 1, "webaclId": "arn:acl",
                       "terminatingRuleId": rule, "terminatingRuleType": "RATE_BASED", "action": action,
                       "httpSourceName": "ALB", "httpSourceId": "alb", "ruleGroupList": [],
                       "httpRequest": {"clientIp": ip, "country": "NL", "uri": uri, "args": "",
                                       "headers": [{"name": "Host", "value": "rms.example.com"}],
                                       "httpVersion": "HTTP/1.1", "httpMethod": "POST", "requestId": "r"},
                       "labels": [{"name": "awswaf:managed:x"}]})


def test_the_documented_waf_table_answers_the_waf_question_in_duckdb(tmp_path):
    ddl = (ROOT / "docs" / "athena" / "waf_logs.sql").read_text()
    assert "PARTITIONED BY (\n    `log_time` string\n)" in ddl
    assert "'projection.log_time.format' = 'yyyy/MM/dd/HH/mm'" in ddl
    now = WINDOW.start + timedelta(minutes=30)
    before = WINDOW.start - timedelta(minutes=20)
    folders = {f"{now:%Y/%m/%d/%H/%M}/a.log.gz": [waf_record(now, "1.1.1.1")] * 3 + [
                   waf_record(now, "1.1.1.1", uri="/.env", rule="common"), waf_record(now, "2.2.2.2"),
                   waf_record(now, "3.3.3.3", action="ALLOW")],
               f"{before:%Y/%m/%d/%H/%M}/b.log.gz": [waf_record(before, "9.9.9.9")] * 2,
               "2026/11/27/10/00/c.log.gz": [waf_record(datetime(2026, 11, 27, 10, tzinfo=UTC), "8.8.8.8")]}
    files = write_logs(tmp_path, folders)
    keys = {}
    for record in (json.loads(waf_record(now, "x")),):  # the records' own spelling of every key
        stack = [record]
        while stack:
            item = stack.pop()
            for key, value in item.items():
                keys[key.lower()] = key
                stack += [value] if isinstance(value, dict) else [v for v in value if isinstance(v, dict)] \
                    if isinstance(value, list) else []
    spec = ", ".join(f"'{keys.get(name, name)}': '{duckdb_type(kind, keys)}'" for name, kind in ddl_columns(ddl))
    listed = ", ".join(f"'{f}'" for f in files)
    con = alblogs.duckdb_connect()
    con.execute(f"""CREATE VIEW waf_logs AS SELECT *, regexp_extract(filename, '(\\d{{4}}(/\\d{{2}}){{4}})/[^/]*$', 1)
                    AS log_time FROM read_json([{listed}], format = 'newline_delimited', columns = {{{spec}}},
                    filename = true)""")
    rows = con.execute(waf.blocks_sql("waf_logs", WINDOW)).df()
    assert "log_time BETWEEN '2026/11/28/21/55' AND '2026/11/29/00/05'" in waf.blocks_sql("t", WINDOW)
    got = {(r.client, r.rule, r.uri): int(r.blocks) for r in rows.itertuples() if r.blocks}
    assert got == {("1.1.1.1", "rate-limit", "/api/login"): 3, ("1.1.1.1", "common", "/.env"): 1,
                   ("2.2.2.2", "rate-limit", "/api/login"): 1}
    assert set(rows["previous_blocks"]) == {2}
