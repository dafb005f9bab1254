"""A pyarrow.flight program: readers' IPC read statistics on every stream.

Prints ``reader.stats`` before and after each chunk of a client's DoGet (with
dictionaries replaced mid-stream, with app metadata, empty), of the server's
DoPut reader, and of both readers of a DoExchange that mixes metadata-only
messages with batches. Written for pyarrow.flight; FLIGHT_IMPL=flight_secure
runs it on flight_secure unchanged.
"""

import os

import pyarrow as pa

if os.environ.get("FLIGHT_IMPL") == "flight_secure":
    import flight_secure as flight
else:
    import pyarrow.flight as flight

COLORS = pa.schema([("color", pa.dictionary(pa.int8(), pa.string()))])
FIRST = pa.record_batch([pa.array(["red", "blue"]).dictionary_encode()], schema=COLORS)
SECOND = pa.record_batch([pa.array(["green", "grey"]).dictionary_encode()], schema=COLORS)
NUMBERS = pa.schema([("n", pa.int64())])
SERVER_LOG = []


def stats_text(stats):
    return (f"{type(stats).__name__}(messages={stats.num_messages} "
            f"batches={stats.num_record_batches} dictionaries={stats.num_dictionary_batches} "
            f"deltas={stats.num_dictionary_deltas} "
            f"replaced={stats.num_replaced_dictionaries})")


def read_with_stats(reader, log):
    log("  before", stats_text(reader.stats))
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        rows = chunk.data.num_rows if chunk.data is not None else None
        metadata = chunk.app_metadata.to_pybytes() if chunk.app_metadata is not None else None
        log("  chunk", rows, metadata, stats_text(reader.stats))
    log("  end", stats_text(reader.stats))


class StatsServer(flight.FlightServerBase):
    def do_get(self, context, ticket):
        if ticket.ticket == b"colors":
            return flight.RecordBatchStream(pa.RecordBatchReader.from_batches(
                COLORS, [FIRST, SECOND]))
        if ticket.ticket == b"empty":
            return flight.RecordBatchStream(pa.table({"n": pa.array([], pa.int64())}))

        def numbers():
            yield pa.record_batch([pa.array([1, 2])], schema=NUMBERS), b"first"
            yield pa.record_batch([pa.array([3])], schema=NUMBERS)
        return flight.GeneratorStream(NUMBERS, numbers())

    def do_put(self, context, descriptor, reader, writer):
        SERVER_LOG.append("server DoPut")
        read_with_stats(reader, lambda *items: SERVER_LOG.append(" ".join(map(str, items))))

    def do_exchange(self, context, descriptor, reader, writer):
        SERVER_LOG.append("server DoExchange")
        read_with_stats(reader, lambda *items: SERVER_LOG.append(" ".join(map(str, items))))
        writer.write_metadata(b"hello")
        writer.begin(COLORS)
        writer.write_batch(FIRST)
        writer.write_with_metadata(SECOND, b"last")


def main():
    server = StatsServer("grpc://localhost:0")
    client = flight.connect(f"grpc://localhost:{server.port}")
    for ticket in (b"colors", b"numbers", b"empty"):
        print("client DoGet", ticket.decode())
        read_with_stats(client.do_get(flight.Ticket(ticket)), print)

    writer, _ = client.do_put(flight.FlightDescriptor.for_path("colors"), COLORS)
    writer.write_batch(FIRST)
    writer.write_metadata(b"between")
    writer.write_batch(SECOND)
    writer.close()

    writer, reader = client.do_exchange(flight.FlightDescriptor.for_path("colors"))
    writer.write_metadata(b"before the schema")
    writer.begin(COLORS)
    writer.write_batch(FIRST)
    writer.write_batch(SECOND)
    writer.done_writing()
    print("client DoExchange")
    read_with_stats(reader, print)
    writer.close()

    client.close()
    server.shutdown()
    for line in SERVER_LOG:
        print(line)


if __name__ == "__main__":
    main()
