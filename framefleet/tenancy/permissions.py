"""Roles and the one permission table (pure). Every /v1/ route declares one permission from it
(api/deps.py `Requires`); tests walk every route and role against this table.
"""

from __future__ import annotations

ADMIN = "admin"
OPERATOR = "operator"
MEMBER = "member"
VIEWER = "viewer"

# Most rights first; `framefleet keys create --role` offers them in this order.
ROLES = (ADMIN, OPERATOR, MEMBER, VIEWER)
# Older names still accepted when creating keys (stored rows were renamed by migration 0005).
ALIASES = {"submitter": MEMBER}

# permission -> the roles holding it. A tenant-scoped permission acts on the key's own tenant;
# the `:any` ones reach every tenant.
PERMISSIONS: dict[str, frozenset[str]] = {
    "jobs:read": frozenset({ADMIN, OPERATOR, MEMBER, VIEWER}),
    "jobs:read:any": frozenset({ADMIN, OPERATOR}),
    "jobs:submit": frozenset({ADMIN, MEMBER}),
    "jobs:cancel": frozenset({ADMIN, MEMBER}),
    # Legal hold (retention deletes nothing of a held job): a compliance act, not a member's.
    "jobs:hold": frozenset({ADMIN, OPERATOR}),
    "workers:read": frozenset({ADMIN, OPERATOR}),
    # Cordon, drain and uncordon worker nodes (audited).
    "workers:manage": frozenset({ADMIN, OPERATOR}),
    "queues:read": frozenset({ADMIN, OPERATOR}),
    # Service-level objectives across every tenant's jobs (GET /v1/slo).
    "slo:read": frozenset({ADMIN, OPERATOR}),
    "tenants:read": frozenset({ADMIN}),
    "tenants:manage": frozenset({ADMIN}),
    "keys:manage": frozenset({ADMIN}),
    "audit:read": frozenset({ADMIN, OPERATOR, MEMBER, VIEWER}),
    "audit:read:any": frozenset({ADMIN}),
    # Usage against the quotas: a tenant's own (every role), any tenant's through tenants:read.
    "usage:read": frozenset({ADMIN, OPERATOR, MEMBER, VIEWER}),
    # Webhook endpoints and their delivery logs; managing includes seeing a new or rotated secret once.
    "webhooks:read": frozenset({ADMIN, OPERATOR, MEMBER, VIEWER}),
    "webhooks:manage": frozenset({ADMIN, MEMBER}),
    # Output presets and job templates (submitting from them needs jobs:submit).
    "presets:read": frozenset({ADMIN, OPERATOR, MEMBER, VIEWER}),
    "presets:manage": frozenset({ADMIN, MEMBER}),
    "templates:read": frozenset({ADMIN, OPERATOR, MEMBER, VIEWER}),
    "templates:manage": frozenset({ADMIN, MEMBER}),
    # Cron schedules: what submits jobs on a timer is managed by those who may submit jobs.
    "schedules:read": frozenset({ADMIN, OPERATOR, MEMBER, VIEWER}),
    "schedules:manage": frozenset({ADMIN, MEMBER}),
    # Share links hand an output to anyone holding the URL: those who may submit jobs may share outputs.
    "outputs:share": frozenset({ADMIN, MEMBER}),
    # Resumable uploads (tus) and pre-signed upload URLs: what jobs then read as inputs.
    "uploads:write": frozenset({ADMIN, MEMBER}),
    # Storage profiles (/v1/storage): every role sees them (never their credentials); admins and members
    # manage them. Marking one as the tenant's default output location also takes tenants:manage.
    "storage:read": frozenset({ADMIN, OPERATOR, MEMBER, VIEWER}),
    "storage:manage": frozenset({ADMIN, MEMBER}),
}


def canonical_role(role: str) -> str:
    """The role a name stands for (an alias maps to its role); ValueError for an unknown one."""
    role = ALIASES.get(role, role)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return role


def allows(role: str, permission: str) -> bool:
    """Whether `role` holds `permission` (KeyError for a permission missing from the table)."""
    return ALIASES.get(role, role) in PERMISSIONS[permission]
