"""Command line of the benchmark: parse flags, run the groups, print and save results."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import plan, report
from bench.certs import make_certificates
from bench.common import IMPL_MODULES
from bench.runner import Row, run_pair
from bench.servers import ROOT

DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
QUICK = plan.Settings(size_mb=32, calls=100, calls_per_thread=25, handshakes=3)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags of ``python -m bench``; exits with a usage message on bad input."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--impls",
        default="flight_secure,pyarrow",
        help="A,B implementations to compare (default flight_secure,pyarrow)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, 3 rounds")
    p.add_argument("--only", help="comma list of workload names or labels (e.g. doget,action/tls)")
    p.add_argument("--rounds", type=int, help="ABBA pairs per workload (default 8, quick 3)")
    p.add_argument("--warmup", type=int, default=1, help="leading pairs not counted (default 1)")
    p.add_argument("--size-mb", type=int, help="table size for transfers (default 256, quick 32)")
    p.add_argument("--calls", type=int, help="small calls per latency round (default 500)")
    p.add_argument(
        "--bcrypt-cost",
        type=int,
        default=12,
        help="bcrypt cost of the pyarrow "
        "auth handler; keep equal to flight_secure's PasswordStore cost",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=300.0,
        help="stop adding pairs to a workload after this many seconds",
    )
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="result file")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="run each implementation against itself to measure the noise band",
    )
    p.add_argument("--tls", action="store_true", help="add TLS and mTLS variants")
    p.add_argument(
        "--auth",
        action="store_true",
        help="add token-auth variants (over TLS), per-call overhead and handshake",
    )
    args = p.parse_args(argv)
    impls = args.impls.split(",")
    if len(impls) != 2 or not set(impls) <= set(IMPL_MODULES):
        p.error(f"--impls needs two of {sorted(IMPL_MODULES)}, comma separated")
    if args.rounds is not None and args.rounds <= args.warmup:
        p.error("--rounds must exceed --warmup")
    return args


def settings_from(args: argparse.Namespace) -> tuple[plan.Settings, int]:
    """Run settings and the pair count implied by the flags."""
    base = QUICK if args.quick else plan.Settings()
    changes: dict[str, Any] = {}
    if args.size_mb:
        changes["size_mb"] = args.size_mb
    if args.calls:
        changes["calls"] = args.calls
    rounds = args.rounds or (3 if args.quick else 8)
    return plan.Settings(**{**asdict(base), **changes}), rounds


def unavailable(impl: str) -> str | None:
    """Why ``impl`` cannot be imported in a fresh interpreter, or None when it can."""
    code = f"from bench.common import import_flight; import_flight({impl!r})"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"importing {impl} took over 120s"
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines()
    return f"{impl} not importable: {lines[-1] if lines else done.returncode}"


def progress(message: str) -> None:
    """Progress goes to stderr so stdout carries only the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 1 when any workload errored, else 0."""
    args = parse_args(argv)
    settings, rounds = settings_from(args)
    only = args.only.split(",") if args.only else None
    workloads = plan.build(settings, args.tls, args.auth, only)
    a, b = args.impls.split(",")
    groups = [(i, i) for i in dict.fromkeys([a, b])] if args.calibrate else [(a, b)]
    log_dir = args.json.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "machine": report.machine_info(),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "mode": "calibrate" if args.calibrate else "compare",
        "rounds": rounds,
        "warmup": args.warmup,
        "settings": asdict(settings),
        "notes": [],
        "groups": [],
    }
    with tempfile.TemporaryDirectory(prefix="flight-bench-") as tmp:
        certs = None
        if any(w.variant != "plain" for w in workloads):
            certs, note = make_certificates(Path(tmp))
            document["notes"].append(f"certificates {note}")
        for impls in groups:
            missing = next(filter(None, map(unavailable, dict.fromkeys(impls))), None)
            if missing:
                rows: list[Row] = [
                    {
                        "label": w.label,
                        "name": w.name,
                        "variant": w.variant,
                        "unit": w.unit,
                        "higher_is_better": w.higher_is_better,
                        "status": "error",
                        "error": missing,
                    }
                    for w in workloads
                ]
            else:
                rows = run_pair(
                    impls,
                    workloads,
                    rounds=rounds,
                    warmup=args.warmup,
                    budget_s=args.budget_s,
                    certs=certs,
                    log_dir=log_dir,
                    bcrypt_cost=args.bcrypt_cost,
                    progress=progress,
                )
            document["groups"].append(_print_group(impls, rows, args.calibrate))
    report.write_json(args.json, document)
    print(f"\nresults: {args.json}  logs: {log_dir}")
    failed = any(r["status"] == "error" for g in document["groups"] for r in g["rows"])
    return 1 if failed else 0


def _print_group(impls: tuple[str, str], rows: list[Row], calibrate: bool) -> dict[str, Any]:
    """Print one group's tables; return its JSON entry."""
    print(f"\n== {impls[0]} (A) vs {impls[1]} (B) ==")
    print(report.comparison_table(rows, impls))
    entry: dict[str, Any] = {"impls": list(impls), "rows": rows}
    memory = report.memory_table(rows, impls)
    if memory:
        print("\npeak RSS, MiB (growth over the RSS after data preparation)")
        print(memory)
    overhead = report.auth_overhead(rows)
    if overhead:
        entry["auth_overhead_us"] = overhead
        print("\n" + report.overhead_table(overhead, impls))
    if calibrate:
        entry["band"] = report.calibration_band(rows)
        print("\ncalibration band: " + report.band_text(impls[0], entry["band"]))
    return entry
