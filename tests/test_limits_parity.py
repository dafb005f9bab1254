"""Limits as other Flight peers enforce them: protobuf cannot carry a field of 2 GiB or
more, so app_metadata that large is refused where it is sent, as Arrow refuses it.

The end-to-end runs hold 2 GiB of metadata in memory and are marked slow; the
encoder test shows the same refusal without touching that memory.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import IMPLEMENTATIONS, connected, running_server

from flight_secure.wire import encode_bytes_message, encode_flight_data

IMPLS = list(IMPLEMENTATIONS.values())
IMPL_IDS = list(IMPLEMENTATIONS)
OVER_THE_LIMIT = 2**31


def _untouched(size: int) -> memoryview:
    """``size`` zero bytes that the OS has not backed with memory yet."""
    return memoryview(np.zeros(size, dtype=np.uint8))


def test_the_encoder_refuses_app_metadata_of_2_gib_before_copying_it() -> None:
    with pytest.raises(pa.ArrowCapacityError, match="app_metadata size overflow"):
        encode_flight_data(None, app_metadata=_untouched(OVER_THE_LIMIT))


def test_the_encoder_refuses_a_put_result_of_2_gib() -> None:
    with pytest.raises(pa.ArrowCapacityError, match="size overflow"):
        encode_bytes_message(_untouched(OVER_THE_LIMIT))


def test_the_encoder_still_sends_ordinary_app_metadata() -> None:
    frame = encode_flight_data(None, app_metadata=b"m" * 1024)
    assert frame.endswith(b"m" * 1024)


class EchoServer:
    """DoPut and DoExchange read everything; DoGet sends one batch with 2 GiB of metadata."""

    flight: ModuleType

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        reader.read_all()

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        for _ in reader:
            pass

    def do_get(self, context: Any, ticket: Any) -> Any:
        schema = pa.schema([("n", pa.int64())])
        batch = pa.record_batch([pa.array([1])], schema=schema)
        return self.flight.GeneratorStream(schema, iter([(batch, b" " * (OVER_THE_LIMIT + 1))]))


@pytest.mark.slow
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_a_client_refuses_to_send_app_metadata_of_2_gib(flight: ModuleType) -> None:
    descriptor = flight.FlightDescriptor.for_command(b"")
    metadata = b" " * (OVER_THE_LIMIT + 1)
    with running_server(flight, EchoServer) as server, connected(flight, server) as client:
        writer, _ = client.do_put(descriptor, pa.schema([]))
        with pytest.raises(pa.ArrowCapacityError, match="app_metadata size overflow"):
            writer.write_metadata(metadata)
        writer.close()
        writer, _ = client.do_exchange(descriptor)
        with pytest.raises(pa.ArrowCapacityError, match="app_metadata size overflow"):
            writer.write_metadata(metadata)
        writer.close()


@pytest.mark.slow
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_a_server_refuses_to_send_app_metadata_of_2_gib(flight: ModuleType) -> None:
    with (
        running_server(flight, EchoServer) as server,
        connected(flight, server) as client,
        pytest.raises(flight.FlightServerError, match="app_metadata size overflow"),
    ):
        client.do_get(flight.Ticket(b"")).read_all()
