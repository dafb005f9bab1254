"""A connection to the Redis server that several Flight servers share state through.

:func:`connect` opens a client (``redis`` from PyPI: ``pip install
'flight-secure[redis]'``) whose calls fail fast: each waits at most ``timeout``
seconds and is retried once, so a server that lost Redis refuses what depends on
it within about two timeouts instead of hanging its callers. :func:`where`
names a URL for messages and logs without its password. :data:`REDIS_ERRORS`
are the failures of a call that mean "Redis cannot answer now".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flight_secure.auth.network import shown_url

__all__ = ["DEFAULT_TIMEOUT", "REDIS_ERRORS", "connect", "where"]

#: Seconds one Redis call may take (connecting included) before it fails.
DEFAULT_TIMEOUT = 1.0

NOT_INSTALLED = "the Redis backend needs the redis package: pip install 'flight-secure[redis]'"


def _redis() -> Any:
    try:
        import redis
    except ImportError:
        raise ImportError(NOT_INSTALLED) from None
    return redis


def _errors() -> tuple[type[BaseException], ...]:
    try:
        import redis
    except ImportError:
        return ()
    return (redis.RedisError,)


#: Exceptions of a Redis call that mean the server cannot answer (unreachable, too
#: slow, refusing the credentials, out of memory...).
REDIS_ERRORS: tuple[type[BaseException], ...] = (*_errors(), OSError)


#: ``url`` as it may be shown: scheme, host, port and database, no credentials.
where = shown_url


def connect(url: str, *, password: str | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> Any:
    """A ``redis.Redis`` client for ``url`` (``redis://``, ``rediss://`` or
    ``unix://``), with ``password`` if given, each call bounded by ``timeout``.

    Nothing is sent yet. Raises ImportError when the redis package is missing and
    ValueError for a URL of another scheme.
    """
    if not isinstance(url, str) or urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("a Redis URL starts with redis://, rediss:// or unix://")
    redis = _redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                               "retry": Retry(NoBackoff(), 1), "health_check_interval": 30}
    if password is not None:
        options["password"] = password
    return redis.Redis.from_url(url, **options)
