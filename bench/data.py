"""Deterministic benchmark tables, shared by the server and client processes.

A table is named by a :class:`DataSpec`; the same spec always yields the same
batches (numpy ``default_rng`` seeded from the spec), so a server can serve what
a client uploads without either side shipping data to the other out of band.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

SEED = 20240607
NUMERIC_COLUMNS = 4  # pairs of int64 + float64 columns
STRING_MIN, STRING_MAX = 8, 40  # string lengths in bytes, uniform
_STRING_ROW_BYTES = 8 + 8 + 4 + (STRING_MIN + STRING_MAX) // 2


@dataclass(frozen=True)
class DataSpec:
    """A benchmark table: ``kind`` "num" (int64/float64) or "str" (adds a string column).

    ``total_mb`` is the approximate table size in MiB, ``batch_kb`` the approximate
    record-batch size in KiB.
    """

    kind: str
    total_mb: int
    batch_kb: int

    def encode(self) -> bytes:
        """Ticket bytes naming this spec (stable JSON)."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> DataSpec:
        """Inverse of :meth:`encode`; raises ValueError on a malformed ticket."""
        try:
            return cls(**json.loads(raw))
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"bad benchmark ticket: {raw[:80]!r}") from exc

    def row_bytes(self) -> int:
        """Approximate bytes per row (used to size batches)."""
        if self.kind == "num":
            return 16 * NUMERIC_COLUMNS
        if self.kind == "str":
            return _STRING_ROW_BYTES
        raise ValueError(f"unknown data kind {self.kind!r}")

    def shape(self) -> tuple[int, int]:
        """(number of batches, rows per batch), at least one of each."""
        rows = max(1, self.batch_kb * 1024 // self.row_bytes())
        batches = max(1, self.total_mb * 1024 * 1024 // (rows * self.row_bytes()))
        return batches, rows


def schema(kind: str) -> pa.Schema:
    """The Arrow schema of a table of this kind."""
    if kind == "num":
        fields = []
        for i in range(NUMERIC_COLUMNS):
            fields += [pa.field(f"i{i}", pa.int64()), pa.field(f"f{i}", pa.float64())]
        return pa.schema(fields)
    if kind == "str":
        return pa.schema([("id", pa.int64()), ("x", pa.float64()), ("s", pa.string())])
    raise ValueError(f"unknown data kind {kind!r}")


def _strings(rng: np.random.Generator, rows: int) -> pa.Array:
    lengths = rng.integers(STRING_MIN, STRING_MAX + 1, size=rows, dtype=np.int32)
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    chars = rng.integers(ord("a"), ord("z") + 1, size=int(offsets[-1]), dtype=np.uint8)
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(chars))


def _batch(spec: DataSpec, rng: np.random.Generator, rows: int, start: int) -> pa.RecordBatch:
    ids = np.arange(start, start + rows, dtype=np.int64)
    if spec.kind == "num":
        cols: list[pa.Array] = []
        for _ in range(NUMERIC_COLUMNS):
            cols.append(pa.array(rng.integers(0, 1 << 62, size=rows, dtype=np.int64)))
            cols.append(pa.array(rng.standard_normal(rows)))
        cols[0] = pa.array(ids)
    else:
        cols = [pa.array(ids), pa.array(rng.standard_normal(rows)), _strings(rng, rows)]
    return pa.RecordBatch.from_arrays(cols, schema=schema(spec.kind))


def make_table(spec: DataSpec) -> pa.Table:
    """Build the table for ``spec``: independent batches (no shared slices), deterministic."""
    rng = np.random.default_rng([SEED, spec.total_mb, spec.batch_kb, len(spec.kind)])
    count, rows = spec.shape()
    batches = [_batch(spec, rng, rows, i * rows) for i in range(count)]
    return pa.Table.from_batches(batches, schema=schema(spec.kind))
