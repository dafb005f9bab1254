"""Login counts in Redis: one login budget for every server that shares the Redis.

:class:`RedisLoginCounters` is a :class:`~flight_secure.auth.counters.LoginCounters`
store, so ``LoginGuard(counters=RedisLoginCounters(client))`` on each of N servers
gives a guesser who spreads guesses over them the budget of one server, not N:

* **atomic**: each admission and each release is one Lua script, run by Redis as
  one step over the three keys of a login (no read-modify-write between servers);
* **one clock**: windows, lockouts and trust are measured on the Redis server's
  clock (``TIME``), so the servers' clocks need not agree;
* **checks in flight are shared**: an admission reserves its share of each key's
  budget, so a burst spread over the servers at the same instant gets no more
  checks than the limit; a reservation lapses after ``reservation_ttl`` seconds
  (a server that died mid-check does not hold a budget for ever);
* **bounded**: every key expires (failures after the window, a lockout when it
  ends, trust after ``trusted_for``, reservations after ``reservation_ttl``);
  key names are digests, so no user name or address is stored in the clear.

When Redis cannot answer, every method raises
:class:`~flight_secure.auth.counters.CountersUnavailable`: the guard then refuses
logins (``"unavailable"``) rather than fall back to counts of its own, which
would multiply the budget by the number of servers exactly when an attacker can
make Redis slow.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from flight_secure.auth.counters import (
    KINDS,
    Admission,
    CountersUnavailable,
    Limits,
    LoginCounters,
    login_keys,
)
from flight_secure.auth.redis_connection import REDIS_ERRORS

__all__ = ["RedisLoginCounters"]

DEFAULT_PREFIX = "flight-secure"
RESERVATION_TTL = 30.0
"""Default seconds a check's reservation lasts: longer than any password check runs."""

# KEYS, for kinds i = 1 (account), 2 (network), 3 (user): lock 3i-2, failures 3i-1,
# reservations 3i; KEYS[10]: the account's trust. Times in milliseconds, from TIME.
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# ARGV: limit per kind (1-3), window, reserve ("1"/"0"), ticket, reservation ttl.
# Returns {"locked", ms} | {"reserved"} | {"over"} | {"unreserved"}.
_ADMIT = _NOW + """
local trusted = redis.call('EXISTS', KEYS[10]) == 1
local wait = 0
for i = 1, 3 do
  if not (i == 3 and trusted) then
    local left = redis.call('PTTL', KEYS[3 * i - 2])
    if left > wait then wait = left end
  end
end
if wait > 0 then return {'locked', wait} end
if ARGV[5] ~= '1' then return {'unreserved'} end
local window = tonumber(ARGV[4])
for i = 1, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[3 * i - 1], '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', KEYS[3 * i], '-inf', now)
  if not (i == 3 and trusted) then
    local used = redis.call('ZCARD', KEYS[3 * i - 1]) + redis.call('ZCARD', KEYS[3 * i])
    if used >= tonumber(ARGV[i]) then return {'over'} end
  end
end
local ttl = tonumber(ARGV[7])
for i = 1, 3 do
  redis.call('ZADD', KEYS[3 * i], now + ttl, ARGV[6])
  redis.call('PEXPIRE', KEYS[3 * i], ttl)
end
return {'reserved'}
"""

# ARGV: limit per kind (1-3), window, lockout, trusted for, ticket, outcome
# ("ok", "fail" or "none").
_RELEASE = _NOW + """
for i = 1, 3 do redis.call('ZREM', KEYS[3 * i], ARGV[7]) end
if ARGV[8] == 'ok' then
  redis.call('DEL', KEYS[2])
  if tonumber(ARGV[6]) > 0 then redis.call('SET', KEYS[10], '1', 'PX', ARGV[6]) end
elseif ARGV[8] == 'fail' then
  local window = tonumber(ARGV[4])
  for i = 1, 3 do
    local failures = KEYS[3 * i - 1]
    redis.call('ZREMRANGEBYSCORE', failures, '-inf', now - window)
    redis.call('ZADD', failures, now, ARGV[7])
    redis.call('PEXPIRE', failures, window)
    if redis.call('ZCARD', failures) >= tonumber(ARGV[i]) then
      if tonumber(ARGV[5]) > 0 then redis.call('SET', KEYS[3 * i - 2], '1', 'PX', ARGV[5]) end
      redis.call('DEL', failures)
    end
  end
end
return 'done'
"""

_OUTCOMES = {True: "ok", False: "fail", None: "none"}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisLoginCounters(LoginCounters):
    """Login counts in the Redis that ``client`` (a ``redis.Redis``, e.g. from
    :func:`flight_secure.auth.redis_connection.connect`) talks to.

    Keys start with ``prefix`` (servers that share a budget use the same one).
    A waiting check asks again every ``poll_interval`` seconds (checks that end on
    other servers free budget too). The client is closed by :meth:`close`.
    """

    def __init__(self, client: Any, *, prefix: str = DEFAULT_PREFIX,
                 reservation_ttl: float = RESERVATION_TTL, poll_interval: float = 0.05) -> None:
        if reservation_ttl <= 0 or poll_interval <= 0:
            raise ValueError("reservation_ttl and poll_interval must be > 0")
        self._client = client
        self._prefix = prefix
        self._reservation_ms = _ms(reservation_ttl)
        self.poll_interval = poll_interval
        self._admit = client.register_script(_ADMIT)
        self._release = client.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"RedisLoginCounters(prefix={self._prefix!r})"

    def admit(self, user: str, network: str, limits: Limits, *, reserve: bool) -> Admission:
        ticket = secrets.token_hex(12)
        args = [*self._limits(limits), _ms(limits.failure_window), "1" if reserve else "0",
                ticket, self._reservation_ms]
        answer = self._run(self._admit, user, network, args)
        verdict = answer[0].decode() if isinstance(answer[0], bytes) else answer[0]
        if verdict == "locked":
            return Admission(retry_after=int(answer[1]) / 1000)
        return Admission(ticket=ticket) if verdict == "reserved" else Admission()

    def release(self, user: str, network: str, limits: Limits, ticket: str,
                outcome: bool | None) -> None:
        lockout = _ms(limits.lockout) if limits.lockout > 0 else 0
        trusted_for = _ms(limits.trusted_for) if limits.trusted_for > 0 else 0
        args = [*self._limits(limits), _ms(limits.failure_window), lockout, trusted_for,
                ticket, _OUTCOMES[outcome]]
        self._run(self._release, user, network, args)

    def tracked_keys(self) -> int:
        try:
            names = {name.rsplit(b":", 1)[0]
                     for name in self._client.scan_iter(f"{self._prefix}:guard:*", count=1000)}
        except REDIS_ERRORS as exc:
            raise CountersUnavailable(f"Redis: {type(exc).__name__}: {exc}") from None
        return len(names)

    def close(self) -> None:
        self._client.close()

    # ---------------------------------------------------------------- internals

    @staticmethod
    def _limits(limits: Limits) -> list[int]:
        return [limits.failures[kind] for kind in KINDS]

    def _keys(self, user: str, network: str) -> list[str]:
        names = []
        for key in login_keys(user, network):
            digest = hashlib.sha256(json.dumps(key).encode("utf-8", "surrogatepass")).hexdigest()
            base = f"{self._prefix}:guard:{key[0]}:{digest[:40]}"
            names += [f"{base}:lock", f"{base}:failures", f"{base}:checking"]
        return [*names, names[0].rsplit(":", 1)[0] + ":trusted"]

    def _run(self, script: Any, user: str, network: str, args: list[Any]) -> Any:
        try:
            return script(keys=self._keys(user, network), args=args)
        except REDIS_ERRORS as exc:
            raise CountersUnavailable(f"Redis: {type(exc).__name__}: {exc}") from None
