"""The workload catalogue and which workloads a run includes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench.data import DataSpec

BIG_BATCH_KB = 2048
SMALL_BATCH_KB = 64


@dataclass(frozen=True)
class Settings:
    """Sizes and counts of one run (``--quick`` shrinks them)."""

    size_mb: int = 256
    transfer_min_s: float = 1.0
    max_repeats: int = 10
    calls: int = 1000
    threads: int = 8
    calls_per_thread: int = 500
    handshakes: int = 200
    handshake_s: float = 1.0
    round_max_s: float = 60.0


@dataclass(frozen=True)
class Workload:
    """One row of the result table: a client op with its parameters in one variant.

    ``baseline``, when set, is the variant of side B (same op): the row then
    measures what ``variant`` costs over ``baseline``, usually for one impl.
    ``target``, when set, is the ratio A/B the row should reach: at least it for
    throughput, at most it for latency.
    """

    name: str
    variant: str
    op: str
    unit: str
    higher_is_better: bool
    params: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None
    target: float | None = None

    @property
    def label(self) -> str:
        """``name``, then ``/variant`` unless plain, then ``-baseline`` if any."""
        label = self.name if self.variant == "plain" else f"{self.name}/{self.variant}"
        return f"{label}-{self.baseline}" if self.baseline else label

    @property
    def spec(self) -> dict[str, Any] | None:
        """The data spec (as a dict) of the table the workload moves, if any."""
        return self.params.get("spec")

    @property
    def data_holder(self) -> str | None:
        """Which process must hold the table before timing: "server" (DoGet) or "client"."""
        if self.spec is None:
            return None
        return "server" if self.params["kind"] == "doget" else "client"

    def timeout(self) -> float:
        """Seconds one round may take before its processes are declared hung."""
        if self.spec:
            return 60.0 + self.params["min_s"] + self.spec["total_mb"] * 1.0
        return 60.0 + float(self.params.get("max_s", 0.0))


def _transfer(name: str, kind: str, data: str, batch_kb: int, s: Settings) -> Workload:
    spec = asdict(DataSpec(kind=data, total_mb=s.size_mb, batch_kb=batch_kb))
    params = {"kind": kind, "spec": spec, "min_s": s.transfer_min_s, "max_repeats": s.max_repeats}
    return Workload(name, "plain", "transfer", "GB/s", True, params)


def catalogue(s: Settings) -> dict[str, Workload]:
    """Every workload by name, in the plain variant, with its round parameters."""
    workloads = [
        _transfer("doget", "doget", "num", BIG_BATCH_KB, s),
        _transfer("doget_str", "doget", "str", BIG_BATCH_KB, s),
        _transfer("doget_small", "doget", "num", SMALL_BATCH_KB, s),
        _transfer("doput", "doput", "num", BIG_BATCH_KB, s),
        _transfer("doput_str", "doput", "str", BIG_BATCH_KB, s),
        _transfer("doput_small", "doput", "num", SMALL_BATCH_KB, s),
        _transfer("exchange", "exchange", "num", BIG_BATCH_KB, s),
    ]
    for call in ("action", "info"):
        latency = {"call": call, "calls": s.calls, "max_s": s.round_max_s}
        workloads.append(Workload(call, "plain", "latency", "us", False, latency))
        threaded = {
            "call": call,
            "calls": s.calls_per_thread,
            "threads": s.threads,
            "max_s": s.round_max_s,
        }
        name = f"{call}_x{s.threads}"
        workloads.append(Workload(name, "plain", "concurrent", "calls/s", True, threaded))
    put_row = {"call": "put_row", "calls": s.calls, "max_s": s.round_max_s}
    workloads.append(Workload("put_row", "plain", "latency", "us", False, put_row))
    handshake = {"calls": s.handshakes, "max_s": s.handshake_s}
    workloads.append(Workload("handshake", "plain", "handshake", "ms", False, handshake))
    return {w.name: w for w in workloads}


def build(s: Settings, tls: bool, auth: bool, only: list[str] | None) -> list[Workload]:
    """The run's workloads grouped by variant (plain, tls, mtls, basic, jwt).

    ``tls`` adds the TLS and mTLS variants; ``auth`` adds the basic and jwt auth
    variants (over TLS). ``only`` keeps workloads whose name or label is listed.
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
            "put_row",
            f"action{x}",
            f"info{x}",
        ],
        "tls": ["doget", "doput", "exchange", "action", "info", f"action{x}"] if tls else [],
        "mtls": ["doget", "action", "info"] if tls else [],
        "basic": ["action", "info", f"action{x}", "handshake"] if auth else [],
        "jwt": ["action", "handshake"] if auth else [],
    }
    table = catalogue(s)
    plan = [replace(table[name], variant=v) for v, names in wanted.items() for name in names]
    return _only(plan, only)


def overhead(s: Settings, only: list[str] | None) -> list[Workload]:
    """Small-call latency with auth (side A) against the same transport without (side B).

    Same impl on both sides: over TLS (basic, jwt against tls) and in plaintext
    (jwt_plain against plain), where TLS adds nothing to either side.
    """
    table = catalogue(s)
    pairs = [
        ("action", "basic", "tls"),
        ("info", "basic", "tls"),
        ("action", "jwt", "tls"),
        ("action", "jwt_plain", "plain"),
        ("info", "jwt_plain", "plain"),
    ]
    plan = [
        replace(table[call], variant=scheme, baseline=baseline)
        for call, scheme, baseline in pairs
    ]
    return _only(plan, only)


#: The arrow groups' rows: (workload, variant of A, variant of B, target ratio A/B).
ARROW_VS_PYARROW = [
    *[(name, auth, bare, 0.97)
      for auth, bare in (("jwt_plain", "plain"), ("basic", "tls"))
      for name in ("doget", "doget_small", "doput", "doput_small")],
    *[(call, auth, bare, 1.25)
      for auth, bare in (("basic", "tls"), ("jwt", "tls"), ("jwt_plain", "plain"))
      for call in ("action", "info")],
    ("handshake", "jwt", "jwt", 1.2),
    ("handshake", "basic", "basic", None),
]
ARROW_VS_HOOK = [(call, auth, auth, 1.05) for auth in ("basic", "jwt", "jwt_plain")
                 for call in ("action", "info")]


def arrow(s: Settings, only: list[str] | None) -> list[tuple[str, tuple[str, str], list[Workload]]]:
    """The groups of ``--arrow``: pyarrow's engine with flight_secure.arrow (``fs_arrow``)
    against bare pyarrow on the same transport without auth (and against pyarrow's own
    handlers for handshakes), and against pyarrow with a do-nothing auth hook
    (``pa_hook``) with the same auth; then both engines' per-call auth overhead."""
    table = catalogue(s)

    def rows(spec: list) -> list[Workload]:
        made = [replace(table[name], variant=a, baseline=None if a == b else b, target=target)
                for name, a, b, target in spec]
        return _only(made, only)

    return [
        ("arrow_vs_pyarrow", ("fs_arrow", "pyarrow"), rows(ARROW_VS_PYARROW)),
        ("arrow_vs_hook", ("fs_arrow", "pa_hook"), rows(ARROW_VS_HOOK)),
        *[("auth_overhead", (impl, impl), overhead(s, only)) for impl in ("fs_arrow", "pyarrow")],
    ]


def arrow_calibration(s: Settings, only: list[str] | None) -> list[Workload]:
    """Every (workload, variant) either side of the arrow groups runs, once each."""
    table = catalogue(s)
    seen = dict.fromkeys((name, variant) for name, a, b, _ in ARROW_VS_PYARROW + ARROW_VS_HOOK
                         for variant in (a, b))
    return _only([replace(table[name], variant=variant) for name, variant in seen], only)


def _only(plan: list[Workload], only: list[str] | None) -> list[Workload]:
    return [w for w in plan if only is None or w.name in only or w.label in only]
