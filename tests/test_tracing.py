"""TracingServerMiddlewareFactory: the trace context of an incoming call reaches its handler.

As in pyarrow.flight, a handler gets ``context.get_middleware(key).trace_context``, a
dict of W3C trace-context headers. With OpenTelemetry's SDK configured, each call is a
SERVER span that continues the caller's trace and records how the call ended; without
OpenTelemetry installed, the factory says so when it is constructed.
"""

from __future__ import annotations

import json
import os
import subprocess
from types import ModuleType
from typing import Any

import pyarrow as pa
import pytest
from conftest import IMPLEMENTATIONS, PYTHON, ROOT, connected, running_server, wait_until
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import flight_secure

IMPLS = list(IMPLEMENTATIONS.values())
IMPL_IDS = list(IMPLEMENTATIONS)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"


class TracedServer:
    """DoAction ``context``: the handler's trace context; ``child``: starts a span under
    it; ``refuse``: raises FlightUnauthorizedError. DoGet streams two small batches."""

    flight: ModuleType
    tracer: Any = None

    def do_action(self, context: Any, action: Any) -> Any:
        middleware = context.get_middleware("trace")
        if action.type == "refuse":
            raise self.flight.FlightUnauthorizedError("not for you")
        if action.type == "child":
            parent = propagate.extract(middleware.trace_context)
            with self.tracer.start_as_current_span("handler work", context=parent):
                pass
        yield json.dumps(middleware.trace_context).encode()

    def do_get(self, context: Any, ticket: Any) -> Any:
        return self.flight.RecordBatchStream(pa.table({"n": [1, 2, 3]}))


def _headers(flight: ModuleType, traceparent: str | None) -> Any:
    pairs = [] if traceparent is None else [(b"traceparent", traceparent.encode())]
    return flight.FlightCallOptions(headers=pairs)


def _trace_context(flight: ModuleType, factory: Any, traceparent: str | None) -> dict:
    with (
        running_server(flight, TracedServer, middleware={"trace": factory}) as server,
        connected(flight, server) as client,
    ):
        [result] = client.do_action(flight.Action("context", b""), _headers(flight, traceparent))
        return json.loads(result.body.to_pybytes())


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_the_factory_is_server_middleware(flight: ModuleType) -> None:
    assert issubclass(flight.TracingServerMiddlewareFactory, flight.ServerMiddlewareFactory)


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_a_handler_reads_the_trace_context_of_an_untraced_call(flight: ModuleType) -> None:
    assert _trace_context(flight, flight.TracingServerMiddlewareFactory(), None) == {}


def test_without_a_tracer_provider_the_caller_s_trace_context_reaches_the_handler() -> None:
    factory = flight_secure.TracingServerMiddlewareFactory()
    assert _trace_context(flight_secure, factory, TRACEPARENT) == {"traceparent": TRACEPARENT}


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _server_span(exporter: InMemorySpanExporter, name: str) -> Any:
    wait_until(lambda: any(s.name == name for s in exporter.get_finished_spans()))
    return next(s for s in exporter.get_finished_spans() if s.name == name)


def test_a_call_is_a_server_span_continuing_the_caller_s_trace(spans: Any) -> None:
    provider, exporter = spans
    factory = flight_secure.TracingServerMiddlewareFactory(tracer_provider=provider)
    context = _trace_context(flight_secure, factory, TRACEPARENT)
    span = _server_span(exporter, "DoAction")
    assert span.kind is trace.SpanKind.SERVER
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert f"{span.parent.span_id:016x}" == CALLER_SPAN_ID
    assert context["traceparent"] == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"
    assert dict(span.attributes) == {
        "rpc.system": "grpc",
        "rpc.service": "arrow.flight.protocol.FlightService",
        "rpc.method": "DoAction",
        "rpc.grpc.status_code": 0,
    }
    assert span.status.status_code is trace.StatusCode.OK


def test_a_handler_s_span_is_a_child_of_the_call_s_span(spans: Any) -> None:
    provider, exporter = spans
    factory = flight_secure.TracingServerMiddlewareFactory(tracer_provider=provider)
    with (
        running_server(flight_secure, TracedServer, middleware={"trace": factory}) as server,
        connected(flight_secure, server) as client,
    ):
        server.tracer = provider.get_tracer("handler")
        list(client.do_action(flight_secure.Action("child", b"")))
    call = _server_span(exporter, "DoAction")
    work = _server_span(exporter, "handler work")
    assert work.parent.span_id == call.context.span_id
    assert work.context.trace_id == call.context.trace_id


def test_a_refused_call_ends_its_span_with_the_error(spans: Any) -> None:
    provider, exporter = spans
    factory = flight_secure.TracingServerMiddlewareFactory(tracer_provider=provider)
    with (
        running_server(flight_secure, TracedServer, middleware={"trace": factory}) as server,
        connected(flight_secure, server) as client,
        pytest.raises(flight_secure.FlightUnauthorizedError),
    ):
        list(client.do_action(flight_secure.Action("refuse", b"")))
    span = _server_span(exporter, "DoAction")
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "not for you"
    assert span.attributes["rpc.grpc.status_code"] == 7  # PERMISSION_DENIED


def test_a_stream_s_span_ends_when_the_stream_does(spans: Any) -> None:
    provider, exporter = spans
    factory = flight_secure.TracingServerMiddlewareFactory(tracer_provider=provider)
    with (
        running_server(flight_secure, TracedServer, middleware={"trace": factory}) as server,
        connected(flight_secure, server) as client,
    ):
        assert client.do_get(flight_secure.Ticket(b"t")).read_all().num_rows == 3
    span = _server_span(exporter, "DoGet")
    assert span.attributes["rpc.method"] == "DoGet"
    assert span.status.status_code is trace.StatusCode.OK


@pytest.mark.parametrize("traceparent", ["garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01",
                                         "ff-" + TRACE_ID + "-" + CALLER_SPAN_ID + "-01"])
def test_a_malformed_traceparent_starts_a_new_trace_and_the_call_succeeds(
    spans: Any, traceparent: str
) -> None:
    provider, exporter = spans
    factory = flight_secure.TracingServerMiddlewareFactory(tracer_provider=provider)
    context = _trace_context(flight_secure, factory, traceparent)
    span = _server_span(exporter, "DoAction")
    assert span.parent is None
    assert f"{span.context.trace_id:032x}" != TRACE_ID
    assert context["traceparent"].split("-")[1] == f"{span.context.trace_id:032x}"


def test_without_opentelemetry_the_factory_says_what_to_install() -> None:
    program = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"  # as if the package were not installed
        "import flight_secure\n"
        "try:\n"
        "    flight_secure.TracingServerMiddlewareFactory()\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([PYTHON, "-c", program], capture_output=True, text=True, env=env,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError TracingServerMiddlewareFactory needs")
    assert "flight-secure[tracing]" in result.stdout
