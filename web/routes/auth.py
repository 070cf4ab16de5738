"""``POST /api/token``: the OAuth2 password login -> ``{"access_token", "token_type"}`` (anyone)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordRequestForm

from web.deps import AuthDep, ServiceDep, ThrottleDep
from web.sign_in import Throttled, authenticate

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["auth"])


@router.post("/token")
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    service: ServiceDep,
    request: Request,
    auth: AuthDep,
    throttle: ThrottleDep,
) -> dict[str, str]:
    client = request.client.host if request.client else None
    try:
        user = authenticate(service, throttle, form.username, form.password, client=client)
    except Throttled as e:
        raise HTTPException(429, detail=str(e), headers={"Retry-After": str(e.retry_after_s)}) from e
    if user is None:
        raise HTTPException(
            status_code=401, detail="wrong username or password", headers={"WWW-Authenticate": "Bearer"}
        )
    return {"access_token": auth.issue(user), "token_type": "bearer"}
