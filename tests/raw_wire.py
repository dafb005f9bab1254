"""Flight on the raw wire, for tests that send what no well-behaved client would.

Messages are built as bytes (:func:`ipc_messages`, :func:`flight_data`) and sent on a
plain gRPC channel (:func:`raw_channel`, :func:`raw_call`), each RPC by the path
and call shape of :data:`flight_secure.rpcs.RPCS`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
import pyarrow as pa

from flight_secure._generated import flight_pb2 as pb
from flight_secure.rpcs import RPC_BY_NAME

#: Seconds a raw call may take before it counts as a hang.
RAW_CALL_TIMEOUT = 20.0


def rpc_path(rpc: str) -> str:
    """The gRPC method path of ``rpc`` (``"DoPut"`` -> ``/arrow.flight.protocol...``)."""
    return RPC_BY_NAME[rpc].path


@dataclass(frozen=True)
class Outcome:
    """How a raw call ended: its status code, status message and responses."""

    code: grpc.StatusCode
    details: str
    responses: tuple[bytes, ...] = ()


def raw_call(channel: grpc.Channel, rpc: str, request: bytes | Sequence[bytes],
             metadata: Sequence[tuple[str, str | bytes]] = (),
             timeout: float = RAW_CALL_TIMEOUT) -> Outcome:
    """Send ``request`` (a list of messages for a streaming request) as raw bytes and
    read every response."""
    shape = RPC_BY_NAME[rpc]
    path, metadata = shape.path, tuple(metadata)
    try:
        if shape.client_streams:
            stream = channel.stream_stream(path)(iter(list(request)), metadata=metadata,
                                                 timeout=timeout)
            responses = list(stream)
        elif shape.server_streams:
            responses = list(channel.unary_stream(path)(request, metadata=metadata,
                                                        timeout=timeout))
        else:
            responses = [channel.unary_unary(path)(request, metadata=metadata, timeout=timeout)]
    except grpc.RpcError as exc:
        return Outcome(exc.code(), exc.details() or "")
    return Outcome(grpc.StatusCode.OK, "", tuple(responses))


@contextlib.contextmanager
def raw_channel(port: int) -> Iterator[grpc.Channel]:
    """A plaintext gRPC channel to ``localhost:<port>``, closed afterwards."""
    channel = grpc.insecure_channel(f"localhost:{port}")
    try:
        yield channel
    finally:
        channel.close()


def ipc_messages(table: pa.Table,
                 options: pa.ipc.IpcWriteOptions | None = None) -> list[tuple[bytes, bytes]]:
    """The (flatbuffer header, body) of each IPC message of ``table``'s stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return [(m.metadata.to_pybytes(), m.body.to_pybytes() if m.body is not None else b"")
            for m in pa.ipc.MessageReader.open_stream(sink.getvalue())]


def flight_data(header: bytes = b"", body: bytes = b"", path: str | None = None) -> bytes:
    """A serialized FlightData; with ``path``, carrying a path descriptor."""
    message = pb.FlightData(data_header=header, data_body=body)
    if path is not None:
        message.flight_descriptor.CopyFrom(
            pb.FlightDescriptor(type=pb.FlightDescriptor.PATH, path=[path]))
    return message.SerializeToString()
