"""The grpcio internals flight_secure relies on, all in one place, each with its reason.

grpcio has no public way to do three things this package needs:

* :func:`read_past_end` confirms that a DoPut's request stream really ended: grpcio
  sometimes ends a cancelled call's messages as if the client had finished
  (grpc/grpc#33038), and one more read through the call's own operations settles
  it. Reaches ``ServicerContext._rpc_event.call.start_server_batch`` and
  ``cygrpc.ReceiveMessageOperation``. Without them the server waits out
  ``end_of_stream_grace`` (10 ms) at the end of every upload instead.
* :func:`release_call` frees a server-streaming call the client stopped reading:
  calls read in the caller's thread (grpcio's single-threaded mode) are freed only
  once all their events are read. Reaches ``call._state`` and
  ``call._consume_next_event``. Without them every abandoned call stays in memory
  (~20 KiB each).
* :func:`core_credentials` hands gRPC the credentials object inside
  ``grpc.dynamic_ssl_server_credentials(...)`` (its ``_credentials``), so that a
  ``grpc.ServerCredentials`` subclass can reload certificates. Without it,
  certificate rotation cannot be built (ReloadingServerCredentials raises).

The ``missing_*`` functions say which of these the installed grpcio lacks; the
canary tests call them, so an upgrade that removes one fails loudly, naming the
grpcio version, instead of silently costing a wait or a leak. In production a
missing internal is logged once (logger ``flight_secure.grpc``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import grpc

try:
    from grpc._cython import cygrpc
except ImportError:  # pragma: no cover - other grpcio builds
    cygrpc = None

log = logging.getLogger("flight_secure.grpc")

GRPCIO_VERSION = grpc.__version__

#: How many events a call can still owe its reader: one per pending operation.
_MAX_PENDING_EVENTS = 8

_reported: set[str] = set()
_report_lock = threading.Lock()


def _report_missing(what: str, consequence: str) -> None:
    with _report_lock:
        if what in _reported:
            return
        _reported.add(what)
    log.warning("grpcio %s has no %s: %s", GRPCIO_VERSION, what, consequence)


# ------------------------------------------------------------- server calls


def missing_in_server_context(grpc_context: Any) -> list[str]:
    """The internals :func:`read_past_end` needs that ``grpc_context`` (a live
    server call's ServicerContext) or grpcio lacks, by name."""
    missing = []
    if getattr(cygrpc, "ReceiveMessageOperation", None) is None:
        missing.append("grpc._cython.cygrpc.ReceiveMessageOperation")
    call = getattr(getattr(grpc_context, "_rpc_event", None), "call", None)
    if getattr(call, "start_server_batch", None) is None:
        missing.append("ServicerContext._rpc_event.call.start_server_batch")
    return missing


def read_past_end(grpc_context: Any, timeout: float) -> bool:
    """Ask gRPC for one more message of a server call whose messages ended; wait for
    the answer. True when it came within ``timeout`` seconds.

    The read goes through the connection's transport like the client's end of
    stream (or cancellation) did, and its answer comes back through the server's
    one event queue, so by then grpcio has also handled a cancellation that ended
    the messages. False at once where grpcio lacks the internals (logged once).
    """
    call = getattr(getattr(grpc_context, "_rpc_event", None), "call", None)
    start_batch = getattr(call, "start_server_batch", None)
    receive = getattr(cygrpc, "ReceiveMessageOperation", None)
    if start_batch is None or receive is None:
        _report_missing(
            "server-call batch operations",
            "every DoPut waits out end_of_stream_grace to confirm its end",
        )
        return False
    answered = threading.Event()

    def on_answer(event: Any) -> tuple[None, tuple]:
        answered.set()
        return None, ()  # grpcio's tag contract: no finished call, no callbacks

    try:
        start_batch((receive(0),), on_answer)
    except Exception:  # a call grpcio no longer takes operations on
        return False
    return answered.wait(timeout)


# ------------------------------------------------------------- client calls


def missing_in_client_call(call: Any) -> list[str]:
    """The internals :func:`release_call` needs that ``call`` (a client call read in
    the caller's thread) lacks, by name."""
    state = getattr(call, "_state", None)
    missing = [] if state is not None else ["call._state"]
    if state is not None:
        missing += [f"call._state.{name}" for name in ("code", "due") if not hasattr(state, name)]
    if getattr(call, "_consume_next_event", None) is None:
        missing.append("call._consume_next_event")
    return missing


def release_call(call: Any) -> None:
    """Cancel a server-streaming client ``call`` if it still runs and read its
    remaining events, so that grpcio frees it.

    A call read in the caller's thread (grpcio's single-threaded mode) is freed
    only once all its events have been read; after the caller stops reading,
    nothing else would read them. Calls of other kinds need nothing and are left
    alone.
    """
    state = getattr(call, "_state", None)
    consume = getattr(call, "_consume_next_event", None)
    if state is None or consume is None:
        return
    if state.code is None:
        call.cancel()
    for _ in range(_MAX_PENDING_EVENTS):
        if not state.due:
            return
        try:
            consume()
        except Exception:  # the call is over either way
            return


# -------------------------------------------------------------- credentials


def missing_in_credentials(credentials: grpc.ServerCredentials) -> list[str]:
    """The internal :func:`core_credentials` needs that ``credentials`` lack."""
    return [] if hasattr(credentials, "_credentials") else ["ServerCredentials._credentials"]


def core_credentials(credentials: grpc.ServerCredentials) -> Any:
    """The core credentials object inside ``credentials``, to build another
    ``grpc.ServerCredentials`` around. Raises RuntimeError naming the grpcio
    version when it has none."""
    core = getattr(credentials, "_credentials", None)
    if core is None:
        raise RuntimeError(
            f"grpcio {GRPCIO_VERSION} keeps no _credentials in its server credentials: "
            "reloading TLS credentials cannot be built on it"
        )
    return core
