"""Secrets hygiene: passwords, tokens, hashes and private keys stay secret.

* Nothing secret reaches any log (every logger at DEBUG), stderr, an error message
  or a repr during a session with good and bad logins, throttling, forged and
  expired tokens, failing handlers and calls of every kind.
* Key and password files are written owner-only (0600) even under umask 0.
* Secrets are compared in constant time: no ``==`` on a secret anywhere in
  flight_secure, bcrypt and HMAC comparisons where secrets meet.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

import flight_secure as flight
from flight_secure.auth import (
    BasicClientAuthHandler,
    BasicServerAuthHandler,
    JWTClientAuthHandler,
    JWTIssuer,
    JWTVerifier,
    LoginGuard,
    PasswordStore,
)
from flight_secure.auth.base import CallCredentials, HeaderLogin
from flight_secure.auth.mtls import MutualTLSServerAuthHandler
from flight_secure.certs import CertificateAuthority, DevCertificates, generate_dev_certificates
from flight_secure.tls import reloading_server_credentials

from .conftest import (
    CALL_TIMEOUT,
    ECHO_RPCS,
    ROOT,
    EchoServer,
    echo_call,
    mtls_client,
    mtls_server_options,
)

PASSWORDS = {"alice": "alice-Secret-Passphrase-1", "bob": "bob-Secret-Passphrase-2"}
GUESSES = ("guess-Secret-One", "guess-Secret-Two", "guess-Secret-Three")
HMAC_SECRET = "hmac-Secret-Key-0123456789abcdef-0123456789"
ISS = "https://login.hygiene.test"
OPTIONS = flight.FlightCallOptions(timeout=CALL_TIMEOUT)


class RecordingLogins(BasicServerAuthHandler):
    """Basic logins that keep the repr of every header login they return, as a
    handler that logs its results would show it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown: list[str] = []

    def authenticate_headers(self, call: CallCredentials) -> HeaderLogin | None:
        login = super().authenticate_headers(call)
        self.shown.append(repr(login))
        return login


def fragments(secret: str | bytes) -> list[str]:
    """The parts of a secret that must never be shown: the whole, and for tokens each
    signature and claims segment, for PEM keys each line of the key body."""
    text = secret.decode() if isinstance(secret, bytes) else secret
    if "-----BEGIN" in text:
        return [line for line in text.splitlines() if line and "-----" not in line]
    if text.count(".") == 2:
        return [part for part in text.split(".")[1:] if len(part) >= 12]
    return [text]


@pytest.fixture
def store(tmp_path: Path) -> PasswordStore:
    made = PasswordStore(rounds=4)
    for user, password in PASSWORDS.items():
        made.add(user, password)
    return made


@pytest.fixture
def session_server(pki: DevCertificates, store: PasswordStore
                   ) -> Iterator[tuple[EchoServer, RecordingLogins]]:
    """mTLS + Basic logins issuing HS256 session tokens, and a strict LoginGuard."""
    guard = LoginGuard(max_failures_per_user=2)
    logins = RecordingLogins(store, JWTIssuer(HMAC_SECRET, "HS256", issuer=ISS),
                             JWTVerifier.from_secret(HMAC_SECRET, ["HS256"], issuer=ISS),
                             guard=guard)
    server = EchoServer(auth_handler=MutualTLSServerAuthHandler(inner=logins),
                        **mtls_server_options(pki))
    try:
        yield server, logins
    finally:
        server.shutdown()
        guard.close()


def key_material(pki: DevCertificates) -> list[bytes]:
    return [pki.client_pems("alice")[1], pki.server_pems()[1], pki.ca_key.read_bytes()]


def test_no_secret_reaches_logs_stderr_or_errors(
        pki: DevCertificates, store: PasswordStore, tmp_path: Path,
        session_server: tuple[EchoServer, RecordingLogins],
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """Good and bad logins, a throttled one, calls of every kind, a failing handler,
    expired, forged and unsigned tokens: every logger at DEBUG, stderr and every error."""
    caplog.set_level(logging.DEBUG)
    server, _ = session_server
    errors: list[str] = []
    tokens: list[str] = []

    def refused(call: Any) -> None:
        with pytest.raises(flight.FlightError) as caught:
            call()
        errors.append(str(caught.value))

    with mtls_client(pki, server.port, "alice") as client:
        for guess in GUESSES:  # the third is throttled (2 failures per user)
            refused(lambda g=guess: client.authenticate(BasicClientAuthHandler("alice", g)))
        refused(lambda: client.authenticate_basic_token("mallory", GUESSES[0]))
        login = BasicClientAuthHandler("bob", PASSWORDS["bob"])
        client.authenticate(login, OPTIONS)
        tokens.append(login.get_token().decode())
        for rpc in ECHO_RPCS:
            echo_call(client, rpc, b"n", OPTIONS)
        refused(lambda: list(client.do_action(flight.Action("fail", b"handler failed"),
                                              OPTIONS)))
        _, bearer = client.authenticate_basic_token("bob", PASSWORDS["bob"], OPTIONS)
        tokens.append(bearer.decode().split()[1])
    expired = jwt.encode({"sub": "bob", "iss": ISS, "exp": int(time.time()) - 60},
                         HMAC_SECRET, algorithm="HS256")
    forged = tokens[1][:-6] + ("AAAAAA" if not tokens[1].endswith("AAAAAA") else "BBBBBB")
    unsigned = (base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=") + "."
                + tokens[1].split(".")[1] + ".")
    tokens += [expired, forged]
    with mtls_client(pki, server.port, "alice") as fresh:  # no session token of its own
        for token in (expired, forged, unsigned):
            headers = [(b"authorization", f"Bearer {token}".encode())]
            refused(lambda h=headers: echo_call(
                fresh, "DoAction", b"n", flight.FlightCallOptions(timeout=CALL_TIMEOUT,
                                                                  headers=h)))
        refused(lambda: fresh.authenticate(JWTClientAuthHandler(expired), OPTIONS))

    store_file = tmp_path / "users.htpasswd"
    store.save(store_file)
    hashes = [line.split(":", 1)[1] for line in store_file.read_text().splitlines()]
    secrets = [*PASSWORDS.values(), *GUESSES, HMAC_SECRET, *tokens, *key_material(pki),
               *hashes]
    out, err = capfd.readouterr()
    visible = {"logs": caplog.text, "stderr": err, "stdout": out, "errors": "\n".join(errors)}
    assert "login refused" in caplog.text and "token refused" in caplog.text
    assert len(errors) == 9
    leaks = {where for secret in secrets for fragment in fragments(secret)
             for where, text in visible.items() if fragment in text}
    assert leaks == set(), f"secrets shown in: {sorted(leaks)}"


def test_no_secret_shows_in_a_repr(pki: DevCertificates, store: PasswordStore,
                                   session_server: tuple[EchoServer, RecordingLogins]) -> None:
    server, logins = session_server
    with mtls_client(pki, server.port, "alice") as client:
        login = BasicClientAuthHandler("bob", PASSWORDS["bob"])
        client.authenticate(login, OPTIONS)
        _, bearer = client.authenticate_basic_token("bob", PASSWORDS["bob"], OPTIONS)
    token = bearer.decode().split()[1]
    server_cert, server_key = pki.server_pems()
    authority = CertificateAuthority.load(pki.ca_cert, pki.ca_key)
    issued = authority.issue_client("carol")
    shown = {
        "BasicAuth": flight.BasicAuth("alice", PASSWORDS["alice"]),
        "CertKeyPair": flight.CertKeyPair(server_cert, server_key),
        "PasswordStore": store,
        "BasicServerAuthHandler": logins,
        "JWTIssuer": logins.issuer,
        "JWTVerifier": logins.verifier,
        "BasicClientAuthHandler": login,
        "JWTClientAuthHandler": JWTClientAuthHandler(token),
        "MutualTLSServerAuthHandler": server._options.auth_handler,
        "CertificateAuthority": authority,
        "IssuedCertificate": issued,
        "ReloadingServerCredentials": reloading_server_credentials(
            pki.server_cert, pki.server_key, pki.ca_cert),
    }
    reprs = {name: repr(value) for name, value in shown.items()}
    reprs["HeaderLogin (returned by authenticate_headers)"] = "\n".join(logins.shown)
    secrets = [*PASSWORDS.values(), HMAC_SECRET, login.get_token().decode(), token,
               *key_material(pki), issued.key_pem]
    leaks = {name for secret in secrets for fragment in fragments(secret)
             for name, text in reprs.items() if fragment in text}
    assert leaks == set(), f"secrets shown in the repr of: {sorted(leaks)}"


def test_password_file_errors_never_show_what_follows_the_user_name(tmp_path: Path) -> None:
    path = tmp_path / "users.htpasswd"
    for line in ("alice:plain-Secret-Password", "alice:{SHA}c2VjcmV0LVNoYS1IYXNoLVZhbHVl",
                 "alice:$apr1$salt$secretMd5HashValue"):
        path.write_text(line + "\n")
        with pytest.raises(ValueError) as refused:
            PasswordStore.load(path)
        assert line.split(":", 1)[1] not in str(refused.value)


# ---------------------------------------------------------------- file modes


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Files are created with umask 0, the worst case: modes come from the code alone."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_and_password_files_are_owner_only(tmp_path: Path, open_umask: None) -> None:
    made = generate_dev_certificates(tmp_path / "dev", clients=["alice"])
    authority = CertificateAuthority.create()
    authority.write(tmp_path / "ca2.pem", tmp_path / "ca2.key")
    authority.issue_server().write(tmp_path / "srv.pem", tmp_path / "srv.key")
    store = PasswordStore(rounds=4)
    store.add("alice", PASSWORDS["alice"])
    store.save(tmp_path / "users.htpasswd")
    secret_files = [made.ca_key, made.server_key, made.clients["alice"][1],
                    tmp_path / "ca2.key", tmp_path / "srv.key", tmp_path / "users.htpasswd"]
    assert {path.name: mode(path) for path in secret_files} == \
        {path.name: 0o600 for path in secret_files}
    assert mode(made.ca_cert) == mode(made.server_cert) == 0o644


# --------------------------------------------------------- constant-time compares

#: A name is secret-like when its last word is one of these (``stored_hash``, ``token``,
#: not ``token_refresh_at`` or ``AUTH_TOKEN_HEADER``).
SECRET_WORDS = frozenset({"password", "passwd", "pw", "secret", "token", "digest", "signature",
                          "thumbprint", "hash", "hashed", "mac", "hmac", "credentials"})
#: Comparisons that look like secret comparisons but are not timing oracles, and why.
NOT_ORACLES = {
    ("cli/users.py", "getpass.getpass('Repeat the password: ') != password"):
        "the local user's two typed entries, compared in their own terminal",
}


def _secret_like(name: str | None) -> bool:
    return bool(name) and re.split(r"_+", name.lower().strip("_"))[-1] in SECRET_WORDS


def _name_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _name_of(node.value)
    return None


def secret_comparisons() -> list[tuple[str, str]]:
    """Every ``==``/``!=`` in flight_secure between non-constants, one named like a secret."""
    found = []
    package = ROOT / "flight_secure"
    for path in sorted(package.rglob("*.py")):
        if "_generated" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                continue
            operands = [node.left, *node.comparators]
            if any(isinstance(operand, ast.Constant) for operand in operands):
                continue
            if any(_secret_like(_name_of(operand)) for operand in operands):
                found.append((path.relative_to(package).as_posix(), ast.unparse(node)))
    return found


def test_no_secret_is_compared_with_equality() -> None:
    assert [c for c in secret_comparisons() if c not in NOT_ORACLES] == []


def test_secrets_meet_only_in_constant_time_comparisons() -> None:
    package = ROOT / "flight_secure" / "auth"
    passwords = (package / "passwords.py").read_text()
    assert passwords.count("bcrypt.checkpw(") == 2  # the stored hash, and the dummy one
    assert "hmac.compare_digest(" in (package / "mtls.py").read_text()
    # JWT signatures are checked by PyJWT, whose HMAC check is constant-time.
    assert "jwt.decode(" in (package / "tokens.py").read_text()
    assert "compare_digest" in inspect.getsource(jwt.algorithms.HMACAlgorithm.verify)


def test_audit_records_carry_no_secret_fields(
        pki: DevCertificates, session_server: tuple[EchoServer, RecordingLogins],
        caplog: pytest.LogCaptureFixture) -> None:
    """The structured ``record.audit`` dict (what a JSON log handler would ship) as well."""
    caplog.set_level(logging.INFO, logger="flight_secure.audit")
    server, _ = session_server
    with mtls_client(pki, server.port, "alice") as client:
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.authenticate(BasicClientAuthHandler("alice", GUESSES[0]))
        client.authenticate(BasicClientAuthHandler("alice", PASSWORDS["alice"]), OPTIONS)
    fields = json.dumps([getattr(r, "audit", None) for r in caplog.records])
    assert "login refused" in caplog.text and "login ok" in caplog.text
    assert GUESSES[0] not in fields and PASSWORDS["alice"] not in fields
