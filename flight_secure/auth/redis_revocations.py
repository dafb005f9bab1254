"""Revocations kept in Redis: a token revoked on one server is refused on every server.

:class:`RedisRevocations` is a :class:`~flight_secure.auth.revocation.Revocations`
that every server sharing one Redis reads and writes:

* **writes** (:meth:`~RedisRevocations.revoke`, :meth:`~RedisRevocations.revoke_subject`)
  are one Lua script each, run by Redis as one step: the entry, the pruning of
  entries past their ``until``, and a new random version. A user's revocation
  time is the Redis server's clock, so every server agrees on it; a later
  revocation of the same user wins;
* **lookups** never leave the process: they read a
  :class:`~flight_secure.auth.revocation_view.RevocationView` reloaded every
  ``refresh_interval`` seconds (one ``GET`` of the version; the whole list only
  when it changed). A revocation is thus in force on every server within
  ``refresh_interval`` (and at once on the server that made it);
* **fail closed**: a server that cannot reload its copy for ``max_staleness``
  seconds refuses every token (UNAVAILABLE) until it can.

Keys (``<prefix>:revoked:tokens``, ``:subjects``, ``:at``, ``:version``) hold only
entries still in force, plus those revoked for ever (``until`` None). Redis keeps
them only as long as its persistence does: run it with ``appendonly yes``, or a
restart forgets every revocation.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from flight_secure.auth.redis_connection import REDIS_ERRORS
from flight_secure.auth.revocation import RevocationList, Revocations, RevocationsUnavailable
from flight_secure.auth.revocation_view import RevocationView

__all__ = ["RedisRevocations"]

DEFAULT_PREFIX = "flight-secure"
REFRESH_INTERVAL = 1.0
"""Default seconds between two reloads of a server's copy."""
MAX_STALENESS = 5.0
"""Default seconds a copy that cannot be reloaded is still trusted."""

# KEYS: tokens (zset jti -> until), subjects (zset sub -> until), at (hash sub ->
# revoked at), version. Entries whose until has passed are dropped on every write.
_PRUNE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local function prune()
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
    redis.call('HDEL', KEYS[3], gone)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
end
"""

# ARGV: jti, until ("inf" for ever), new version.
_REVOKE_TOKEN = _PRUNE + """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
prune()
redis.call('SET', KEYS[4], ARGV[3])
return 'done'
"""

# ARGV: subject, until ("inf" for ever), new version. Returns the revocation time.
_REVOKE_SUBJECT = _PRUNE + """
local earlier = redis.call('HGET', KEYS[3], ARGV[1])
if earlier == false or tonumber(earlier) <= now then
  redis.call('HSET', KEYS[3], ARGV[1], string.format('%.6f', now))
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
prune()
redis.call('SET', KEYS[4], ARGV[3])
return string.format('%.6f', now)
"""


def _until(value: float | None) -> str:
    return "inf" if value is None else repr(float(value))


class RedisRevocations(Revocations):
    """The revocation list in the Redis that ``client`` (a ``redis.Redis``, e.g. from
    :func:`flight_secure.auth.redis_connection.connect`) talks to, under ``prefix``.

    Reads the list at construction; raises RevocationsUnavailable (naming Redis's
    error, never a password) when it cannot. ``clock`` is the wall clock that
    decides whether an entry's ``until`` has passed. :meth:`close` stops the
    reloading and closes the client.
    """

    def __init__(self, client: Any, *, prefix: str = DEFAULT_PREFIX,
                 refresh_interval: float = REFRESH_INTERVAL,
                 max_staleness: float = MAX_STALENESS,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._keys = [f"{prefix}:revoked:{part}"
                      for part in ("tokens", "subjects", "at", "version")]
        self._clock = clock
        self._seen: bytes | None = None
        self._revoke_token = client.register_script(_REVOKE_TOKEN)
        self._revoke_subject = client.register_script(_REVOKE_SUBJECT)
        try:
            self._view = RevocationView(self._load, f"redis {prefix}:revoked",
                                        refresh_interval=refresh_interval,
                                        max_staleness=max_staleness)
        except REDIS_ERRORS as exc:
            raise RevocationsUnavailable(_failed("read", exc)) from None

    def __repr__(self) -> str:
        return f"RedisRevocations({self._keys[0].rsplit(':', 1)[0]!r})"

    @property
    def view(self) -> RevocationView:
        """This server's copy: its ``age``, ``refresh_interval``, ``max_staleness``."""
        return self._view

    def revoke(self, jti: str, until: float | None = None) -> None:
        self._write(self._revoke_token, jti, until)

    def revoke_subject(self, subject: str, until: float | None = None) -> None:
        self._write(self._revoke_subject, subject, until)

    def is_revoked(self, jti: str) -> bool:
        return self._view.is_revoked(jti)

    def rejects(self, claims: Mapping[str, Any]) -> bool:
        return self._view.rejects(claims)

    def close(self) -> None:
        self._view.close()
        self._client.close()

    def __len__(self) -> int:
        return len(self._view)

    # ---------------------------------------------------------------- internals

    def _write(self, script: Any, name: str, until: float | None) -> None:
        """Run a write script, then reload this server's copy so it applies here at once."""
        try:
            script(keys=self._keys, args=[name, _until(until), secrets.token_hex(16)])
            self._view.refresh()
        except REDIS_ERRORS as exc:
            raise RevocationsUnavailable(_failed("write", exc)) from None

    def _load(self) -> RevocationList | None:
        """The whole list, or None when its version is the one loaded last."""
        version = self._client.get(self._keys[3])
        if version is not None and version == self._seen:
            return None
        with self._client.pipeline(transaction=True) as pipe:
            pipe.get(self._keys[3])
            pipe.zrange(self._keys[0], 0, -1, withscores=True)
            pipe.zrange(self._keys[1], 0, -1, withscores=True)
            pipe.hgetall(self._keys[2])
            version, tokens, subjects, revoked_at = pipe.execute()
        found = RevocationList(self._clock)
        for jti, until in tokens:
            found.revoke(jti.decode(), None if math.isinf(until) else until)
        for subject, until in subjects:
            at = revoked_at.get(subject)
            if at is not None:
                found.add_subject(subject.decode(), float(at),
                                  None if math.isinf(until) else until)
        self._seen = version
        return found


def _failed(what: str, exc: BaseException) -> str:
    return f"could not {what} the revocation list in Redis: {type(exc).__name__}: {exc}"
