"""Specification of JWT issuing and verification: one test per check or attack."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from flight_secure.auth.tokens import (
    Claims,
    JWTIssuer,
    JWTVerifier,
    RevocationList,
    TokenAlgorithmRefused,
    TokenAudienceMismatch,
    TokenBadSignature,
    TokenError,
    TokenExpired,
    TokenIssuerMismatch,
    TokenMalformed,
    TokenMissingClaim,
    TokenNotYetValid,
    TokenRevoked,
    TokenUnknownKey,
)

# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def secret() -> bytes:
    return secrets.token_bytes(32)


class FakeClock:
    """Monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class JWKSServer:
    """A real HTTP server on 127.0.0.1 serving ``document`` and counting requests."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def jwks_server() -> Iterator[JWKSServer]:
    server = JWKSServer()
    yield server
    server.stop()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_now(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "nbf": now, "exp": now + 600, **extra}


def ed_issuer(key: ed25519.Ed25519PrivateKey, kid: str | None = None, **kw: Any) -> JWTIssuer:
    return JWTIssuer(key, "EdDSA", key_id=kid, **kw)


# ----------------------------------------------------------- issue and verify


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256", "HS256"])
def test_each_algorithm_round_trips(
    algorithm: str, ed_key: Any, ec_key: Any, rsa_key: Any, secret: bytes
) -> None:
    private = {"EdDSA": ed_key, "ES256": ec_key, "RS256": rsa_key, "HS256": secret}[algorithm]
    public = private if algorithm == "HS256" else private.public_key()
    token = JWTIssuer(private, algorithm).issue("alice", role="reader")
    made = JWTVerifier.from_secret if algorithm == "HS256" else JWTVerifier
    claims = made(public, [algorithm]).verify(token)
    assert claims["sub"] == "alice"
    assert claims["role"] == "reader"


def test_issued_token_carries_registered_claims_and_kid(ed_key: Any) -> None:
    issuer = JWTIssuer(ed_key, issuer="auth", audience="flight", ttl=timedelta(minutes=5),
                       key_id="k1")
    token = issuer.issue("alice")
    claims = jwt.decode(token, ed_key.public_key(), algorithms=["EdDSA"], audience="flight")
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    assert claims["sub"] == "alice"
    assert claims["iss"] == "auth"
    assert claims["aud"] == "flight"
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == 300
    assert len(base64.urlsafe_b64decode(claims["jti"] + "==")) == 16


def test_every_token_gets_a_fresh_jti(ed_key: Any) -> None:
    issuer = ed_issuer(ed_key)
    verifier = JWTVerifier(ed_key.public_key(), ["EdDSA"])
    jtis = {verifier.verify(issuer.issue("alice"))["jti"] for _ in range(20)}
    assert len(jtis) == 20


def test_issue_refuses_to_override_registered_claims(ed_key: Any) -> None:
    with pytest.raises(ValueError, match="exp"):
        ed_issuer(ed_key).issue("alice", exp=0)


def test_issuer_accepts_pem_private_key(ec_key: Any) -> None:
    pem = ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    token = JWTIssuer(pem, "ES256").issue("alice")
    assert JWTVerifier(ec_key.public_key(), ["ES256"]).verify(token)["sub"] == "alice"


@pytest.mark.parametrize(
    ("algorithm", "key_name"),
    [("EdDSA", "rsa"), ("ES256", "p384"), ("RS256", "ed"), ("ES256", "secret"), ("HS256", "rsa")],
)
def test_issuer_refuses_key_that_does_not_fit_algorithm(
    algorithm: str, key_name: str, ed_key: Any, rsa_key: Any, secret: bytes
) -> None:
    keys = {"rsa": rsa_key, "ed": ed_key, "secret": secret,
            "p384": ec.generate_private_key(ec.SECP384R1())}
    with pytest.raises((ValueError, TypeError)):
        JWTIssuer(keys[key_name], algorithm)


def test_issuer_refuses_rsa_key_under_2048_bits() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (deliberately weak)
    with pytest.raises(ValueError, match="at least 2048 bits"):
        JWTIssuer(weak, "RS256")


def test_short_hmac_secret_is_refused_by_issuer_and_verifier() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        JWTIssuer(b"x" * 31, "HS256")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        JWTVerifier.from_secret("too-short-secret", ["HS256"])


def test_public_jwk_describes_verification_key_only(ed_key: Any) -> None:
    issuer = ed_issuer(ed_key, kid="k1")
    jwk = issuer.public_jwk()
    assert (jwk["kid"], jwk["alg"], jwk["use"], jwk["kty"]) == ("k1", "EdDSA", "sig", "OKP")
    assert "d" not in jwk
    assert JWTVerifier({"keys": [jwk]}, ["EdDSA"]).verify(issuer.issue("alice"))


def test_public_jwk_is_refused_for_hmac(secret: bytes) -> None:
    with pytest.raises(ValueError, match="never publish"):
        JWTIssuer(secret, "HS256").public_jwk()


# ----------------------------------------------------- verifier configuration


def test_verifier_requires_algorithms(ed_key: Any) -> None:
    with pytest.raises(TypeError):
        JWTVerifier(ed_key.public_key())  # type: ignore[call-arg]


def test_verifier_refuses_empty_algorithm_list(ed_key: Any) -> None:
    with pytest.raises(ValueError, match="at least one"):
        JWTVerifier(ed_key.public_key(), [])


@pytest.mark.parametrize("name", ["none", "None", "NONE"])
def test_verifier_refuses_none_in_algorithm_list(ed_key: Any, name: str) -> None:
    with pytest.raises(ValueError, match="none"):
        JWTVerifier(ed_key.public_key(), ["EdDSA", name])


def test_verifier_refuses_algorithm_string_instead_of_list(ed_key: Any) -> None:
    with pytest.raises(TypeError, match="list"):
        JWTVerifier(ed_key.public_key(), "EdDSA")


def test_verifier_refuses_private_key(ed_key: Any) -> None:
    pem = ed_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    with pytest.raises(ValueError, match="must be public"):
        JWTVerifier.from_public_key(pem, ["EdDSA"])
    with pytest.raises(ValueError, match="must be public"):
        JWTVerifier(ed_key, ["EdDSA"])


def test_verifier_accepts_certificate_pem(ec_key: Any) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(ec_key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(ec_key, hashes.SHA256()))
    verifier = JWTVerifier.from_public_key(cert.public_bytes(serialization.Encoding.PEM),
                                           ["ES256"])
    assert verifier.verify(JWTIssuer(ec_key, "ES256").issue("alice"))["sub"] == "alice"


# ------------------------------------------------------------------ attacks


def test_alg_none_token_is_refused(ed_key: Any) -> None:
    verifier = JWTVerifier(ed_key.public_key(), ["EdDSA"])
    for alg in ("none", "None", "nOnE"):
        header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        token = f"{header}.{b64(json.dumps(claims_now()).encode())}."
        with pytest.raises(TokenAlgorithmRefused, match="none"):
            verifier.verify(token)


def test_algorithm_outside_allow_list_is_refused(ed_key: Any, ec_key: Any) -> None:
    verifier = JWTVerifier([ed_key.public_key(), ec_key.public_key()], ["EdDSA"])
    with pytest.raises(TokenAlgorithmRefused, match="not allowed"):
        verifier.verify(JWTIssuer(ec_key, "ES256").issue("alice"))


def test_hs256_token_keyed_with_rsa_public_pem_is_refused(rsa_key: Any) -> None:
    # Classic key confusion: the attacker HMACs with the server's *public* RSA key.
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = (b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "."
                     + b64(json.dumps(claims_now(sub="admin")).encode()))
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    verifier = JWTVerifier.from_public_key(pem, ["RS256", "HS256"])
    with pytest.raises(TokenAlgorithmRefused, match="HS256"):
        verifier.verify(f"{signing_input}.{b64(mac)}")


def test_key_is_bound_to_the_alg_of_its_jwk(ec_key: Any, rsa_key: Any) -> None:
    jwk = JWTIssuer(ec_key, "ES256", key_id="k1").public_jwk()
    verifier = JWTVerifier({"keys": [jwk]}, ["ES256", "RS256"])
    token = JWTIssuer(rsa_key, "RS256", key_id="k1").issue("alice")
    with pytest.raises(TokenAlgorithmRefused, match="may not be used with RS256"):
        verifier.verify(token)


def test_tampered_payload_fails_signature_check(ed_key: Any) -> None:
    header, _, signature = ed_issuer(ed_key).issue("alice").split(".")
    forged = b64(json.dumps(claims_now(sub="admin")).encode())
    with pytest.raises(TokenBadSignature):
        JWTVerifier(ed_key.public_key(), ["EdDSA"]).verify(f"{header}.{forged}.{signature}")


def test_token_signed_by_another_key_fails_signature_check(ed_key: Any) -> None:
    stranger = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(TokenBadSignature):
        JWTVerifier(ed_key.public_key(), ["EdDSA"]).verify(ed_issuer(stranger).issue("alice"))


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "x" * 20000 + ".a.b"])
def test_malformed_token_is_refused(ed_key: Any, token: str) -> None:
    with pytest.raises(TokenMalformed):
        JWTVerifier(ed_key.public_key(), ["EdDSA"]).verify(token)


@pytest.mark.parametrize("header", [
    "eyJhbGciOiJFZERTQSJ9@",  # a character outside base64url
    base64.urlsafe_b64encode(b"not json").decode().rstrip("="),
    base64.urlsafe_b64encode(b'["EdDSA"]').decode().rstrip("="),
    base64.urlsafe_b64encode(b'{"alg": "EdDSA"\xff}').decode().rstrip("="),
])
def test_a_malformed_header_is_refused_as_malformed(ed_key: Any, header: str) -> None:
    _, payload, signature = ed_issuer(ed_key).issue("alice").split(".")
    with pytest.raises(TokenMalformed, match="header"):
        JWTVerifier(ed_key.public_key(), ["EdDSA"]).verify(f"{header}.{payload}.{signature}")


def test_a_token_is_parsed_once_on_its_first_verification(
        ed_key: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWT's parse of a whole token (``PyJWS._load``, which checks every character in
    Python) is a large part of a verification (a quarter to a third for RS256 and HS256,
    measured): the verifier leaves it to ``decode`` alone. (The count reads a name
    private to PyJWT: a rename fails here.)"""
    parses = []
    load = jwt.api_jws.PyJWS._load
    monkeypatch.setattr(jwt.api_jws.PyJWS, "_load",
                        lambda self, token: parses.append(1) or load(self, token))
    verifier = JWTVerifier(ed_key.public_key(), ["EdDSA"])
    token = ed_issuer(ed_key).issue("alice")
    assert verifier.verify(token)["sub"] == "alice"
    assert len(parses) == 1


def test_non_ascii_token_bytes_are_refused(ed_key: Any) -> None:
    with pytest.raises(TokenMalformed, match="ASCII"):
        JWTVerifier(ed_key.public_key(), ["EdDSA"]).verify(b"\xff.\xfe.\xfd")


# ----------------------------------------------------------------- claims


def _verify_payload(ed_key: Any, payload: dict[str, Any], **options: Any) -> Claims:
    token = jwt.encode(payload, ed_key, algorithm="EdDSA")
    return JWTVerifier(ed_key.public_key(), ["EdDSA"], **options).verify(token)


def test_expired_token_is_refused(ed_key: Any) -> None:
    with pytest.raises(TokenExpired):
        _verify_payload(ed_key, claims_now(exp=int(time.time()) - 60), leeway=30)


def test_expiry_within_leeway_is_tolerated(ed_key: Any) -> None:
    claims = _verify_payload(ed_key, claims_now(exp=int(time.time()) - 10), leeway=30)
    assert claims["sub"] == "alice"


def test_token_not_valid_before_future_nbf(ed_key: Any) -> None:
    with pytest.raises(TokenNotYetValid):
        _verify_payload(ed_key, claims_now(nbf=int(time.time()) + 300), leeway=30)


def test_wrong_audience_is_refused(ed_key: Any) -> None:
    with pytest.raises(TokenAudienceMismatch):
        _verify_payload(ed_key, claims_now(aud="billing"), audience="flight")


def test_token_with_audience_is_refused_when_none_is_expected(ed_key: Any) -> None:
    with pytest.raises(TokenAudienceMismatch):
        _verify_payload(ed_key, claims_now(aud="billing"))


def test_wrong_issuer_is_refused(ed_key: Any) -> None:
    with pytest.raises(TokenIssuerMismatch):
        _verify_payload(ed_key, claims_now(iss="evil"), issuer="auth")


@pytest.mark.parametrize("claim", ["exp", "sub"])
def test_token_missing_required_claim_is_refused(ed_key: Any, claim: str) -> None:
    payload = claims_now()
    del payload[claim]
    with pytest.raises(TokenMissingClaim, match=repr(claim)):
        _verify_payload(ed_key, payload)


def test_revoked_jti_is_refused(ed_key: Any) -> None:
    revoked = RevocationList()
    issuer = ed_issuer(ed_key)
    verifier = JWTVerifier(ed_key.public_key(), ["EdDSA"], revoked=revoked)
    bad, good = issuer.issue("alice"), issuer.issue("alice")
    revoked.revoke(jwt.decode(bad, options={"verify_signature": False})["jti"])
    with pytest.raises(TokenRevoked):
        verifier.verify(bad)
    assert verifier.verify(good)["sub"] == "alice"


def test_revocation_entry_lapses_at_its_until_time() -> None:
    clock = FakeClock()
    revoked = RevocationList(clock=clock)
    revoked.revoke("j1", until=clock.now + 60)
    revoked.revoke("j2")
    clock.now += 61
    assert not revoked.is_revoked("j1")
    assert revoked.is_revoked("j2")
    assert len(revoked) == 1


def test_claims_are_read_only(ed_key: Any) -> None:
    claims = _verify_payload(ed_key, claims_now())
    with pytest.raises(TypeError):
        claims["sub"] = "admin"  # type: ignore[index]


# ------------------------------------------------------------ keys and kids


def test_token_without_kid_uses_the_single_key(ed_key: Any) -> None:
    jwk = ed_issuer(ed_key, kid="k1").public_jwk()
    assert JWTVerifier({"keys": [jwk]}, ["EdDSA"]).verify(ed_issuer(ed_key).issue("alice"))


def test_two_keys_are_valid_at_once(ed_key: Any) -> None:
    new_key = ed25519.Ed25519PrivateKey.generate()
    old, new = ed_issuer(ed_key, kid="old"), ed_issuer(new_key, kid="new")
    verifier = JWTVerifier({"keys": [old.public_jwk(), new.public_jwk()]}, ["EdDSA"])
    assert verifier.verify(old.issue("alice"))["sub"] == "alice"
    assert verifier.verify(new.issue("bob"))["sub"] == "bob"


def test_unknown_kid_is_refused(ed_key: Any) -> None:
    verifier = JWTVerifier({"keys": [ed_issuer(ed_key, kid="k1").public_jwk()]}, ["EdDSA"])
    with pytest.raises(TokenUnknownKey, match="'k2'"):
        verifier.verify(ed_issuer(ed_key, kid="k2").issue("alice"))


def test_unknown_kid_rereads_rotated_jwks_file(ed_key: Any, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    old, new = ed_issuer(ed_key, kid="k1"), ed_issuer(ed25519.Ed25519PrivateKey.generate(), "k2")
    path.write_text(json.dumps({"keys": [old.public_jwk()]}))
    verifier = JWTVerifier.from_jwks_file(path, ["EdDSA"])
    path.write_text(json.dumps({"keys": [old.public_jwk(), new.public_jwk()]}))
    assert verifier.verify(new.issue("bob"))["sub"] == "bob"


def test_unknown_kid_refetches_rotated_jwks_url(ed_key: Any, jwks_server: JWKSServer) -> None:
    old, new = ed_issuer(ed_key, kid="k1"), ed_issuer(ed25519.Ed25519PrivateKey.generate(), "k2")
    jwks_server.document = {"keys": [old.public_jwk()]}
    verifier = JWTVerifier.from_jwks_url(jwks_server.url, ["EdDSA"])
    jwks_server.document = {"keys": [old.public_jwk(), new.public_jwk()]}
    assert verifier.verify(new.issue("bob"))["sub"] == "bob"
    assert jwks_server.requests == 2


def test_jwks_refetch_for_unknown_kids_is_rate_limited(
    ed_key: Any, jwks_server: JWKSServer
) -> None:
    clock = FakeClock()
    jwks_server.document = {"keys": [ed_issuer(ed_key, kid="k1").public_jwk()]}
    verifier = JWTVerifier.from_jwks_url(jwks_server.url, ["EdDSA"], min_refresh_interval=30,
                                         clock=clock)
    stranger = ed25519.Ed25519PrivateKey.generate()
    for n in range(5):
        with pytest.raises(TokenUnknownKey):
            verifier.verify(ed_issuer(stranger, kid=f"guess{n}").issue("alice"))
    assert jwks_server.requests == 2  # initial load + one refresh
    clock.now += 31
    with pytest.raises(TokenUnknownKey):
        verifier.verify(ed_issuer(stranger, kid="later").issue("alice"))
    assert jwks_server.requests == 3


def test_stale_jwks_is_refreshed_and_withdrawn_key_stops_working(
    ed_key: Any, jwks_server: JWKSServer
) -> None:
    clock = FakeClock()
    old, new = ed_issuer(ed_key, kid="k1"), ed_issuer(ed25519.Ed25519PrivateKey.generate(), "k2")
    jwks_server.document = {"keys": [old.public_jwk(), new.public_jwk()]}
    verifier = JWTVerifier.from_jwks_url(jwks_server.url, ["EdDSA"], jwks_refresh_interval=300,
                                         clock=clock)
    token = old.issue("alice")
    assert verifier.verify(token)["sub"] == "alice"
    jwks_server.document = {"keys": [new.public_jwk()]}
    clock.now += 301
    with pytest.raises(TokenUnknownKey):
        verifier.verify(token)


# ------------------------------------------------------------ messages, cache


def test_error_messages_never_contain_the_token(ed_key: Any, rsa_key: Any) -> None:
    verifier = JWTVerifier(ed_key.public_key(), ["EdDSA"], audience="flight", issuer="auth")
    now = int(time.time())
    base = {"sub": "alice", "aud": "flight", "iss": "auth", "exp": now + 600}
    tokens = [
        jwt.encode({**base, "exp": now - 600}, ed_key, algorithm="EdDSA"),
        jwt.encode({**base, "aud": "x"}, ed_key, algorithm="EdDSA"),
        jwt.encode({**base, "iss": "x"}, ed_key, algorithm="EdDSA"),
        jwt.encode({**base, "nbf": now + 600}, ed_key, algorithm="EdDSA"),
        jwt.encode({"sub": "alice"}, ed_key, algorithm="EdDSA"),
        jwt.encode(base, ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA"),
        jwt.encode(base, rsa_key, algorithm="RS256"),
        jwt.encode({**base, "exp": "soon"}, ed_key, algorithm="EdDSA"),
    ]
    for token in tokens:
        with pytest.raises(TokenError) as caught:
            verifier.verify(token)
        message = str(caught.value)
        assert token not in message
        assert not any(part and part in message for part in token.split("."))


def test_unknown_kid_is_shortened_in_the_error_message(ed_key: Any) -> None:
    verifier = JWTVerifier({"keys": [ed_issuer(ed_key, kid="k1").public_jwk()]}, ["EdDSA"])
    with pytest.raises(TokenUnknownKey) as caught:
        verifier.verify(ed_issuer(ed_key, kid="k" * 500).issue("alice"))
    assert "k" * 61 not in str(caught.value)


def test_cache_returns_the_same_claims_for_a_repeated_token(ed_key: Any) -> None:
    verifier = JWTVerifier(ed_key.public_key(), ["EdDSA"])
    token = ed_issuer(ed_key).issue("alice")
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    assert verifier.verify(token.encode()) is first


def test_cache_hit_still_honours_revocation(ed_key: Any) -> None:
    revoked = RevocationList()
    verifier = JWTVerifier(ed_key.public_key(), ["EdDSA"], revoked=revoked)
    token = ed_issuer(ed_key).issue("alice")
    claims = verifier.verify(token)
    revoked.revoke(claims["jti"], until=claims["exp"])
    with pytest.raises(TokenRevoked):
        verifier.verify(token)


def test_cache_is_bounded(ed_key: Any) -> None:
    verifier = JWTVerifier(ed_key.public_key(), ["EdDSA"], cache_size=1)
    issuer = ed_issuer(ed_key)
    first_token, second_token = issuer.issue("alice"), issuer.issue("bob")
    first = verifier.verify(first_token)
    verifier.verify(second_token)
    assert verifier.verify(first_token) is not first
    assert verifier.verify(first_token) == first


def test_cache_can_be_disabled(ed_key: Any) -> None:
    verifier = JWTVerifier(ed_key.public_key(), ["EdDSA"], cache_size=0)
    token = ed_issuer(ed_key).issue("alice")
    assert verifier.verify(token) is not verifier.verify(token)


# ------------------------------------------------------- one constructor per source


def test_each_source_of_keys_has_its_own_constructor(
    ed_key: Any, secret: bytes, tmp_path: Path, jwks_server: JWKSServer
) -> None:
    issuer = ed_issuer(ed_key, kid="k1")
    token = issuer.issue("alice")
    pem = ed_key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    jwks = {"keys": [issuer.public_jwk()]}
    (tmp_path / "keys").write_text(json.dumps(jwks))  # no .json: the name is not guessed at
    jwks_server.document = jwks
    verifiers = [
        JWTVerifier(ed_key.public_key(), ["EdDSA"]),
        JWTVerifier(jwks, ["EdDSA"]),
        JWTVerifier.from_public_key(pem, ["EdDSA"]),
        JWTVerifier.from_public_key(pem.decode(), ["EdDSA"]),
        JWTVerifier.from_public_key([ed_key.public_key(), pem], ["EdDSA"]),
        JWTVerifier.from_jwks(jwks, ["EdDSA"]),
        JWTVerifier.from_jwks_file(tmp_path / "keys", ["EdDSA"]),
        JWTVerifier.from_jwks_file(str(tmp_path / "keys"), ["EdDSA"]),
        JWTVerifier.from_jwks_url(jwks_server.url, ["EdDSA"]),
    ]
    assert all(v.verify(token)["sub"] == "alice" for v in verifiers)
    hs = JWTIssuer(secret, "HS256").issue("bob")
    assert JWTVerifier.from_secret(secret, ["HS256"]).verify(hs)["sub"] == "bob"
    assert JWTVerifier.from_secret(secret.hex(), ["HS256"]).verify(
        JWTIssuer(secret.hex(), "HS256").issue("bob"))["sub"] == "bob"


@pytest.mark.parametrize("keys", [
    "https://login.example/jwks.json", "jwks.json", Path("jwks.json"),
    "a-shared-secret-of-well-over-thirty-two-bytes", b"\x00" * 32,
    b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
])
def test_the_plain_constructor_refuses_what_it_would_have_to_guess(keys: Any) -> None:
    with pytest.raises(TypeError, match=r"from_public_key.*from_secret.*from_jwks_file"):
        JWTVerifier(keys, ["EdDSA", "HS256"])


def test_a_secret_is_never_taken_for_a_key_nor_a_key_for_a_secret(rsa_key: Any) -> None:
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="not a PEM public key"):
        JWTVerifier.from_public_key("a-shared-secret-of-well-over-thirty-two-bytes", ["HS256"])
    with pytest.raises(ValueError, match="must not be a PEM"):
        JWTVerifier.from_secret(pem, ["HS256"])
    with pytest.raises(ValueError, match="could not load"):
        JWTVerifier.from_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
                                    ["RS256"])


def test_a_jwks_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        JWTVerifier.from_jwks_url(f"file://{tmp_path}/jwks.json", ["EdDSA"])
