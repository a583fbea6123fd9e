"""Request-size limit as plain ASGI middleware (413 with a typed body).

A declared ``Content-Length`` over the limit is refused before the body is
read; a chunked body is counted as it streams and refused once it passes the
limit. Bodies under the limit are buffered (they are at most ``max_bytes``)
and replayed to the app.
"""

from __future__ import annotations

import json
from typing import Any

from stream.api.protocol import ErrorBody

Scope = dict[str, Any]
Message = dict[str, Any]


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, declared)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(send, size)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any, size: int) -> None:
        body = ErrorBody.of(
            413,
            "payload_too_large",
            f"request body of {size}+ bytes exceeds the limit of {self.max_bytes} bytes",
        ).model_dump(mode="json")
        raw = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})
