"""The atheris harnesses of tests/fuzz, run for a bounded number of iterations (slow)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, report

HARNESSES = {"fuzz_framing.py": 300_000, "fuzz_auth.py": 300_000}
#: A run must finish within this many seconds (atheris runs ~5,000-10,000 inputs/s here).
SECONDS = 600


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 60)
@pytest.mark.parametrize("harness", sorted(HARNESSES))
def test_harness_runs_clean(harness: str, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
    runs = HARNESSES[harness]
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "fuzz" / harness), f"-runs={runs}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS, check=False)
    output = done.stdout + done.stderr
    finished = re.search(r"Done (\d+) runs in (\d+) second", output)
    errors = re.findall(r"^(\w+(?:Error|Exception): .*)$", output, re.MULTILINE)
    progress = re.findall(r"^#(\d+)\s", output, re.MULTILINE)  # libFuzzer's status lines
    report(capsys, f"atheris {harness}: " + (
        f"{finished[1]} runs in {finished[2]} s, no finding" if finished else
        f"finding after more than {progress[-1] if progress else 0} runs: "
        f"{errors[-1] if errors else output[-300:]}"))
    finding = output.partition("Uncaught Python exception: ===")[2].partition("\n==")[0]
    assert done.returncode == 0, finding or output[-3000:]
    assert finished and int(finished[1]) == runs
