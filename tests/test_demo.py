"""``flight-secure demo``: runs end to end, shows who the server saw, and a refusal."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

DEMO_BUDGET = 30.0  # the demo takes a few seconds; the margin is for loaded CI machines


@pytest.fixture(scope="module")
def demo() -> tuple[subprocess.CompletedProcess[str], float]:
    """One run of the demo through the console script (or ``python -m``), and its duration."""
    script = Path(sys.executable).with_name("flight-secure")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "flight_secure"]
    started = time.monotonic()
    result = subprocess.run([*command, "demo"], capture_output=True, text=True,
                            timeout=DEMO_BUDGET * 2, check=False)
    return result, time.monotonic() - started


def test_demo_shows_alice_on_each_call_and_the_refusals(demo) -> None:
    result, elapsed = demo
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for rpc in ("DoPut", "ListFlights", "DoGet"):
        assert f"server saw alice (basic+mtls) on {rpc}" in out
    assert "read 3 rows back, identical" in out
    assert "login refused for alice" in out
    assert "refused, as it should be: invalid username or password" in out
    assert "refused, as it should be: the token was issued to another client certificate" in out
    assert out.rstrip().endswith("done.")
    assert "Traceback" not in result.stderr
    assert elapsed < DEMO_BUDGET


def test_demo_prints_no_secret(demo) -> None:
    result, _ = demo
    text = result.stdout + result.stderr
    assert "Bearer" not in text and "eyJ" not in text  # no token (JWTs start with eyJ)
    assert "PRIVATE KEY" not in text
