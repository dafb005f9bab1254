"""Serve the handlers of a flight_secure server on pyarrow.flight's engine.

:class:`ArrowServer` is a ``pyarrow.flight.FlightServerBase`` whose RPCs call the
methods of a flight_secure ``FlightServerBase`` (never started itself), so one
class body serves on either engine. Between the two:

* requests (descriptors, tickets, actions) become flight_secure's values and
  replies (FlightInfo, SchemaResult, streams, results) pyarrow's, through their
  wire form;
* the handler gets a :class:`HandlerContext`: pyarrow's context shaped like
  flight_secure's (``principal``, ``peer_identity()``, ``peer()``, ...);
* DoAction's rules per action type are applied before the handler runs, as
  flight_secure's engine applies them (:func:`~flight_secure.arrow.authorize_action`);
* an exception a handler raises reaches the client as pyarrow's error for it
  (:func:`~flight_secure.arrow.errors.to_pyarrow`), never as a traceback; so do
  results that are not results (a str from ``do_action``, a malformed
  ``list_actions`` item), checked as flight_secure's engine checks them;
* ``shutdown(grace)`` stops as flight_secure's engine does, as far as pyarrow's
  engine allows: calls in flight that outlive ``grace`` are cancelled only where
  their handler checks ``is_cancelled()``.

Readers and writers of DoPut and DoExchange are pyarrow's, passed as they are:
a handler uses the methods both engines share (iteration, ``read_all``,
``schema``, ``write``, ``begin``, ``write_batch``, ``write_with_metadata``, ...).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as pa_flight

from flight_secure.arrow.errors import to_pyarrow
from flight_secure.arrow.server import authorize_action, principal
from flight_secure.auth.base import Principal
from flight_secure.dispatch import listed_action_type
from flight_secure.server import FlightServerBase
from flight_secure.streams import GeneratorStream, RecordBatchStream
from flight_secure.types import Action, FlightDescriptor, FlightInfo, Result, SchemaResult, Ticket

__all__ = ["ArrowServer", "HandlerContext"]


class HandlerContext:
    """A pyarrow call's context as flight_secure's handlers know it.

    ``principal`` is the caller (:func:`~flight_secure.arrow.principal`);
    ``peer_identity()`` its identity as bytes (b"" without one); ``is_cancelled()``
    is pyarrow's, and also true once ``cancelled`` is set (the server's shutdown
    grace is over); ``peer()``, ``add_header()``, ``add_trailer()`` and
    ``get_middleware()`` are pyarrow's.
    """

    __slots__ = ("_cancelled", "_context", "principal")

    def __init__(self, context: pa_flight.ServerCallContext, caller: Principal | None,
                 cancelled: threading.Event) -> None:
        self._context = context
        self._cancelled = cancelled
        self.principal = caller

    def peer_identity(self) -> bytes:
        return self.principal.identity if self.principal is not None else b""

    def peer(self) -> str:
        return self._context.peer()

    def is_cancelled(self) -> bool:
        return self._cancelled.is_set() or self._context.is_cancelled()

    def add_header(self, key: str, value: str | bytes) -> None:
        self._context.add_header(key, value)

    def add_trailer(self, key: str, value: str | bytes) -> None:
        self._context.add_trailer(key, value)

    def get_middleware(self, key: str) -> Any:
        return self._context.get_middleware(key)


def _converted(items: Iterable[Any] | None, convert: Callable[[Any], Any]) -> Iterator[Any]:
    """``convert`` of each item; what iterating raises goes to pyarrow as its error."""
    try:
        for item in items or ():
            yield convert(item)
    except Exception as exc:
        raise to_pyarrow(exc) from None


def _flight_info(info: Any) -> pa_flight.FlightInfo:
    if isinstance(info, FlightInfo):
        return pa_flight.FlightInfo.deserialize(info.serialize())
    return info


def _result(result: Any) -> pa_flight.Result:
    """pyarrow's Result for what a handler yielded: a Result (either kind) or a
    bytes-like body; TypeError for anything else, as on flight_secure's engine."""
    if isinstance(result, pa_flight.Result):
        return result
    return pa_flight.Result((result if isinstance(result, Result) else Result(result)).body)


def _stream(value: Any) -> Any:
    """pyarrow's stream for what a flight_secure DoGet handler returned."""
    if isinstance(value, RecordBatchStream):
        return pa_flight.RecordBatchStream(_source(value.data_source), value.options)
    if isinstance(value, GeneratorStream):
        return pa_flight.GeneratorStream(value.schema(), _converted(value.generator, _item),
                                         value.options)
    if isinstance(value, pa.Table | pa.RecordBatchReader | pa.RecordBatch):
        return pa_flight.RecordBatchStream(_source(value))
    return value


def _source(data: Any) -> Any:
    return pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data


def _item(item: Any) -> Any:
    """One item of a GeneratorStream: its streams become pyarrow's; batches stay."""
    if isinstance(item, tuple | list):
        return (_item(item[0]), item[1])
    if isinstance(item, RecordBatchStream | GeneratorStream):
        return _stream(item)
    return item


class ArrowServer(pa_flight.FlightServerBase):
    """The handlers of ``handlers``, served by pyarrow.flight's engine at ``location``.

    ``handlers`` is a flight_secure ``FlightServerBase`` that is never started
    (constructed without server options); its RPC methods are called with a
    :class:`HandlerContext` and flight_secure's values. ``options`` are pyarrow's
    ``FlightServerBase`` keywords, usually ``server_options(...)``, whose auth gate
    decides every call before it reaches ``handlers``.
    """

    #: Seconds handlers get to end by themselves once told of their cancellation.
    CANCEL_WAIT = 1.0

    def __init__(self, handlers: FlightServerBase, location: Any = None,
                 **options: Any) -> None:
        self.handlers = handlers
        self._cancelled = threading.Event()
        self._stopped = threading.Event()
        self._stopping = threading.Lock()
        self._stopper: threading.Thread | None = None
        self._progress = threading.Condition()  # notified when stopped or cancelled
        super().__init__(location, **options)

    @property
    def stopped(self) -> bool:
        """Whether a shutdown has finished: no call is left in pyarrow's engine."""
        return self._stopped.is_set()

    def shutdown(self, grace: float | None = None) -> None:
        """Refuse new calls at once; wait for the calls in flight, ``grace`` seconds at most.

        ``grace`` None waits as long as they take, as pyarrow's ``shutdown()``. When
        ``grace`` runs out, the calls are cancelled as far as pyarrow's engine lets
        Python: their contexts' ``is_cancelled()`` turns true, and the handlers that
        check it get :data:`CANCEL_WAIT` seconds to end. The engine cannot end a call
        by itself, so one that does not check (a stream pyarrow sends, an upload
        whose client sends nothing) goes on, and :attr:`stopped` stays False. May be
        called again, e.g. with 0 to stop waiting at once: a shutdown still waiting
        for its ``grace`` then returns with it.
        """
        with self._stopping:
            if self._stopper is None:
                self._stopper = threading.Thread(target=self._stop, daemon=True,
                                                 name="arrow-shutdown")
                self._stopper.start()
        with self._progress:  # a shorter shutdown running meanwhile ends this wait too
            self._progress.wait_for(lambda: self._stopped.is_set() or self._cancelled.is_set(),
                                    grace)
            if self._stopped.is_set():
                return
            self._cancelled.set()
            self._progress.notify_all()
        self._stopped.wait(self.CANCEL_WAIT)

    def _stop(self) -> None:
        try:
            super().shutdown()
        finally:
            with self._progress:
                self._stopped.set()
                self._progress.notify_all()

    def _call(self, method: Callable[..., Any], context: Any, *args: Any) -> Any:
        try:
            return method(HandlerContext(context, principal(context), self._cancelled), *args)
        except Exception as exc:
            raise to_pyarrow(exc) from None

    def list_flights(self, context: Any, criteria: bytes) -> Iterator[pa_flight.FlightInfo]:
        infos = self._call(self.handlers.list_flights, context, criteria)
        return _converted(infos, _flight_info)

    def get_flight_info(self, context: Any, descriptor: Any) -> pa_flight.FlightInfo:
        info = self._call(self.handlers.get_flight_info, context,
                          FlightDescriptor.deserialize(descriptor.serialize()))
        return _flight_info(info)

    def get_schema(self, context: Any, descriptor: Any) -> pa_flight.SchemaResult:
        result = self._call(self.handlers.get_schema, context,
                            FlightDescriptor.deserialize(descriptor.serialize()))
        schema = result.schema if isinstance(result, SchemaResult) else result
        return pa_flight.SchemaResult(schema)

    def do_get(self, context: Any, ticket: Any) -> Any:
        value = self._call(self.handlers.do_get, context, Ticket.deserialize(ticket.serialize()))
        return _stream(value)

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        self._call(self.handlers.do_put, context,
                   FlightDescriptor.deserialize(descriptor.serialize()), reader, writer)

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        self._call(self.handlers.do_exchange, context,
                   FlightDescriptor.deserialize(descriptor.serialize()), reader, writer)

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        listed = self._call(self.handlers.list_actions, context)
        try:
            return [tuple(listed_action_type(item)) for item in listed]
        except Exception as exc:
            raise to_pyarrow(exc) from None

    def do_action(self, context: Any, action: Any) -> Iterator[Any]:
        authorize_action(context, action)
        results = self._call(self.handlers.do_action, context,
                             Action.deserialize(action.serialize()))
        return _converted(results, _result)
