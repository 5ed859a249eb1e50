"""A local HTTP sink that records what orbiter posts to it (webhooks, Slack messages), answering
with the status codes a test scripts: a sink that fails first and recovers later."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the sink answered

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Sink:
    url: str
    answers: dict[str, list[int]] = field(default_factory=dict)  # by path, one per request; then 200
    received: list[Received] = field(default_factory=list)

    def delivered(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]


@contextmanager
def http_sink(host: str = "127.0.0.1") -> Iterator[Sink]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                queue = sink.answers.get(self.path) or []
                status = queue.pop(0) if queue else 200
                sink.received.append(Received(self.path, dict(self.headers), body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer((host, 0), Handler)
    sink = Sink(url=f"http://{host}:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
