"""HTTP errors a hook, ``derive`` or handler may raise during the handshake.

Raising one of these turns into that HTTP response (status, reason as the
body) instead of a 500: ``raise Unauthorized("bad token")`` answers 401 and
the socket never opens.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "HTTPError",
    "MethodNotAllowed",
    "NotFound",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UpgradeRequired",
]


class HTTPError(Exception):
    """An HTTP error response: ``status``, a human ``reason`` and extra ``headers``.

    The reason is sent to the client as a ``text/plain`` body, so it must not
    carry secrets; it defaults to the status phrase. With ``json`` (plain
    data) the body is that value as ``application/json`` instead.
    """

    status: int = 500

    def __init__(
        self,
        status: int | None = None,
        reason: str | None = None,
        *,
        headers: list[tuple[str, str]] | None = None,
        json: Any = None,
    ) -> None:
        if status is not None:
            self.status = status
        if not 400 <= self.status <= 599:
            raise ValueError(f"HTTPError status must be 4xx or 5xx, got {self.status}")
        self.reason = reason if reason is not None else _phrase(self.status)
        self.headers = list(headers or [])
        self.json = json
        super().__init__(self.status, self.reason)

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _StatusError(HTTPError):
    """An ``HTTPError`` whose status is fixed by the subclass: only the reason varies."""

    def __init__(
        self, reason: str | None = None, *, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(None, reason, headers=headers)


class BadRequest(_StatusError):
    """HTTP 400 Bad Request."""

    status = 400


class Unauthorized(_StatusError):
    """HTTP 401 Unauthorized."""

    status = 401


class Forbidden(_StatusError):
    """HTTP 403 Forbidden."""

    status = 403


class NotFound(_StatusError):
    """HTTP 404 Not Found."""

    status = 404


class MethodNotAllowed(_StatusError):
    """HTTP 405 Method Not Allowed."""

    status = 405


class Conflict(_StatusError):
    """HTTP 409 Conflict."""

    status = 409


class UpgradeRequired(_StatusError):
    """HTTP 426 Upgrade Required."""

    status = 426


class TooManyRequests(_StatusError):
    """HTTP 429 Too Many Requests."""

    status = 429


class ServiceUnavailable(_StatusError):
    """HTTP 503 Service Unavailable."""

    status = 503
