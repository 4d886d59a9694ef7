"""A small OTLP/gRPC trace receiver, a stand-in for a collector: ``python otlp_receiver.py SPANS_FILE``.

It serves opentelemetry-proto's ``TraceService`` on a free loopback port, prints the port on its first line
of output, and appends every span it receives to ``SPANS_FILE`` as a JSON line (service name, ids in hex,
name, string attributes). It runs as a process of its own: a gRPC server's threads in the process that starts
the mesh would be in the middle of gRPC when that process forks a service, and gRPC's fork handlers can then
abort the child before it execs.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from concurrent import futures
from typing import IO, Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()

    def Export(  # noqa: N802 - the generated servicer's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        lines = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    record = {
                        "service": resource.get("service.name", ""),
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "attributes": {a.key: a.value.string_value for a in span.attributes},
                    }
                    lines.append(json.dumps(record) + "\n")
        with self._lock:
            self._out.writelines(lines)
            self._out.flush()
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(sys.argv[1], "a", encoding="utf-8") as out:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(out), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        print(port, flush=True)
        stop.wait()
        server.stop(1).wait()


if __name__ == "__main__":
    main()
