"""Small local servers that stand in for the edge of RMS in the demo (and in tests).

* ``CertificateAuthority``: a private CA (EC P-256, fast to generate) that issues server
  certificates with the lifetimes a scenario needs; ``self_signed`` for certificates without one.
* ``TlsServer``: a TLS endpoint on 127.0.0.1 serving one certificate (like the ALB's HTTPS listener).
* ``RouteServer``: an HTTP server answering fixed routes with a status, a delay and headers
  (the CloudFront distribution's assets, third-party health URLs).
* ``DnsServer``: a UDP DNS responder answering TXT queries from a table (SPF, DKIM, DMARC).

Each binds 127.0.0.1 on a free port, serves from a daemon thread, and stops with ``stop()``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import socketserver
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# --- certificates --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes
    chain_pem: bytes = b""  # the issuing CA, for ACM's CertificateChain


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _names(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _validity(days_left: float, lifetime_days: float, now: datetime | None) -> tuple[datetime, datetime]:
    """(not_before, not_after): *lifetime_days* long, but valid since at least a day ago."""
    now = now or datetime.now(UTC)
    not_after = now + timedelta(days=days_left)
    return min(not_after - timedelta(days=lifetime_days), now - timedelta(days=1)), not_after


class CertificateAuthority:
    """A private root CA that issues server certificates."""

    def __init__(self, name: str = "RMS Demo Root CA"):
        self._key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RMS demo"),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        public = self._key.public_key()
        self.certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=3650)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256()))
        self.cert_pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, names: Iterable[str], days_left: float, lifetime_days: float = 90.0,
              now: datetime | None = None) -> Issued:
        """A server certificate for *names* (DNS names or IPs; the first is the CN) expiring in *days_left*."""
        names = list(names)
        key = _key()
        not_before, not_after = _validity(days_left, lifetime_days, now)
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(_names(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256()))
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), self.cert_pem)

    def write_bundle(self, folder: str | os.PathLike[str]) -> str:
        """The CA certificate as a PEM file (a CA bundle for clients); returns its path."""
        path = os.path.join(folder, "ca-bundle.pem")
        with open(path, "wb") as out:
            out.write(self.cert_pem)
        return path


def self_signed(names: Iterable[str], days_left: float, lifetime_days: float = 90.0,
                now: datetime | None = None) -> Issued:
    """A self-signed server certificate (no CA vouches for it)."""
    names = list(names)
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    not_before, not_after = _validity(days_left, lifetime_days, now)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(_names(names)), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


# --- TLS endpoint --------------------------------------------------------------------------------

class _Quiet(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # noqa: ANN001 - socketserver's signature
        pass  # clients that abort the handshake (a failed verification) are expected


class TlsServer:
    """Serves one certificate on 127.0.0.1 and answers any HTTP request with 200."""

    def __init__(self, issued: Issued):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="rmsops-tls-") as folder:  # loaded, then removed
            cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            with open(cert, "wb") as out:
                out.write(issued.cert_pem + issued.chain_pem)
            with open(key, "wb") as out:
                out.write(issued.key_pem)
            self.context.load_cert_chain(cert, key)
        self._server: _Quiet | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def start(self) -> TlsServer:
        context = self.context

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                with contextlib.suppress(OSError), context.wrap_socket(self.request, server_side=True) as tls:
                    if tls.recv(4096):
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")

        self._server = _Quiet(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                        name="rms-demo-tls")
        self._thread.start()
        return self

    def stop(self) -> None:
        _shutdown(self._server, self._thread)
        self._server = self._thread = None


# --- HTTP routes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    status: int = 200
    delay: float = 0.0  # seconds before answering
    content_type: str = "text/plain"
    body: bytes = b"ok\n"
    headers: tuple[tuple[str, str], ...] = ()


class RouteServer:
    """Answers GET and HEAD on fixed paths; anything else is 404."""

    def __init__(self, routes: Mapping[str, Route], name: str = "rms-demo-http"):
        self.routes = dict(routes)
        self.name = name
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> RouteServer:
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            server_version = "rms-demo"
            sys_version = ""

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(send_body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(send_body=False)

            def _answer(self, send_body: bool) -> None:
                route = routes.get(self.path.split("?", 1)[0], Route(404, body=b"not found\n"))
                if route.delay:
                    time.sleep(route.delay)
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                for key, value in route.headers:
                    self.send_header(key, value)
                self.end_headers()
                if send_body:
                    self.wfile.write(route.body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # noqa: ANN001
                pass  # a client that gave up on a slow route

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                        name=self.name)
        self._thread.start()
        return self

    def stop(self) -> None:
        _shutdown(self._server, self._thread)
        self._server = self._thread = None


def _shutdown(server: socketserver.BaseServer | None, thread: threading.Thread | None) -> None:
    if server is None:
        return
    server.shutdown()
    server.server_close()
    if thread is not None:
        thread.join(timeout=5)


# --- DNS -----------------------------------------------------------------------------------------

class DnsServer:
    """A UDP DNS responder for TXT records: known names answer, unknown ones are NXDOMAIN.

    *failing* names answer SERVFAIL (a broken zone), *silent* names get no answer at all (a timeout).
    """

    def __init__(self, txt: Mapping[str, Iterable[str]], failing: Iterable[str] = (),
                 silent: Iterable[str] = ()):
        self.txt = {_fqdn(name): list(values) for name, values in txt.items()}
        self.failing = {_fqdn(name) for name in failing}
        self.silent = {_fqdn(name) for name in silent}
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``ip:port``, the form of the environment file's ``external.dns_server``."""
        assert self._sock is not None, "start() first"
        host, port = self._sock.getsockname()[:2]
        return f"{host}:{port}"

    def start(self) -> DnsServer:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._serve, daemon=True, name="rms-demo-dns")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._sock is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sock.close()
        self._sock = self._thread = None

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.05)
            if not ready:
                continue
            try:
                data, peer = sock.recvfrom(4096)
            except OSError:
                return
            with contextlib.suppress(Exception):  # a malformed query gets no answer, like a real server
                answer = self.answer(data)
                if answer is not None:
                    sock.sendto(answer, peer)

    def answer(self, wire: bytes) -> bytes | None:
        import dns.message
        import dns.rcode
        import dns.rdataclass
        import dns.rdatatype
        from dns.rdtypes.ANY.TXT import TXT

        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().lower()
        if name in self.silent:
            return None
        if name in self.failing:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.txt:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            rrset = response.find_rrset(response.answer, question.name, dns.rdataclass.IN, dns.rdatatype.TXT,
                                        create=True)
            for value in self.txt[name]:
                raw = value.encode()
                chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
                rrset.add(TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks), ttl=300)
        return response.to_wire()


def _fqdn(name: str) -> str:
    return name.lower().rstrip(".") + "."
