"""Errors a user can fix: the command line prints them as one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or configuration: nothing was run. The message says what and how to fix it."""


class ConfigError(UserError):
    """An environment file is missing, malformed or has a wrong value."""
