"""``AMLResponse``: what a raw ``run()`` answers with (a werkzeug response), built as Azure ML's server builds it."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response


class AMLResponse(Response):
    """``AMLResponse(message, status_code, response_headers={}, json_str=False, run_function_failed=False)``.

    ``None`` answers ``{}``; ``json_str=True`` encodes ``message`` as JSON; anything else is the body as is. Each
    header value is split on commas into several headers of that name.
    """

    def __init__(self, message: Any, status_code: int = 200, response_headers: dict | None = None,
                 json_str: bool = False, run_function_failed: bool = False) -> None:
        if message is None:
            super().__init__("{}", status=status_code, mimetype="application/json")
        elif json_str:
            super().__init__(json.dumps(message), status=status_code, mimetype="application/json")
        else:
            super().__init__(message, status=status_code)
        self.headers["x-ms-run-function-failed"] = str(bool(run_function_failed))
        for name, value in (response_headers or {}).items():
            if name.lower() == "content-type":
                self.headers[name] = value
                continue
            for part in str(value).split(","):
                self.headers.add_header(name, part.strip())
