"""The RMS health URLs, served locally: ``/api/health`` (the API) and ``/`` (the frontend).

A threaded ``http.server`` on 127.0.0.1 and a free port, answering with the
status codes the scenario gives, like the ALB in front of RMS would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_PATH = "/api/health"
FRONTEND_PATH = "/"

_REASONS = {200: "ok", 502: "bad gateway", 503: "service unavailable"}
_FRONTEND_PAGE = (b"<!doctype html><html><head><title>RMS</title></head>"
                  b"<body><div id=\"app\">RMS - Reservation Management System</div></body></html>\n")


class HealthServer:
    """``start()`` binds and serves in a daemon thread; ``stop()`` shuts it down (idempotent)."""

    def __init__(self, status: Mapping[str, int]):
        self.status = {"api": int(status.get("api", 200)), "frontend": int(status.get("frontend", 200))}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def urls(self) -> dict[str, str]:
        return {"api": self.base_url + API_PATH, "frontend": self.base_url + FRONTEND_PATH}

    def start(self) -> HealthServer:
        status = self.status

        class Handler(BaseHTTPRequestHandler):
            server_version = "rms-demo"
            sys_version = ""

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(send_body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(send_body=False)

            def _answer(self, send_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                if path == API_PATH:
                    code = status["api"]
                    body = json.dumps({"status": "ok" if code < 400 else "unhealthy",
                                       "database": "ok" if code < 400 else
                                       "error: too many connections"}).encode() + b"\n"
                    kind = "application/json"
                elif path == FRONTEND_PATH:
                    code, body, kind = status["frontend"], _FRONTEND_PAGE, "text/html; charset=utf-8"
                else:
                    code, body, kind = 404, b"not found\n", "text/plain"
                self.send_response(code, _REASONS.get(code))
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # quiet: the demo's terminal belongs to the CLI

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="rms-demo-health",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
