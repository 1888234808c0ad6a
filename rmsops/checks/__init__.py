"""Checks, one module per guide area. ``registry.load_all()`` discovers and imports them (each
registers its checks); a check module imports sources and render, never another check module."""
