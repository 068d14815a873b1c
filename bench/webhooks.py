"""Webhook delivery latency: from a job event (the feed entry's Redis timestamp) to the receiver reading
the signed POST, over 200 `job.created` events on the embedded stack, sent by the stack's own
`framefleet webhooks worker` process (fan-out and senders) to a real HTTP receiver on loopback.

Jobs are submitted one at a time, 20 ms apart, so this is latency at light load, not throughput.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.common import bench_stack, demo_media, make_clip, median, percentile
from bench.throughput import process_cpu_seconds
from framefleet.cli.client import ApiClient
from framefleet.cli.supervisor import DEMO_TENANT
from framefleet.db.session import session_scope
from framefleet.redis_client import get_redis
from framefleet.tenancy.service import find_tenant
from framefleet.webhooks import service
from framefleet.webhooks.delivery import LEADER_KEY


def main(events: int = 200) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrived = time.time()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            sent = datetime.fromisoformat(body["created_at"]).timestamp()
            with lock:
                latencies.append((arrived - sent) * 1000)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with bench_stack(FRAMEFLEET_WEBHOOK_ALLOW_PRIVATE="true") as (stack, settings):
        clip = make_clip(demo_media(settings) / "bench" / "tiny.mp4", seconds=0.2, size="160x120")
        with session_scope(settings.database_url) as session:
            tenant = find_tenant(session, name=DEMO_TENANT)
            assert tenant is not None
            service.create_endpoint(
                session,
                tenant_id=tenant.id,
                url=f"http://127.0.0.1:{server.server_address[1]}/hook",
                event_types=["job.created"],
                description="bench",
                enabled=True,
                secret_key=settings.secret_key,
                allow_private=True,
            )
        # The endpoint is read at each event's fan-out: the running sender process picks it up as it is.
        # Its fan-out joins the feed at the newest entry, so wait until it leads before feeding events.
        redis_client = get_redis(settings.redis_url)
        deadline = time.monotonic() + 30
        while not redis_client.exists(LEADER_KEY):
            if time.monotonic() > deadline:
                raise RuntimeError("the stack's webhook sender never took the fan-out lease")
            time.sleep(0.1)
        spec = {
            "input": clip.as_uri(),
            "priority": "batch",
            "outputs": [{"container": "ts", "video": {"preset": "ultrafast"}}],
        }
        sender_pid = stack.children["webhooks"].pid
        assert sender_pid is not None
        cpu_before = process_cpu_seconds(sender_pid)
        with ApiClient(stack.api_url, stack.api_key, timeout=60) as client:
            for _ in range(events + 5):
                client.submit(spec)
                time.sleep(0.02)
        deadline = time.monotonic() + 30
        while len(latencies) < events + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Fan-out, claim, POST and record of each event; the idle polling of the wait above is counted too.
        cpu_ms = (process_cpu_seconds(sender_pid) - cpu_before) / max(1, len(latencies)) * 1000
    server.shutdown()
    measured = latencies[5:]  # the first ones warm up connections and caches
    result = {
        "p50_ms": median(measured),
        "p99_ms": percentile(measured, 99),
        "events": len(measured),
        "sender_cpu_ms_per_event": cpu_ms,
    }
    print(
        f"webhooks: event -> receiver p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms "
        f"over {len(measured)} events; sender process CPU {cpu_ms:.2f} ms per event; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
