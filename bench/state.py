"""What the security state shared by several nodes costs, per call and per login.

``python -m bench.state [--redis URL] [--calls 2000] [--rounds 6]``

Without ``--redis`` a ``redis-server`` is started on a free loopback port (it must be
installed). Three parts, all in this process:

* **per call**, the check each piece of state adds to every token-bearing call, in
  microseconds per lookup (median of ``--rounds`` rounds of ``--calls`` lookups):
  the revocation list in memory, the copy of the list kept in Redis
  (``RedisRevocations``), the copy of a list at a URL (``RevocationView``), and the
  session's password fingerprint (``PasswordStore.fingerprint``); plus the Redis
  commands that ``--calls`` token checks send (0 is the design);
* **per call, end to end**: DoAction round trips of a logged-in client on a
  flight_secure server whose revocations are in memory (A) or in Redis (B), in ABBA
  pairs, reported as B/A per pair, median [min-max] (see
  /work/shared/BENCHMARKING.md: a ratio within about 0.9-1.2 is noise);
* **per login**: a ``LoginGuard`` check (its ``verify`` returns at once, so no bcrypt)
  with counters in memory and in Redis, microseconds per login, and the Redis
  commands one login sends.

The background cost of a node is stated, not measured: one ``GET`` per
``refresh_interval`` (1 s) for the Redis list, one conditional GET per 30 s for a URL.
"""

from __future__ import annotations

import argparse
import http.server
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.flight as pa_flight

import flight_secure
from flight_secure.auth.basic import BasicServerAuthHandler
from flight_secure.auth.guard import LoginGuard
from flight_secure.auth.passwords import PasswordStore
from flight_secure.auth.redis_connection import connect
from flight_secure.auth.redis_counters import RedisLoginCounters
from flight_secure.auth.redis_revocations import RedisRevocations
from flight_secure.auth.revocation import RevocationList
from flight_secure.auth.revocation_view import RevocationView

#: What a client sends to connect and look at the statistics, left out of the counts.
CONNECTING = frozenset({"info", "client|setinfo", "client", "hello", "ping", "select", "auth"})
CLAIMS = {"jti": "a-token-id", "sub": "alice", "iat": int(time.time()), "exp": 2**31}


def start_redis(folder: Path) -> tuple[str, subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed; give --redis URL")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                "", "--appendonly", "no", "--dir", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = connect(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    client.close()
    return url, process


def commands(url: str) -> dict[str, int]:
    """Calls so far per Redis command (those a script runs included), without the
    ones this look-up itself sends (:data:`CONNECTING`)."""
    client = connect(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
            if name.removeprefix("cmdstat_") not in CONNECTING}


def sent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: calls - before.get(name, 0) for name, calls in after.items()
            if calls != before.get(name, 0)}


def per_lookup_us(lookup: Callable[[], Any], calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the microseconds one ``lookup()`` takes."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            lookup()
        times.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(times)


class ListSite(http.server.BaseHTTPRequestHandler):
    body = b'{"jti": "other", "until": null}\n'

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def lookups(url: str, args: argparse.Namespace) -> None:
    memory = RevocationList()
    memory.revoke("other")
    redis_list = RedisRevocations(connect(url), refresh_interval=60, max_staleness=120)
    redis_list.revoke("other")
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ListSite)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    view = RevocationView.from_url(f"http://127.0.0.1:{site.server_address[1]}/r",
                                   refresh_interval=60, max_staleness=120)
    store = PasswordStore(rounds=4)
    store.add("alice", "pw")
    before = commands(url)
    rows = [("revocation list in memory", lambda: memory.rejects(CLAIMS)),
            ("revocation list in Redis (local copy)", lambda: redis_list.rejects(CLAIMS)),
            ("revocation list at a URL (local copy)", lambda: view.rejects(CLAIMS)),
            ("session password fingerprint", lambda: store.fingerprint("alice"))]
    print("per call: one check, microseconds (median)")
    for name, lookup in rows:
        print(f"  {name:40s} {per_lookup_us(lookup, args.calls, args.rounds):8.2f}")
    print(f"  Redis commands sent by {args.rounds * args.calls * 4} checks: "
          f"{sum(sent(before, commands(url)).values())}")
    redis_list.close()
    view.close()
    site.shutdown()
    site.server_close()


class Whoami(flight_secure.FlightServerBase):
    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        yield context.peer_identity()


def end_to_end(url: str, args: argparse.Namespace) -> None:
    store = PasswordStore(rounds=4)
    store.add("alice", "pw")
    sides = {}
    for side, revoked in (("A", RevocationList()), ("B", RedisRevocations(connect(url)))):
        handler = BasicServerAuthHandler(store, revoked=revoked)
        server = Whoami(location="grpc://127.0.0.1:0", auth_handler=handler)
        client = pa_flight.connect(f"grpc://127.0.0.1:{server.port}")
        options = pa_flight.FlightCallOptions(
            headers=[client.authenticate_basic_token("alice", "pw")], timeout=10)
        sides[side] = (server, client, options, handler, revoked)

    def seconds(side: str) -> float:
        _, client, options, _, _ = sides[side]
        started = time.perf_counter()
        for _ in range(args.calls // 4):
            list(client.do_action("x", options))
        return time.perf_counter() - started

    ratios, times = [], {"A": [], "B": []}
    for pair in range(args.rounds + 1):
        order = ("A", "B") if pair % 2 == 0 else ("B", "A")
        got = {side: seconds(side) for side in order}
        if pair == 0:
            continue  # warm-up
        ratios.append(got["B"] / got["A"])
        for side in got:
            times[side].append(got[side] / (args.calls // 4) * 1e6)
    print("per call, end to end: DoAction round trip with a session token")
    print(f"  A revocations in memory: {statistics.median(times['A']):8.1f} us")
    print(f"  B revocations in Redis:  {statistics.median(times['B']):8.1f} us")
    print(f"  B/A per pair: {statistics.median(ratios):.2f} "
          f"[{min(ratios):.2f}-{max(ratios):.2f}]")
    for server, client, _, handler, revoked in sides.values():
        client.close()
        server.shutdown()
        handler.close()
        revoked.close()


def logins(url: str, args: argparse.Namespace) -> None:
    counters = RedisLoginCounters(connect(url))
    print("per login (the guard alone, no bcrypt), microseconds (median)")
    for name, guard in (("counters in memory", LoginGuard(max_failures_per_user=10**9)),
                        ("counters in Redis", LoginGuard(counters=counters,
                                                         max_failures_per_user=10**9))):
        count = max(1, args.calls // 10)
        us = per_lookup_us(lambda g=guard: g.check("alice", "10.0.0.1", lambda: True),
                           count, args.rounds)
        print(f"  {name:40s} {us:8.1f}")
        guard.close()
    before = commands(url)
    guard = LoginGuard(counters=counters)
    guard.check("alice", "10.0.0.1", lambda: True)
    guard.close()
    one = sent(before, commands(url))
    scripts = one.pop("evalsha", 0) + one.pop("eval", 0)
    print(f"  Redis round trips of one login: {scripts} scripts, which run "
          f"{sum(one.values())} commands inside Redis")
    counters.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.state", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", metavar="URL", help="a Redis to use (default: start one)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process = None
        url = args.redis
        if url is None:
            url, process = start_redis(Path(folder))
        try:
            lookups(url, args)
            end_to_end(url, args)
            logins(url, args)
        finally:
            if process is not None:
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    main()
