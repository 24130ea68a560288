"""A local HTTP server in a thread, standing in for the download services (tests stay offline)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple


class Seen(NamedTuple):
    """A request the server received."""

    path: str
    headers: dict


def send(
    handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict | None = None
) -> None:
    """Answer the request with `status`, `headers` and `body` (Content-Length set)."""
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def local_server(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[tuple[str, list[Seen]]]:
    """Serve GET requests with `answer(handler)` on 127.0.0.1; yields (base URL, the requests seen so far)."""
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(Seen(self.path, dict(self.headers)))
            answer(self)

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
