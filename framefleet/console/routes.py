"""Console pages: thin server-rendered shells. Everything they show or change goes through the /v1 API
(with the session cookie), so the console has no data access or authorization logic of its own; a page's
route only declares the permission it needs, like an API route, to decide whether to render at all.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response
from starlette.routing import NoMatchFound

from framefleet.api.auth import SESSION_STATE_KEY, STATE_KEY
from framefleet.api.deps import SessionDep
from framefleet.console import sso
from framefleet.console.session import (
    COOKIE,
    CSRF_FIELD,
    FORM_COOKIE,
    ConsoleSession,
    SessionCodec,
    csrf_matches,
    new_session,
)
from framefleet.core.specbase import Priority
from framefleet.core.states import JobState
from framefleet.db.models import utcnow
from framefleet.keys import Principal, authenticate
from framefleet.tenancy.access import refusal
from framefleet.tenancy.oidc import JwksUnavailable, TokenError, TokenRefused
from framefleet.tenancy.permissions import PERMISSIONS, ROLES, allows

HERE = Path(__file__).parent
PREFIX = "/console"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix=PREFIX, include_in_schema=False)


@dataclass(frozen=True)
class Page:
    """A navigation entry: shown to roles holding its permission."""

    path: str
    title: str
    permission: str


# The navigation, in order. A new page is a template, a JS module and one line here plus its route.
PAGES = (
    Page("/jobs", "Jobs", "jobs:read"),
    Page("/submit", "Submit", "jobs:submit"),
    Page("/fleet", "Fleet", "workers:read"),
    Page("/admin", "Tenant admin", "presets:read"),
)


@dataclass(frozen=True)
class Section:
    """A read-only table on the admin page, filled from one API list; shown to roles that may read it."""

    id: str
    title: str
    endpoint: str
    permission: str


ADMIN_SECTIONS = (
    Section("usage", "Quotas and usage", "/v1/usage", "usage:read"),
    Section("usage-days", "Usage and cost per day (last 30 days)", "/v1/usage/days?days=30", "usage:read"),
    Section("webhooks", "Webhooks and their deliveries", "/v1/webhooks", "webhooks:read"),
    Section("presets", "Presets", "/v1/presets", "presets:read"),
    Section("templates", "Templates", "/v1/templates", "templates:read"),
    Section("schedules", "Schedules", "/v1/schedules", "schedules:read"),
    Section("audit", "Audit log", "/v1/audit?limit=50", "audit:read"),
)
# The download route of outputs (its endpoint's name), when this installation has it: the in-page player,
# thumbnails and sprites use it.
DOWNLOAD_ROUTE = "download_output"


class SignInRequired(Exception):
    """No usable session: the handler sends the person to the sign-in page, then back here."""


class PageForbidden(Exception):
    def __init__(self, permission: str) -> None:
        self.permission = permission


class Viewer:
    """The dependency by which a page declares its permission (the console's `requires`)."""

    def __init__(self, permission: str) -> None:
        if permission not in PERMISSIONS:
            raise KeyError(f"{permission!r} is not in the permission table")
        self.permission = permission

    async def __call__(self, request: Request) -> Principal:
        principal: Principal | None = getattr(request.state, STATE_KEY, None)
        if principal is None or getattr(request.state, SESSION_STATE_KEY, None) is None:
            raise SignInRequired()
        if not allows(principal.role, self.permission):
            raise PageForbidden(self.permission)
        return principal


def page(permission: str) -> Any:
    return Depends(Viewer(permission))


def codec(request: Request) -> SessionCodec:
    sessions: SessionCodec = request.app.state.console_sessions
    return sessions


def secure_cookies(request: Request) -> bool:
    """Secure cookies over TLS; over plain HTTP (a loopback dev stack) the browser would drop them."""
    settings = request.app.state.settings
    return request.url.scheme == "https" or settings.public_url.lower().startswith("https://")


def render(request: Request, name: str, *, status_code: int = 200, **context: Any) -> Response:
    principal: Principal | None = getattr(request.state, STATE_KEY, None)
    session: ConsoleSession | None = getattr(request.state, SESSION_STATE_KEY, None)
    nav = [p for p in PAGES if principal is not None and allows(principal.role, p.permission)]
    can = {perm: principal is not None and allows(principal.role, perm) for perm in PERMISSIONS}
    return templates.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "csrf": session.csrf if session else "",
            "nav": nav,
            "prefix": PREFIX,
            "can": can,
            "players": request.app.state.console_players,
            **context,
        },
        status_code=status_code,
    )


def safe_next(target: str | None) -> str:
    """Only a console path may follow sign-in (no open redirect to another site)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/jobs"


@router.get("")
async def home() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/jobs", status_code=303)


def _sign_in_form(request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "sign_in.html",
        status_code=status_code,
        form_token=token,
        error=error,
        next=safe_next(request.query_params.get("next")),
        sso_name=setup.client.provider_name if (setup := sso_of(request)) else None,
    )
    response.set_cookie(
        FORM_COOKIE,
        token,
        max_age=1800,
        path=PREFIX + "/sign-in",
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    return _sign_in_form(request)


@router.post("/sign-in")
def sign_in(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form(max_length=512)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    """Checks the key as the API would, then seals it into the session cookie."""
    if not csrf_matches(request.cookies.get(FORM_COOKIE, ""), csrf_token):
        return _sign_in_form(request, error="The form expired; please sign in again.", status_code=403)
    raw = api_key.strip()
    principal = authenticate(session, raw) if raw else None
    client = request.client.host if request.client else None
    refused = None if principal is None else refusal(principal, now=utcnow(), client_ip=client)
    if principal is None or refused is not None:
        message = "That API key is unknown or revoked." if refused is None else refused.detail
        return _sign_in_form(request, error=message, status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session(request, response, new_session(raw, via="key"))
    response.delete_cookie(FORM_COOKIE, path=PREFIX + "/sign-in")
    return response


def set_session(request: Request, response: Response, session: ConsoleSession) -> None:
    """The session cookie, for as long as the session lasts (a single sign-on one ends with its token)."""
    max_age = codec(request).max_age_seconds
    if session.expires_at is not None:
        max_age = max(0, min(max_age, int(session.expires_at - time.time())))
    response.set_cookie(
        COOKIE,
        codec(request).seal(session),
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )


def sso_of(request: Request) -> sso.Sso | None:
    found: sso.Sso | None = request.app.state.console_sso
    return found


def redirect_uri(request: Request) -> str:
    """The callback's address as registered at the provider: from the installation's public URL."""
    settings = request.app.state.settings
    return f"{settings.public_url.rstrip('/')}{PREFIX}/sso/callback"


@router.get("/sso/start")
def sso_start(request: Request, next: Annotated[str, Query(max_length=2048)] = "") -> Response:
    """Sends the browser to the provider's authorize endpoint with a fresh state, nonce and PKCE challenge,
    all three kept in a short-lived sealed cookie for the callback.

    A link, not a form: the page's CSP allows forms to post only to this origin (a redirect included).
    Starting a sign-in changes nothing; the state bound to this browser's cookie is what stops a forged
    callback from signing someone in."""
    setup = sso_of(request)
    if setup is None:
        return _sign_in_form(request, error="Single sign-on is not configured here.", status_code=404)
    try:
        authorize, _ = setup.endpoints.get()
    except sso.ProviderError as exc:
        message = f"Single sign-on is unavailable: {exc.detail}"
        return _sign_in_form(request, error=message, status_code=503)
    login = sso.new_login(safe_next(next))
    target = sso.authorize_url(
        authorize, client=setup.client, login=login, redirect_uri=redirect_uri(request)
    )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        sso.STATE_COOKIE,
        setup.states.seal(login),
        max_age=sso.STATE_MAX_AGE_SECONDS,
        path=sso.STATE_PATH,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )
    return response


@router.get("/sso/callback")
def sso_callback(
    request: Request,
    code: Annotated[str, Query(max_length=4096)] = "",
    state: Annotated[str, Query(max_length=512)] = "",
    error: Annotated[str, Query(max_length=256)] = "",
) -> Response:
    """Checks the state, trades the code (with the PKCE verifier) for tokens, checks the ID token's nonce
    and the access token exactly as the API's bearer path does, then opens the console session."""
    setup = sso_of(request)
    if setup is None:
        return _sign_in_form(request, error="Single sign-on is not configured here.", status_code=404)
    login = setup.states.open(request.cookies.get(sso.STATE_COOKIE))
    if login is None or not csrf_matches(login.state, state):
        return _sso_refused(request, "The sign-in could not be confirmed (its state does not match).", 400)
    if error or not code:
        return _sso_refused(request, f"The identity provider did not sign you in: {error or 'no code'}.", 401)
    try:
        tokens = sso.exchange(
            setup.endpoints.get()[1],
            client=setup.client,
            code=code,
            verifier=login.verifier,
            redirect_uri=redirect_uri(request),
        )
        id_claims = setup.id_tokens.claims(tokens.id_token, audience=setup.client.client_id)
        if not csrf_matches(login.nonce, str(id_claims.get("nonce", ""))):
            raise TokenError("the ID token's nonce is not this sign-in's")
        principal = setup.tokens(tokens.access_token)
        if principal.subject != str(id_claims["sub"]):
            raise TokenError("the ID token and the access token name different people")
    except sso.ProviderError as exc:
        return _sso_refused(request, exc.detail, 502)
    except JwksUnavailable:
        return _sso_refused(request, "The identity provider's signing keys cannot be fetched now.", 503)
    except TokenError as exc:
        return _sso_refused(request, f"The token was refused: {exc.detail}.", 401)
    except TokenRefused as exc:
        return _sso_refused(request, f"The token was refused: {exc.detail}.", 403)
    client = request.client.host if request.client else None
    refused = refusal(principal, now=utcnow(), client_ip=client)
    if refused is not None:
        return _sso_refused(request, refused.detail, refused.status)
    ends = principal.expires_at.timestamp() if principal.expires_at else None
    session = new_session(tokens.access_token, via="sso", expires_at=ends)
    # A page, not a redirect: the navigation began at the provider's site, and a browser would not send the
    # SameSite=Strict session cookie on a redirect chain that started there; a load from this page does.
    response = render(request, "signed_in.html", title="Signed in", next=login.next)
    set_session(request, response, session)
    response.delete_cookie(sso.STATE_COOKIE, path=sso.STATE_PATH)
    return response


def _sso_refused(request: Request, message: str, status_code: int) -> Response:
    response = _sign_in_form(request, error=message, status_code=status_code)
    response.delete_cookie(sso.STATE_COOKIE, path=sso.STATE_PATH)
    return response


@router.post("/sign-out")
async def sign_out(
    request: Request, csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=128)] = ""
) -> Response:
    current: ConsoleSession | None = getattr(request.state, SESSION_STATE_KEY, None)
    if current is not None and not csrf_matches(current.csrf, csrf_token):
        return render(
            request,
            "error.html",
            status_code=403,
            title="Not signed out",
            message="The sign-out form lacked this session's CSRF token.",
        )
    response = RedirectResponse(PREFIX + "/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure_cookies(request))
    return response


@router.get("/jobs")
async def jobs_page(request: Request, _: Annotated[Principal, page("jobs:read")]) -> Response:
    return render(
        request,
        "jobs.html",
        title="Jobs",
        states=[s.value for s in JobState],
        priorities=[p.value for p in Priority],
    )


def has_downloads(app: Any) -> bool:
    """Whether the app serves output downloads. Asked by the route's name: included routers are resolved
    lazily, so `app.routes` lists them as wrappers without paths."""
    try:
        app.url_path_for(DOWNLOAD_ROUTE, job_id="x", name="x")
    except NoMatchFound:
        return False
    return True


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str, _: Annotated[Principal, page("jobs:read")]) -> Response:
    downloads = has_downloads(request.app)
    return render(
        request,
        "job.html",
        title=f"Job {job_id}",
        job_id=job_id,
        tenant=request.query_params.get("tenant", ""),
        downloads=downloads,
    )


@router.get("/submit")
async def submit_page(request: Request, _: Annotated[Principal, page("jobs:submit")]) -> Response:
    return render(request, "submit.html", title="Submit a job", priorities=[p.value for p in Priority])


@router.get("/fleet")
async def fleet_page(request: Request, _: Annotated[Principal, page("workers:read")]) -> Response:
    return render(request, "fleet.html", title="Fleet")


@router.get("/admin")
async def admin_page(request: Request, principal: Annotated[Principal, page("presets:read")]) -> Response:
    sections = [s for s in ADMIN_SECTIONS if allows(principal.role, s.permission)]
    return render(request, "admin.html", title="Tenant admin", sections=sections, roles=ROLES)


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/sign-in?next={quote(target, safe='')}", status_code=303)


def forbidden_page(request: Request, permission: str) -> Response:
    return render(
        request,
        "error.html",
        status_code=403,
        title="Not allowed",
        message=f"Your role lacks the permission {permission}.",
    )
