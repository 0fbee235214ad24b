"""The control plane over HTTP (``/admin/v1``, docs/admin-api.md): bearer admin tokens
(``access``), ``application/problem+json`` errors (``problems``), cursor pages (``pages``),
the audit of every write (``audit``) and one module per resource."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError

from sluice.gateway.admin import (
    audit_log,
    automations,
    dead_letters,
    definitions,
    deliveries,
    events,
    records,
    workspaces,
)
from sluice.gateway.admin.audit import AuditWrites
from sluice.gateway.admin.problems import (
    ADMIN_PREFIX,
    Problem,
    render_problem,
    render_validation_error,
)


def install(app: FastAPI) -> None:
    """Serve the control plane on ``app`` (``SLUICE_ADMIN_API``, on by default)."""
    router = APIRouter(prefix=ADMIN_PREFIX)
    for resource in (
        workspaces,
        definitions,
        automations,
        events,
        deliveries,
        records,
        dead_letters,
        audit_log,
    ):
        router.include_router(resource.router)
    app.include_router(router)
    app.add_exception_handler(Problem, render_problem)
    app.add_exception_handler(RequestValidationError, render_validation_error)
    app.add_middleware(AuditWrites, database=app.state.gateway.database)
