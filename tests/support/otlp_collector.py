"""A local stand-in for an OpenTelemetry collector's OTLP/HTTP trace endpoint."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass
class ExportRequest:
    """One OTLP/HTTP export request as the stand-in received it."""

    path: str
    content_type: str
    body: bytes

    def spans(self) -> list[tuple[str, str, bytes]]:
        """Return `(service name, span name, trace id)` of each span in the request."""
        export = ExportTraceServiceRequest.FromString(self.body)
        found = []
        for resource_spans in export.resource_spans:
            service = next(
                attribute.value.string_value
                for attribute in resource_spans.resource.attributes
                if attribute.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append((service, span.name, span.trace_id))
        return found


@dataclass
class Collector:
    """The stand-in's base URL and every request it received, in order."""

    url: str
    requests: list[ExportRequest] = field(default_factory=list)

    def spans(self) -> list[tuple[str, str, bytes]]:
        return [span for request in list(self.requests) for span in request.spans()]


@contextmanager
def otlp_collector() -> Iterator[Collector]:
    """Run a collector stand-in on a free port of 127.0.0.1 that accepts every export."""
    requests: list[ExportRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            requests.append(ExportRequest(self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Collector(url=f"http://127.0.0.1:{server.server_port}", requests=requests)
    finally:
        server.shutdown()
        server.server_close()
