"""Rendering: figures, reports, terminal output."""
