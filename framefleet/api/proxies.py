"""The client's address: the TCP peer, or what a trusted proxy says in X-Forwarded-For — never what any
other peer says.

One function decides it, at the edge of the app, and writes it into the request's `client`; key CIDR
allowlists, rate limits per address and the audit log all read it from there. `framefleet api` turns
uvicorn's own proxy-header handling off so that this is the only place the header is believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str | None:
    """The client behind `peer`: X-Forwarded-For is read only when `peer` is a trusted proxy.

    The header is read from the right (the hop nearest us) and each trusted proxy in it is skipped; the
    first address no trusted proxy vouches beyond is the client. An entry that is not an address stops
    the walk at the last proxy that was trusted (anything left of it is the client's own say-so).
    """
    peer_address = _address(peer) if peer else None
    if peer_address is None or not any(peer_address in net for net in trusted):
        return peer
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    client = str(peer_address)
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return client
        client = str(address)
        if not any(address in net for net in trusted):
            return client
    return client


class ClientAddressMiddleware:
    """Replaces the ASGI `client` host by `client_address(...)` for every request."""

    def __init__(self, app: ASGIApp, *, trusted: Sequence[str]) -> None:
        self.app = app
        self.trusted = tuple(ipaddress.ip_network(net, strict=False) for net in trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.trusted and scope.get("client"):
            host, port = scope["client"]
            forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
            resolved = client_address(host, forwarded, self.trusted)
            if resolved != host:
                scope = {**scope, "client": (resolved, port)}
        await self.app(scope, receive, send)
