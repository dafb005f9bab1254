"""docs/DEPLOY.md's commands run as written, with only addresses and ports swapped
for the test's: the Redis configuration, the signing key, two replicas, and the
revocations and user removal that end a session on both.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, free_port, wait_until
from redis_server import NO_CLIENT, NO_SERVER

from flight_secure.auth.passwords import PasswordStore
from flight_secure.auth.redis_revocations import REFRESH_INTERVAL
from flight_secure.certs import CertificateAuthority
from flight_secure.cli import build_parser, main
from flight_secure.cli.serve import Running, build_server

DOC = (ROOT / "docs" / "DEPLOY.md").read_text()
DOC_REDIS = "redis://10.0.0.5:6379/0"
PASSWORD = "the-redis-password-42"
USERS = {"alice": "alice-pw", "dave": "dave-pw"}


def block_after(marker: str, language: str = "bash") -> str:
    """The first fenced block of ``language`` after ``marker`` in the guide."""
    start = DOC.index(marker)
    found = re.search(rf"```{language}\n(.*?)```", DOC[start:], re.S)
    assert found is not None, f"no {language} block after {marker!r}"
    return found.group(1)


def commands(block: str) -> list[list[str]]:
    """The commands of a shell block: comment lines dropped, continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line, comments=True) for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A node's folder as the guide assumes it, with a running Redis configured as the
    guide says; the current directory."""
    pytest.importorskip("redis", reason=NO_CLIENT)
    if shutil.which("redis-server") is None:
        pytest.skip(NO_SERVER)
    store = PasswordStore(rounds=4)
    for user, password in USERS.items():
        store.add(user, password)
    store.save(tmp_path / "users.htpasswd")
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"n": [1, 2, 3]}), tmp_path / "data" / "t.parquet")
    ca = CertificateAuthority.create()
    ca.issue_server().write(tmp_path / "tls.crt", tmp_path / "tls.key")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "redis.pw").write_text(PASSWORD + "\n")
    (tmp_path / "redis.pw").chmod(0o600)
    port = free_port()
    config = block_after("One Redis (7 or later) holds", "")
    config = config.replace("port 6379", f"port {port}").replace("bind 10.0.0.5",
                                                                 "bind 127.0.0.1")
    config = config.replace("<the password in redis.pw>", PASSWORD)
    (tmp_path / "redis.conf").write_text(config)
    (tmp_path / "redis.conf").chmod(0o600)
    started = re.search(r"started with: (.*)", config)
    assert started is not None
    redis = subprocess.Popen(shlex.split(started.group(1)), cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    try:
        wait_until(lambda: _answers(port), 10)
        yield tmp_path
    finally:
        redis.terminate()
        redis.wait(10)


def _answers(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, password=PASSWORD, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def swapped(command: list[str]) -> list[str]:
    """``command`` without its program name, Redis at the test's address."""
    url = os.environ["REDIS_URL"]
    assert command[0] == "flight-secure"
    return [url if arg == DOC_REDIS else arg for arg in command[1:]]


def replicas(count: int) -> list[Running]:
    """``count`` nodes started with the guide's replica command (any free port)."""
    [command] = commands(block_after("Then, on every node"))
    args = build_parser().parse_args([*swapped(command), "--port", "0"])
    return [build_server(args) for _ in range(count)]


def session_works(node: Running, header: tuple[bytes, bytes]) -> bool:
    with flight.connect(f"grpc+tls://localhost:{node.connection.port}",
                        tls_root_certs=Path("ca.pem").read_bytes()) as client:
        options = flight.FlightCallOptions(headers=[header], timeout=10)
        try:
            list(client.list_flights(options=options))
        except flight.FlightUnauthenticatedError:
            return False
    return True


def login(node: Running, user: str) -> tuple[bytes, bytes]:
    with flight.connect(f"grpc+tls://localhost:{node.connection.port}",
                        tls_root_certs=Path("ca.pem").read_bytes()) as client:
        return client.authenticate_basic_token(user, USERS[user])


def test_the_guides_replicas_share_sessions_and_their_ends(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [keygen] = commands(block_after("Make the session signing key"))
    assert main(swapped(keygen)) == 0
    nodes = replicas(2)
    try:
        alice, dave = login(nodes[0], "alice"), login(nodes[1], "dave")
        assert all(session_works(node, alice) and session_works(node, dave) for node in nodes)

        by_user, by_token = commands(block_after("anywhere is refused everywhere"))
        assert main(swapped(by_user)) == 0
        wait_until(lambda: not any(session_works(node, alice) for node in nodes),
                   REFRESH_INTERVAL + 5)
        assert by_token[-2:] == ["<", "token.txt"]
        monkeypatch.setattr("sys.stdin", io.StringIO(dave[1].decode().split()[-1]))
        assert main(swapped(by_token[:-2])) == 0
        wait_until(lambda: not any(session_works(node, dave) for node in nodes),
                   REFRESH_INTERVAL + 5)

        dave = login(nodes[1], "dave")  # a new session: only the old token was revoked
        assert all(session_works(node, dave) for node in nodes)
        [remove] = commands(block_after("loses access on every node within that interval"))
        assert remove[-2:] == ["--user", "dave"]
        assert main(swapped(remove)) == 0
        for node in nodes:
            node.reload_changed_files()  # what serve's loop does every 2 s
        assert not any(session_works(node, dave) for node in nodes)
    finally:
        for node in nodes:
            node.close()
