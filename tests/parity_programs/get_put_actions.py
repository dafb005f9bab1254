"""A pyarrow.flight program: DoGet, DoPut with acks, actions, flight listing.

Written for pyarrow.flight; FLIGHT_IMPL=flight_secure runs it on flight_secure
unchanged (only the import differs). Prints a deterministic transcript.
"""

import os

import pyarrow as pa

if os.environ.get("FLIGHT_IMPL") == "flight_secure":
    import flight_secure as flight
else:
    import pyarrow.flight as flight


class StoreServer(flight.FlightServerBase):
    def __init__(self, location):
        self.tables = {
            b"numbers": pa.table({"n": [1, 2, 3, 4, 5], "name": ["a", "b", "c", "d", "e"]})
        }
        super().__init__(location)

    def list_flights(self, context, criteria):
        for key, table in sorted(self.tables.items()):
            if key.startswith(criteria):
                descriptor = flight.FlightDescriptor.for_path(key)
                endpoint = flight.FlightEndpoint(key, [])
                yield flight.FlightInfo(table.schema, descriptor, [endpoint],
                                        table.num_rows, -1)

    def get_flight_info(self, context, descriptor):
        key = descriptor.path[0]
        table = self.tables[key]
        return flight.FlightInfo(table.schema, descriptor, [flight.FlightEndpoint(key, [])],
                                 table.num_rows, -1)

    def get_schema(self, context, descriptor):
        return flight.SchemaResult(self.tables[descriptor.path[0]].schema)

    def do_get(self, context, ticket):
        if ticket.ticket == b"generated":
            schema = pa.schema([("i", pa.int32())])

            def batches():
                for i in range(3):
                    batch = pa.record_batch([pa.array([i] * (i + 1), pa.int32())], schema=schema)
                    yield batch, f"batch {i}".encode()

            return flight.GeneratorStream(schema, batches())
        return flight.RecordBatchStream(self.tables[ticket.ticket])

    def do_put(self, context, descriptor, reader, writer):
        batches = []
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
            batches.append(chunk.data)
            writer.write(f"stored {chunk.data.num_rows} rows".encode())
        self.tables[descriptor.path[0]] = pa.Table.from_batches(batches, reader.schema)

    def list_actions(self, context):
        return [("count", "count to N"), ("tables", "list table names")]

    def do_action(self, context, action):
        if action.type == "count":
            for i in range(int(action.body.to_pybytes())):
                yield flight.Result(str(i).encode())
        elif action.type == "tables":
            for key in sorted(self.tables):
                yield flight.Result(key)
        else:
            raise NotImplementedError(action.type)


def main():
    server = StoreServer("grpc://localhost:0")
    client = flight.connect(f"grpc://localhost:{server.port}")
    options = flight.FlightCallOptions(timeout=10, headers=[(b"x-request", b"parity")])

    for info in client.list_flights(b"num", options):
        print("flight", info.descriptor.path, info.total_records, info.schema.names)

    info = client.get_flight_info(flight.FlightDescriptor.for_path("numbers"), options)
    print("info", info.total_records, info.endpoints[0].ticket.ticket)
    print("schema", client.get_schema(flight.FlightDescriptor.for_path("numbers")).schema)

    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    print("do_get", table.to_pydict())

    reader = client.do_get(flight.Ticket(b"generated"), options)
    for chunk in reader:
        print("chunk", chunk.data.to_pydict(), chunk.app_metadata.to_pybytes())

    upload = pa.table({"x": list(range(10))})
    writer, metadata = client.do_put(flight.FlightDescriptor.for_path("upload"), upload.schema,
                                     options)
    for batch in upload.to_batches(max_chunksize=4):
        writer.write_batch(batch)
        print("ack", metadata.read().to_pybytes())
    writer.done_writing()
    writer.close()
    print("uploaded", client.do_get(flight.Ticket(b"upload")).read_all().to_pydict())

    for action in client.list_actions():
        print("action type", action.type, action.description)
    print("count", [r.body.to_pybytes() for r in client.do_action(("count", b"3"), options)])
    print("tables", [r.body.to_pybytes() for r in client.do_action(flight.Action("tables", b""))])
    try:
        list(client.do_action(flight.Action("missing", b"")))
    except pa.ArrowNotImplementedError:
        print("missing action: not implemented")
    try:
        client.get_flight_info(flight.FlightDescriptor.for_path("nothing"))
    except KeyError:
        print("unknown flight: key error")

    client.close()
    server.shutdown()
    print("done")


if __name__ == "__main__":
    main()
