"""The floor: a bare ASGI application under the same uvicorn (httptools, uvloop) that reads the request's body and
answers one fixed infer response, running no model and parsing nothing. What `modelci serve` costs beyond it is
what modelci itself does per request.

    ECHO_ANSWER='{"model_name": ...}' uvicorn echo:app --port 8082
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

ANSWER = os.environ["ECHO_ANSWER"].encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
              send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # NOTE: the whole body is read, as a server that answers it must
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
