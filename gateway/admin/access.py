"""Who may do what on the control plane (docs/admin-api.md, Admin tokens):

- no token, or an unknown, expired or revoked one: 401;
- a read-only token on a write, or a workspace-scoped token on a cluster-wide operation
  (creating a workspace, the dead letters, the audit log): 403;
- a workspace outside the token's scope: 404, exactly as one that does not exist, so a
  scoped token cannot learn that another workspace exists.

Tokens are read from the database at every request (not cached): a revocation holds from
the next request, on every gateway."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, select

from sluice.gateway.admin.problems import Problem, blocking, not_found
from sluice.gateway.dependencies import DatabaseDep
from sluice.store.admin_tokens import TokenInfo, token_grant
from sluice.store.schema import workspaces

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


# Declares the scheme in the OpenAPI document (so /docs can authorise); the header is
# read below, to answer in the control plane's own shape.
BEARER = HTTPBearer(auto_error=False, scheme_name="adminToken", description="sluice token create")


async def admin_token(
    request: Request,
    database: DatabaseDep,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> TokenInfo:
    """The request's token, if it works, and the write check: a read-only token gets 403
    on any write. Kept on ``request.state`` for the audit log."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("send an admin token: Authorization: Bearer <token>")
    grant = await blocking(token_grant, database, token.strip())
    if grant is None:
        raise unauthorized("unknown, expired or revoked token")
    request.state.admin_token_id = grant.token_id
    if grant.read_only and request.method in WRITES:
        raise Problem(403, "read_only", "this token is read-only")
    return grant


AdminToken = Annotated[TokenInfo, Depends(admin_token)]


async def cluster_token(grant: AdminToken) -> TokenInfo:
    """A cluster-wide token, or 403."""
    if not grant.cluster_wide:
        raise Problem(403, "cluster_only", "this operation needs a cluster-wide token")
    return grant


ClusterToken = Annotated[TokenInfo, Depends(cluster_token)]


def _exists(engine: Engine, workspace_id: str) -> bool:
    query = select(workspaces.c.id).where(workspaces.c.id == workspace_id)
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


async def workspace_in_scope(workspace_id: str, grant: AdminToken, database: DatabaseDep) -> str:
    """The path's workspace, if it exists and the token reaches it; else 404 (alike)."""
    if "\x00" in workspace_id or len(workspace_id) > 64 or not grant.reaches(workspace_id):
        raise not_found("workspace")
    if not await blocking(_exists, database, workspace_id):
        raise not_found("workspace")
    return workspace_id


ScopedWorkspace = Annotated[str, Depends(workspace_in_scope)]
