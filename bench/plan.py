"""The workload catalogue and which workloads a run includes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.data import DataSpec

BIG_BATCH_KB = 2048
SMALL_BATCH_KB = 64


@dataclass(frozen=True)
class Settings:
    """Sizes and counts of one run (``--quick`` shrinks them)."""

    size_mb: int = 256
    calls: int = 500
    threads: int = 8
    calls_per_thread: int = 250
    handshakes: int = 10
    round_max_s: float = 60.0


@dataclass(frozen=True)
class Workload:
    """One row of the result table: a client op with its parameters in one variant."""

    name: str
    variant: str
    op: str
    unit: str
    higher_is_better: bool
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``name`` for the plain variant, else ``name/variant``."""
        return self.name if self.variant == "plain" else f"{self.name}/{self.variant}"

    @property
    def spec(self) -> dict[str, Any] | None:
        """The data spec (as a dict) that server and client must prepare, if any."""
        return self.params.get("spec")

    def timeout(self) -> float:
        """Seconds one round may take before its processes are declared hung."""
        if self.spec:
            return 60.0 + self.spec["total_mb"] * 1.0
        return 60.0 + float(self.params.get("max_s", 0.0))


def _transfer(name: str, op: str, kind: str, batch_kb: int, size_mb: int) -> tuple[str, dict]:
    spec = asdict(DataSpec(kind=kind, total_mb=size_mb, batch_kb=batch_kb))
    return name, {"op": op, "unit": "GB/s", "higher": True, "params": {"spec": spec}}


def catalogue(s: Settings) -> dict[str, dict[str, Any]]:
    """Every workload by name: client op, unit, direction and round parameters."""
    entries = dict(
        [
            _transfer("doget", "doget", "num", BIG_BATCH_KB, s.size_mb),
            _transfer("doget_str", "doget", "str", BIG_BATCH_KB, s.size_mb),
            _transfer("doget_small", "doget", "num", SMALL_BATCH_KB, s.size_mb),
            _transfer("doput", "doput", "num", BIG_BATCH_KB, s.size_mb),
            _transfer("doput_str", "doput", "str", BIG_BATCH_KB, s.size_mb),
            _transfer("doput_small", "doput", "num", SMALL_BATCH_KB, s.size_mb),
            _transfer("exchange", "exchange", "num", BIG_BATCH_KB, s.size_mb),
        ]
    )
    for call in ("action", "info"):
        entries[call] = {
            "op": "latency",
            "unit": "us",
            "higher": False,
            "params": {"call": call, "calls": s.calls, "max_s": s.round_max_s},
        }
        entries[f"{call}_x{s.threads}"] = {
            "op": "concurrent",
            "unit": "calls/s",
            "higher": True,
            "params": {
                "call": call,
                "calls": s.calls_per_thread,
                "threads": s.threads,
                "max_s": s.round_max_s,
            },
        }
    entries["handshake"] = {
        "op": "handshake",
        "unit": "ms",
        "higher": False,
        "params": {"calls": s.handshakes, "max_s": s.round_max_s},
    }
    return entries


def build(s: Settings, tls: bool, auth: bool, only: list[str] | None) -> list[Workload]:
    """The run's workloads grouped by variant (plain, tls, mtls, auth).

    ``tls`` adds the TLS and mTLS variants; ``auth`` adds the token-auth variant
    (over TLS) and the TLS latency rows its per-call overhead is measured against.
    ``only`` keeps workloads whose name or label is listed.
    """
    x = f"_x{s.threads}"
    wanted: dict[str, list[str]] = {
        "plain": [
            "doget",
            "doget_str",
            "doget_small",
            "doput",
            "doput_str",
            "doput_small",
            "exchange",
            "action",
            "info",
            f"action{x}",
            f"info{x}",
        ],
        "tls": (
            ["doget", "doput", "exchange", "action", "info", f"action{x}"]
            if tls
            else (["action", "info"] if auth else [])
        ),
        "mtls": ["doget", "action", "info"] if tls else [],
        "auth": ["action", "info", f"action{x}", "handshake"] if auth else [],
    }
    table = catalogue(s)
    plan = []
    for variant, names in wanted.items():
        for name in names:
            entry = table[name]
            workload = Workload(
                name, variant, entry["op"], entry["unit"], entry["higher"], entry["params"]
            )
            if only is None or name in only or workload.label in only:
                plan.append(workload)
    return plan
