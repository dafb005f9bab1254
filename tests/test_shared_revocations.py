"""Specification of revocation lists kept outside the server: in Redis (shared by every
server, which also write it) and at a URL (read-only). A revocation holds on every
server within the refresh interval; a server whose copy is older than its staleness
bound refuses every token as UNAVAILABLE, on both engines; a call costs no round trip.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.flight as pa_flight
import pytest
from conftest import Engine, wait_until
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis_server import RedisServer, redis_or_skip

from flight_secure.arrow import principal
from flight_secure.auth.basic import BasicServerAuthHandler
from flight_secure.auth.passwords import PasswordStore
from flight_secure.auth.redis_connection import connect
from flight_secure.auth.redis_revocations import RedisRevocations
from flight_secure.auth.revocation import RevocationList, RevocationsUnavailable
from flight_secure.auth.revocation_view import RevocationView
from flight_secure.auth.tokens import JWTIssuer, JWTVerifier

ISSUER = "test-nodes"
REFRESH, STALENESS = 0.2, 3.0


class Whoami:
    """A behaviour (either engine): DoAction answers the caller's identity."""

    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        yield principal(context).identity


def whoami(port: int, header: tuple[bytes, bytes]) -> bytes:
    with pa_flight.connect(f"grpc://localhost:{port}") as client:
        options = pa_flight.FlightCallOptions(headers=[header], timeout=10)
        return next(iter(client.do_action("whoami", options))).body.to_pybytes()


def refused(port: int, header: tuple[bytes, bytes]) -> type[Exception] | None:
    """The error class a call with ``header`` gets, or None when it is admitted."""
    try:
        whoami(port, header)
    except pa_flight.FlightError as exc:
        return type(exc)
    return None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = redis_or_skip(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def store() -> PasswordStore:
    made = PasswordStore(rounds=4)
    made.add("alice", "wonderland")
    made.add("bob", "builder")
    return made


class Cluster:
    """Three servers with one signing key, each with its own copy of the list in Redis."""

    def __init__(self, engine: Engine, url: str, store: PasswordStore, *,
                 refresh: float = REFRESH, staleness: float = STALENESS) -> None:
        key = Ed25519PrivateKey.generate()
        self.revocations = [RedisRevocations(connect(url), refresh_interval=refresh,
                                             max_staleness=staleness) for _ in range(3)]
        self.handlers = [
            BasicServerAuthHandler(store, JWTIssuer(key, "EdDSA", issuer=ISSUER, ttl=300),
                                   JWTVerifier(key.public_key(), ["EdDSA"], issuer=ISSUER,
                                               leeway=5, revoked=revoked))
            for revoked in self.revocations]
        self.servers = [engine.start(Whoami, auth_handler=h) for h in self.handlers]
        self.ports = [server.port for server in self.servers]

    def login(self, user: str, password: str, node: int = 0) -> tuple[bytes, bytes]:
        with pa_flight.connect(f"grpc://localhost:{self.ports[node]}") as client:
            return client.authenticate_basic_token(user, password)

    def close(self) -> None:
        for server, handler, revoked in zip(self.servers, self.handlers, self.revocations):
            server.shutdown()
            handler.close()
            revoked.close()


@pytest.fixture
def cluster(engine: Engine, redis_server: RedisServer, store: PasswordStore
            ) -> Iterator[Cluster]:
    made = Cluster(engine, redis_server.url, store)
    yield made
    made.close()


def test_a_token_revoked_on_one_server_is_refused_on_every_server(cluster: Cluster) -> None:
    alice, bob = cluster.login("alice", "wonderland"), cluster.login("bob", "builder", 2)
    assert [whoami(port, alice) for port in cluster.ports] == [b"alice"] * 3
    cluster.handlers[1].revoke_token(alice[1].decode().removeprefix("Bearer "))
    revoked_at = time.monotonic()
    assert refused(cluster.ports[1], alice) is pa_flight.FlightUnauthenticatedError
    wait_until(lambda: all(refused(port, alice) for port in cluster.ports), REFRESH + 3)
    assert time.monotonic() - revoked_at < REFRESH + 3
    assert [whoami(port, bob) for port in cluster.ports] == [b"bob"] * 3


def test_a_user_revoked_on_one_server_is_logged_out_of_every_server(cluster: Cluster) -> None:
    alice = cluster.login("alice", "wonderland", 0)
    cluster.handlers[2].revoke_user("alice")
    wait_until(lambda: all(refused(port, alice) for port in cluster.ports), REFRESH + 3)
    time.sleep(1.01)  # a token of the same second as the revocation is refused too
    again = cluster.login("alice", "wonderland", 1)
    assert [whoami(port, again) for port in cluster.ports] == [b"alice"] * 3


def test_a_server_that_cannot_reload_its_copy_refuses_tokens_as_unavailable(
        cluster: Cluster, redis_server: RedisServer) -> None:
    alice = cluster.login("alice", "wonderland")
    redis_server.stop()
    stopped = time.monotonic()
    assert whoami(cluster.ports[0], alice) == b"alice"  # the copy is still fresh
    wait_until(lambda: refused(cluster.ports[0], alice) is not None, STALENESS + 5)
    waited = time.monotonic() - stopped
    assert STALENESS - REFRESH - 0.1 <= waited <= STALENESS + 5
    wait_until(lambda: all(refused(port, alice) for port in cluster.ports), REFRESH + 3)
    assert all(refused(port, alice) is pa_flight.FlightUnavailableError
               for port in cluster.ports)
    with pytest.raises(pa_flight.FlightUnavailableError, match="try again later") as caught:
        whoami(cluster.ports[1], alice)
    assert "redis" not in str(caught.value).lower()
    redis_server.start()
    wait_until(lambda: all(refused(port, alice) is None for port in cluster.ports),
               REFRESH + 5)


def test_checking_a_token_on_every_call_costs_no_round_trip(
        engine: Engine, redis_server: RedisServer, store: PasswordStore) -> None:
    slow = Cluster(engine, redis_server.url, store, refresh=60, staleness=120)
    try:
        alice = slow.login("alice", "wonderland")
        client = redis_server.client()
        before = int(client.info("stats")["total_commands_processed"])
        with pa_flight.connect(f"grpc://localhost:{slow.ports[0]}") as flight_client:
            options = pa_flight.FlightCallOptions(headers=[alice], timeout=10)
            for _ in range(200):
                list(flight_client.do_action("whoami", options))
        after = int(client.info("stats")["total_commands_processed"])
        client.close()
        assert after - before <= 2  # the INFO command itself
    finally:
        slow.close()


def test_redis_revocations_survive_a_restart_of_a_persistent_redis(tmp_path: Path) -> None:
    server = redis_or_skip(tmp_path, appendonly=True)
    try:
        first = RedisRevocations(connect(server.url))
        first.revoke("token-1", until=time.time() + 600)
        first.revoke_subject("mallory")
        first.close()
        server.stop()
        server.start()
        second = RedisRevocations(connect(server.url))
        assert second.is_revoked("token-1")
        assert second.rejects({"sub": "mallory", "iat": int(time.time()) - 1})
        second.close()
    finally:
        server.stop()


def test_lapsed_entries_are_dropped_from_redis(redis_server: RedisServer) -> None:
    revocations = RedisRevocations(connect(redis_server.url))
    revocations.revoke("short", until=time.time() + 0.3)
    revocations.revoke_subject("brief", until=time.time() + 0.3)
    time.sleep(0.4)
    revocations.revoke("long", until=time.time() + 600)
    client = redis_server.client()
    assert client.zrange("flight-secure:revoked:tokens", 0, -1) == [b"long"]
    assert client.zcard("flight-secure:revoked:subjects") == 0
    assert client.hlen("flight-secure:revoked:at") == 0
    client.close()
    revocations.close()


def test_redis_that_cannot_be_reached_at_start_is_an_error(tmp_path: Path) -> None:
    server = redis_or_skip(tmp_path)
    server.stop()
    with pytest.raises(RevocationsUnavailable, match="could not read the revocation list"):
        RedisRevocations(connect(server.url, timeout=0.5))


# ------------------------------------------------------------------- from a URL


class ListSite:
    """An HTTP server on loopback serving one revocation list, with its ETag."""

    def __init__(self) -> None:
        self.body = b""
        self.full = self.not_modified = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                etag = f'"{hash(site.body) & 0xFFFFFFFF:x}"'
                if self.headers.get("If-None-Match") == etag:
                    site.not_modified += 1
                    self.send_response(304)
                    self.end_headers()
                    return
                site.full += 1
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(site.body)))
                self.end_headers()
                self.wfile.write(site.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/revoked.jsonl"

    def publish(self, revocations: RevocationList) -> None:
        self.body = "".join(json.dumps(e) + "\n" for e in revocations.entries()).encode()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def site() -> Iterator[ListSite]:
    made = ListSite()
    yield made
    made.close()


def test_a_list_at_a_url_is_reloaded_and_fails_closed_past_its_bound(site: ListSite) -> None:
    source = RevocationList()
    source.revoke("first")
    site.publish(source)
    view = RevocationView.from_url(site.url, refresh_interval=REFRESH, max_staleness=STALENESS)
    try:
        assert view.is_revoked("first") and not view.is_revoked("second")
        source.revoke("second")
        site.publish(source)
        wait_until(lambda: view.is_revoked("second"), REFRESH + 3)
        wait_until(lambda: site.not_modified >= 2, REFRESH * 2 + 3)  # unchanged: not resent
        site.close()
        stopped = time.monotonic()
        wait_until(lambda: _unavailable(view), STALENESS + 5)
        assert time.monotonic() - stopped >= STALENESS - REFRESH - 0.1
        with pytest.raises(ValueError, match="read-only"):
            view.revoke("third")
    finally:
        view.close()


def _unavailable(view: RevocationView) -> bool:
    try:
        view.rejects({"jti": "x", "sub": "y", "iat": 0})
    except RevocationsUnavailable:
        return True
    return False


def test_a_malformed_list_is_refused_at_start_and_later_keeps_the_copy(
        site: ListSite, caplog: pytest.LogCaptureFixture) -> None:
    site.body = b'{"jti": "ok", "until": null}\nnot json\n'
    with pytest.raises(ValueError, match="line 2"):
        RevocationView.from_url(site.url)
    site.body = b'{"jti": "ok", "until": null}\n'
    view = RevocationView.from_url(site.url, refresh_interval=REFRESH, max_staleness=60)
    try:
        with caplog.at_level(logging.WARNING, "flight_secure.auth.revocation"):
            site.body = b"garbage\n"
            wait_until(lambda: "could not reload" in caplog.text, REFRESH + 3)
        assert view.is_revoked("ok")
    finally:
        view.close()


def test_a_list_over_plain_http_elsewhere_than_loopback_is_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "flight_secure.auth.revocation"), \
            contextlib.suppress(OSError):
        RevocationView.from_url("http://192.0.2.1/revoked.jsonl", fetch_timeout=0.2)
    assert "plain http" in caplog.text
    with pytest.raises(ValueError, match="http:// or https://"):
        RevocationView.from_url("file:///etc/passwd")
