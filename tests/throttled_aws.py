"""An AWS endpoint on 127.0.0.1 that throttles every call, in each service's own protocol.

moto never throttles, and a botocore hook would only reach the test's own process, not the
kernels of a triage. Pointing an environment's ``aws.endpoint_url`` here makes every process of
a run meet real throttling answers through the real boto3 calls: JSON (``__type``), RPC v2 CBOR
(CloudWatch), query and EC2 XML, REST-XML (S3, CloudFront) and REST-JSON (``x-amzn-ErrorType``).
Used by tests/test_faults.py and benchmarks/throttled.py.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_QUERY_ERROR = ("<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
                "</Error><RequestId>throttled</RequestId></ErrorResponse>")
_EC2_ERROR = ("<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
              "</Message></Error></Errors><RequestID>throttled</RequestID></Response>")
_S3_ERROR = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"


def _cbor_text(text: str) -> bytes:
    data = text.encode()
    return (bytes([0x60 + len(data)]) if len(data) < 24 else bytes([0x78, len(data)])) + data


def _cbor_error(code: str, message: str) -> bytes:
    return bytes([0xA2]) + _cbor_text("__type") + _cbor_text(code) + _cbor_text("message") + _cbor_text(message)


class _Handler(BaseHTTPRequestHandler):
    server: ThrottlingServer

    def log_message(self, *_: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        scope = _SCOPE.search(self.headers.get("Authorization", ""))
        service = scope.group(1) if scope else "?"
        target = self.headers.get("X-Amz-Target", "")
        action = re.search(rb"Action=([A-Za-z0-9]+)", body)
        operation = target.rsplit(".", 1)[-1] if target else action.group(1).decode() if action else self.path
        self.server.calls[f"{service}.{operation}"] += 1
        if target:
            self._send(400, "application/x-amz-json-1.1",
                       json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode())
        elif self.headers.get("smithy-protocol") == "rpc-v2-cbor":
            self._send(400, "application/cbor", _cbor_error("ThrottlingException", "Rate exceeded"),
                       {"smithy-protocol": "rpc-v2-cbor"})
        elif service == "ec2":
            self._send(503, "text/xml", _EC2_ERROR.encode())
        elif action:
            self._send(400, "text/xml", _QUERY_ERROR.encode())
        elif service == "s3":
            self._send(503, "application/xml", _S3_ERROR.encode())
        elif service == "cloudfront":
            self._send(400, "text/xml", _QUERY_ERROR.encode())
        else:  # REST-JSON: the code travels in a header
            self._send(429, "application/json", b'{"message": "Rate exceeded"}',
                       {"x-amzn-ErrorType": "ThrottlingException"})

    def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer


class ThrottlingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls: Counter[str] = Counter()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True, name="throttling-aws")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> ThrottlingServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()
        self.server_close()
