"""Authentication and authorization for the console and the API.

- Pages: a server-side session in Redis (``store.users.SessionStore``); the browser holds only a
  random session id, signed (itsdangerous) in an ``HttpOnly``, ``SameSite=Lax`` cookie that is
  ``Secure`` on HTTPS (``INTAKE_COOKIE_SECURE``). Every POST form carries the session's CSRF token
  and, when the browser sends ``Origin``, it must be this site.
- API: ``Authorization: Bearer <token>``; cookies are ignored there, so the API needs no CSRF token.
- Authorization: ``User.can(permission)`` for the role, ``User.sees(tenant)`` for the tenant; each
  handler checks both, including for ids typed into URLs.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, Signer
from jinja2 import Environment, FileSystemLoader
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ghl_intake.settings import FALSE_WORDS, TRUE_WORDS, Settings
from pipeline.pseudonym import pseudonymize_id
from store.audit import SYSTEM_TENANT, AuditStore
from store.keyring import Keyring
from store.users import LoginThrottle, Session, SessionStore, User, UserStore, csrf_ok

SESSION_COOKIE = "gi_session"
LOGIN_COOKIE = "gi_login"
MAX_FORM_BYTES = 16 * 1024

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class ConsoleDeps:
    settings: Settings
    redis: Redis
    keyring: Keyring
    pseudonym_key: bytes
    audit: AuditStore
    users: UserStore
    sessions: SessionStore
    throttle: LoginThrottle
    signer: Signer
    templates: Jinja2Templates
    extra: dict[str, Any] = field(default_factory=dict)


def cookie_secret(pseudonym_key: bytes) -> bytes:
    """The cookie-signing key, derived from the pseudonym key (no extra setting to manage)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"ghl-intake/console/cookie/v1").derive(pseudonym_key)


def deps_of(request: Request) -> ConsoleDeps:
    d: ConsoleDeps = request.app.state.console
    return d


def client_addr(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def addr_pseudonym(deps: ConsoleDeps, request: Request) -> str:
    """Client address as a keyed pseudonym: audit records hold no raw addresses."""
    return pseudonymize_id(deps.pseudonym_key, SYSTEM_TENANT, client_addr(request))


def base_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def cookie_secure(deps: ConsoleDeps, request: Request) -> bool:
    v = deps.settings.cookie_secure.strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    return request.url.scheme == "https"


def set_cookie(deps: ConsoleDeps, request: Request, response: Response, name: str, value: str,
               max_age: int | None) -> None:
    response.set_cookie(name, deps.signer.sign(value).decode(), max_age=max_age, path=base_path(request) or "/",
                        httponly=True, secure=cookie_secure(deps, request), samesite="lax")


def read_cookie(deps: ConsoleDeps, request: Request, name: str) -> str:
    raw = request.cookies.get(name, "")
    if not raw or len(raw) > 400:
        return ""
    try:
        return deps.signer.unsign(raw.encode()).decode()
    except (BadSignature, UnicodeDecodeError):
        return ""


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form body (bounded); first value of each field."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
    return {k: v[0] for k, v in parsed.items() if v}


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin:  # older browsers and non-browser clients; the CSRF token still applies
        return True
    host = request.headers.get("host", "")
    return origin in {f"{request.url.scheme}://{host}", f"http://{host}", f"https://{host}"}


def cross_site(request: Request) -> bool:
    """A browser says the request came from another site (``Sec-Fetch-Site``): a link or a form
    elsewhere. Absent (non-browser clients, older browsers) or ``none`` (typed, bookmarked) is fine."""
    return request.headers.get("sec-fetch-site", "").lower() in {"cross-site", "same-site"}


async def audit_action(deps: ConsoleDeps, request: Request, user: User | None, action: str,
                       detail: dict[str, str], *, via: str, actor: str | None = None) -> None:
    """One record on the system chain for a console/API action or a security event."""
    await deps.audit.append(
        SYSTEM_TENANT, event_id=f"console-{uuid.uuid4().hex}", stage="console", outcome=action,
        actor=actor or (f"console:{user.name}" if user else "console:anonymous"),
        detail={"via": via, "addr": addr_pseudonym(deps, request), **detail},
    )


async def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
    deps = deps_of(request)
    session: Session | None = getattr(request.state, "session", None)
    flash = await deps.sessions.pop_flash(session) if session else ""
    full = {"base": base_path(request), "user": session.user if session else None,
            "csrf": session.csrf if session else "", "now": time.time(), "flash": flash, **ctx}
    resp = deps.templates.TemplateResponse(request, name, full, status_code=status)
    resp.headers.update(SECURITY_HEADERS)
    return resp


async def error_page(request: Request, status: int, message: str) -> Response:
    return await render(request, "error.html", {"status": status, "message": message}, status=status)


class Denied(Exception):
    """Raised by handlers on a role or tenant check failure (page: 403 page; API: 403 JSON)."""

    def __init__(self, message: str = "forbidden", status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def require_tenant(user: User, tenant: str) -> str:
    if not user.sees(tenant):
        raise Denied(f"you may not see tenant {tenant!r}")
    return tenant


Handler = Callable[[Request], Awaitable[Response]]


async def load_session(request: Request) -> Session | None:
    deps = deps_of(request)
    sid = read_cookie(deps, request, SESSION_COOKIE)
    if not sid:
        return None
    return await deps.sessions.load(sid)


def page(permission: str = "view", *, post: bool = False) -> Callable[[Handler], Handler]:
    """Decorator for console pages: session required, role checked, CSRF + Origin on POST."""

    def deco(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapper(request: Request) -> Response:
            session = await load_session(request)
            if session is None:
                if request.method == "GET":
                    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"{base_path(request)}/login?next={quote(nxt, safe='')}",
                                            status_code=303)
                return HTMLResponse("login required", status_code=401, headers=SECURITY_HEADERS)
            request.state.session = session
            if not session.user.can(permission):
                return await error_page(request, 403, f"your role ({session.user.role}) may not do this")
            if post:
                form = await read_form(request)
                if not same_origin(request) or not csrf_ok(session.csrf, form.get("csrf", "")):
                    return await error_page(request, 403, "the form was stale or came from another site; reload and retry")
                request.state.form = form
            try:
                return await fn(request)
            except Denied as exc:
                return await error_page(request, exc.status, exc.message)

        return wrapper

    return deco


def api_error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="ghl-intake"'} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def api(permission: str = "view") -> Callable[[Handler], Handler]:
    """Decorator for API endpoints: bearer token required, role checked; Denied becomes JSON."""

    def deco(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapper(request: Request) -> Response:
            deps = deps_of(request)
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            user = await deps.users.token_user(token.strip()) if scheme.lower() == "bearer" and token else None
            if user is None:
                return api_error(401, "a valid API token is required (Authorization: Bearer ...)")
            request.state.user = user
            if not user.can(permission):
                return api_error(403, f"role {user.role} may not do this")
            try:
                return await fn(request)
            except Denied as exc:
                return api_error(exc.status, exc.message)

        return wrapper

    return deco


def make_templates(directory: str) -> Jinja2Templates:
    env = Environment(autoescape=True, loader=FileSystemLoader(directory))
    env.filters["ts"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(t))) if t else "-"
    env.filters["age"] = _age
    return Jinja2Templates(env=env)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"
