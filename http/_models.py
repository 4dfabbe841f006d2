"""The JSON bodies of the API: what a client sends and what it gets back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Accepted", "AccessTokenRequest", "ApiSession", "CodeLogin", "Confirmation",
           "EmailChange",
           "EmailRequest", "Ended", "LinkLogin", "Login", "PasswordChange", "PasswordReset",
           "PersonChange", "PersonNew", "ScopeOut", "SessionOut", "SignUp", "TokenRequest"]

Email = Annotated[str, Field(min_length=3, max_length=320, examples=["ada@example.org"])]
Password = Annotated[str, Field(min_length=1, max_length=1024)]
Token = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignUp(_Strict):
    email: Email
    password: Password
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class Login(_Strict):
    email: Email
    password: Password
    remember: bool = False


class LinkLogin(_Strict):
    token: Token
    remember: bool = False


class CodeLogin(_Strict):
    email: Email
    code: Annotated[str, Field(min_length=1, max_length=12)]
    remember: bool = False


class EmailRequest(_Strict):
    email: Email


class TokenRequest(_Strict):
    token: Token


class Confirmation(_Strict):
    token: Token
    password: Password | None = None
    """A sign-up's confirmation needs the password chosen at sign-up."""


class PasswordReset(_Strict):
    token: Token
    password: Password


class PasswordChange(_Strict):
    current: Password
    new: Password


class EmailChange(_Strict):
    email: Email


class AccessTokenRequest(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    expires_in_days: Annotated[int, Field(ge=1, le=366)] | None = None


class Accepted(BaseModel):
    """The same answer whether or not the address is registered."""

    status: str = "accepted"
    detail: str


class ApiSession(BaseModel):
    """A new session or access token: ``token`` is shown this once."""

    token: str
    session_id: uuid.UUID
    person_id: uuid.UUID
    kind: str
    authenticated_at: datetime
    expires_at: datetime


class ScopeOut(BaseModel):
    kind: str
    person_id: uuid.UUID | None
    session_id: uuid.UUID | None
    service: str | None
    authenticated_at: datetime | None
    expires_at: datetime | None
    permissions: list[str]
    sudo: bool


class SessionOut(BaseModel):
    """A live session or access token (``label`` is an access token's name)."""

    session_id: uuid.UUID
    kind: str
    label: str | None
    ip: str | None
    user_agent: str | None
    created_at: datetime
    authenticated_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool = False


class Ended(BaseModel):
    ended: int


class PersonNew(_Strict):
    email: Email
    name: Annotated[str, Field(min_length=1, max_length=200)]
    password: Password | None = None
    verified: bool = False
    reason: Annotated[str, Field(max_length=500)] | None = None


class PersonChange(_Strict):
    email: Email | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    password: Password | None = None
    verified: bool | None = None
    expect_version: Annotated[int, Field(ge=0)] | None = None
    reason: Annotated[str, Field(max_length=500)] | None = None
