"""The audit log: one line per security decision, in one format no value can forge.

Every audit record goes through :func:`audit_event`, to the logger
``flight_secure.audit``: logins, refusals, the calls ``flight-secure serve``
answers, Flight SQL statements and uploads. The message is
``<event>: name=value name=value ...`` with the fields in the fixed order of
:data:`FIELDS`, absent fields left out. A value made only of letters, digits and
``. _ : / @ + - [ ] % , *`` is written as it is; any other value is written as a
JSON string with every non-ASCII and control character escaped. So no value can
end the line, start a record of its own, or pose as another field, and a
bidirectional override (U+202E) shows as ``\\u202e``. Values are cut to
:data:`MAX_VALUE` characters (the SQL text of ``sql`` to :data:`MAX_SQL_VALUE`).
An RPC (``rpc``) is written by its name in the RPC table
(:data:`~flight_secure.rpcs.RPCS`), e.g. ``DoAction``, whether given as that name
or as a :class:`~flight_secure.types.FlightMethod`.

The same fields (unescaped, equally cut) are attached to the record as
``record.audit``, a dict with ``event`` and each field given, for structured
handlers. Callers never pass a password or a token in any field.
"""

from __future__ import annotations

import json
import logging
import re

from flight_secure.auth.base import CallCredentials
from flight_secure.rpcs import RPC_BY_METHOD
from flight_secure.types import FlightMethod

__all__ = ["AUDIT_LOGGER", "FIELDS", "MAX_SQL_VALUE", "MAX_VALUE", "audit_event",
           "format_event"]

AUDIT_LOGGER = "flight_secure.audit"
#: The fields an audit record may carry, in the order they are written: ``rows`` and
#: ``ms`` (duration in milliseconds) of a statement or upload, ``sql`` its text.
FIELDS = ("who", "scheme", "rpc", "action", "dataset", "rows", "ms", "peer", "certificate",
          "reason", "sql")
#: Longer values are cut to this many characters (and end in "...").
MAX_VALUE = 200
#: The same for the ``sql`` field.
MAX_SQL_VALUE = 4000
#: How an RPC missing from the RPC table (FlightMethod.INVALID) is written.
UNKNOWN_RPC = "unknown"

_PLAIN = re.compile(r"[A-Za-z0-9._:/@+\-\[\]%,*]+")
_EVENT = re.compile(r"[a-z][a-z ]*[a-z]")
_log = logging.getLogger(AUDIT_LOGGER)


def _cut(name: str, value: object) -> str:
    if isinstance(value, FlightMethod):
        rpc = RPC_BY_METHOD.get(value)
        value = rpc.name if rpc is not None else UNKNOWN_RPC
    text = value if isinstance(value, str) else str(value)
    limit = MAX_SQL_VALUE if name == "sql" else MAX_VALUE
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown(text: str) -> str:
    return text if _PLAIN.fullmatch(text) else json.dumps(text, ensure_ascii=True)


def format_event(event: str, fields: dict[str, str]) -> str:
    """The audit line for ``event`` with ``fields`` (already cut), as :func:`audit_event`
    writes it."""
    parts = [f"{name}={_shown(fields[name])}" for name in FIELDS if name in fields]
    return f"{event}: {' '.join(parts)}" if parts else event


def audit_event(level: int, event: str, *, call: CallCredentials | None = None,
                **fields: object) -> None:
    """Write one audit record ``event`` (e.g. ``"login refused"``) at ``level``.

    ``event`` is lowercase words (a constant of the caller's, never input);
    ``fields`` are among :data:`FIELDS`: ValueError otherwise. None values are
    left out. Given ``call``, ``peer`` and, for a connection with a verified
    client certificate, ``certificate`` (its subject) are taken from it unless
    given.
    """
    unknown = set(fields) - set(FIELDS)
    if unknown or not _EVENT.fullmatch(event):
        raise ValueError(f"audit event {event!r} must be lowercase words and its fields "
                         f"among {FIELDS}, not {sorted(unknown)}")
    if not _log.isEnabledFor(level):
        return
    if call is not None:
        fields.setdefault("peer", call.peer)
        if "certificate" not in fields and call.peer_certificate_pem is not None:
            from flight_secure.auth.certificates import certificate_subject

            fields["certificate"] = certificate_subject(bytes(call.peer_certificate_pem))
    shown = {name: _cut(name, value) for name, value in fields.items() if value is not None}
    _log.log(level, "%s", format_event(event, shown), extra={"audit": {"event": event, **shown}})
