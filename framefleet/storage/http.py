"""HTTP(S) inputs: streaming downloads with a size cap, a total time limit and SSRF protection.

The address check lives in the network backend that opens every TCP connection: the host is resolved
once, every address is checked, and the socket connects to exactly the checked address. Redirect hops
open their own connections through the same backend, so each target is checked too, and a DNS answer
that changes between check and connect (rebinding) cannot slip through. The URL keeps its host name, so
the Host header, TLS SNI and certificate verification all use the real name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Any

import httpcore
import httpx

from framefleet.core.failures import FailureClass
from framefleet.storage.base import (
    Digest,
    StorageDenied,
    StorageError,
    StorageNotFound,
    StorageTooLarge,
    StorageUnavailable,
    safe_filename,
    temp_path_in,
)

Resolver = Callable[[str, int], list[str]]

MAX_REDIRECTS = 5
_CHUNK = 256 * 1024
_CGNAT = IPv4Network("100.64.0.0/10")
_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_USER_AGENT = "FrameFleet-fetch/1"


def forbidden_reason(address: str | IPv4Address | IPv6Address) -> str | None:
    """Why `address` must not be contacted (loopback, private, link-local, ...), or None for a public one."""
    ip = ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, IPv6Address):
        # Addresses that embed an IPv4 address reach that IPv4 host: judge the embedded one.
        if ip.ipv4_mapped is not None:
            inner = forbidden_reason(ip.ipv4_mapped)
            return f"IPv4-mapped {inner}" if inner else None
        if ip in _NAT64:
            inner = forbidden_reason(IPv4Address(int(ip) & 0xFFFFFFFF))
            return f"NAT64-embedded {inner}" if inner else None
        if ip.sixtofour is not None:
            inner = forbidden_reason(ip.sixtofour)
            return f"6to4-embedded {inner}" if inner else None
        if ip.teredo is not None:
            return "Teredo tunnel address"
        if ip in _IPV4_COMPATIBLE and not (ip.is_unspecified or ip.is_loopback):
            return "deprecated IPv4-compatible address"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address (this includes cloud metadata services)"
    if isinstance(ip, IPv4Address) and ip in _CGNAT:
        return "carrier-grade NAT address (100.64.0.0/10)"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_private:
        return "private address"
    if ip.is_reserved:
        return "reserved address"
    if not ip.is_global:
        return "non-public address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every IPv4/IPv6 address `host` resolves to, in the resolver's order, without duplicates."""
    addresses: list[str] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addresses:
            addresses.append(str(sockaddr[0]))
    return addresses


_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


class _Deadline:
    """The moment a whole download must be over; every socket timeout is capped by what is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def cap(self, timeout: float | None) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise StorageUnavailable(f"download exceeded its time limit of {self.seconds:g}s")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.cap(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.cap(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._deadline.cap(timeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Opens TCP connections only to checked addresses, and only to the address that was checked."""

    def __init__(self, *, allow_private: bool, resolver: Resolver, deadline: _Deadline) -> None:
        self._allow_private = allow_private
        self._resolver = resolver
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def pinned_addresses(self, host: str, port: int) -> list[str]:
        """Resolve `host` and check every answer; one forbidden answer refuses the whole host."""
        try:
            addresses = self._resolver(host, port)
        except socket.gaierror as exc:
            if exc.errno in _NO_SUCH_NAME:
                raise StorageNotFound(f"host {host!r} does not resolve") from None
            raise StorageUnavailable(f"cannot resolve host {host!r}: {exc.strerror or exc}") from None
        if not addresses:
            raise StorageNotFound(f"host {host!r} does not resolve")
        if not self._allow_private:
            for address in addresses:
                reason = forbidden_reason(address)
                if reason:
                    raise StorageDenied(
                        f"refusing to connect to {host!r}: it resolves to {address}, a {reason}"
                    )
        return addresses

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in self.pinned_addresses(host, port):
            try:
                stream = self._inner.connect_tcp(
                    address,
                    port,
                    timeout=self._deadline.cap(timeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise StorageDenied("unix sockets are not allowed for HTTP inputs")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    """Turn httpcore's transport errors into storage errors (timeouts and resets are transient)."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise StorageUnavailable(f"timed out: {exc or type(exc).__name__}") from None
    except httpcore.UnsupportedProtocol as exc:
        raise StorageDenied(f"unsupported protocol: {exc}") from None
    except httpcore.ConnectError as exc:
        raise StorageUnavailable(f"cannot connect: {exc}") from None
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise StorageUnavailable(f"connection failed: {exc or type(exc).__name__}") from None


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes]) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        with _mapped_errors():
            yield from self._inner

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class _GuardedTransport(httpx.BaseTransport):
    """httpx transport over an httpcore pool whose every connection goes through _GuardedBackend."""

    def __init__(self, pool: httpcore.ConnectionPool) -> None:
        self._pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped_errors():
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


@contextlib.contextmanager
def guarded_client(
    *,
    allow_private: bool,
    deadline: _Deadline | float,
    resolver: Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
    user_agent: str = _USER_AGENT,
) -> Iterator[httpx.Client]:
    """An httpx client whose every connection passes the address guard, all within one time limit
    (seconds, or a shared deadline); redirects are not followed, proxies from the environment ignored."""
    if not isinstance(deadline, _Deadline):
        deadline = _Deadline(deadline)
    backend = _GuardedBackend(
        allow_private=allow_private, resolver=resolver or system_resolver, deadline=deadline
    )
    context = ssl_context or httpx.create_ssl_context(trust_env=False)
    pool = httpcore.ConnectionPool(ssl_context=context, network_backend=backend, max_connections=2, retries=0)
    client = httpx.Client(
        transport=_GuardedTransport(pool),
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(deadline.seconds),
        # Identity encoding: max_bytes then bounds what lands on disk, and no decompression bomb.
        headers={"Accept-Encoding": "identity", "User-Agent": user_agent},
    )
    with client:
        yield client


def checked_url(uri: str) -> httpx.URL:
    """`uri` parsed, when it is an http(s) URL with a host; StorageError otherwise."""
    return _checked_url(uri)


def _checked_url(uri: str) -> httpx.URL:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        raise StorageDenied(f"control character in URL {uri!r}")
    try:
        url = httpx.URL(uri)
    except (httpx.InvalidURL, TypeError) as exc:
        raise StorageError(f"invalid URL {uri!r}: {exc}", failure_class=FailureClass.input_invalid) from None
    if url.scheme not in ("http", "https"):
        raise StorageDenied(f"only http and https URLs can be fetched, not {uri!r}")
    if not url.host:
        raise StorageError(f"URL has no host: {uri!r}", failure_class=FailureClass.input_invalid)
    return url


def _status_error(status: int, url: httpx.URL) -> StorageError | None:
    """The storage error for an HTTP status, or None when the body is the object."""
    if status == 200:
        return None
    if status in (404, 410):
        return StorageNotFound(f"{url} answered HTTP {status}: not found")
    if status in (401, 403, 407, 451):
        return StorageDenied(f"{url} answered HTTP {status}: access denied")
    if status in (408, 425, 429) or status >= 500:
        return StorageUnavailable(f"{url} answered HTTP {status}")
    return StorageError(f"{url} answered unexpected HTTP {status}", failure_class=FailureClass.input_invalid)


class HttpStorage:
    """Read-only http(s):// inputs, downloaded with a size cap, a total time limit and SSRF protection."""

    scheme = "https"
    schemes = ("http", "https")

    def __init__(
        self,
        allow_private: bool = False,
        max_bytes: int = 10 * 1024**3,
        timeout: float = 60.0,
        *,
        resolver: Resolver | None = None,
        max_redirects: int = MAX_REDIRECTS,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self._resolver = resolver or system_resolver
        # Proxy and CA settings from the environment are ignored on purpose: a proxy would be the
        # address connected to, and the guard would check the proxy instead of the real target.
        self._ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)

    @contextlib.contextmanager
    def _client(self, deadline: _Deadline) -> Iterator[httpx.Client]:
        with guarded_client(
            allow_private=self.allow_private,
            deadline=deadline,
            resolver=self._resolver,
            ssl_context=self._ssl_context,
            user_agent=_USER_AGENT,
        ) as client:
            yield client

    def _open(self, client: httpx.Client, method: str, uri: str) -> httpx.Response:
        """Send `method` and follow up to max_redirects redirects, each target checked like the first."""
        url = _checked_url(uri)
        for hop in range(self.max_redirects + 1):
            try:
                response = client.send(client.build_request(method, url), stream=True)
            except httpx.RemoteProtocolError as exc:
                # Transport failures arrive as StorageErrors; httpx itself only raises this one for a
                # redirect whose Location cannot be parsed, which no retry will fix.
                raise StorageError(
                    f"{uri} redirected to an invalid location: {exc}",
                    failure_class=FailureClass.input_invalid,
                ) from None
            if not response.is_redirect:
                return response
            response.close()
            if hop == self.max_redirects:
                raise StorageError(
                    f"{uri} redirected more than {self.max_redirects} times",
                    failure_class=FailureClass.input_invalid,
                )
            # httpx has already resolved the Location against the current URL (it is never followed here).
            assert response.next_request is not None
            try:
                url = _checked_url(str(response.next_request.url))
            except StorageDenied as exc:
                raise StorageDenied(f"{uri} redirected to a refused target: {exc}") from None
        raise AssertionError("unreachable")

    def fetch(
        self, uri: str, workdir: Path, *, name: str | None = None, digest: Digest | None = None
    ) -> Path:
        """Download `uri` into `workdir` (temp name, then rename) and return the file's path; `digest` is
        fed each chunk as it is written."""
        url = _checked_url(uri)
        deadline = _Deadline(self.timeout)
        # httpx.URL.path is already percent-decoded.
        filename = safe_filename(name or url.path.rsplit("/", 1)[-1], "download")
        tmp: Path | None = None
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            with self._client(deadline) as client:
                response = self._open(client, "GET", uri)
                try:
                    error = _status_error(response.status_code, response.url)
                    if error:
                        raise error
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self.max_bytes:
                        raise StorageTooLarge(
                            f"{uri} is {int(declared)} bytes, over the limit of {self.max_bytes} bytes"
                        )
                    tmp = temp_path_in(workdir, filename)
                    size = 0
                    with open(tmp, "wb") as out:
                        for chunk in response.iter_bytes(_CHUNK):
                            size += len(chunk)
                            if size > self.max_bytes:
                                raise StorageTooLarge(f"{uri} exceeds the limit of {self.max_bytes} bytes")
                            if deadline.passed:
                                raise StorageUnavailable("time limit passed")  # reworded by _translate
                            if digest is not None:
                                digest.update(chunk)
                            out.write(chunk)
                finally:
                    response.close()
            dest = workdir / filename
            os.replace(tmp, dest)
            return dest
        except BaseException as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise self._translate(exc, uri, deadline) from None

    @staticmethod
    def _translate(exc: BaseException, uri: str, deadline: _Deadline) -> BaseException:
        if isinstance(exc, StorageUnavailable) and deadline.passed:
            return StorageUnavailable(f"{uri}: download exceeded its time limit of {deadline.seconds:g}s")
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, httpx.HTTPError):
            return StorageUnavailable(f"{uri}: {exc}")
        if isinstance(exc, OSError):
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # this worker's disk, not the remote's fault
                return StorageError(f"{uri}: {exc.strerror}", failure_class=FailureClass.resource_exhausted)
            return StorageError(f"{uri}: cannot write the download: {exc}")
        return exc

    def exists(self, uri: str) -> bool:
        """Whether `uri` answers 200 (HEAD, or GET without reading the body where HEAD is refused)."""
        deadline = _Deadline(self.timeout)
        try:
            with self._client(deadline) as client:
                for method in ("HEAD", "GET"):
                    response = self._open(client, method, uri)
                    response.close()
                    if method == "HEAD" and response.status_code in (405, 501):
                        continue
                    error = _status_error(response.status_code, response.url)
                    if isinstance(error, StorageNotFound):
                        return False
                    if error:
                        raise error
                    return True
        except BaseException as exc:
            raise self._translate(exc, uri, deadline) from None
        return False

    def put(self, local: Path, uri: str, *, move: bool = False, replace: bool = True) -> int:
        """HTTP storage is read-only: always refused."""
        raise StorageDenied(f"http(s) storage is read-only: cannot write {uri}")

    def delete(self, uri: str) -> None:
        """HTTP storage is read-only: always refused."""
        raise StorageDenied(f"http(s) storage is read-only: cannot delete {uri}")

    def check(self) -> None:
        """Nothing to probe: HTTP inputs have no fixed endpoint, each URL is checked when fetched."""
