"""What a request may cost before an endpoint sees it: pure ASGI middleware in front of FastAPI.

- `ApiKeyMiddleware`: a request that needs a key and has no valid one is answered 401 from its headers alone,
  without reading a byte of its body (an unauthenticated upload must not fill temporary files first).
- `BodyLimitMiddleware`: the body is capped per endpoint and by `max_request_bytes`, refused at once when its
  Content-Length says so, else cut off as it streams in; and a client that sends nothing for `body_timeout_s`
  between two chunks gets 408 and its connection is closed.

Both answer with problem+json like everything else (Starlette's own body limit answers in plain text).
What uvicorn does before the app is called (connections, headers) is `app.cli`'s and docs/api.md's.
"""

from __future__ import annotations

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import operations
from app.deps import check_key
from app.problems import Problem, problem_response
from app.settings import Settings

# Room for multipart headers and the text fields (name, metadata, filter) around the image bytes.
FORM_OVERHEAD_BYTES = 64 * 1024


def body_limit(settings: Settings, method: str, path: str) -> int:
    """Largest request body per endpoint: images only where images are posted, several where several may be
    (a whole frame is one), and never more than `max_request_bytes`."""
    if method != "POST":
        return min(FORM_OVERHEAD_BYTES, settings.max_request_bytes)
    images = 1 if path.startswith("/v1/frames") else settings.max_images_per_request
    return min(settings.max_upload_bytes * images + FORM_OVERHEAD_BYTES, settings.max_request_bytes)


async def _answer(problem: Problem, scope: Scope, receive: Receive, send: Send) -> None:
    response = problem_response(problem.status, problem.kind, problem.detail, headers=problem.headers)
    await response(scope, receive, send)


class ApiKeyMiddleware:
    """401 for a missing or wrong key before the body is read, on the operations whose OpenAPI security requires
    a key (writes), and on those where it is optional (reads) with `protect_reads`. The comparison is
    `app.deps.check_key`'s (timing-safe, `WWW-Authenticate` on 401)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.settings.api_keys:
            operation = operations.find(scope["app"], scope["method"], scope["path"])
            key = operation.key if operation else None
            if key == "required" or (key == "optional" and self.settings.protect_reads):
                try:
                    check_key(self.settings, Headers(scope=scope).get("x-api-key"))
                except Problem as problem:
                    await _answer(problem, scope, receive, send)
                    return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Cap the body at `body_limit` and time out a body that stalls (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(self.settings, scope["method"], scope["path"])
        too_large = Problem(413, "body-too-large", f"the request body is larger than {limit} bytes")
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(too_large, scope, receive, send)
            return
        timeout = self.settings.body_timeout_s
        stalled = Problem(
            408,
            "body-timeout",
            f"no request body data for {timeout:g} s; the connection is closed",
            headers={"Connection": "close"},
        )
        received, finished = 0, False

        async def guarded_receive() -> Message:
            nonlocal received, finished
            if finished:  # after the body only `http.disconnect` comes, whenever it comes
                return await receive()
            try:
                with anyio.fail_after(timeout):
                    message = await receive()
            except TimeoutError:
                raise stalled from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large
                finished = not message.get("more_body", False)
            return message

        await self.app(scope, guarded_receive, send)
