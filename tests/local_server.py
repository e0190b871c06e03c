"""A real HTTP server on 127.0.0.1 for the LLM client's tests (no network beyond this machine)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer


class LocalServer:
    """Answers each POST with `handle(handler)`; records every request's (path, body, Authorization),
    the body parsed as JSON where it is JSON."""

    def __init__(self, handle):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(body)
                except ValueError:
                    pass
                received.append((self.path, body, self.headers.get("Authorization")))
                handle(self)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
