"""Text tables for stdout and the JSON result file."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.runner import Row

DIRECTION = {True: ">1", False: "<1"}


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _band(stats: dict[str, float]) -> str:
    return f"{stats['median']:.2f} [{stats['min']:.2f}-{stats['max']:.2f}]"


def _aligned(header: list[str], lines: list[list[str]]) -> str:
    """Left-aligned columns; short lines are padded with empty cells."""
    lines = [line + [""] * (len(header) - len(line)) for line in lines]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [header, *lines])


def _problem(row: Row, notes: list[str]) -> list[str]:
    """Cells for a failed or skipped row; its message goes to ``notes`` (printed below)."""
    notes.append(f"{row['label']}: {row['error']}")
    return [row["status"].upper(), f"see [{len(notes)}]"]


def _with_notes(table: str, notes: list[str]) -> str:
    return table + "".join(f"\n  [{i}] {note}" for i, note in enumerate(notes, 1))


def comparison_table(rows: list[Row], impls: tuple[str, str]) -> str:
    """Per workload: medians of A and B, A/B ratio median [min-max], and which way is better."""
    a, b = impls
    header = ["workload", "unit", "A wins if", f"A={a}", f"B={b}", "A/B median [min-max]", "pairs"]
    lines, notes = [], []
    for row in rows:
        if row["status"] != "ok":
            lines.append([row["label"], row["unit"], "", *_problem(row, notes)])
            continue
        lines.append(
            [
                row["label"],
                row["unit"],
                f"A/B {DIRECTION[row['higher_is_better']]}",
                _num(row["a"]["median"]),
                _num(row["b"]["median"]),
                _band(row["ratio"]),
                str(len(row["pairs"]) - row["warmup"]),
            ]
        )
    legend = (
        f"ratio = A/B pair by pair (A={a}, B={b}); throughput (GB/s, calls/s): >1 means A "
        "faster; latency (us, ms): <1 means A faster. Compare with the calibration band."
    )
    return legend + "\n" + _with_notes(_aligned(header, lines), notes)


def _mb(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def memory_table(rows: list[Row], impls: tuple[str, str]) -> str:
    """Peak RSS (MiB) of every process during each transfer workload, with growth over baseline."""
    header = ["workload"] + [
        f"{slot}={impl} {role} peak (+over base)"
        for slot, impl in zip("AB", impls)
        for role in ("server", "client")
    ]
    lines = []
    for row in rows:
        if row["status"] != "ok" or row["unit"] != "GB/s":
            continue
        cells = [row["label"]]
        for slot in ("a", "b"):
            for role in ("server", "client"):
                m = row["memory"][slot][role]
                cells.append(f"{_mb(m['peak_kb'])} (+{_mb(m['peak_kb'] - m['baseline_kb'])})")
        lines.append(cells)
    return _aligned(header, lines) if lines else ""


def targets_table(rows: list[Row]) -> str:
    """Rows with a target: the median ratio, the target, and whether the median meets it.

    Meeting it means nothing where the calibration band is wider than the margin.
    """
    header = ["workload", "A/B median [min-max]", "target", "median meets it"]
    lines, notes = [], []
    for row in rows:
        if row.get("target") is None:
            continue
        bound = f"{'>=' if row['higher_is_better'] else '<='} {row['target']:.2f}"
        if row["status"] != "ok":
            lines.append([row["label"], *_problem(row, notes)])
            continue
        median = row["ratio"]["median"]
        met = median >= row["target"] if row["higher_is_better"] else median <= row["target"]
        lines.append([row["label"], _band(row["ratio"]), bound, "yes" if met else "NO"])
    return _with_notes(_aligned(header, lines), notes) if lines else ""


def overhead_table(groups: list[dict[str, Any]]) -> str:
    """Per impl and call: latency with auth, without, and the pair-by-pair difference."""
    header = [
        "impl",
        "call",
        "auth",
        "baseline",
        "auth us",
        "baseline us",
        "overhead us median [min-max]",
        "ratio",
    ]
    lines, notes = [], []
    for group in groups:
        if group["kind"] != "auth_overhead":
            continue
        for row in group["rows"]:
            who = [group["impls"][0], row["name"], row["variant"], row["baseline"]]
            if row["status"] != "ok":
                lines.append([*who, *_problem(row, notes)])
                continue
            d = row["difference"]
            lines.append(
                [
                    *who,
                    _num(row["a"]["median"]),
                    _num(row["b"]["median"]),
                    f"{d['median']:.0f} [{d['min']:.0f}-{d['max']:.0f}]",
                    _band(row["ratio"]),
                ]
            )
    return _with_notes(_aligned(header, lines), notes) if lines else ""


def calibration_band(rows: list[Row]) -> dict[str, float] | None:
    """Range of per-workload median ratios and of single pair ratios of an A-vs-A run."""
    ok = [row for row in rows if row["status"] == "ok"]
    if not ok:
        return None
    medians = [row["ratio"]["median"] for row in ok]
    return {
        "median_min": min(medians),
        "median_max": max(medians),
        "pair_min": min(row["ratio"]["min"] for row in ok),
        "pair_max": max(row["ratio"]["max"] for row in ok),
    }


def band_text(impl: str, band: dict[str, float] | None) -> str:
    """One line describing the calibration band of ``impl`` vs itself."""
    if band is None:
        return f"{impl} vs {impl}: no successful workload"
    return (
        f"{impl} vs {impl}: median ratios {band['median_min']:.2f}-{band['median_max']:.2f}, "
        f"single pairs {band['pair_min']:.2f}-{band['pair_max']:.2f}"
    )


def _version(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", "unknown")
    except Exception:  # an impl that does not import has no version to report
        return None


def machine_info() -> dict[str, Any]:
    """CPU count, load, platform, interpreter, library versions, commit and date (UTC)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).parent,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyarrow": _version("pyarrow"),
        "grpcio": _version("grpc"),
        "numpy": _version("numpy"),
        "flight_secure": _version("flight_secure"),
        "git_commit": commit,
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as indented JSON, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
