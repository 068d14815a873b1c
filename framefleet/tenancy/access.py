"""Whether an authenticated key may be used for this request (pure): expiry, network, tenant status."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from framefleet.keys import Principal

SUSPENDED = "suspended"
ACTIVE = "active"
TENANT_STATUSES = (ACTIVE, SUSPENDED)


@dataclass(frozen=True)
class Refusal:
    status: int  # 401: the key itself is no good now; 403: the key is fine but may not be used here
    detail: str


def refusal(principal: Principal, *, now: datetime, client_ip: str | None) -> Refusal | None:
    """Why this key may not be used now from `client_ip`, or None when it may."""
    if principal.expires_at is not None and principal.expires_at <= now:
        what = "API key" if principal.subject is None else "token"
        return Refusal(401, f"the {what} expired at {principal.expires_at.isoformat()}")
    if principal.networks and not _inside(client_ip, principal.networks):
        where = client_ip or "an unknown address"
        return Refusal(403, f"the API key may not be used from {where} (it is limited to its CIDR allowlist)")
    if principal.tenant_status == SUSPENDED:
        return Refusal(
            403, f"tenant {principal.tenant!r} is suspended; its keys are refused until reactivated"
        )
    return None


def _inside(
    client_ip: str | None, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    if not client_ip:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
