"""The operator commands over the HTTP API: what `tenants`, `keys`, `audit`, `webhooks`, `schedules`,
`workers` and `pools` do when given --api, --key or --profile (or FRAMEFLEET_API_URL is set); see
`common.operator_command`.

Each function takes the same arguments as its database twin (admin.py, webhooks.py, schedules.py, pools.py)
and prints the same views, from the API's JSON. The API acts as the key's tenant and role: an admin key for
tenants, keys and the audit log of every tenant; webhooks and schedules are the key's own tenant's.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from framefleet.cli.common import Cli, Column, rows_table, tenant_of

QUOTA_FIELDS = ("max_queued_jobs", "max_running_jobs", "media_minutes_per_month", "output_bytes")
# How often `workers drain --wait` asks whether the node still runs a job.
DRAIN_POLL_SECONDS = 1.0


def _items(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return list(answer["items"])


# Tenants


def tenants_create(cli: Cli, name: str, settings: str) -> None:
    from framefleet.cli.admin import settings_json

    with cli.client() as api:
        view = api.call("POST", "/v1/tenants", {"name": name, "settings": settings_json(settings)})
    cli.show(view, lambda v: f"Created tenant {v['name']!r}.")


def tenants_list(cli: Cli) -> None:
    from framefleet.cli.admin import TENANT_COLUMNS

    with cli.client() as api:
        views = _items(api.call("GET", "/v1/tenants"))
    cli.show(views, lambda v: rows_table(v, TENANT_COLUMNS), empty="no tenants")


def tenants_get(cli: Cli, name: str) -> None:
    with cli.client() as api:
        cli.show(api.call("GET", f"/v1/tenants/{name}"))


def tenants_update(cli: Cli, name: str, settings: str) -> None:
    from framefleet.cli.admin import settings_json

    with cli.client() as api:
        view = api.call("PATCH", f"/v1/tenants/{name}", {"settings": settings_json(settings)})
    cli.show(view, lambda v: f"Updated tenant {v['name']!r}.")


def tenants_usage(cli: Cli, name: str, reconcile: bool) -> None:
    from framefleet.cli.admin import usage_text

    if reconcile:
        raise typer.BadParameter(
            "recomputing is done on the installation's database only", param_hint="--reconcile"
        )
    with cli.client() as api:
        cli.show(api.call("GET", f"/v1/tenants/{name}/usage"), usage_text)


def tenants_quotas(
    cli: Cli,
    name: str,
    max_queued_jobs: str | None,
    max_running_jobs: str | None,
    media_minutes_per_month: str | None,
    output_bytes: str | None,
) -> None:
    from framefleet.cli.admin import merged_quotas, quotas_table

    given = (max_queued_jobs, max_running_jobs, media_minutes_per_month, output_bytes)
    with cli.client() as api:
        tenant = api.call("GET", f"/v1/tenants/{name}")
        settings = tenant.get("settings") or {}
        changed = merged_quotas(settings, dict(zip(QUOTA_FIELDS, given, strict=True)))
        if changed is not None:
            # The API replaces the settings whole: the other settings go back as they were.
            tenant = api.call("PATCH", f"/v1/tenants/{name}", {"settings": changed})
            settings = tenant.get("settings") or {}
    current = settings.get("quotas", {})
    cli.show({field: current.get(field) for field in QUOTA_FIELDS}, quotas_table)


def tenants_suspend(cli: Cli, name: str, reason: str | None) -> None:
    with cli.client() as api:
        view = api.call("POST", f"/v1/tenants/{name}/suspend", {"reason": reason})
    cli.show(view, lambda _: f"Suspended tenant {name!r}: its keys are refused; its queued jobs wait.")


def tenants_reactivate(cli: Cli, name: str) -> None:
    with cli.client() as api:
        view = api.call("POST", f"/v1/tenants/{name}/reactivate")
    cli.show(view, lambda v: f"Reactivated tenant {name!r}; {v['released_jobs']} held job(s) queued again.")


# Keys


def keys_create(
    cli: Cli,
    tenant: str,
    role: Any,
    expires: str | None,
    description: str | None,
    cidr: list[str] | None,
) -> None:
    from framefleet.cli.admin import new_key_text

    body = {
        "tenant": tenant,
        "role": role.value,
        "expires_at": expires,
        "description": description,
        "allowed_cidrs": cidr or None,
    }
    with cli.client() as api:
        view = api.call("POST", "/v1/keys", body)
    cli.show(
        view,
        lambda v: new_key_text(f"Created {v['role']} key {v['id']} for tenant {tenant!r}:", v["key"]),
    )


def keys_list(cli: Cli, tenant: str | None, all_: bool) -> None:
    from framefleet.cli.admin import KEY_COLUMNS

    with cli.client() as api:
        views = _items(api.call("GET", "/v1/keys", tenant=tenant, include_revoked=str(all_).lower()))
    cli.show(views, lambda v: rows_table(v, KEY_COLUMNS), empty="no keys")


def keys_revoke(cli: Cli, key_id: int) -> None:
    with cli.client() as api:
        view = api.call("POST", f"/v1/keys/{key_id}/revoke")
    cli.show(view, lambda _: f"Revoked key {key_id}; API processes refuse it within their key cache's TTL.")


def keys_rotate(cli: Cli, key_id: int) -> None:
    from framefleet.cli.admin import new_key_text

    with cli.client() as api:
        view = {**api.call("POST", f"/v1/keys/{key_id}/rotate"), "replaces": key_id}
    cli.show(
        view,
        lambda v: new_key_text(f"Key {key_id} is revoked; its replacement is key {v['id']}:", v["key"]),
    )


# The audit log


def audit_page(cli: Cli, *, filters: dict[str, Any], limit: int, cursor: str | None) -> dict[str, Any]:
    with cli.client() as api:
        return dict(api.call("GET", "/v1/audit", limit=limit, cursor=cursor, **filters))


# Webhooks (the key's tenant's)


def webhooks_list(cli: Cli, tenant: str | None) -> None:
    from framefleet.cli.webhooks import ENDPOINT_COLUMNS

    tenant_of(tenant, remote=True)
    with cli.client() as api:
        rows = _items(api.call("GET", "/v1/webhooks"))
    cli.show(rows, lambda r: rows_table(r, ENDPOINT_COLUMNS), empty="no endpoints")


def webhooks_get(cli: Cli, endpoint_id: int, tenant: str | None) -> None:
    tenant_of(tenant, remote=True)
    with cli.client() as api:
        cli.show(api.call("GET", f"/v1/webhooks/{endpoint_id}"))


def webhooks_create(
    cli: Cli,
    url: str,
    tenant: str | None,
    event: list[Any] | None,
    description: str | None,
    disabled: bool,
) -> None:
    tenant_of(tenant, remote=True)
    body: dict[str, Any] = {"url": url, "description": description, "enabled": not disabled}
    if event:
        body["event_types"] = [e.value for e in event]
    with cli.client() as api:
        view = api.call("POST", "/v1/webhooks", body)
    cli.show(view, lambda v: f"endpoint {v['id']} created; signing secret (shown once): {v['secret']}")


def webhooks_update(
    cli: Cli,
    endpoint_id: int,
    tenant: str | None,
    url: str | None,
    event: list[Any] | None,
    description: str | None,
    enabled: bool | None,
) -> None:
    from framefleet.cli.webhooks import ENDPOINT_COLUMNS, endpoint_changes

    tenant_of(tenant, remote=True)
    changes = endpoint_changes(url=url, event=event, description=description, enabled=enabled)
    with cli.client() as api:
        view = api.call("PATCH", f"/v1/webhooks/{endpoint_id}", changes)
    cli.show(view, lambda v: rows_table([v], ENDPOINT_COLUMNS))


def webhooks_delete(cli: Cli, endpoint_id: int, tenant: str | None) -> None:
    tenant_of(tenant, remote=True)
    with cli.client() as api:
        api.call("DELETE", f"/v1/webhooks/{endpoint_id}")
    cli.show({"id": endpoint_id, "deleted": True}, lambda _: f"endpoint {endpoint_id} deleted")


def webhooks_rotate(cli: Cli, endpoint_id: int, tenant: str | None, grace: float | None) -> None:
    tenant_of(tenant, remote=True)
    body = {"grace_seconds": grace} if grace is not None else None
    with cli.client() as api:
        view = api.call("POST", f"/v1/webhooks/{endpoint_id}/rotate-secret", body)
    cli.show(
        view,
        lambda v: (
            f"new secret (shown once): {v['secret']}; the old one signs too until "
            f"{v.get('previous_secret_until') or 'now'}"
        ),
    )


def webhooks_deliveries(cli: Cli, endpoint_id: int, tenant: str | None, limit: int) -> None:
    from framefleet.cli.webhooks import DELIVERY_COLUMNS

    tenant_of(tenant, remote=True)
    with cli.client() as api:
        rows = _items(api.call("GET", f"/v1/webhooks/{endpoint_id}/deliveries", limit=limit))
    cli.show(rows, lambda r: rows_table(r, DELIVERY_COLUMNS), empty="no deliveries")


def webhooks_replay(cli: Cli, endpoint_id: int, delivery: int, tenant: str | None) -> None:
    tenant_of(tenant, remote=True)
    with cli.client() as api:
        view = api.call("POST", f"/v1/webhooks/{endpoint_id}/deliveries/{delivery}/replay")
    cli.show(view, lambda v: f"delivery {v['id']} queued (event {v['event_id']})")


# Schedules (the key's tenant's)


def _template_value(text: str) -> Any:
    """A --param value as JSON when it reads as JSON (numbers, true, lists), else the text; the API checks it
    against the template's declared type."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _to_submit(
    *, spec: str | None, template: str | None, version: int | None, params: list[str]
) -> dict[str, Any]:
    """The body's `spec` or `template` field, checked by the API."""
    from framefleet.cli.jobs import param_pairs, read_spec

    if spec is not None and template is not None:
        raise typer.BadParameter("give --spec or --template, not both")
    if template is None and (version is not None or params):
        raise typer.BadParameter("--version and --param go with --template")
    if spec is not None:
        return {"spec": read_spec(spec)}
    if template is None:
        return {}
    values = {name: _template_value(value) for name, value in param_pairs(params).items()}
    return {"template": {"name": template, "version": version, "params": values}}


def schedules_list(cli: Cli, tenant: str | None) -> None:
    from framefleet.cli.schedules import COLUMNS

    tenant_of(tenant, remote=True)
    with cli.client() as api:
        rows = _items(api.call("GET", "/v1/schedules"))
    cli.show(rows, lambda r: rows_table(r, COLUMNS), empty="no schedules")


def schedules_create(
    cli: Cli,
    name: str,
    tenant: str | None,
    cron: str,
    timezone: str,
    catch_up: Any,
    disabled: bool,
    spec: str | None,
    template: str | None,
    version: int | None,
    param: list[str] | None,
) -> None:
    tenant_of(tenant, remote=True)
    what = _to_submit(spec=spec, template=template, version=version, params=param or [])
    if not what:
        raise typer.BadParameter("give --spec or --template")
    body = {
        "name": name,
        "cron": cron,
        "timezone": timezone,
        "catch_up": catch_up.value,
        "enabled": not disabled,
        **what,
    }
    with cli.client() as api:
        view = api.call("POST", "/v1/schedules", body)
    cli.show(view, lambda v: f"schedule {v['id']} created; next fires: " + ", ".join(map(str, v["upcoming"])))


def schedules_update(
    cli: Cli,
    schedule_id: int,
    tenant: str | None,
    cron: str | None,
    timezone: str | None,
    catch_up: Any,
    spec: str | None,
    template: str | None,
    version: int | None,
    param: list[str] | None,
) -> None:
    from framefleet.cli.schedules import one_schedule

    tenant_of(tenant, remote=True)
    changes: dict[str, Any] = {
        key: value
        for key, value in (("cron", cron), ("timezone", timezone), ("catch_up", catch_up and catch_up.value))
        if value is not None
    }
    changes |= _to_submit(spec=spec, template=template, version=version, params=param or [])
    if not changes:
        raise typer.BadParameter(
            "nothing to change: give --cron, --timezone, --catch-up, --spec or --template"
        )
    with cli.client() as api:
        view = api.call("PATCH", f"/v1/schedules/{schedule_id}", changes)
    cli.show(view, one_schedule)


def schedules_get(cli: Cli, schedule_id: int, tenant: str | None) -> None:
    from framefleet.cli.schedules import one_schedule

    tenant_of(tenant, remote=True)
    with cli.client() as api:
        cli.show(api.call("GET", f"/v1/schedules/{schedule_id}"), one_schedule)


def _enable(cli: Cli, schedule_id: int, tenant: str | None, enabled: bool) -> None:
    from framefleet.cli.schedules import COLUMNS

    tenant_of(tenant, remote=True)
    with cli.client() as api:
        view = api.call("PATCH", f"/v1/schedules/{schedule_id}", {"enabled": enabled})
    cli.show(view, lambda v: rows_table([v], COLUMNS))


def schedules_enable(cli: Cli, schedule_id: int, tenant: str | None) -> None:
    _enable(cli, schedule_id, tenant, True)


def schedules_disable(cli: Cli, schedule_id: int, tenant: str | None) -> None:
    _enable(cli, schedule_id, tenant, False)


def schedules_delete(cli: Cli, schedule_id: int, tenant: str | None) -> None:
    tenant_of(tenant, remote=True)
    with cli.client() as api:
        api.call("DELETE", f"/v1/schedules/{schedule_id}")
    cli.show({"id": schedule_id, "deleted": True}, lambda _: f"schedule {schedule_id} deleted")


def schedules_fires(cli: Cli, schedule_id: int, tenant: str | None, limit: int) -> None:
    from framefleet.cli.schedules import FIRE_COLUMNS

    tenant_of(tenant, remote=True)
    with cli.client() as api:
        rows = _items(api.call("GET", f"/v1/schedules/{schedule_id}/fires", limit=limit))
    cli.show(rows, lambda r: rows_table(r, FIRE_COLUMNS), empty="no fires yet")


# Workers and pools

WORKER_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("POOL", "pool"),
    ("STATUS", "status"),
    ("HOLD", "hold"),
    ("JOB", "current_job"),
    ("HEARTBEAT", "last_heartbeat"),
]


def workers_list(cli: Cli) -> None:
    # The API lists worker processes (a node runs one per pool), each with its node's hold.
    with cli.client() as api:
        rows = _items(api.call("GET", "/v1/workers"))
    cli.show(rows, lambda r: rows_table(r, WORKER_COLUMNS), empty="no workers")


def workers_describe(cli: Cli, worker: str) -> None:
    from framefleet.cli.pools import node_line

    with cli.client() as api:
        cli.show(api.call("GET", f"/v1/workers/{worker}"), node_line)


def _hold(cli: Cli, worker: str, action: str, *, reason: str | None = None, wait: bool = False) -> None:
    from framefleet.cli.pools import node_line

    with cli.client() as api:
        view = api.call("POST", f"/v1/workers/{worker}/{action}", {"reason": reason} if reason else None)
        # --wait: until the node runs nothing (drain), asking the API.
        while wait and view["running_jobs"]:
            time.sleep(DRAIN_POLL_SECONDS)
            view = api.call("GET", f"/v1/workers/{worker}")
    cli.show(view, node_line)


def workers_cordon(cli: Cli, worker: str, reason: str | None) -> None:
    _hold(cli, worker, "cordon", reason=reason)


def workers_drain(cli: Cli, worker: str, reason: str | None, wait: bool) -> None:
    _hold(cli, worker, "drain", reason=reason, wait=wait)


def workers_uncordon(cli: Cli, worker: str) -> None:
    _hold(cli, worker, "uncordon")


def pools_view(cli: Cli) -> None:
    from framefleet.cli.pools import POOL_COLUMNS

    with cli.client() as api:
        views = _items(api.call("GET", "/v1/pools"))
    cli.show(views, lambda v: rows_table(v, POOL_COLUMNS))
