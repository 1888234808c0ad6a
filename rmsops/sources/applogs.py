"""Application log lines: what an authentication failure looks like and who it came from."""

from __future__ import annotations

import re

AUTH_FAILURE = re.compile(
    r"(?i)(?:auth\w*\s+fail|login\s+fail|fail\w*\s+(?:login|sign-?in|authentication)|"
    r"invalid\s+(?:password|credentials)|unauthori[sz]ed|HTTP/[0-9.]+\"\s+401\s)")


def client_of(line: str) -> str:
    """The source of a log line: its first IPv4 address ('unknown' when it names none)."""
    match = IPV4.search(line or "")
    return match.group(0) if match else "unknown"


IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
