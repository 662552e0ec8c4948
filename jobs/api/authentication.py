"""Token auth that also takes ``Authorization: Bearer <key>`` (what Prometheus scrapers send)."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication, TokenAuthentication, get_authorization_header
from rest_framework.request import Request

TOKEN_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


class TokenOrBearerAuthentication(TokenAuthentication):
    """DRF ``authtoken`` keys under either keyword.

    Listed first, so a request without credentials gets a 401 with ``WWW-Authenticate``.
    """

    keywords = (b"token", b"bearer")

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, Any] | None:
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() not in self.keywords:
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid token header: expected 'Token <key>' or 'Bearer <key>'."
            )
        try:
            key = auth[1].decode("ascii")
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        # Anything that cannot be a key is rejected before it reaches a query (e.g. NUL bytes).
        if not TOKEN_RE.match(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        return self.authenticate_credentials(key)


AUTHENTICATION_CLASSES = (TokenOrBearerAuthentication, SessionAuthentication)


class TokenOrBearerScheme(OpenApiAuthenticationExtension):
    """Documents the scheme as HTTP bearer, which Swagger UI's "Authorize" button then sends."""

    target_class = TokenOrBearerAuthentication
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A DRF API token: 'Authorization: Bearer <key>' (or 'Token <key>').",
        }
