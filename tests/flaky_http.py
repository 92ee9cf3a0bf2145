"""A local HTTP file server whose first N GET requests fail with 503, as a busy object store does."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
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
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
