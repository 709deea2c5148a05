"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tests"))  # the oracle and the synthetic-video helpers live there


def same_allocator() -> None:
    """Reuse freed memory as `samkit` commands do (samkit.runtime.tune_allocator). It is
    process-wide: every contender measured after this call gets it, the reference included."""
    from samkit.runtime import tune_allocator

    tune_allocator()


def median_time(fn, runs: int) -> float:
    """Median wall time of ``fn`` over ``runs`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit_json(payload: dict) -> None:
    print("JSON " + json.dumps(payload))
