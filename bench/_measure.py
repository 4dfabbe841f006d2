"""Results, repetition and the peak-memory probe."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Result", "cli_env", "harness_frozen", "interleave", "interleave_chunks", "median",
           "peak_rss_mb", "percentile", "rate", "say", "seconds"]


def say(message: str) -> None:
    """Progress on stderr (stdout is the table)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Result:
    """One comparison: the project's ``value`` against the raw ``baseline``."""

    name: str
    value: float
    baseline: float | None
    target: float | None
    higher_is_better: bool
    unit: str
    note: str = ""
    samples: Mapping[str, Sequence[float]] | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        if ratio is None or self.target is None:
            return None
        return ratio >= self.target if self.higher_is_better else ratio <= self.target

    def to_json(self) -> dict[str, Any]:
        ratio = self.ratio
        out: dict[str, Any] = {
            "name": self.name,
            "value": round(self.value, 3),
            "baseline": None if self.baseline is None else round(self.baseline, 3),
            "ratio": None if ratio is None else round(ratio, 3),
            "target": self.target,
            "higher_is_better": self.higher_is_better,
            "unit": self.unit,
            "met": self.met,
        }
        if self.note:
            out["note"] = self.note
        if self.samples:
            out["samples"] = {k: [round(v, 3) for v in vs] for k, vs in self.samples.items()}
        return out


def rate(count: int, work: Callable[[], object]) -> float:
    """``count`` divided by the seconds ``work()`` takes."""
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


@contextlib.contextmanager
def harness_frozen() -> Iterator[None]:
    """Keep the cyclic garbage collector off the harness's own objects while contenders
    run: the precomputed baseline rows and the peer's aggregates are collected, then
    frozen (``gc.freeze``), so a collection that a contender's allocations trigger walks
    what that contender made, as it would in a process of its own, not the whole bench."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def interleave(reps: int, runs: Mapping[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run each measurement once per round, ``reps`` rounds, so that every contender sees
    the same background load; returns the samples per name (take the median)."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    with harness_frozen():
        for _ in range(reps):
            for name, run in runs.items():
                samples[name].append(run())
    return samples


def interleave_chunks(reps: int, chunks: int, count: int,
                      runs: Mapping[str, Callable[[int], float]]) -> dict[str, list[float]]:
    """Like ``interleave`` at a finer grain, for per-operation benchmarks: each round runs
    ``chunks`` chunks of ``count // chunks`` operations, contenders alternating chunk by
    chunk; each run returns the seconds its chunk took. Returns ops/s per round."""
    size = max(count // chunks, 1)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    with harness_frozen():
        for _ in range(reps):
            spent = dict.fromkeys(runs, 0.0)
            for _ in range(chunks):
                for name, run in runs.items():
                    spent[name] += run(size)
            for name in runs:
                samples[name].append(size * chunks / spent[name])
    return samples


def seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


_PROBE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
seconds = time.perf_counter() - started
print(json.dumps({"rc": done.returncode, "seconds": seconds,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "stdout": done.stdout.decode(errors="replace")[-2000:],
                  "stderr": done.stderr.decode(errors="replace")[-2000:]}))
"""


def peak_rss_mb(argv: Sequence[str], env: Mapping[str, str]) -> tuple[float, float, str]:
    """Run ``argv`` under a fresh probe process; return (peak RSS MB, seconds, stdout).

    The probe reports ``RUSAGE_CHILDREN.ru_maxrss``: on Linux the peak resident set of the
    largest single process in the command's tree (worker processes included, not summed).
    """
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], env=dict(env),
                          capture_output=True, check=True)
    report = json.loads(done.stdout)
    if report["rc"] != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} exited {report['rc']}: "
                           f"{report['stderr'] or report['stdout']}")
    return report["maxrss_kb"] / 1024, report["seconds"], report["stdout"]


def cli_env(url: str, keyring_file: str, home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PEOPLELOG_", "PG")) and k != "DATABASE_URL"}
    env.update(PEOPLELOG_DATABASE_URL=url, PEOPLELOG_KEYRING=keyring_file,
               PEOPLELOG_HOME=home)
    return env
