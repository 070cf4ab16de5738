"""Administration: users, the settings in force, the audit trail's integrity.

Routes (roles)::

    GET/POST /api/users                      (admin)
    PATCH    /api/users/{username}           (admin: {"disabled": true|false}; its tokens stop at once)
    GET  /api/settings                       (admin)
    GET  /api/audit/verify                   (admin, commander)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, HTTPException

from dispatch.auth import hash_password
from dispatch.domain import Role, User
from web.deps import Admin, AuditorDep, ContextDep, ServiceDep
from web.schemas import UserIn, UserPatch

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["admin"])


@router.get("/audit/verify")
def audit_verify(service: ServiceDep, _: AuditorDep) -> dict[str, Any]:
    return dataclasses.asdict(service.store.verify_audit())


@router.get("/users")
def list_users(service: ServiceDep, _: Admin) -> list[dict[str, Any]]:
    return [
        {"username": u.username, "role": u.role.value, "unit_id": u.unit_id, "disabled": u.disabled}
        for u in service.store.list_users()
    ]


@router.post("/users", status_code=201)
def create_user(body: UserIn, service: ServiceDep, who: Admin) -> dict[str, Any]:
    if (body.role is Role.UNIT) != (body.unit_id is not None):
        raise HTTPException(422, detail="a 'unit' user needs a unit_id, and only a unit user may have one")
    if body.unit_id is not None:
        service.get_unit(body.unit_id)
    service.store.add_user(User(body.username, body.role, body.unit_id), hash_password(body.password), actor=who.actor)
    return {"username": body.username, "role": body.role.value, "unit_id": body.unit_id}


@router.patch("/users/{username}")
def patch_user(username: str, body: UserPatch, service: ServiceDep, who: Admin) -> dict[str, Any]:
    user = service.store.set_user_disabled(username, body.disabled, actor=who.actor)
    if user is None:
        raise HTTPException(404, detail=f"no user {username!r}")
    return {"username": user.username, "role": user.role.value, "unit_id": user.unit_id, "disabled": user.disabled}


@router.get("/settings")
def settings(ctx: ContextDep, _: Admin) -> dict[str, Any]:
    return ctx.settings_view() if ctx.settings_view is not None else {}
