"""OpenTelemetry tracing of incoming calls: pyarrow.flight's TracingServerMiddlewareFactory.

Register ``TracingServerMiddlewareFactory()`` under any key of the server's
``middleware``. For each call it continues the caller's trace (the ``traceparent`` /
``tracestate`` headers, read with OpenTelemetry's global propagator), starts a SERVER
span named after the RPC (``DoGet``, ``GetFlightInfo`` ...) with the ``rpc.system``,
``rpc.service`` and ``rpc.method`` attributes, and ends it when the call ends: status
OK, or ERROR with the exception's text, and ``rpc.grpc.status_code`` either way.

A handler reads the call's trace context with
``context.get_middleware(key).trace_context``: W3C trace-context headers as a dict,
which ``opentelemetry.propagate.extract`` turns into the parent of the handler's own
spans. With no tracer provider configured the span records nothing and the context
is the caller's.

OpenTelemetry is an optional dependency (``pip install 'flight-secure[tracing]'``);
without it, constructing the factory raises ImportError saying so.
"""

from __future__ import annotations

from typing import Any

from flight_secure.errors import server_status
from flight_secure.middleware import Headers, ServerMiddleware, ServerMiddlewareFactory
from flight_secure.rpcs import RPC_BY_METHOD, SERVICE
from flight_secure.types import CallInfo

try:
    from opentelemetry import propagate, trace
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the optional [tracing] extra is not installed
    trace = None

INSTRUMENTATION_NAME = "flight_secure"


class TracingServerMiddleware(ServerMiddleware):
    """The tracing middleware of one call.

    ``trace_context`` holds the W3C trace-context headers of the call's span (empty
    when there is no valid trace to continue).
    """

    def __init__(self, trace_context: dict[str, str], span: Any = None) -> None:
        self.trace_context = trace_context
        self._span = span

    def call_completed(self, exception: BaseException | None) -> None:
        """End the call's span, marked with how the call ended."""
        span = self._span
        if span is None:
            return
        self._span = None
        if exception is None:
            span.set_status(trace.Status(trace.StatusCode.OK))
            span.set_attribute("rpc.grpc.status_code", 0)
        else:
            status = server_status(exception)
            span.set_status(trace.Status(trace.StatusCode.ERROR, status.message))
            span.set_attribute("rpc.grpc.status_code", status.code.value[0])
        span.end()


class TracingServerMiddlewareFactory(ServerMiddlewareFactory):
    """Starts a span for each incoming call that continues the caller's trace.

    ``tracer_provider`` defaults to OpenTelemetry's global one. Raises ImportError
    if OpenTelemetry is not installed.
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        if trace is None:
            raise ImportError(
                "TracingServerMiddlewareFactory needs OpenTelemetry: "
                "pip install 'flight-secure[tracing]'"
            )
        self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=tracer_provider)
        self._inject = TraceContextTextMapPropagator().inject

    def start_call(self, info: CallInfo, headers: Headers) -> TracingServerMiddleware:
        """Start the call's SERVER span as a child of the trace in ``headers``, if any."""
        parent = propagate.extract(headers, context=Context())
        name = RPC_BY_METHOD[info.method].name
        span = self._tracer.start_span(
            name,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": name},
        )
        trace_context: dict[str, str] = {}
        self._inject(trace_context, context=trace.set_span_in_context(span))
        return TracingServerMiddleware(trace_context, span)
