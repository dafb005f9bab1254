"""The cost of serving SQL: a SELECT through ``serve``'s Flight SQL against local DuckDB.

``python -m bench.sql [--size-mb 256] [--rounds 8] [--quick] [--sql QUERY]``

A Parquet file of ``--size-mb`` MiB (bench.data's "str" table: int64, float64 and a
string column) is written to a temporary folder; ``flight-secure serve`` serves that
folder in its own process (TLS, Basic auth, Flight SQL on). Each round runs the same
query twice, ABBA-ordered pair by pair: *served*, through Arrow Go's ADBC Flight SQL
driver (the result read batch by batch and dropped), and *local*, DuckDB in this
process reading the file (``to_arrow_reader``, read the same way). Throughput is the
Parquet file's size over the wall time; the row reported is served/local per pair,
median [min-max], with the absolute figures. The goal for this machine is >= 0.7.
A second row is the cost of one statement: milliseconds per ADBC execute of a query
of a 10-row dataset, ``small`` (``--small-sql``; ``--calls`` of them, after a
warm-up), median [min-max]; an ADBC execute is three calls (prepare, GetFlightInfo,
DoGet).
Run it on a quiet machine: a shared one moves both sides by 2x.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.data import DataSpec, make_table

QUERY = "SELECT * FROM bench"
SMALL_QUERY = "SELECT name FROM small WHERE id = 3"
PASSWORD = "bench-password"
START_TIMEOUT = 60.0


def write_dataset(folder: Path, size_mb: int) -> Path:
    data = folder / "data"
    data.mkdir()
    path = data / "bench.parquet"
    pq.write_table(make_table(DataSpec("str", size_mb, 2048)), path)
    pq.write_table(pa.table({"id": range(10), "name": [f"n{i}" for i in range(10)]}),
                   data / "small.parquet")
    return path


def start_serve(folder: Path, engine: str = "python") -> tuple[subprocess.Popen, str]:
    from flight_secure.auth.passwords import PasswordStore

    store = PasswordStore()
    store.add("bench", PASSWORD)
    store.save(folder / "users.htpasswd")
    process = subprocess.Popen(
        [sys.executable, "-m", "flight_secure", "serve", "--data", "data", "--port", "0",
         "--users", "users.htpasswd", "--sql", "on", "--quiet", "--engine", engine],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + START_TIMEOUT
    for line in process.stdout:
        if line.startswith("listening on "):
            return process, line.split("listening on ", 1)[1].strip()
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError("serve did not start")


def served_seconds(connection: object, query: str) -> tuple[float, int]:
    started = time.perf_counter()
    rows = 0
    with connection.cursor() as cursor:
        cursor.execute(query)
        for batch in cursor.fetch_record_batch():
            rows += batch.num_rows
    return time.perf_counter() - started, rows


def small_milliseconds(connection: object, query: str, calls: int) -> list[float]:
    """Milliseconds of each of ``calls`` executes of ``query``, its rows fetched."""
    times = []
    with connection.cursor() as cursor:
        for _ in range(calls):
            started = time.perf_counter()
            cursor.execute(query)
            cursor.fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return times


def local_seconds(path: Path, query: str) -> tuple[float, int]:
    import duckdb

    started = time.perf_counter()
    rows = 0
    with duckdb.connect() as connection:
        connection.read_parquet(str(path)).create_view("bench")
        for batch in connection.sql(query).to_arrow_reader(128 * 1024):
            rows += batch.num_rows
    return time.perf_counter() - started, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=8, help="ABBA pairs (default 8)")
    parser.add_argument("--quick", action="store_true", help="32 MB, 3 pairs: a smoke run")
    parser.add_argument("--sql", default=QUERY, help=f"the query (default {QUERY!r})")
    parser.add_argument("--small-sql", default=SMALL_QUERY,
                        help=f"the one-statement-cost query (default {SMALL_QUERY!r})")
    parser.add_argument("--calls", type=int, default=100,
                        help="executes of --small-sql measured (default 100)")
    parser.add_argument("--engine", choices=("python", "arrow"), default="python",
                        help="serve's engine (default python)")
    args = parser.parse_args(argv)
    size_mb, rounds = (32, 3) if args.quick else (args.size_mb, args.rounds)

    import adbc_driver_flightsql.dbapi as flightsql
    from adbc_driver_flightsql import DatabaseOptions

    with tempfile.TemporaryDirectory(prefix="bench-sql-") as tmp:
        folder = Path(tmp)
        path = write_dataset(folder, size_mb)
        file_mb = path.stat().st_size / 2**20
        process, location = start_serve(folder, args.engine)
        try:
            connection = flightsql.connect(location, autocommit=True, db_kwargs={
                "username": "bench", "password": PASSWORD,
                DatabaseOptions.TLS_ROOT_CERTS.value: (folder / "certs/ca.pem").read_text()})
            ratios, served, local = [], [], []
            served_seconds(connection, args.sql)  # warm-up: caches, connections
            local_seconds(path, args.sql)
            for pair in range(rounds):
                order = ("served", "local") if pair % 2 == 0 else ("local", "served")
                times = {}
                for side in order:
                    seconds, rows = (served_seconds(connection, args.sql) if side == "served"
                                     else local_seconds(path, args.sql))
                    times[side] = seconds
                served.append(file_mb / times["served"])
                local.append(file_mb / times["local"])
                ratios.append(times["local"] / times["served"])
                print(f"pair {pair + 1}: served {served[-1]:.0f} MB/s, local "
                      f"{local[-1]:.0f} MB/s, ratio {ratios[-1]:.2f} ({rows} rows)",
                      file=sys.stderr)
            small_milliseconds(connection, args.small_sql, 5)  # warm-up
            small = small_milliseconds(connection, args.small_sql, args.calls)
            connection.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=START_TIMEOUT)
    print(f"sql_select {args.sql!r} over a {file_mb:.0f} MiB Parquet file, {rounds} ABBA "
          f"pairs, {os.cpu_count()} cores")
    print(f"  served (Flight SQL, TLS, ADBC, {args.engine} engine) / local DuckDB: median "
          f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] "
          f"(goal >= 0.70)")
    print(f"  served {statistics.median(served):.0f} MB/s, local "
          f"{statistics.median(local):.0f} MB/s (file MiB per second, medians)")
    print(f"sql_statement {args.small_sql!r}: {statistics.median(small):.1f} ms per ADBC "
          f"execute [{min(small):.1f}-{max(small):.1f}], {len(small)} executes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
