"""Specification of AccessPolicy and require_roles on a real server of either engine."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import flight_secure as flight
from flight_secure.arrow import authorize_action, principal
from flight_secure.auth import (
    AccessPolicy,
    BasicClientAuthHandler,
    BasicServerAuthHandler,
    JWTIssuer,
    JWTServerAuthHandler,
    JWTVerifier,
    PasswordStore,
    Principal,
    require_roles,
)
from flight_secure.types import FlightMethod

ROLES = {"wendy": ["writer", "reader"], "rita": ["reader"], "nobody": []}
POLICY = AccessPolicy({"DoPut": {"writer"}, "DoGet": ["reader"]},
                      actions={"drop": {"admin"}, "vacuum": {"admin", "janitor"}})


class PolicyServer:
    """A behaviour (either engine) with role checks in handlers beside the server's policy.

    DoPut keeps each caller's last upload in ``stored``, by the caller's identity.
    """

    def __init__(self, **options: Any) -> None:
        self.stored: dict[bytes, pa.Table] = {}
        super().__init__(**options)

    def do_get(self, context, ticket):
        return self.flight.RecordBatchStream(pa.table({"n": [1]}))

    def do_put(self, context, descriptor, reader, writer):
        self.stored[principal(context).identity] = reader.read_all()

    def do_action(self, context, action):
        authorize_action(context, action)
        if action.type == "audit":
            require_roles("auditor").check(context)
        yield principal(context).identity

    @require_roles("auditor", "admin")
    def list_flights(self, context, criteria):
        yield self.flight.FlightInfo(pa.schema([]), self.flight.FlightDescriptor.for_command(b"x"),
                                     [])


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def issuer(key) -> JWTIssuer:
    return JWTIssuer(key)


@pytest.fixture(scope="module")
def store() -> PasswordStore:
    made = PasswordStore(rounds=4)
    for user in (*ROLES, "jo", "amy"):
        made.add(user, f"pw-{user}")
    return made


@pytest.fixture(scope="module")
def mint(issuer, store) -> Callable[..., str]:
    """A session token of the server's handler for ``user`` with extra ``claims``."""

    def session(user: str, **claims: Any) -> str:
        return issuer.issue(user, credential=store.fingerprint(user), **claims)

    return session


@pytest.fixture(scope="module")
def server(engine, key, issuer, store) -> Iterator[PolicyServer]:
    handler = BasicServerAuthHandler(store, issuer, JWTVerifier(key.public_key(), ["EdDSA"]),
                                     roles=ROLES)
    with engine.running(PolicyServer, auth_handler=handler, authorizer=POLICY) as running:
        yield running
    handler.close()


def plain_client(server) -> flight.FlightClient:
    """A client that has not logged in: tokens go in each call's headers."""
    return flight.connect(f"grpc://localhost:{server.port}")


def client_for(server, user: str) -> flight.FlightClient:
    """A client logged in as ``user`` (its session token goes on every call)."""
    client = plain_client(server)
    client.authenticate(BasicClientAuthHandler(user, f"pw-{user}"))
    return client


def put(client: flight.FlightClient, options: flight.FlightCallOptions | None = None) -> None:
    writer, _ = client.do_put(flight.FlightDescriptor.for_path("t"),
                              pa.schema([("n", pa.int64())]), options)
    writer.write_table(pa.table({"n": [1]}))
    writer.close()


def act(client: flight.FlightClient, kind: str,
        options: flight.FlightCallOptions | None = None) -> bytes:
    return next(iter(client.do_action(kind, options))).body.to_pybytes()


def token_options(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"auth-token-bin", token.encode())])


def test_writer_may_put(server):
    with client_for(server, "wendy") as client:
        put(client)
    assert server.stored[b"wendy"].equals(pa.table({"n": [1]}))


def test_put_without_writer_role_is_permission_denied(server):
    with client_for(server, "rita") as client, pytest.raises(flight.FlightUnauthorizedError,
                       match="permission denied: DoPut requires role writer"):
        put(client)


def test_get_needs_reader(server):
    with client_for(server, "rita") as client:
        assert client.do_get(flight.Ticket(b"t")).read_all().num_rows == 1
    with client_for(server, "nobody") as client, \
            pytest.raises(flight.FlightUnauthorizedError, match="DoGet requires role reader"):
        client.do_get(flight.Ticket(b"t")).read_all()


def test_rpcs_and_actions_without_rules_are_open_to_authenticated_callers(server):
    with client_for(server, "nobody") as client:
        assert act(client, "whoami") == b"nobody"


def test_action_rules_apply_per_action_type(server, mint):
    with client_for(server, "wendy") as client:
        with pytest.raises(flight.FlightUnauthorizedError,
                           match="action 'drop' requires role admin"):
            act(client, "drop")
        with pytest.raises(flight.FlightUnauthorizedError,
                           match="action 'vacuum' requires one of the roles admin, janitor"):
            act(client, "vacuum")
    janitor = token_options(mint("jo", roles=["janitor"]))
    with plain_client(server) as client:
        assert act(client, "vacuum", janitor) == b"jo"


def test_roles_claim_of_the_token_adds_to_the_roles_map(server, mint):
    options = token_options(mint("rita", roles=["admin"]))
    with plain_client(server) as client:
        assert act(client, "drop", options) == b"rita"
        put_options = token_options(mint("rita"))
        with pytest.raises(flight.FlightUnauthorizedError):
            put(client, put_options)
        assert client.do_get(flight.Ticket(b"t"), put_options).read_all().num_rows == 1


def test_scope_claims_feed_roles_of_jwt_callers(engine, key, issuer):
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"]))
    with engine.running(PolicyServer, auth_handler=handler, authorizer=POLICY) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        put(client, token_options(issuer.issue("svc", scope="writer metrics")))
        assert act(client, "drop", token_options(issuer.issue("svc", scp=["admin"]))) == b"svc"
        with pytest.raises(flight.FlightUnauthorizedError):
            put(client, token_options(issuer.issue("svc", scope="reader")))


def test_require_roles_inside_a_handler_and_as_decorator(server, mint):
    with client_for(server, "wendy") as client:
        with pytest.raises(flight.FlightUnauthorizedError, match="requires role auditor"):
            act(client, "audit")
        with pytest.raises(flight.FlightUnauthorizedError,
                           match="requires one of the roles admin, auditor"):
            list(client.list_flights())
    auditor = token_options(mint("amy", roles=["auditor"]))
    with plain_client(server) as client:
        assert act(client, "audit", auditor) == b"amy"
        assert len(list(client.list_flights(options=auditor))) == 1


def test_denials_are_audited_with_who_and_method(server, caplog):
    caplog.set_level(logging.WARNING, logger="flight_secure.audit")
    with client_for(server, "rita") as client, pytest.raises(flight.FlightUnauthorizedError):
        put(client)
    (refusal,) = [r for r in caplog.records if r.audit["event"] == "call refused"]
    assert refusal.getMessage().startswith("call refused: who=rita scheme=")
    assert (refusal.audit["who"], refusal.audit["rpc"]) == ("rita", "DoPut")


def test_default_rule_covers_rpcs_without_their_own():
    policy = AccessPolicy({"DoGet": ["reader"]}, default=["staff"],
                          actions={"*": ["ops"], "ping": []})
    staff = Principal("s", "basic", roles=frozenset({"staff"}))
    policy(staff, FlightMethod.LIST_FLIGHTS, None)
    with pytest.raises(flight.FlightUnauthorizedError, match="DoGet requires role reader"):
        policy(staff, FlightMethod.DO_GET, None)
    policy(staff, FlightMethod.DO_ACTION, "ping")
    with pytest.raises(flight.FlightUnauthorizedError, match="action 'reboot' requires role ops"):
        policy(staff, FlightMethod.DO_ACTION, "reboot")
    with pytest.raises(flight.FlightUnauthorizedError):
        policy(None, FlightMethod.LIST_FLIGHTS, None)
    assert AccessPolicy({"*": ["staff"]}).required_roles(FlightMethod.DO_PUT) == {"staff"}


@pytest.mark.parametrize("arguments, message", [
    ({"rules": {"DoPUT": ["writer"]}}, "unknown RPC names"),
    ({"rules": {"*": ["a"]}, "default": ["b"]}, "not both"),
])
def test_inconsistent_policies_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        AccessPolicy(**arguments)


def test_require_roles_needs_a_role():
    with pytest.raises(ValueError):
        require_roles()
