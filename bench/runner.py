"""ABBA scheduling of two sides and pair-by-pair ratios.

Pair ``i`` runs A then B when ``i`` is even and B then A when odd (A B B A A B ...),
so neither side systematically goes first. The first ``warmup`` pairs are run but
not counted. A workload that fails becomes an error row; the run goes on.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.plan import Workload
from bench.servers import VARIANTS, Credentials, ProcessError, Side, SideError, SkipVariant

Row = dict[str, Any]


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of a non-empty list."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _memory_summary(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per process: baseline RSS after prepare and the peak reached during the rounds (KiB)."""
    return {
        role: {"baseline_kb": before[role], "peak_kb": after[role]["peak_kb"]}
        for role in ("server", "client")
    }


def measure(
    sides: tuple[Side, Side], workload: Workload, rounds: int, warmup: int, budget_s: float
) -> Row:
    """Run ``rounds`` ABBA pairs of ``workload``; raises SideError/ProcessError on failure."""
    baselines = []
    for side in sides:
        side.prepare(workload.spec, workload.data_holder)
        baselines.append({role: m["rss_kb"] for role, m in side.memory().items()})
    pairs: list[dict[str, Any]] = []
    started = time.monotonic()
    for i in range(rounds):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        values: list[float] = [0.0, 0.0]
        for k in order:
            values[k] = sides[k].run(workload.op, workload.params, workload.timeout())["value"]
        pairs.append({"order": "AB" if order == (0, 1) else "BA", "a": values[0], "b": values[1]})
        if time.monotonic() - started > budget_s and i >= warmup:
            break
    counted = pairs[warmup:] or pairs
    memory = [_memory_summary(b, s.memory()) for b, s in zip(baselines, sides)]
    return {
        "status": "ok",
        "pairs": pairs,
        "warmup": len(pairs) - len(counted),
        "a": spread([p["a"] for p in counted]),
        "b": spread([p["b"] for p in counted]),
        "ratio": spread([p["a"] / p["b"] for p in counted]),
        "difference": spread([p["a"] - p["b"] for p in counted]),
        "memory": {"a": memory[0], "b": memory[1]},
    }


def row_for(workload: Workload, body: Row) -> Row:
    """A result row: the workload's identity fields plus ``body``."""
    return {
        "label": workload.label,
        "name": workload.name,
        "variant": workload.variant,
        "baseline": workload.baseline,
        "target": workload.target,
        "unit": workload.unit,
        "higher_is_better": workload.higher_is_better,
        **body,
    }


def run_pair(
    impls: tuple[str, str],
    plan: list[Workload],
    *,
    rounds: int,
    warmup: int,
    budget_s: float,
    creds: Credentials | None,
    log_dir: Path,
    progress: Callable[[str], None],
) -> list[Row]:
    """All of ``plan`` for impls (A, B); one row per workload.

    Every workload gets fresh server and client processes, so peak memory and
    failures belong to that workload alone. A variant whose server reports a
    missing optional feature is skipped for the rest of the run.
    """
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    for workload in plan:
        if workload.variant in skipped:
            rows.append(
                row_for(workload, {"status": "skipped", "error": skipped[workload.variant]})
            )
            continue
        progress(f"{workload.label}: {impls[0]} vs {impls[1]}")
        variants = (workload.variant, workload.baseline or workload.variant)
        sides = (
            Side(impls[0], "A", VARIANTS[variants[0]], creds, log_dir),
            Side(impls[1], "B", VARIANTS[variants[1]], creds, log_dir),
        )
        try:
            for side in sides:
                side.start()
            row = measure(sides, workload, rounds, warmup, budget_s)
        except SkipVariant as exc:
            skipped[workload.variant] = str(exc)
            row = {"status": "skipped", "error": str(exc)}
        except (SideError, ProcessError, ValueError) as exc:
            row = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:500]}
        finally:
            for side in sides:
                side.stop()
        rows.append(row_for(workload, row))
        progress(f"  -> {_brief(rows[-1])}")
    return rows


def _brief(row: Row) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row['error'][:200]}"
    r = row["ratio"]
    return f"A/B {r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}]"
