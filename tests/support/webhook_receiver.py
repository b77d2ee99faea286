"""A webhook receiver on loopback that records deliveries and can refuse the first ones."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Delivery:
    """One POST the receiver accepted or refused."""

    headers: dict[str, str]
    body: bytes
    accepted: bool


@dataclass
class Receiver:
    """State of a running receiver; tests read `deliveries` and set `refuse_next`."""

    url: str
    refuse_next: int = 0
    """Number of next requests that get 503 instead of 204."""

    reject_with: int | None = None
    """Status code, such as 410, returned for every request instead; None to accept."""

    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[Delivery]:
        with self.lock:
            return [delivery for delivery in self.deliveries if delivery.accepted]


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """Run a receiver on a free port of 127.0.0.1 until the block ends."""
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                accept = receiver.refuse_next <= 0 and receiver.reject_with is None
                code = 204
                if receiver.reject_with is not None:
                    code = receiver.reject_with
                elif not accept:
                    receiver.refuse_next -= 1
                    code = 503
                receiver.deliveries.append(Delivery(dict(self.headers), body, accept))
            self.send_response(code)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
