"""The one response type of the in-image servers: what the HTTP layer writes, what scoring and the trigger hosts
answer with, and the JSON error shapes they all use."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("edgepack.runtime")


@dataclass(frozen=True)
class Response:
    """An HTTP-shaped outcome: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, value: Any) -> Response:
    """A JSON response."""
    return Response(status, json.dumps(value).encode())


def error_response(status: int, message: str, **extra: Any) -> Response:
    """A JSON error body ``{"error": message, "message": message, ...}`` (``message`` is where Azure ML's server
    puts it, so clients written for it read it there)."""
    return Response(status, json.dumps({"error": message, "message": message, **extra}).encode())


def internal_error(public: str, what: str, detail: str) -> Response:
    """A 500 that tells the client ``public`` and an error id; the details go only to the log, under that id."""
    error_id = uuid.uuid4().hex
    log.error("%s (error id %s):\n%s", what, error_id, detail)
    return error_response(500, public, error_id=error_id)
