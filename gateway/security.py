"""How each route authenticates, declared in the OpenAPI document so that ``/docs`` can
authorise ("Try it out" sends the key): HTTP Basic for the native routes and Bento, a
bearer write key for the user/event API, header keys for Bunce and CleverTap, a bearer
admin token for ``/admin/v1`` (``sluice.gateway.admin.access``). Platform.ly sends its key
in the form body, which OpenAPI has no scheme for.

These only declare: each route reads its credentials itself, to answer in its own error
shape (FastAPI's own security classes would answer some malformed headers themselves)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.models import APIKey, APIKeyIn, HTTPBase
from fastapi.params import Depends as DependsParam
from fastapi.security.base import SecurityBase


class Declared(SecurityBase):
    def __init__(self, name: str, model: APIKey | HTTPBase) -> None:
        self.scheme_name = name
        self.model = model

    async def __call__(self) -> None:
        return None


def _header(name: str, header: str, description: str) -> Declared:
    model = APIKey(**{"in": APIKeyIn.header}, name=header, description=description)
    return Declared(name, model)


def _http(name: str, scheme: str, description: str) -> Declared:
    return Declared(name, HTTPBase(scheme=scheme, description=description))


WRITE_KEY_BASIC = _http("writeKey", "basic", "the write key as the user name, no password")
WRITE_KEY_BEARER = _http("writeKeyBearer", "bearer", "the write key")
BUNCE_KEY = _header("bunceKey", "X-Authorization", "the write key")
CLEVERTAP_ACCOUNT = _header("clevertapAccount", "X-CleverTap-Account-Id", "the workspace id")
CLEVERTAP_PASSCODE = _header("clevertapPasscode", "X-CleverTap-Passcode", "the write key")


def requires(*schemes: Declared) -> list[DependsParam]:
    """The ``dependencies`` of a router whose routes use these schemes (all at once)."""
    return [Depends(scheme) for scheme in schemes]


def joined_requirements(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI ``document`` with each operation's schemes as one requirement: FastAPI
    lists several as alternatives, and a route here needs all of them (CleverTap: the
    account and the passcode)."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            schemes = operation.get("security")
            if isinstance(schemes, list) and len(schemes) > 1:
                operation["security"] = [{k: v for each in schemes for k, v in each.items()}]
    return document


def declare_joined(app: FastAPI) -> None:
    """Serve ``joined_requirements`` of the app's document at ``/openapi.json``."""
    generate = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = joined_requirements(generate())
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
