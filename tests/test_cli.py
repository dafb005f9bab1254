"""The ``flight-secure`` command: help, error contract, users, token and certs subcommands."""

from __future__ import annotations

import io
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from flight_secure.auth.passwords import PasswordStore
from flight_secure.auth.tokens import JWTVerifier
from flight_secure.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).with_name("flight-secure")
HTPASSWD = shutil.which("htpasswd")
TIMEOUT = 60

COMMAND_PATHS = [
    [], ["demo"], ["serve"], ["users"], ["users", "add"], ["users", "remove"],
    ["users", "list"], ["token"], ["token", "issue"], ["certs"],
]


def cli(*args: str, stdin: str | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    """``python -m flight_secure ARGS`` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "flight_secure", *args], input=stdin,
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=TIMEOUT,
                          check=False)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``main(ARGS)`` in this process, in ``tmp_path``, with ``stdin`` as standard input."""

    def invoke(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        status = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), status, out, err)

    return invoke


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error:" in lines[0] and "Traceback" not in result.stderr
    return lines[0]


# ---------------------------------------------------------------------- help and errors


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "top")
def test_every_command_has_help(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: flight-secure")


def test_module_and_console_script_both_run_the_command() -> None:
    assert "serve" in cli("--help").stdout
    assert_one_line_error(cli("serve", "--bogus"), 2)
    if not CONSOLE_SCRIPT.exists():
        pytest.skip("the flight-secure console script is not installed in this environment")
    result = subprocess.run([str(CONSOLE_SCRIPT), "--version"], capture_output=True, text=True,
                            timeout=TIMEOUT, check=False)
    assert result.returncode == 0 and result.stdout.startswith("flight-secure ")


@pytest.mark.parametrize("args", [
    ["serve", "--data", ".", "--bogus"],
    ["users", "add", "--user"],
    ["token", "issue", "--alg", "none", "--key", "k", "--sub", "s"],
    ["no-such-command"],
    [],
], ids=["unknown-flag", "flag-without-value", "bad-choice", "unknown-command", "no-command"])
def test_usage_error_is_one_line_and_exit_2(args: list[str], run) -> None:
    line = assert_one_line_error(run(*args), 2)
    assert "--help" in line


@pytest.mark.parametrize("args", [
    ["users", "list", "--file", "missing.htpasswd"],
    ["users", "remove", "--file", "missing.htpasswd", "--user", "x"],
    ["token", "issue", "--key", "missing.key", "--alg", "EdDSA", "--sub", "alice"],
], ids=["users-list", "users-remove", "token-key"])
def test_missing_file_is_one_line_naming_it(args: list[str], run) -> None:
    assert "missing" in assert_one_line_error(run(*args), 1)


@pytest.mark.parametrize("args", [
    ["serve", "--data", "missing-folder"],
    ["serve", "--data", ".", "--auth", "jwt", "--jwks", "missing.json"],
    ["serve", "--data", ".", "--permissions", "missing.ini", "--port", "0", "--auth", "none",
     "--certs-dir", "certs-for-missing-test"],
], ids=["data", "jwks", "permissions"])
def test_serve_with_a_missing_file_stops_before_making_anything(args: list[str],
                                                                 tmp_path: Path) -> None:
    line = assert_one_line_error(cli(*args, cwd=tmp_path), 1)
    assert "missing" in line
    assert not (tmp_path / "certs-for-missing-test").exists()


# ------------------------------------------------------------------------------- users


def test_users_add_list_remove_round_trip(run, tmp_path: Path) -> None:
    users = tmp_path / "users.htpasswd"
    for name, password in (("alice", "correct horse"), ("bob", "battery staple")):
        added = run("users", "add", "--file", str(users), "--user", name, "--password-stdin",
                    "--rounds", "5", stdin=password + "\n")
        assert added.returncode == 0, added.stderr
        assert password not in added.stdout + added.stderr
    assert run("users", "list", "--file", str(users)).stdout.split() == ["alice", "bob"]
    assert (users.stat().st_mode & 0o777) == 0o600
    store = PasswordStore.load(users)
    assert store.verify("alice", "correct horse") and not store.verify("alice", "wrong")

    assert run("users", "remove", "--file", str(users), "--user", "bob").returncode == 0
    assert run("users", "list", "--file", str(users)).stdout.split() == ["alice"]
    line = assert_one_line_error(run("users", "remove", "--file", str(users), "--user", "bob"), 1)
    assert "bob" in line


@pytest.mark.skipif(HTPASSWD is None, reason="htpasswd (apache2-utils) is not installed")
def test_apache_htpasswd_accepts_our_file_and_we_accept_its(run, tmp_path: Path) -> None:
    users = tmp_path / "users.htpasswd"
    run("users", "add", "--file", str(users), "--user", "alice", "--password-stdin",
        "--rounds", "5", stdin="s3cret!\n")
    check = [HTPASSWD, "-vb", str(users), "alice"]
    assert subprocess.run([*check, "s3cret!"], capture_output=True, check=False).returncode == 0
    assert subprocess.run([*check, "nope"], capture_output=True, check=False).returncode != 0

    subprocess.run([HTPASSWD, "-bB", "-C", "5", str(users), "carol", "from-apache"], check=True,
                   capture_output=True)
    assert run("users", "list", "--file", str(users)).stdout.split() == ["alice", "carol"]
    assert PasswordStore.load(users).verify("carol", "from-apache")


def test_users_add_changes_an_existing_password(run, tmp_path: Path) -> None:
    users = tmp_path / "users.htpasswd"
    for password in ("first-password", "second-password"):
        run("users", "add", "--file", str(users), "--user", "alice", "--password-stdin",
            "--rounds", "5", stdin=password)
    store = PasswordStore.load(users)
    assert store.users() == ["alice"] and store.verify("alice", "second-password")


def test_users_add_refuses_an_empty_password(run, tmp_path: Path) -> None:
    users = tmp_path / "users.htpasswd"
    result = run("users", "add", "--file", str(users), "--user", "alice", "--password-stdin",
                 stdin="\n")
    assert "empty" in assert_one_line_error(result, 1)
    assert not users.exists()


def test_users_add_without_a_terminal_says_to_use_password_stdin(tmp_path: Path) -> None:
    users = tmp_path / "users.htpasswd"
    result = subprocess.run(  # a new session: no controlling terminal for getpass to open
        [sys.executable, "-m", "flight_secure", "users", "add", "--file", str(users),
         "--user", "alice"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=TIMEOUT, check=False, start_new_session=True, cwd=ROOT)
    line = assert_one_line_error(result, 1)
    assert "--password-stdin" in line and "EOFError" not in line
    assert not users.exists()


def _prompted_add(users: Path, first: str, second: str) -> tuple[int, str]:
    """Run ``users add`` on a real pseudo-terminal, typing the two passwords at its prompts."""
    command = [sys.executable, "-m", "flight_secure", "users", "add", "--file", str(users),
               "--user", "alice", "--rounds", "5"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.execv(sys.executable, command)  # noqa: S606 (a fixed argv, no shell)
    seen, answers, answered = b"", [first, second], 0
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            try:
                chunk = os.read(fd, 1024) if ready else b""
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            # Answer each prompt once it is shown: getpass turns echo off (flushing any
            # input typed earlier) before it writes the prompt.
            if answered < len(answers) and seen.count(b"assword: ") > answered:
                os.write(fd, answers[answered].encode() + b"\n")
                answered += 1
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_users_add_prompts_twice_without_echo(tmp_path: Path) -> None:
    users = tmp_path / "users.htpasswd"
    status, transcript = _prompted_add(users, "typed-secret", "typed-secret")
    assert status == 0, transcript
    assert "typed-secret" not in transcript
    assert transcript.count("assword") >= 2
    assert PasswordStore.load(users).verify("alice", "typed-secret")


def test_users_add_refuses_two_different_passwords(tmp_path: Path) -> None:
    users = tmp_path / "users.htpasswd"
    status, transcript = _prompted_add(users, "one-secret", "another-secret")
    assert status == 1 and "differ" in transcript
    assert not users.exists()


# ------------------------------------------------------------------------------- token


def _write_key(path: Path, algorithm: str) -> object:
    """Write a signing key for ``algorithm`` to ``path``; return what verifies its tokens."""
    if algorithm == "HS256":
        secret = os.urandom(32).hex()
        path.write_text(secret + "\n")
        return secret.encode()
    key = {"EdDSA": ed25519.Ed25519PrivateKey.generate,
           "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
           "RS256": lambda: rsa.generate_private_key(65537, 2048)}[algorithm]()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key.public_key()


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256", "HS256"])
def test_token_issue_prints_a_token_the_verifier_accepts(algorithm: str, run,
                                                          tmp_path: Path) -> None:
    key_file = tmp_path / "signing.key"
    public = _write_key(key_file, algorithm)
    result = run("token", "issue", "--key", str(key_file), "--alg", algorithm, "--sub", "alice",
                 "--ttl", "120", "--aud", "flight", "--iss", "tests", "--claim",
                 'roles=["analyst"]', "--claim", "team=blue", "--kid", "k1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    made = JWTVerifier.from_secret if algorithm == "HS256" else JWTVerifier.from_public_key
    claims = made(public, [algorithm], audience="flight", issuer="tests").verify(lines[0])
    assert claims["sub"] == "alice" and claims["roles"] == ["analyst"]
    assert claims["team"] == "blue" and claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize(("claim", "needle"), [("novalue", "KEY=VALUE"), ("sub=bob", "sub")])
def test_token_issue_refuses_bad_claims(claim: str, needle: str, run, tmp_path: Path) -> None:
    key_file = tmp_path / "signing.key"
    _write_key(key_file, "EdDSA")
    result = run("token", "issue", "--key", str(key_file), "--alg", "EdDSA", "--sub", "alice",
                 "--claim", claim)
    assert needle in assert_one_line_error(result, 1)
    assert result.stdout == ""


def test_token_issue_refuses_a_key_of_another_algorithm(run, tmp_path: Path) -> None:
    key_file = tmp_path / "signing.key"
    _write_key(key_file, "EdDSA")
    result = run("token", "issue", "--key", str(key_file), "--alg", "ES256", "--sub", "alice")
    assert "ES256" in assert_one_line_error(result, 1)
    assert "PRIVATE" not in result.stderr


# ------------------------------------------------------------------------------- certs


def test_certs_subcommand_writes_a_dev_set(run, tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = run("certs", "--out", str(out), "--client", "alice")
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    assert names == {"ca.pem", "ca.key", "server.pem", "server.key", "alice.pem", "alice.key"}
    again = run("certs", "--out", str(out), "--client", "alice")
    assert again.returncode == 2 and "alice.pem" in again.stderr
