"""A pyarrow.flight program: server and client middleware exchanging headers.

Server middleware reads a client header, sends a response header, records how
each call ended; handlers read their middleware with context.get_middleware.
Written for pyarrow.flight; FLIGHT_IMPL=flight_secure runs it on flight_secure.
"""

import os
import threading

import pyarrow as pa

if os.environ.get("FLIGHT_IMPL") == "flight_secure":
    import flight_secure as flight
else:
    import pyarrow.flight as flight

LOG = []
LOG_LOCK = threading.Lock()


def log(*items):
    with LOG_LOCK:
        LOG.append(" ".join(str(i) for i in items))


class TenantMiddleware(flight.ServerMiddleware):
    def __init__(self, tenant, method):
        self.tenant = tenant
        self.method = method

    def sending_headers(self):
        return {"x-served-tenant": self.tenant}

    def call_completed(self, exception):
        log("server completed", self.method.name, self.tenant,
            "ok" if exception is None else "error")


class TenantMiddlewareFactory(flight.ServerMiddlewareFactory):
    def start_call(self, info, headers):
        tenants = headers.get("x-tenant")
        if not tenants:
            raise flight.FlightUnauthenticatedError("no tenant header")
        return TenantMiddleware(tenants[0], info.method)


class ClientTenant(flight.ClientMiddleware):
    def __init__(self, factory, method):
        self.factory = factory
        self.method = method

    def sending_headers(self):
        if self.factory.tenant is None:
            return {}
        return {"x-tenant": self.factory.tenant}

    def received_headers(self, headers):
        served = headers.get("x-served-tenant")
        if served:
            self.factory.served.append(served[0])

    def call_completed(self, exception):
        kind = "ok" if exception is None else type(exception).__name__.replace("Flight", "")
        self.factory.completed.append((self.method.name, kind))


class ClientTenantFactory(flight.ClientMiddlewareFactory):
    def __init__(self, tenant):
        self.tenant = tenant
        self.served = []
        self.completed = []

    def start_call(self, info):
        return ClientTenant(self, info.method)


class TenantServer(flight.FlightServerBase):
    def do_get(self, context, ticket):
        tenant = context.get_middleware("tenant").tenant
        table = pa.table({"tenant": [tenant] * 3, "n": [1, 2, 3]})
        return flight.RecordBatchStream(table)

    def do_action(self, context, action):
        middleware = context.get_middleware("tenant")
        if action.type == "whoami":
            yield flight.Result(middleware.tenant.encode())
        elif action.type == "missing-middleware":
            yield flight.Result(str(context.get_middleware("absent")).encode())
        else:
            raise flight.FlightServerError("no such action: " + action.type)


def main():
    server = TenantServer("grpc://localhost:0",
                          middleware={"tenant": TenantMiddlewareFactory()})
    location = f"grpc://localhost:{server.port}"

    acme = ClientTenantFactory("acme")
    client = flight.connect(location, middleware=[acme])
    print("whoami", [r.body.to_pybytes() for r in client.do_action(("whoami", b""))])
    print("absent", [r.body.to_pybytes() for r in client.do_action(("missing-middleware", b""))])
    print("do_get", client.do_get(flight.Ticket(b"any")).read_all().to_pydict())
    try:
        list(client.do_action(("explode", b"")))
    except flight.FlightServerError:
        print("explode: server error")
    print("served", acme.served)
    print("client completed", acme.completed)
    client.close()

    anonymous = ClientTenantFactory(None)
    client = flight.connect(location, middleware=[anonymous])
    try:
        list(client.do_action(("whoami", b"")))
    except flight.FlightUnauthenticatedError:
        print("anonymous: unauthenticated")
    print("anonymous completed", anonymous.completed)
    client.close()

    with_options = flight.connect(location)
    options = flight.FlightCallOptions(headers=[(b"x-tenant", b"globex")], timeout=5)
    print("options", [r.body.to_pybytes() for r in with_options.do_action(("whoami", b""),
                                                                         options)])
    with_options.close()

    server.shutdown()
    for line in sorted(LOG):
        print(line)


if __name__ == "__main__":
    main()
