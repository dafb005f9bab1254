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
from bench.common import IMPL_MODULES
from bench.runner import row_for, run_pair
from bench.servers import ROOT, make_credentials

DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
QUICK = plan.Settings(
    size_mb=32,
    transfer_min_s=0.2,
    max_repeats=3,
    calls=100,
    calls_per_thread=25,
    handshakes=50,
    handshake_s=0.3,
)


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
    p.add_argument("--calls", type=int, help="small calls per latency round (default 1000)")
    p.add_argument(
        "--bcrypt-cost",
        type=int,
        default=12,
        help="bcrypt cost of the stored password on both sides (default 12, as PasswordStore)",
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
        help="add basic and jwt auth variants (over TLS), handshakes, and per-call "
        "auth overhead (over TLS and in plaintext)",
    )
    p.add_argument(
        "--arrow",
        action="store_true",
        help="instead, measure pyarrow's engine with flight_secure.arrow (fs_arrow) against "
        "bare pyarrow and against pyarrow with a do-nothing auth hook (pa_hook), with "
        "targets; with --calibrate, fs_arrow and pyarrow each against itself",
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
    impls = list(dict.fromkeys(args.impls.split(",")))
    if args.arrow and args.calibrate:
        itself = plan.arrow_calibration(settings, only)
        groups = [("calibrate", (i, i), itself) for i in ("fs_arrow", "pyarrow")]
    elif args.arrow:
        groups = plan.arrow(settings, only)
    elif args.calibrate:
        groups = [("calibrate", (i, i), workloads) for i in impls]
    else:
        a, b = args.impls.split(",")
        groups = [("compare", (a, b), workloads)]
        overhead = plan.overhead(settings, only) if args.auth else []
        groups += [("auth_overhead", (i, i), overhead) for i in impls if overhead]
    log_dir = args.json.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    document: dict[str, Any] = {
        "machine": report.machine_info(),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "mode": ("arrow " if args.arrow else "") + ("calibrate" if args.calibrate else "compare"),
        "rounds": rounds,
        "warmup": args.warmup,
        "settings": asdict(settings),
        "notes": [],
        "groups": [],
    }
    with tempfile.TemporaryDirectory(prefix="flight-bench-") as tmp:
        creds = None
        if any(w.variant != "plain" for _, _, group in groups for w in group):
            creds, note = make_credentials(Path(tmp), args.bcrypt_cost)
            document["notes"].append(f"certificates {note}")
        for kind, pair, group in groups:
            missing = next(filter(None, map(unavailable, dict.fromkeys(pair))), None)
            if missing:
                rows = [row_for(w, {"status": "error", "error": missing}) for w in group]
            else:
                rows = run_pair(
                    pair,
                    group,
                    rounds=rounds,
                    warmup=args.warmup,
                    budget_s=args.budget_s,
                    creds=creds,
                    log_dir=log_dir,
                    progress=progress,
                )
            document["groups"].append({"kind": kind, "impls": list(pair), "rows": rows})
    _print(document["groups"])
    report.write_json(args.json, document)
    print(f"\nresults: {args.json}  logs: {log_dir}")
    failed = any(r["status"] == "error" for g in document["groups"] for r in g["rows"])
    return 1 if failed else 0


def _print(groups: list[dict[str, Any]]) -> None:
    """Print every group's tables; adds the calibration band to calibrate groups."""
    for group in groups:
        impls = (group["impls"][0], group["impls"][1])
        if group["kind"] == "auth_overhead":
            continue
        print(f"\n== {impls[0]} (A) vs {impls[1]} (B) ==")
        print(report.comparison_table(group["rows"], impls))
        memory = report.memory_table(group["rows"], impls)
        if memory:
            print("\npeak RSS, MiB (growth over the RSS after data preparation)")
            print(memory)
        if group["kind"] == "calibrate":
            group["band"] = report.calibration_band(group["rows"])
            print("\ncalibration band: " + report.band_text(impls[0], group["band"]))
        targets = report.targets_table(group["rows"])
        if targets:
            print("\ntargets (A/B, median of pair ratios; compare with the calibration band)")
            print(targets)
    overhead = report.overhead_table(groups)
    if overhead:
        print("\nper-call auth overhead: with auth (A) vs the same transport without (B), "
              "same impl, ABBA pairs")
        print(overhead)
