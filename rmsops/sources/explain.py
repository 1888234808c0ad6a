"""EXPLAIN of a statement from pg_stat_statements, safely.

``EXPLAIN ANALYZE`` executes the statement, so it is evidence only under these rules
(PgHero ``explain.rb``, pganalyze ``explain_analyze.go``):

* one statement only: no inner ``;``, no transaction control (``COMMIT``, ``ROLLBACK``, ...)
  anywhere outside literals and comments; anything else is refused (``UnsafeStatement``);
* ``ANALYZE`` only for a plain ``SELECT`` (or ``WITH`` … ``SELECT``) with no data-modifying CTE,
  no ``SELECT INTO``, no locking clause and none of the functions with side effects a read-only
  transaction does not stop (``pg_terminate_backend``, advisory locks, ``set_config``, ...);
* it runs in a ``BEGIN READ ONLY`` transaction with ``SET LOCAL statement_timeout``, and the
  transaction is always rolled back (so a function that writes fails instead of writing);
* anything else gets a plain ``EXPLAIN`` (the statement is planned, not run);
* normalized text with ``$1`` placeholders cannot be planned as is: ``EXPLAIN (GENERIC_PLAN)``
  on PostgreSQL 16+, otherwise it is skipped with a note.

The rmsops session is autocommit and read-only by default; this module uses
``Database.connection()`` for its one transaction, holding the session's lock so no other check
runs a statement inside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import psycopg
from psycopg.pq import TransactionStatus

from rmsops.core import secrets

if TYPE_CHECKING:
    from rmsops.core.db import Database

ANALYZE = "analyze"  # EXPLAIN (ANALYZE, BUFFERS): executed, rolled back
GENERIC = "generic"  # EXPLAIN (GENERIC_PLAN): PostgreSQL 16+, for $n text
PLAIN = "plain"  # EXPLAIN: planned only
SKIPPED = "skipped"  # nothing ran (the note says why)
FAILED = "failed"  # the server refused (permissions, read-only violation, ...)

GENERIC_PLAN_VERSION = 160000
MAX_SQL_CHARS = 100_000

_TRANSACTION_CONTROL = {"COMMIT", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "BEGIN", "START"}
# Words that make a SELECT change something (or lock rows): such a statement is only planned.
_MODIFYING = {"INSERT", "UPDATE", "DELETE", "MERGE", "INTO", "SHARE", "TRUNCATE", "COPY", "CALL",
              "DO", "CREATE", "DROP", "ALTER", "GRANT", "REVOKE", "LOCK", "NOTIFY", "LISTEN",
              "VACUUM", "ANALYZE", "REFRESH", "CLUSTER", "REINDEX", "SET", "RESET", "DISCARD"}
# Functions with effects that a READ ONLY transaction does not prevent (or that we would rather
# never call from a diagnostic): signals, config, advisory locks, sequences, large objects, ...
_SIDE_EFFECT_FUNCTIONS = {
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_switch_wal", "pg_create_restore_point", "pg_promote", "pg_wal_replay_pause",
    "pg_wal_replay_resume", "pg_notify", "pg_logical_emit_message", "set_config", "nextval",
    "setval", "pg_stat_statements_reset", "pg_file_write", "pg_file_unlink", "pg_file_rename",
    "pg_drop_replication_slot", "pg_log_backend_memory_contexts", "txid_current",
    "pg_current_xact_id",
}
_SIDE_EFFECT_PREFIXES = ("pg_advisory", "pg_try_advisory", "pg_stat_reset", "lo_", "dblink",
                         "pg_create_", "pg_replication_origin")


class UnsafeStatement(ValueError):
    """The text is not one statement (or contains transaction control): it is never run."""


@dataclass(frozen=True)
class Token:
    kind: str  # word, ident, string, param, semicolon, symbol
    text: str
    start: int = 0  # offset in the SQL text


@dataclass(frozen=True)
class Statement:
    """What the tokenizer learned about one SQL text."""

    sql: str
    first_word: str
    words: tuple[str, ...]  # upper-cased bare words, outside literals and comments
    has_params: bool
    analyzable: bool
    reason: str  # why it is not analyzable ("" when it is)


@dataclass
class Explanation:
    sql: str
    mode: str
    note: str = ""
    plan: Any = None  # the FORMAT JSON document
    planning_ms: float | None = None
    execution_ms: float | None = None
    nodes: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary(self, max_nodes: int = 15) -> dict[str, Any]:
        """JSON-able, for a finding's evidence."""
        nodes = self.nodes.head(max_nodes)
        return {
            "mode": self.mode, "note": self.note, "planning_ms": self.planning_ms,
            "execution_ms": self.execution_ms,
            "nodes": [{k: (None if _missing(v) else v) for k, v in row.items()}
                      for row in nodes.to_dict("records")],
        }


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# --- tokenizer -------------------------------------------------------------------------------

# PostgreSQL takes every non-ASCII character as a letter of an identifier. Written as "not ASCII"
# rather than as the range U+0080-U+FFFF, whose character set takes 13 ms to compile, in every process.
_LETTER = r"(?:[A-Za-z_]|[^\x00-\x7f])"
_WORD = re.compile(rf"{_LETTER}(?:[A-Za-z0-9_$]|[^\x00-\x7f])*")
_PARAM = re.compile(r"\$\d+")
_DOLLAR_TAG = re.compile(rf"\$({_LETTER}(?:[A-Za-z0-9_]|[^\x00-\x7f])*)?\$")


def tokenize(sql: str) -> list[Token]:
    """Tokens outside comments; literals and quoted identifiers are single tokens.

    Understands ``--`` and nested ``/* */`` comments, standard and ``E''`` strings,
    dollar quoting and ``$n`` parameters. Unterminated literals or comments are refused.
    """
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while depth and i < n:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                raise UnsafeStatement("unterminated comment")
        elif ch in "eE" and i + 1 < n and sql[i + 1] == "'":
            end = _string_end(sql, i + 2, backslash=True)
            tokens.append(Token("string", sql[i:end], i))
            i = end
        elif ch == "'":
            end = _string_end(sql, i + 1, backslash=False)
            tokens.append(Token("string", sql[i:end], i))
            i = end
        elif ch == '"':
            end = _string_end(sql, i + 1, backslash=False, quote='"')
            tokens.append(Token("ident", sql[i:end], i))
            i = end
        elif ch == "$":
            if m := _PARAM.match(sql, i):
                tokens.append(Token("param", m.group(), i))
                i = m.end()
            elif m := _DOLLAR_TAG.match(sql, i):
                close = sql.find(m.group(), m.end())
                if close < 0:
                    raise UnsafeStatement("unterminated dollar-quoted string")
                tokens.append(Token("string", sql[i:close + len(m.group())], i))
                i = close + len(m.group())
            else:
                tokens.append(Token("symbol", ch, i))
                i += 1
        elif m := _WORD.match(sql, i):
            tokens.append(Token("word", m.group(), i))
            i = m.end()
        elif ch == ";":
            tokens.append(Token("semicolon", ch, i))
            i += 1
        else:
            tokens.append(Token("symbol", ch, i))
            i += 1
    return tokens


def _string_end(sql: str, i: int, backslash: bool, quote: str = "'") -> int:
    n = len(sql)
    while i < n:
        ch = sql[i]
        if backslash and ch == "\\":
            i += 2
        elif ch == quote:
            if i + 1 < n and sql[i + 1] == quote:  # doubled quote inside the literal
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise UnsafeStatement("unterminated quoted string or identifier")


def parse(sql: str) -> Statement:
    """Refuse anything but one statement; say whether EXPLAIN ANALYZE may run it."""
    if len(sql) > MAX_SQL_CHARS:
        raise UnsafeStatement(f"statement longer than {MAX_SQL_CHARS} characters")
    tokens = tokenize(sql)
    while tokens and tokens[-1].kind == "semicolon":  # a trailing ';' is harmless: cut it off
        sql = sql[:tokens.pop().start]
    sql = sql.strip()
    if not tokens:
        raise UnsafeStatement("empty statement")
    if any(t.kind == "semicolon" for t in tokens):
        raise UnsafeStatement("more than one statement (an inner ';')")
    words = tuple(t.text.upper() for t in tokens if t.kind == "word")
    control = sorted(_TRANSACTION_CONTROL.intersection(words) - {"START"})
    if "START" in words and "TRANSACTION" in words:
        control.append("START TRANSACTION")
    if control:
        raise UnsafeStatement(f"transaction control ({', '.join(control)}) in the statement")
    first = next((t.text.upper() for t in tokens if t.kind != "symbol"), "")
    has_params = any(t.kind == "param" for t in tokens)
    reason = ""
    if first not in ("SELECT", "WITH"):
        reason = f"a {first or 'non-SELECT'} statement"
    elif modifying := sorted(_MODIFYING.intersection(words)):
        reason = f"contains {', '.join(modifying)}"
    elif functions := sorted(_side_effect_functions(tokens)):
        reason = f"calls {', '.join(functions)}"
    return Statement(sql, first, words, has_params, analyzable=not reason, reason=reason)


def _side_effect_functions(tokens: list[Token]) -> set[str]:
    found = set()
    for token, nxt in zip(tokens, tokens[1:], strict=False):
        name = token.text.lower() if token.kind == "word" else token.text.strip('"').lower()
        if token.kind in ("word", "ident") and nxt.text == "(" and (
                name in _SIDE_EFFECT_FUNCTIONS or name.startswith(_SIDE_EFFECT_PREFIXES)):
            found.add(name)
    return found


# --- running ---------------------------------------------------------------------------------


def explain_command(statement: Statement, server_version: int, analyze: bool = True) -> tuple[str, str]:
    """(mode, the EXPLAIN text to run) or (SKIPPED, note) for this statement on this server."""
    if statement.has_params:
        if server_version >= GENERIC_PLAN_VERSION:
            return GENERIC, f"EXPLAIN (GENERIC_PLAN, FORMAT JSON) {statement.sql}"
        return SKIPPED, ("the normalized text has $n placeholders: EXPLAIN (GENERIC_PLAN) needs "
                         "PostgreSQL 16 or later; run EXPLAIN ANALYZE with real values by hand")
    if analyze and statement.analyzable:
        return ANALYZE, f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement.sql}"
    return PLAIN, f"EXPLAIN (FORMAT JSON) {statement.sql}"


def explain(db: Database, sql: str, timeout_ms: float, server_version: int | None = None,
            analyze: bool = True) -> Explanation:
    """The plan of *sql* under the module's rules. Raises UnsafeStatement for more than one
    statement; every other problem (timeout, permissions, read-only violation) is in the note."""
    statement = parse(sql)
    text = statement.sql
    version = server_version if server_version is not None else server_version_num(db)
    mode, command = explain_command(statement, version, analyze)
    if mode == SKIPPED:
        return Explanation(text, SKIPPED, note=command)
    notes = []
    if mode == PLAIN and analyze and statement.reason:
        notes.append(f"plain EXPLAIN (not executed): {statement.reason}")
    try:
        plan = run_read_only(db, command, timeout_ms)
    except psycopg.errors.QueryCanceled:
        if mode != ANALYZE:
            return Explanation(text, FAILED, note=f"EXPLAIN cancelled after {timeout_ms:g} ms")
        notes.append(f"EXPLAIN ANALYZE cancelled by the {timeout_ms:g} ms statement timeout "
                     "(rolled back); the estimated plan is shown instead")
        mode = PLAIN
        try:
            plan = run_read_only(db, f"EXPLAIN (FORMAT JSON) {text}", timeout_ms)
        except psycopg.Error as exc:
            notes.append(f"plain EXPLAIN failed too: {_error_text(exc)}")
            return Explanation(text, FAILED, note="; ".join(notes))
    except psycopg.Error as exc:
        return Explanation(text, FAILED, note=_failure_note(exc))
    return _explanation(text, mode, plan, "; ".join(notes))


def run_read_only(db: Database, command: str, timeout_ms: float) -> Any:
    """Run one EXPLAIN in BEGIN READ ONLY + SET LOCAL statement_timeout; always ROLLBACK."""
    timeout = max(1, int(timeout_ms))  # 0 would switch the timeout off
    with db.session() as conn:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            raise RuntimeError("the rmsops session is inside a transaction; refusing to EXPLAIN")
        conn.execute("BEGIN READ ONLY")
        try:
            conn.execute(f"SET LOCAL statement_timeout = {timeout}")
            row = conn.execute(command).fetchone()
            return row[0] if row else None
        finally:
            _end(db, conn)


def _end(db: Database, conn: psycopg.Connection) -> None:
    """ROLLBACK; a session that cannot roll back is dropped (the next check reconnects)."""
    try:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        db.close()
        return
    if conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
        db.close()


def server_version_num(db: Database) -> int:
    return int(db.scalar("SHOW server_version_num"))


def _error_text(exc: psycopg.Error) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return secrets.redact(f"{type(exc).__name__}: {text}")


def _failure_note(exc: psycopg.Error) -> str:
    note = _error_text(exc)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        note += (" — the monitor role needs SELECT on the tables the statement reads "
                 "(or pg_read_all_data on PostgreSQL 14+) to EXPLAIN it")
    elif isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        note += " — the statement tried to write; the read-only transaction stopped it (rolled back)"
    return note


def _explanation(sql: str, mode: str, plan: Any, note: str) -> Explanation:
    document = plan[0] if isinstance(plan, list) and plan else plan if isinstance(plan, dict) else {}
    return Explanation(sql, mode, note=note, plan=plan,
                       planning_ms=document.get("Planning Time"),
                       execution_ms=document.get("Execution Time"),
                       nodes=plan_nodes(plan))


NODE_COLUMNS = ["step", "depth", "node", "relation", "index", "estimated_rows", "actual_rows",
                "loops", "actual_total_ms", "total_cost", "shared_hit", "shared_read",
                "rows_removed_by_filter", "condition"]


def plan_nodes(plan: Any) -> pd.DataFrame:
    """The FORMAT JSON plan flattened into one row per node, in plan order (depth-first)."""
    document = plan[0] if isinstance(plan, list) and plan else plan if isinstance(plan, dict) else {}
    root = document.get("Plan") if isinstance(document, dict) else None
    rows: list[dict[str, Any]] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        name = node.get("Node Type", "?")
        if node.get("Parent Relationship") in ("InitPlan", "SubPlan") and node.get("Subplan Name"):
            name = f"{node['Subplan Name']}: {name}"
        condition = next((f"{key}: {node[key]}" for key in (
            "Index Cond", "Recheck Cond", "Hash Cond", "Merge Cond", "Join Filter", "Filter",
            "One-Time Filter") if node.get(key)), "")
        rows.append({
            "step": len(rows) + 1, "depth": depth, "node": name,
            "relation": node.get("Relation Name", ""), "index": node.get("Index Name", ""),
            "estimated_rows": node.get("Plan Rows"), "actual_rows": node.get("Actual Rows"),
            "loops": node.get("Actual Loops"), "actual_total_ms": node.get("Actual Total Time"),
            "total_cost": node.get("Total Cost"), "shared_hit": node.get("Shared Hit Blocks"),
            "shared_read": node.get("Shared Read Blocks"),
            "rows_removed_by_filter": node.get("Rows Removed by Filter"), "condition": condition,
        })
        for child in node.get("Plans", []) or []:
            walk(child, depth + 1)

    if isinstance(root, dict):
        walk(root, 0)
    return pd.DataFrame(rows, columns=NODE_COLUMNS)
