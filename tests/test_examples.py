"""Every program in examples/ runs on its own, exits 0 and says what it showed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT = 60

#: example -> lines (or parts of lines) its output must contain.
EXPECTED = {
    "basic_auth.py": [
        "authenticate_basic_token: the server saw alice (basic)",
        "BasicAuth handshake:      the server saw alice (basic)",
        "a wrong password is refused: invalid username or password",
    ],
    "jwt_jwks.py": [
        "Bearer header:       the server saw alice with roles ['analyst']",
        "after key rotation:  the server saw bob with roles ['admin']",
        "a token signed by an unknown key is refused: invalid token",
        "Handshake with JWT:  the server saw carol with roles ['viewer']",
    ],
    "mtls.py": [
        "alice: the server saw alice (certificate CN=alice",
        "bob: the server saw bob (certificate CN=bob",
        "carol: refused: client certificate identity 'carol' is not allowed",
    ],
    "pyarrow_client.py": [
        "logged in as alice",
        "uploaded 2 rows as 'weather'",
        "listed weather: 2 rows",
        "read back 2 rows; identical: True",
    ],
    "secure_pyarrow_server.py": [
        "authenticate_basic_token: report sales for alice (admin,analyst)",
        "purge done by alice",
        "BasicClientAuthHandler:   report daily for bob",
        "audit: call refused: who=bob scheme=basic rpc=DoAction action=purge",
        "bob may not purge: permission denied: action 'purge' requires role admin",
        "audit: login refused: who=alice scheme=basic peer=- reason=bad_credentials",
        "a wrong password is refused: invalid username or password",
    ],
    "multi_node.py": [
        "node-1 describes 'trips': 5 rows in 2 parts",
        "node-1 serves its part to alice",
        "node-2 serves its part to alice",
        "alice has all 5 rows, 25.0 km",
    ],
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_and_reports(name: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in EXPECTED[name]:
        assert expected in result.stdout, f"{expected!r} not in:\n{result.stdout}"
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing left behind


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_starts_with_a_header_saying_what_and_how(name: str) -> None:
    header = (EXAMPLES / name).read_text().split("\n\n", 1)[0]
    assert header.startswith(f"# {name}:") and f"Run: python examples/{name}" in header
