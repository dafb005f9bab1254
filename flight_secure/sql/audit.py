"""The audit record of every Flight SQL statement and upload, in the one audit format.

:func:`record` writes the audit event ``sql <what> <outcome>`` (e.g. ``sql query ok``,
``sql plan refused``, ``sql ingest failed``) through
:func:`~flight_secure.auth.audit.audit_event`, with ``who``, ``scheme``, the datasets
involved (``dataset``, comma-separated), ``rows`` and ``ms`` (duration), at INFO
(WARNING when refused or failed). The SQL text is a second event, ``sql text``, at
DEBUG only, escaped like every audit value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flight_secure.auth.audit import audit_event

OK = "ok"
#: The outcomes of a statement or upload, and the level each is audited at.
OUTCOMES = {OK: logging.INFO, "cancelled": logging.INFO, "refused": logging.WARNING,
            "failed": logging.WARNING}


def record(who: str, scheme: str, what: str, datasets: Iterable[str], *, rows: int | None,
           seconds: float, outcome: str, sql: str | None = None) -> None:
    """Audit one statement or upload; ``what`` is a lowercase word (query, plan,
    prepare, ingest) and ``outcome`` a key of :data:`OUTCOMES`."""
    event = f"sql {what} {outcome}"
    audit_event(OUTCOMES[outcome], event, who=who, scheme=scheme or None,
                dataset=",".join(sorted(set(datasets))) or None, rows=rows,
                ms=f"{seconds * 1000:.1f}")
    if sql is not None:
        audit_event(logging.DEBUG, "sql text", who=who, sql=sql)
