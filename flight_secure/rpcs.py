"""The Flight service's RPCs, in one table: name, method, messages and call shape.

The server's handlers (:mod:`flight_secure.dispatch`), the client's stubs
(:mod:`flight_secure.client`), the names authorization rules are written with
(:mod:`flight_secure.auth.policy`) and the tests all read this table, in the
order of Arrow's ``format/Flight.proto``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from flight_secure.types import FlightMethod

#: The gRPC service every Flight RPC belongs to (package ``arrow.flight.protocol``).
SERVICE = "arrow.flight.protocol.FlightService"


class Rpc(NamedTuple):
    """One RPC of the Flight service.

    ``request`` and ``response`` name its protobuf messages; ``client_streams`` and
    ``server_streams`` say which side sends a stream of them.
    """

    name: str
    method: FlightMethod
    request: str
    response: str
    client_streams: bool
    server_streams: bool

    @property
    def path(self) -> str:
        """The gRPC method path, ``/arrow.flight.protocol.FlightService/<name>``."""
        return f"/{SERVICE}/{self.name}"


_M = FlightMethod

RPCS: tuple[Rpc, ...] = (
    Rpc("Handshake", _M.HANDSHAKE, "HandshakeRequest", "HandshakeResponse", True, True),
    Rpc("ListFlights", _M.LIST_FLIGHTS, "Criteria", "FlightInfo", False, True),
    Rpc("GetFlightInfo", _M.GET_FLIGHT_INFO, "FlightDescriptor", "FlightInfo", False, False),
    Rpc("PollFlightInfo", _M.POLL_FLIGHT_INFO, "FlightDescriptor", "PollInfo", False, False),
    Rpc("GetSchema", _M.GET_SCHEMA, "FlightDescriptor", "SchemaResult", False, False),
    Rpc("DoGet", _M.DO_GET, "Ticket", "FlightData", False, True),
    Rpc("DoPut", _M.DO_PUT, "FlightData", "PutResult", True, True),
    Rpc("DoExchange", _M.DO_EXCHANGE, "FlightData", "FlightData", True, True),
    Rpc("DoAction", _M.DO_ACTION, "Action", "Result", False, True),
    Rpc("ListActions", _M.LIST_ACTIONS, "Empty", "ActionType", False, True),
)

#: Each RPC by its name (``"DoGet"``) and by its :class:`FlightMethod`.
RPC_BY_NAME: Mapping[str, Rpc] = {rpc.name: rpc for rpc in RPCS}
RPC_BY_METHOD: Mapping[FlightMethod, Rpc] = {rpc.method: rpc for rpc in RPCS}
