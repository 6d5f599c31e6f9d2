"""The JSON endpoints under /api/auth/: sign up, sign in, sign out, who am I, API keys."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collab.auth.accounts import Account, check_password, create_account, validate_signup
from collab.auth.identity import Identity, identify, origin_allowed
from collab.auth.tokens import SESSION_COOKIE
from collab.errors import ApiError
from collab.http import api, client_address, json_body, services


def account_json(account: Account) -> dict[str, Any]:
    return {
        "account_id": str(account.account_id),
        "email": account.email,
        "name": account.name,
        "is_admin": account.is_admin,
    }


def _check_origin(request: Request) -> None:
    if not origin_allowed(request, services(request).settings):
        raise ApiError("forbidden_origin", "requests from this origin are not allowed", status=403)


async def _require(request: Request) -> Identity:
    svc = services(request)
    identity, reason = await identify(request, svc.sessions, svc.keys)
    if identity is None:
        raise ApiError("unauthenticated", reason or "not signed in", status=401)
    if identity.via == "cookie":
        _check_origin(request)
    return identity


def _with_session(response: Response, request: Request, cookie: str) -> Response:
    settings = services(request).settings
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=settings.session_max_age,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        path="/",
    )
    return response


@api
async def signup(request: Request) -> Response:
    _check_origin(request)
    body = await json_body(request)
    email, password, name = validate_signup(
        body.get("email"), body.get("password"), body.get("name")
    )
    svc = services(request)
    account = await create_account(svc.pool, email, password, name)
    cookie = await svc.sessions.create(account.account_id)
    return _with_session(JSONResponse(account_json(account), status_code=201), request, cookie)


@api
async def login(request: Request) -> Response:
    _check_origin(request)
    body = await json_body(request)
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str) or len(email) > 320:
        raise ApiError("bad_request", "email and password are required text")
    svc = services(request)
    address = client_address(request)
    # Counted before the check, so that simultaneous attempts cannot all get through.
    await svc.limiter.attempt(email, address)
    account = await check_password(svc.pool, email, password)
    if account is None:
        raise ApiError("bad_credentials", "wrong email or password", status=401)
    await svc.limiter.succeeded(email)
    cookie = await svc.sessions.create(account.account_id)
    return _with_session(JSONResponse(account_json(account)), request, cookie)


@api
async def logout(request: Request) -> Response:
    _check_origin(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await services(request).sessions.delete(cookie)
    response = JSONResponse({"ok": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@api
async def me(request: Request) -> Response:
    identity = await _require(request)
    return JSONResponse(account_json(identity.account))


@api
async def create_key(request: Request) -> Response:
    identity = await _require(request)
    body = await json_body(request)
    created = await services(request).keys.create(identity.account.account_id, body.get("name"))
    return JSONResponse(created, status_code=201)


@api
async def list_keys(request: Request) -> Response:
    identity = await _require(request)
    return JSONResponse({"keys": await services(request).keys.list(identity.account.account_id)})


@api
async def revoke_key(request: Request) -> Response:
    identity = await _require(request)
    try:
        key_id = UUID(request.path_params["key_id"])
    except ValueError:
        raise ApiError("not_found", "no such key", status=404) from None
    if not await services(request).keys.revoke(identity.account.account_id, key_id):
        raise ApiError("not_found", "no such key", status=404)
    return JSONResponse({"ok": True})


routes = [
    Route("/api/auth/signup", signup, methods=["POST"]),
    Route("/api/auth/login", login, methods=["POST"]),
    Route("/api/auth/logout", logout, methods=["POST"]),
    Route("/api/auth/me", me, methods=["GET"]),
    Route("/api/auth/keys", create_key, methods=["POST"]),
    Route("/api/auth/keys", list_keys, methods=["GET"]),
    Route("/api/auth/keys/{key_id}", revoke_key, methods=["DELETE"]),
]
