"""The engine ``flight-secure serve`` runs on: flight_secure's own, or pyarrow.flight's.

:func:`start` serves a :class:`~flight_secure.cli.dataserver.DatasetServer`, built
without server options, on the engine ``--engine`` names, behind the same auth
handler, and returns the running server (``port``, ``shutdown(grace)``). On
pyarrow's engine the DatasetServer's handlers run under
:class:`~flight_secure.arrow.ArrowServer`. Two things cannot be had there, and
``serve`` says so in ``--help``: a bound on the size of a message (Arrow's C++
server accepts messages of any size), and the cancellation of a call that pyarrow
runs without Python (a download it streams, an upload whose client sends nothing):
such a call outlives the shutdown (``ArrowServer.stopped`` stays False).
"""

from __future__ import annotations

from typing import Any

from flight_secure.cli.dataserver import DatasetServer
from flight_secure.errors import FlightError
from flight_secure.server_options import FlightServerOptions
from flight_secure.types import Location

ENGINES = ("python", "arrow")


def start(engine: str, datasets: DatasetServer, location: Location, handler: Any, *,
          max_message_size: int, tls: dict[str, Any]) -> Any:
    """Serve ``datasets`` at ``location`` on ``engine`` (one of :data:`ENGINES`).

    ``handler`` is the auth handler (or None); ``tls`` the TLS keywords both engines
    take (``tls_certificates``, ``verify_client``, ``root_certificates``);
    ``max_message_size`` the largest message in bytes, on flight_secure's engine
    (pyarrow's has no such bound). Returns the running server; raises FlightError
    when it cannot listen.
    """
    if engine == "python":
        datasets.init(FlightServerOptions(location, auth_handler=handler,
                                          max_message_size=max_message_size, **tls))
        return datasets
    import pyarrow as pa

    from flight_secure.arrow import ArrowServer, server_options

    try:
        return ArrowServer(datasets, str(location), **server_options(handler, **tls))
    except pa.ArrowException as exc:  # pyarrow says only "Server did not start properly"
        raise FlightError(f"could not listen on {location}: {exc}") from None
