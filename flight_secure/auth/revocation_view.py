"""A local copy of a revocation list kept elsewhere, with a bound on how old it may be.

Checking a token must not cost a network round trip per call, so a
:class:`RevocationView` answers every lookup from a
:class:`~flight_secure.auth.revocation.RevocationList` in this process, and a
background thread reloads it every ``refresh_interval`` seconds. Its promises:

* **bounded staleness**: a revocation made at the source is in force here within
  ``refresh_interval`` seconds plus the time one load takes;
* **fail closed**: when loads fail, the copy is trusted for ``max_staleness``
  seconds after the last load that succeeded; from then on every lookup raises
  :class:`~flight_secure.auth.revocation.RevocationsUnavailable` (UNAVAILABLE),
  so a call whose token cannot be checked is refused, never admitted, until a
  load succeeds again. Both changes are logged once, as WARNING;
* **one cost per call**: a lookup is a dictionary lookup and a clock read.

Sources: :meth:`RevocationView.from_url` (JSON lines over HTTP(S), as
``flight-secure revoke`` writes them), or any ``load`` function; Redis, where
servers also write, is :class:`~flight_secure.auth.redis_revocations.RedisRevocations`.
A view is read-only: revoke at the source.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flight_secure.auth.network import shown_url
from flight_secure.auth.revocation import (
    RevocationList,
    Revocations,
    RevocationsUnavailable,
    parse_entries,
)

__all__ = ["MAX_LIST_BYTES", "RevocationView"]

log = logging.getLogger("flight_secure.auth.revocation")

#: The largest revocation list a URL may serve.
MAX_LIST_BYTES = 32 * 1024 * 1024
UNAVAILABLE = "the revocation list cannot be checked right now; try again later"

Load = Callable[[], RevocationList | None]


class RevocationView(Revocations):
    """Lookups from a local copy of the list ``load()`` returns, refreshed in a thread.

    ``load()`` returns the whole list, or None when it has not changed since the
    last load (which still counts as a successful load), and raises to say it
    failed. It is called once here (its exception propagates: a source that cannot
    be read at start is an error), then every ``refresh_interval`` seconds.
    ``name`` names the source in logs (never a secret). ``clock`` is the monotonic
    time of staleness (injectable for tests). :meth:`close` stops the thread.
    """

    def __init__(self, load: Load, name: str, *, refresh_interval: float,
                 max_staleness: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < refresh_interval <= max_staleness:
            raise ValueError("refresh_interval must be > 0 and at most max_staleness")
        self.name = name
        self.refresh_interval = refresh_interval
        self.max_staleness = max_staleness
        self._load, self._clock = load, clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failing = self._stale = False
        self._confirmed = clock()
        self._list = load() or RevocationList()
        self._thread = threading.Thread(target=self._refresh_until_closed, daemon=True,
                                        name=f"revocations {name}")
        self._thread.start()

    @classmethod
    def from_url(cls, url: str, *, refresh_interval: float = 30.0,
                 max_staleness: float = 300.0, fetch_timeout: float = 5.0) -> RevocationView:
        """The list served at an ``http(s)://`` URL as JSON lines (what
        :class:`~flight_secure.auth.revocation.RevocationFile` writes), at most
        :data:`MAX_LIST_BYTES`, re-fetched every ``refresh_interval`` seconds with
        its ``ETag`` (an unchanged list is not sent again). ValueError for another
        scheme; plain ``http://`` to a host other than loopback is logged as a
        WARNING (anyone on the path could serve an empty list)."""
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a revocation list URL must start with http:// or https://")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            log.warning("revocation list %s is fetched over plain http: anyone on the path "
                        "could change it; use https", shown_url(url))
        return cls(_UrlLoader(url, fetch_timeout), shown_url(url),
                   refresh_interval=refresh_interval, max_staleness=max_staleness)

    def __repr__(self) -> str:
        return f"RevocationView({self.name!r}, entries={len(self._list)})"

    @property
    def age(self) -> float:
        """Seconds since the copy was last confirmed by a successful load."""
        return self._clock() - self._confirmed

    def refresh(self) -> bool:
        """Load now; True when the copy changed. Raises what ``load`` raises."""
        with self._lock:
            started = self._clock()  # the copy is at least as fresh as this
            loaded = self._load()
            self._confirmed = started
            if loaded is not None:
                self._list = loaded
        return loaded is not None

    def revoke(self, jti: str, until: float | None = None) -> None:
        raise ValueError(f"the revocation list {self.name} is read-only here: revoke at "
                         "its source")

    def revoke_subject(self, subject: str, until: float | None = None) -> None:
        raise ValueError(f"the revocation list {self.name} is read-only here: revoke at "
                         "its source")

    def is_revoked(self, jti: str) -> bool:
        return self._current().is_revoked(jti)

    def rejects(self, claims: Mapping[str, Any]) -> bool:
        return self._current().rejects(claims)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(self.refresh_interval + 1)

    def __len__(self) -> int:
        return len(self._list)

    # ---------------------------------------------------------------- internals

    def _current(self) -> RevocationList:
        """The copy, if young enough to be trusted; else RevocationsUnavailable."""
        if self._clock() - self._confirmed > self.max_staleness:
            if not self._stale:
                self._stale = True
                log.warning("revocation list %s not confirmed for %.0f s: refusing every "
                            "token until it is", self.name, self.age)
            raise RevocationsUnavailable(UNAVAILABLE)
        return self._list

    def _refresh_until_closed(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            try:
                self.refresh()
            except Exception as exc:  # a failed load keeps the copy; staleness decides
                if not self._failing:
                    log.warning("could not reload revocation list %s: %s: %s", self.name,
                                type(exc).__name__, " ".join(str(exc).split())[:200])
                self._failing = True
                continue
            if self._failing or self._stale:
                log.warning("revocation list %s reloaded; tokens are checked again",
                            self.name)
            self._failing = self._stale = False


class _UrlLoader:
    """``load()`` of a URL: GET with the last ETag; None on 304 Not Modified."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout
        self._etag: str | None = None

    def __call__(self) -> RevocationList | None:
        headers = {"Accept": "application/jsonl, text/plain"}
        if self._etag is not None:
            headers["If-None-Match"] = self._etag
        request = urllib.request.Request(self.url, headers=headers)  # noqa: S310 (http/https)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read(MAX_LIST_BYTES + 1)
                etag = response.headers.get("ETag")
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                return None
            raise
        except http.client.HTTPException as exc:
            raise OSError(f"bad HTTP response: {type(exc).__name__}") from None
        if len(body) > MAX_LIST_BYTES:
            raise ValueError(f"revocation list larger than {MAX_LIST_BYTES} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("revocation list is not UTF-8 text") from None
        found = parse_entries(text, shown_url(self.url))
        self._etag = etag
        return found


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
