"""HttpStorage: the address guard, and downloads from a real HTTP(S) server on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from framefleet.core.failures import FailureClass
from framefleet.storage import http as http_module
from framefleet.storage.base import (
    StorageDenied,
    StorageError,
    StorageNotFound,
    StorageTooLarge,
    StorageUnavailable,
)
from framefleet.storage.http import HttpStorage, forbidden_reason
from tests.services import free_port

BODY = bytes(range(256)) * 200  # 51,200 bytes


# --- the address guard, as a pure function ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.255", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "private"),
        ("255.255.255.255", "private"),
        ("240.0.0.1", "private"),
        ("192.0.2.10", "private"),
        ("198.18.0.1", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("::ffff:10.1.2.3", "IPv4-mapped private"),
        ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
        ("64:ff9b::7f00:1", "NAT64-embedded loopback"),
        ("2002:c0a8:101::1", "6to4-embedded private"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("2001:db8::1", "private"),
    ],
)
def test_forbidden_addresses(address: str, reason: str) -> None:
    got = forbidden_reason(address)
    assert got is not None and reason in got


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82b::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(address) is None
    assert forbidden_reason(ipaddress.ip_address(address)) is None


# --- a real server ------------------------------------------------------------------------------------


class Server:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Host header)
        self.port = 0


def make_handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            if self.path == "/nohead":
                server.requests.append(("HEAD", self.path, self.headers.get("Host", "")))
                self._send(405)
                return
            self.do_GET()

        def do_GET(self) -> None:
            server.requests.append((self.command, self.path, self.headers.get("Host", "")))
            path = self.path
            if path in ("/file.bin", "/nohead"):
                self._send(200, BODY, {"Content-Type": "application/octet-stream"})
            elif path == "/host":
                self._send(200, self.headers.get("Host", "").encode())
            elif path == "/stream":
                # No Content-Length: the size is only known by counting.
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for _ in range(64):
                    self.wfile.write(b"s" * 32768)
            elif path == "/declared-huge":
                self.send_response(200)
                self.send_header("Content-Length", str(10**12))
                self.end_headers()
                self.close_connection = True
                self.wfile.write(b"x" * 1000)
            elif path == "/slow":
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.close_connection = True
                try:
                    for _ in range(100):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.1)
                except OSError:
                    pass
            elif path == "/missing":
                self._send(404, b"no")
            elif path == "/gone":
                self._send(410, b"gone")
            elif path == "/forbidden":
                self._send(403, b"no")
            elif path == "/broken":
                self._send(503, b"later")
            elif path == "/teapot":
                self._send(418, b"")
            elif path == "/redirect":
                self._send(302, headers={"Location": "/file.bin"})
            elif path.startswith("/chain/"):
                left = int(path.rsplit("/", 1)[1])
                target = "/file.bin" if left == 0 else f"/chain/{left - 1}"
                self._send(301, headers={"Location": target})
            elif path == "/loop":
                self._send(302, headers={"Location": "/loop"})
            elif path == "/to-other-host":
                self._send(302, headers={"Location": f"http://127.0.0.2:{server.port}/file.bin"})
            elif path == "/to-invalid":
                self._send(302, headers={"Location": "http://[::1/x"})
            elif path == "/to-file":
                self._send(302, headers={"Location": "file:///etc/passwd"})
            elif path == "/to-metadata":
                self._send(307, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
            else:
                self._send(500, b"unknown test path")

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def requests(server: Server) -> list[tuple[str, str, str]]:
    server.requests.clear()
    return server.requests


def url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def open_store(**kwargs: object) -> HttpStorage:
    return HttpStorage(allow_private=True, max_bytes=10**7, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_download_into_workdir(server: Server, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    got = open_store().fetch(url(server, "/file.bin"), workdir)
    assert got == workdir / "file.bin"
    assert got.read_bytes() == BODY
    assert [p.name for p in workdir.iterdir()] == ["file.bin"]  # the temp name is gone


def test_download_with_explicit_name_and_without_length(server: Server, tmp_path: Path) -> None:
    got = open_store().fetch(url(server, "/stream"), tmp_path, name="input.mp4")
    assert got == tmp_path / "input.mp4"
    assert got.stat().st_size == 64 * 32768


def test_private_address_refused_without_allow_private(
    server: Server, requests: list[tuple[str, str, str]], tmp_path: Path
) -> None:
    store = HttpStorage(allow_private=False, max_bytes=10**7, timeout=5)
    for target in (
        url(server, "/file.bin"),
        f"http://localhost:{server.port}/file.bin",
        f"http://[::1]:{server.port}/file.bin",
        f"http://127.1:{server.port}/file.bin",
    ):
        with pytest.raises(StorageDenied, match="loopback") as info:
            store.fetch(target, tmp_path)
        assert info.value.failure_class is FailureClass.storage_denied
    assert requests == []  # nothing was ever sent
    assert list(tmp_path.iterdir()) == []


def test_numeric_host_tricks_never_reach_loopback(
    server: Server, requests: list[tuple[str, str, str]], tmp_path: Path
) -> None:
    store = HttpStorage(allow_private=False, max_bytes=10**7, timeout=5)
    for host in ("2130706433", "0x7f000001", "0177.0.0.1", "0", "[::ffff:127.0.0.1]"):
        with pytest.raises((StorageDenied, StorageNotFound, StorageError)):
            store.fetch(f"http://{host}:{server.port}/file.bin", tmp_path)
    assert requests == []


def test_hostname_resolving_to_a_mix_is_refused(server: Server, tmp_path: Path) -> None:
    store = HttpStorage(
        allow_private=False,
        max_bytes=10**7,
        timeout=5,
        resolver=lambda host, port: ["93.184.216.34", "169.254.169.254"],
    )
    with pytest.raises(StorageDenied, match=r"169\.254\.169\.254.*link-local"):
        store.fetch("http://media.example/clip.mp4", tmp_path)


def test_connects_to_the_checked_address_with_the_real_host_header(
    server: Server, requests: list[tuple[str, str, str]], tmp_path: Path
) -> None:
    lookups: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append((host, port))
        return ["127.0.0.1"]

    got = open_store(resolver=resolver).fetch(f"http://media.example:{server.port}/host", tmp_path)
    assert got.read_text() == f"media.example:{server.port}"
    assert requests == [("GET", "/host", f"media.example:{server.port}")]
    # One lookup, and the socket went to its answer: nothing re-resolves the name behind the check.
    assert lookups == [("media.example", server.port)]


def test_https_pins_the_address_but_verifies_and_sends_sni_for_the_name(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "media.example")
    seen_sni: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)  # type: ignore[assignment,func-returns-value]
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        store = open_store(resolver=lambda host, port: ["127.0.0.1"], verify=client_ctx)
        got = store.fetch(f"https://media.example:{state.port}/host", tmp_path)
        assert got.read_text() == f"media.example:{state.port}"
        assert seen_sni == ["media.example"]
        # The certificate names media.example only: asking for another name fails verification.
        with pytest.raises(StorageUnavailable):
            store.fetch(f"https://other.example:{state.port}/host", tmp_path)
    finally:
        httpd.shutdown()
        httpd.server_close()


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for `name` (the test's own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_max_bytes_from_content_length_up_front(
    server: Server, requests: list[tuple[str, str, str]], tmp_path: Path
) -> None:
    store = HttpStorage(allow_private=True, max_bytes=10_000, timeout=10)
    with pytest.raises(StorageTooLarge, match="over the limit") as info:
        store.fetch(url(server, "/file.bin"), tmp_path)
    assert info.value.failure_class is FailureClass.input_invalid
    with pytest.raises(StorageTooLarge):
        HttpStorage(allow_private=True, max_bytes=10**9, timeout=10).fetch(
            url(server, "/declared-huge"), tmp_path
        )
    assert list(tmp_path.iterdir()) == []


def test_max_bytes_while_streaming(server: Server, tmp_path: Path) -> None:
    store = HttpStorage(allow_private=True, max_bytes=100_000, timeout=10)
    with pytest.raises(StorageTooLarge, match="exceeds"):
        store.fetch(url(server, "/stream"), tmp_path)
    assert list(tmp_path.iterdir()) == []  # the partial download is removed


def test_total_time_limit(server: Server, tmp_path: Path) -> None:
    store = HttpStorage(allow_private=True, max_bytes=10**7, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="time limit"):
        store.fetch(url(server, "/slow"), tmp_path)
    assert time.monotonic() - started < 3  # a trickle of bytes does not keep it alive
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("path", "error", "failure_class"),
    [
        ("/missing", StorageNotFound, FailureClass.input_invalid),
        ("/gone", StorageNotFound, FailureClass.input_invalid),
        ("/forbidden", StorageDenied, FailureClass.storage_denied),
        ("/broken", StorageUnavailable, FailureClass.storage_unavailable),
        ("/teapot", StorageError, FailureClass.input_invalid),
    ],
)
def test_http_status_mapping(
    server: Server, tmp_path: Path, path: str, error: type[StorageError], failure_class: FailureClass
) -> None:
    with pytest.raises(error) as info:
        open_store().fetch(url(server, path), tmp_path)
    assert info.value.failure_class is failure_class
    assert list(tmp_path.iterdir()) == []


def test_unreachable_port_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable) as info:
        open_store().fetch(f"http://127.0.0.1:{free_port()}/file.bin", tmp_path)
    assert info.value.failure_class is FailureClass.storage_unavailable


def test_unresolvable_host_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(StorageNotFound, match="does not resolve"):
        open_store().fetch("http://no-such-host.invalid/x.mp4", tmp_path)


def test_redirects_are_followed_up_to_five(server: Server, tmp_path: Path) -> None:
    store = open_store()
    assert store.fetch(url(server, "/redirect"), tmp_path / "a").read_bytes() == BODY
    assert store.fetch(url(server, "/chain/4"), tmp_path / "b").read_bytes() == BODY  # 5 redirects
    with pytest.raises(StorageError, match="more than 5") as info:
        store.fetch(url(server, "/chain/5"), tmp_path / "c")
    assert info.value.failure_class is FailureClass.input_invalid
    with pytest.raises(StorageError, match="more than 5"):
        store.fetch(url(server, "/loop"), tmp_path / "d")


def test_redirect_to_a_non_http_scheme_is_denied(server: Server, tmp_path: Path) -> None:
    with pytest.raises(StorageDenied, match="redirected"):
        open_store().fetch(url(server, "/to-file"), tmp_path)


def test_redirect_to_an_invalid_location_is_input_invalid(server: Server, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="invalid location") as info:
        open_store().fetch(url(server, "/to-invalid"), tmp_path)
    assert info.value.failure_class is FailureClass.input_invalid


def test_each_redirect_target_is_checked(
    server: Server, requests: list[tuple[str, str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Treat 127.0.0.1 (the test server) as if it were public; everything else keeps the real rule.
    real = forbidden_reason
    monkeypatch.setattr(http_module, "forbidden_reason", lambda a: None if str(a) == "127.0.0.1" else real(a))
    store = HttpStorage(allow_private=False, max_bytes=10**7, timeout=5)
    assert store.fetch(url(server, "/redirect"), tmp_path).read_bytes() == BODY
    requests.clear()
    with pytest.raises(StorageDenied, match=r"127\.0\.0\.2.*loopback"):
        store.fetch(url(server, "/to-other-host"), tmp_path)
    with pytest.raises(StorageDenied, match="link-local"):
        store.fetch(url(server, "/to-metadata"), tmp_path)
    assert [path for _, path, _ in requests] == ["/to-other-host", "/to-metadata"]


def test_only_http_urls(tmp_path: Path) -> None:
    store = open_store()
    for target in ("file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1:70/"):
        with pytest.raises(StorageDenied):
            store.fetch(target, tmp_path)
    with pytest.raises(StorageError):
        store.fetch("http:///nohost", tmp_path)


def test_exists(server: Server) -> None:
    store = open_store()
    assert store.exists(url(server, "/file.bin"))
    assert store.exists(url(server, "/nohead"))  # HEAD refused with 405, GET answers
    assert not store.exists(url(server, "/missing"))
    with pytest.raises(StorageUnavailable):
        store.exists(url(server, "/broken"))
    with pytest.raises(StorageDenied):
        HttpStorage(allow_private=False, max_bytes=1, timeout=5).exists(url(server, "/file.bin"))


def test_read_only(tmp_path: Path) -> None:
    store = open_store()
    local = tmp_path / "x"
    local.write_bytes(b"x")
    with pytest.raises(StorageDenied, match="read-only"):
        store.put(local, "https://example.com/x")
    with pytest.raises(StorageDenied, match="read-only"):
        store.delete("https://example.com/x")
    store.check()
