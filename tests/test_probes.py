"""Health URLs probed before the imports (`rmsops check`): the checks take those answers, once."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from rmsops.sources import http as health_http
from rmsops.sources import probes


@pytest.fixture
def server():
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            hits.append(self.path)
            if self.path == "/slow":
                time.sleep(0.4)
            self.send_response(503 if self.path == "/down" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()


def test_a_started_probe_is_taken_once_and_not_sent_again(server):
    base, hits = server
    urls = {"api": f"{base}/slow", "web": f"{base}/down"}
    probes.start(urls, timeout=2.0)
    frame = health_http.fetch_health({"api (renamed)": urls["api"], "web": urls["web"]}, 2.0)
    assert sorted(hits) == ["/down", "/slow"]  # each URL asked once, by the early probe
    assert dict(zip(frame["url"], frame["status"], strict=True)) == {urls["api"]: 200, urls["web"]: 503}
    assert frame.loc[frame["url"] == urls["api"], "seconds"].iloc[0] >= 0.4  # the wait it measured
    assert "api (renamed)" in set(frame["name"])  # the check's names, not the prober's
    health_http.fetch_health({"web": urls["web"]}, 2.0)
    assert sorted(hits) == ["/down", "/down", "/slow"]  # taken once: a later check probes afresh


def test_a_probe_with_another_timeout_is_not_taken(server):
    base, hits = server
    probes.start({"web": f"{base}/down"}, timeout=1.0)
    time.sleep(0.2)
    health_http.fetch_health({"web": f"{base}/down"}, 3.0)  # -p health_timeout_seconds changed it
    assert hits == ["/down", "/down"]
    assert probes.take("web", f"{base}/down", 1.0) is not None  # still there for a check that matches
