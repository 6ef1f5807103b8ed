"""``rawhttp`` and ``AMLRequest``: a scoring script that takes the HTTP request itself.

As in Azure ML's inference server, ``@rawhttp`` switches the whole service to raw mode (a module flag), and
``run()`` gets a werkzeug request: ``method``, ``args``, ``headers``, ``full_path``, ``get_data()``, ``files``,
``form``, ``json``... for GET, POST and OPTIONS on ``/score``.
"""

from __future__ import annotations

from typing import Any, Callable

from werkzeug.wrappers import Request

_rawHttpRequested = False


class AMLRequest(Request):
    """The HTTP request ``run()`` gets in raw mode (a werkzeug request)."""


def rawhttp(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark the service as taking raw requests; returns ``func`` unchanged."""
    global _rawHttpRequested
    _rawHttpRequested = True
    func.__edgepack_rawhttp__ = True  # type: ignore[attr-defined]
    return func
