"""A Slack-like incoming webhook on 127.0.0.1 for the notification tests (notify, watch)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HOOK_PATH = "/services/T0NOTIFY/B0NOTIFY/hook-path-secret-5f1c"  # Slack's shape: the path is the secret


class Receiver:
    """Answers with the scripted statuses (the last one repeats) and records every request."""

    def __init__(self, statuses: list[int]):
        self.statuses, self.bodies, self.paths, self.answers = list(statuses), [], [], []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                receiver.paths.append(self.path)
                receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                receiver.answers.append(status)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"server_error")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{HOOK_PATH}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def delivered(self) -> list[dict]:
        """The bodies it accepted (answered 200)."""
        return [body for body, status in zip(self.bodies, self.answers, strict=True) if status == 200]


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def start(*statuses: int) -> Receiver:
        made.append(Receiver(list(statuses) or [200]))
        return made[-1]

    yield start
    for r in made:
        r.server.shutdown()
        r.server.server_close()
