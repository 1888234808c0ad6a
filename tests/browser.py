"""A real browser for the reports: headless Chromium (Debian's ``chromium``) renders a page to a PNG
and reports the page's console messages.

Refresh the README's screenshot from a bundle with
``.venv/bin/python -m tests.browser reports/demo/index.html docs/index-first-screen.png``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = bool(os.environ.get("RMSOPS_REQUIRE_BROWSER"))  # .ci/run sets it: there a missing browser fails


def screenshot(page: Path, png: Path, width: int = 1400, height: int = 900) -> list[str]:
    """Render ``page`` into ``png`` at the size of a laptop screen; return its console messages."""
    if CHROMIUM is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=3000", f"--screenshot={png}", f"--window-size={width},{height}",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-500:]}")
    return [line.split("CONSOLE", 1)[1] for line in done.stderr.splitlines() if ":CONSOLE" in line]


if __name__ == "__main__":
    messages = screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
    print("\n".join(messages) or f"{sys.argv[2]} written, no console message")
