"""``flight-secure serve`` as users run it, reached by the Go ADBC Flight SQL driver."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("duckdb")
adbc = pytest.importorskip("adbc_driver_flightsql.dbapi")
from adbc_driver_flightsql import DatabaseOptions  # noqa: E402

from flight_secure.auth.passwords import PasswordStore  # noqa: E402

START_TIMEOUT = 60.0


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"city": ["Oslo", "Lima", "Oslo"], "n": [1, 2, 3]}),
                   data / "visits.parquet")
    store = PasswordStore()
    store.add("alice", "alice-password")
    store.add("admin", "admin-password")
    store.save(tmp_path / "users.htpasswd")
    return tmp_path


@pytest.fixture
def serve(folder: Path) -> Iterator[object]:
    processes: list[subprocess.Popen] = []

    def start(*extra: str) -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "flight_secure", "serve", "--data", "data", "--port", "0",
             "--users", "users.htpasswd", "--quiet", *extra],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        processes.append(process)
        for line in process.stdout:
            if line.startswith("listening on "):
                return line.split("listening on ", 1)[1].strip()
        raise AssertionError(f"serve did not start (exit {process.wait()})")

    yield start
    for process in processes:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()


def connect(folder: Path, location: str) -> object:
    return adbc.connect(location, autocommit=True, db_kwargs={
        "username": "alice", "password": "alice-password",
        DatabaseOptions.TLS_ROOT_CERTS.value: (folder / "certs" / "ca.pem").read_text()})


def test_serve_answers_sql_over_its_folder(folder: Path, serve) -> None:
    location = serve()
    with connect(folder, location) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT city, sum(n) FROM visits GROUP BY city ORDER BY city")
        assert cursor.fetchall() == [("Lima", 2), ("Oslo", 4)]


def test_the_readme_adbc_example_runs_as_written(folder: Path, serve,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### From Python (ADBC)", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    location = serve()
    monkeypatch.chdir(folder)
    exec(code.replace("grpc+tls://localhost:8815", location),  # noqa: S102
         {"PASSWORD": "admin-password", "__name__": "readme"})
    assert capsys.readouterr().out.strip() == "[('Lima', 1), ('Oslo', 2)]"


def test_serve_with_sql_off_says_so(folder: Path, serve) -> None:
    location = serve("--sql", "off")
    with connect(folder, location) as connection, connection.cursor() as cursor, \
            pytest.raises(adbc.Error, match="Flight SQL is off"):
        cursor.execute("SELECT 1")


def test_serve_refuses_a_malformed_sql_memory_limit(folder: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flight_secure", "serve", "--data", "data", "--port", "0",
         "--users", "users.htpasswd", "--sql-memory", "lots"],
        cwd=folder, capture_output=True, text=True, timeout=START_TIMEOUT)
    assert result.returncode != 0
    assert "lots" in result.stderr and "Traceback" not in result.stderr
