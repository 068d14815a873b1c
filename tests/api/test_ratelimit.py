"""Rate limits: token buckets in the real Redis shared by two real API processes, RateLimit-* headers,
per-tenant overrides, and X-Forwarded-For believed only from a trusted proxy (limits and CIDR allowlists)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from framefleet.api.proxies import client_address
from framefleet.tenancy.ratelimit import tenant_limits
from tests import services

pytestmark = pytest.mark.timeout(120)

HOST = "127.0.0.1"
# Refilled so slowly that within a test only the burst counts: the figures are exact.
SLOW = 0.001

Starter = Callable[..., list[str]]


@pytest.fixture()
def start_apis(test_env: dict[str, str], tmp_path: Path) -> Iterator[Starter]:
    """start_apis(count, **settings) -> base URLs of `count` `framefleet api` processes."""
    with ExitStack() as stack:

        def start(count: int, **settings: str) -> list[str]:
            env = {**test_env, "FRAMEFLEET_ADMISSION_CHECK": "false", "FRAMEFLEET_LOG_LEVEL": "WARNING"}
            env.update({f"FRAMEFLEET_{name.upper()}": value for name, value in settings.items()})
            urls = []
            for _ in range(count):
                port = services.free_port()
                log = stack.enter_context((tmp_path / f"api-{port}.log").open("w"))
                command = [str(Path(sys.executable).parent / "framefleet"), "api", "--host", HOST]
                proc = subprocess.Popen(
                    [*command, "--port", str(port)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                stack.callback(services.stop, proc)
                url = f"http://{HOST}:{port}"
                services.wait_until(
                    lambda url=url: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, 30, "api", proc
                )
                urls.append(url)
            return urls

        yield start


def _roles(burst: int) -> str:
    bucket = {"burst": burst, "per_second": SLOW}
    return json.dumps({role: bucket for role in ("admin", "operator", "member", "viewer")})


def _spread(urls: list[str], keys: list[str], count: int, **headers: str) -> list[httpx.Response]:
    """`count` GET /v1/jobs at once, round-robin over the processes and keys."""

    def one(i: int) -> httpx.Response:
        url, key = urls[i % len(urls)], keys[i % len(keys)]
        return httpx.get(f"{url}/v1/jobs?limit=1", headers={"X-API-Key": key, **headers}, timeout=10)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def test_two_api_processes_share_one_key_bucket(
    start_apis: Starter, make_key: Callable[..., dict[str, str]]
) -> None:
    urls = start_apis(
        2, rate_limit_roles=_roles(10), rate_limit_tenant=json.dumps({"burst": 1000, "per_second": 1})
    )
    key = make_key(role="viewer")["X-API-Key"]
    answers = _spread(urls, [key], 40)
    passed = [a for a in answers if a.status_code == 200]
    limited = [a for a in answers if a.status_code == 429]
    # Exactly the bucket's allowance passes, though the requests were spread over two processes.
    assert (len(passed), len(limited)) == (10, 30), [a.status_code for a in answers]
    assert {a.request.url.port for a in passed} == {httpx.URL(u).port for u in urls}
    for answer in passed:
        assert answer.headers["RateLimit-Limit"] == "10"
        assert answer.headers["RateLimit-Policy"].startswith("10;w=")
        assert 0 <= int(answer.headers["RateLimit-Remaining"]) < 10
    assert sorted(int(a.headers["RateLimit-Remaining"]) for a in passed) == list(range(10))
    refusal = limited[0]
    assert refusal.headers["content-type"] == "application/problem+json"
    assert refusal.json()["type"].endswith("/rate-limited")
    assert refusal.json()["limit"] == "key"
    assert int(refusal.headers["Retry-After"]) >= 1
    assert refusal.headers["RateLimit-Remaining"] == "0"
    # Another key of the same tenant has a bucket of its own.
    other = make_key(role="viewer")["X-API-Key"]
    assert httpx.get(f"{urls[1]}/v1/jobs", headers={"X-API-Key": other}).status_code == 200


def test_a_tenant_bucket_from_its_settings_caps_all_its_keys(
    start_apis: Starter, make_key: Callable[..., dict[str, str]]
) -> None:
    urls = start_apis(2, rate_limit_roles=_roles(100))
    admin = make_key()
    name = f"rl-{uuid.uuid4().hex[:8]}"
    limits = {"rate_limits": {"tenant": {"burst": 7, "per_second": SLOW}}}
    created = httpx.post(f"{urls[0]}/v1/tenants", json={"name": name, "settings": limits}, headers=admin)
    assert created.status_code == 201, created.text
    keys = [make_key(tenant=name, role="member")["X-API-Key"] for _ in range(3)]
    answers = _spread(urls, keys, 30)
    assert sum(a.status_code == 200 for a in answers) == 7
    refusal = next(a for a in answers if a.status_code == 429)
    assert refusal.json()["limit"] == "tenant"
    assert refusal.headers["RateLimit-Limit"] == "7"


def test_malformed_tenant_limits_are_refused_naming_the_field(
    client: TestClient, auth: dict[str, str]
) -> None:
    bad = {"rate_limits": {"tenant": {"burst": 0, "per_second": 1}}}
    answer = client.post(
        "/v1/tenants", json={"name": f"x-{uuid.uuid4().hex[:6]}", "settings": bad}, headers=auth
    )
    assert answer.status_code == 422
    assert "settings.rate_limits.tenant.burst" in answer.text
    with pytest.raises(ValueError, match="roles"):
        tenant_limits({"rate_limits": {"roles": {"root": {"burst": 1, "per_second": 1}}}})


def test_forwarded_for_counts_only_from_a_trusted_proxy(
    start_apis: Starter, make_key: Callable[..., dict[str, str]]
) -> None:
    from framefleet.db.session import session_scope
    from framefleet.keys import create_key

    with session_scope() as session:
        raw, _ = create_key(session, tenant=f"t-{uuid.uuid4().hex[:8]}", allowed_cidrs=["203.0.113.0/24"])
    key = {"X-API-Key": raw}
    anonymous = json.dumps({"burst": 3, "per_second": SLOW})
    (trusting,) = start_apis(1, trusted_proxies='["127.0.0.1/32"]', rate_limit_anonymous=anonymous)
    (untrusting,) = start_apis(1, rate_limit_anonymous=anonymous)
    inside = {"X-Forwarded-For": "203.0.113.9"}
    # Through the trusted proxy the client is the forwarded address: inside the key's allowlist.
    assert httpx.get(f"{trusting}/v1/jobs", headers={**key, **inside}).status_code == 200
    assert httpx.get(f"{trusting}/v1/jobs", headers=key).status_code == 403
    # From any other peer the header is the client's own say-so: ignored.
    refused = httpx.get(f"{untrusting}/v1/jobs", headers={**key, **inside})
    assert refused.status_code == 403
    assert "127.0.0.1" in refused.json()["detail"]
    # Requests without a valid key spend their address's bucket: each forwarded address has its own
    # behind the trusted proxy; elsewhere the header cannot buy a fresh bucket.
    for host in ("198.51.100.1", "198.51.100.2"):
        statuses = [
            httpx.get(f"{trusting}/v1/jobs", headers={"X-Forwarded-For": host}).status_code for _ in range(4)
        ]
        assert statuses == [401, 401, 401, 429], host
    statuses = [
        httpx.get(f"{untrusting}/v1/jobs", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
        for n in range(10, 14)
    ]
    assert statuses == [401, 401, 401, 429]


TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("192.0.2.1", ["203.0.113.5"], "192.0.2.1"),  # untrusted peer: header ignored
        ("10.0.0.2", ["203.0.113.5"], "203.0.113.5"),
        ("10.0.0.2", ["6.6.6.6, 203.0.113.5, 10.1.1.1"], "203.0.113.5"),  # spoofed left part skipped
        ("10.0.0.2", ["6.6.6.6", "203.0.113.5"], "203.0.113.5"),  # several headers read as one list
        ("10.0.0.2", ["10.9.9.9"], "10.9.9.9"),  # only proxies: the farthest one
        ("10.0.0.2", ["nonsense, 10.1.1.1"], "10.1.1.1"),  # garbage stops the walk
        ("10.0.0.2", [], "10.0.0.2"),
        ("::1", ["::ffff:203.0.113.5"], "203.0.113.5"),
        ("testclient", ["203.0.113.5"], "testclient"),
        (None, ["203.0.113.5"], None),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], expected: str | None) -> None:
    assert client_address(peer, forwarded, TRUSTED) == expected
