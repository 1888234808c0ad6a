"""What importing rmsops keeps out of every process: an optional parser and numpy's spinning BLAS threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, os, sys
import rmsops, numpy
try:
    import rfc3987_syntax
    parser = "imported"
except ImportError:
    parser = "absent"
print(json.dumps({"blas": os.environ.get("OPENBLAS_NUM_THREADS"), "threads": len(os.listdir("/proc/self/task")),
                  "parser": parser}))
"""


def run_probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                          check=True, timeout=60)
    return json.loads(done.stdout)


def test_rmsops_imported_first_gives_numpy_one_blas_thread_and_no_iri_parser():
    seen = run_probe()
    assert seen["blas"] == "1"
    assert seen["threads"] == 1  # numpy's OpenBLAS started no thread of its own
    assert seen["parser"] == "absent"


def test_a_blas_thread_count_the_user_chose_is_kept():
    assert run_probe(OPENBLAS_NUM_THREADS="2")["blas"] == "2"
