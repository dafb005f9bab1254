"""Reads spread over several ``serve`` nodes: which node sends which rows of a dataset.

The rule is one line: **every node holds the same datasets** (one shared folder, or
copies), and a node started with ``--peer NAME=URI`` (repeatable) answers
GetFlightInfo with one endpoint per peer, in the order given, each for an equal
share of the rows. Endpoint *i* of *N*, for a dataset of *R* rows, names rows
``[i*R//N, (i+1)*R//N)`` and the location of peer *i*. A client that logged in once
follows the endpoints with the same session token (every node accepts the tokens
of every other: ``--signing-key``) and reads the parts in parallel. Without
``--peer`` a dataset is one endpoint without a location: "read it here".

A part's ticket is ``NAME/PART/PARTS/ROWS`` in UTF-8 (:class:`Part`); a dataset
name never holds ``/``, so no part ticket is mistaken for a plain one. Any node
serves a part ticket, with the same rights check as a whole dataset; when its copy
does not have ``ROWS`` rows (the copies differ, or the dataset was replaced since
GetFlightInfo) the read is refused as UNAVAILABLE: ask for the endpoints again.
Each node scans its copy from the start and sends its share only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from flight_secure.cli.datasets import check_name
from flight_secure.errors import FlightInvalidArgumentError, FlightUnavailableError
from flight_secure.types import FlightEndpoint, Location

__all__ = ["Part", "Peer", "Spread", "parse_peer", "rows_of"]

_SCHEMES = ("grpc+tls", "grpc", "grpc+tcp")


@dataclass(frozen=True)
class Peer:
    """A node that serves reads: its name (for logs) and where clients reach it."""

    name: str
    location: Location


def parse_peer(text: str) -> Peer:
    """``NAME=URI`` as a Peer; ValueError saying what is wrong.

    NAME is 1 to 64 letters, digits, ``-``, ``_`` or ``.``; URI a ``grpc+tls://``
    (or plaintext ``grpc://``) location with a host and a port.
    """
    name, sep, uri = text.partition("=")
    if not sep or not name or len(name) > 64 or not all(
            c.isascii() and (c.isalnum() or c in "-_.") for c in name):
        raise ValueError(f"--peer {text!r}: expected NAME=URI, NAME of letters, digits, "
                         "'-', '_' or '.'")
    try:
        location = Location(uri)
    except ValueError as exc:
        raise ValueError(f"--peer {text!r}: {exc}") from None
    if location.scheme not in _SCHEMES or not location.host or location.port is None:
        raise ValueError(f"--peer {text!r}: the URI must be grpc+tls://HOST:PORT")
    return Peer(name, location)


@dataclass(frozen=True)
class Part:
    """Rows ``[start, stop)`` of dataset ``dataset``: part ``index`` of ``count``
    of its ``rows`` rows."""

    dataset: str
    index: int
    count: int
    rows: int

    @property
    def start(self) -> int:
        return self.index * self.rows // self.count

    @property
    def stop(self) -> int:
        return (self.index + 1) * self.rows // self.count

    def ticket(self) -> bytes:
        return f"{self.dataset}/{self.index}/{self.count}/{self.rows}".encode()

    @classmethod
    def from_ticket(cls, ticket: bytes) -> Part | None:
        """The part a ticket names; None for a plain dataset name (no ``/``).

        FlightInvalidArgumentError for a ticket with ``/`` that is not a part's: the
        refusal of an invalid dataset name, or of a part out of range.
        """
        if b"/" not in ticket:
            return None
        try:
            name, *numbers = ticket.decode("utf-8").rsplit("/", 3)
            index, count, rows = (int(n) for n in numbers if n.isascii() and n.isdigit())
        except ValueError:  # not NAME/PART/PARTS/ROWS: a name with a slash
            check_name(ticket)
            raise
        part = cls(check_name(name), index, count, rows)
        if not part.index < part.count:
            raise FlightInvalidArgumentError(
                f"part {part.index} of {part.count}: no such part of a dataset ticket")
        return part


class Spread:
    """The endpoints of a dataset, spread over ``peers`` (none: read it here)."""

    def __init__(self, peers: list[Peer]) -> None:
        self.peers = list(peers)

    def endpoints(self, name: str, rows: int) -> list[FlightEndpoint]:
        """One endpoint per peer for dataset ``name`` of ``rows`` rows; without peers,
        one endpoint whose ticket is the name and that has no location."""
        if not self.peers:
            return [FlightEndpoint(name.encode(), [])]
        count = len(self.peers)
        return [FlightEndpoint(Part(name, index, count, rows).ticket(), [peer.location])
                for index, peer in enumerate(self.peers)]


def rows_of(reader: pa.RecordBatchReader, part: Part, rows_here: int) -> pa.RecordBatchReader:
    """The rows of ``part`` from ``reader`` (the whole dataset, ``rows_here`` rows);
    FlightUnavailableError when this copy's row count is not the part's."""
    if rows_here != part.rows:
        raise FlightUnavailableError(
            f"dataset {part.dataset!r} has {rows_here} rows here, not {part.rows}: it "
            "changed, or the nodes' copies differ; ask for its endpoints again")

    def batches() -> Iterator[pa.RecordBatch]:
        offset = 0
        for batch in reader:
            start, stop = max(part.start - offset, 0), min(part.stop - offset, batch.num_rows)
            offset += batch.num_rows
            if start < stop:
                yield batch.slice(start, stop - start)
            if offset >= part.stop:
                break

    return pa.RecordBatchReader.from_batches(reader.schema, batches())
