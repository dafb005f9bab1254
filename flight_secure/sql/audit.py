"""The audit record of every Flight SQL statement and upload: one function, one logger.

:func:`record` logs ``who``, ``what`` (query, prepare, ingest...), the datasets
involved, rows, duration and outcome to ``flight_secure.sql.audit`` at INFO (WARNING
when refused or failed), with each value also attached to the log record as an
attribute of the same name. The SQL text goes to the same logger at DEBUG only, as a
Python ``repr`` so no text can forge a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger("flight_secure.sql.audit")

OK = "ok"


def record(who: str, what: str, datasets: Iterable[str], *, rows: int | None,
           seconds: float, outcome: str, sql: str | None = None) -> None:
    """Log one audited event; ``outcome`` is "ok", "refused", "failed" or "cancelled"."""
    names = sorted(set(datasets))
    fields = {"who": who, "what": what, "datasets": names, "rows": rows,
              "duration_ms": round(seconds * 1000, 1), "outcome": outcome}
    level = logging.INFO if outcome in (OK, "cancelled") else logging.WARNING
    log.log(level, "%r %s datasets=%s rows=%s %.1f ms %s", who, what,
            ",".join(repr(n) for n in names) or "-", "-" if rows is None else rows,
            seconds * 1000, outcome, extra=fields)
    if sql is not None:
        log.debug("%r %s sql=%r", who, what, sql, extra={"who": who, "sql": sql})
