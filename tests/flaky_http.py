"""Local HTTP servers that fail some requests with 503: a busy object store, a tracking server blip."""

import http.client
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FlakyHandler(SimpleHTTPRequestHandler):
    failures_left: list[int]
    gets_seen: list[str]

    def do_GET(self) -> None:
        self.gets_seen.append(self.path)
        if self.failures_left[0] > 0:
            self.failures_left[0] -= 1
            self.send_error(503, "busy, try again")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def flaky_file_server(directory: Path, failures: int) -> Iterator[tuple[str, FlakyHandler]]:
    """Serve `directory` on 127.0.0.1 (free port); yield its base URL and the handler class."""
    handler = type("Handler", (FlakyHandler,), {"failures_left": [failures], "gets_seen": []})
    with _serving(ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))) as url:
        yield url, handler


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[str]:
    """Serve in a thread until the block ends; yield the base URL."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class FlakyProxy(BaseHTTPRequestHandler):
    """Forwards every request to `upstream`; answers 503 instead to those `fails` picks (a server blip).

    `fails(path, body)` is asked before forwarding; `answered(path, body, reply)` is told each reply.
    """

    upstream: str
    fails: Callable[[str, bytes], bool]
    answered: Callable[[str, bytes, bytes], None]
    failed: list[str]

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.fails(self.path, body):
            self.failed.append(f"{self.command} {self.path}")
            self.send_error(503, "tracking server unavailable")
            return
        upstream = urllib.parse.urlsplit(self.upstream)
        connection = http.client.HTTPConnection(upstream.netloc, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        connection.request(self.command, self.path, body=body or None, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        self.answered(self.path, body, payload)
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        connection.close()

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def flaky_proxy(
    upstream: str, fails: Callable[[str, bytes], bool], answered: Callable[[str, bytes, bytes], None]
) -> Iterator[tuple[str, type[FlakyProxy]]]:
    """A proxy on 127.0.0.1 (free port) in front of `upstream`; yield its base URL and the handler class."""
    hooks = {"fails": staticmethod(fails), "answered": staticmethod(answered)}
    handler = type("Proxy", (FlakyProxy,), {"upstream": upstream, "failed": [], **hooks})
    with _serving(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield url, handler
