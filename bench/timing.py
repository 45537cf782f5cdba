"""Timing helper shared by the benchmarks."""
from __future__ import annotations

import time
from typing import Callable


def best_time(fn: Callable, repeats: int) -> tuple[float, object]:
    """(best wall time in seconds of ``repeats`` calls of ``fn``, the last result). The minimum,
    not the mean: other load on a shared machine only ever adds time."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def best_times(fns: dict[str, Callable], repeats: int) -> dict[str, float]:
    """{name: best wall time in seconds} of ``repeats`` rounds that call every function once, in
    turn: interleaving exposes all of them to the same changes of load, which keeps the ratios
    between them meaningful on a busy machine."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best
