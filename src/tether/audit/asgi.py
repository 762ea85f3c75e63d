"""ASGI middleware (FastAPI, Starlette, any ASGI app): one audit record per HTTP request.

```python
app.add_middleware(AuditMiddleware, log=AuditLog.open("."), target=lambda: tether.resolve("prod"))
```

The request ID comes from the ``X-Request-ID`` header (one is generated when it is absent or one
the log would refuse) and is sent back on the response (an app that sets that header on its
response names the request itself: the record takes its ID, and one header is sent); a subject header the log would refuse is
answered 400 before the app runs. A response with status 500 or more, or an exception, is recorded as an
error. ``target`` may be a live version or a callable returning one, called per request so an
alias move shows up at once; within the request, the handler's own ``tether.resolve`` of the
same reference returns the very version the record names (see
:func:`tether.lifecycle.runtime.request_scope`). The request waits for its record to be durable (``sync``) without
blocking the event loop.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tether.audit.log import _MISSING, AuditLog, _target_fields
from tether.audit.records import AuditRecordError, _text_field, utc_now

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AuditMiddleware:
    """Records every HTTP request: request ID, subject (from a header, optional), alias, version,
    latency, status, and the request and response bodies' salted digests when ``bodies`` is on."""

    def __init__(
        self,
        app: ASGIApp,
        log: AuditLog,
        target: Any = None,
        *,
        alias: str | None = None,
        version_id: str | None = None,
        request_id_header: str = "x-request-id",
        subject_header: str | None = None,
        bodies: bool = False,
    ):
        self.app = app
        self.log = log
        self.target = target
        self.alias = alias
        self.version_id = version_id
        self.request_id_header = request_id_header.lower().encode("latin-1")
        self.subject_header = subject_header.lower().encode("latin-1") if subject_header else None
        self.bodies = bodies
        if target is None and (alias is None or version_id is None):
            raise TypeError("AuditMiddleware: give target= (a live version or a callable returning one), or alias= and version_id=")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from tether.lifecycle.runtime import request_scope

        with request_scope():  # the handler's tether.resolve gets the version recorded here
            await self._recorded(scope, receive, send)

    async def _recorded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {key.lower(): value for key, value in scope.get("headers", [])}
        raw_id = headers.get(self.request_id_header)
        request_id = raw_id.decode("latin-1").strip() if raw_id else ""
        if not _usable(request_id):
            # The client's header is checked before the handler runs: an ID the log would refuse
            # (blank, too long, a control character) must not leave an answered request unrecorded.
            request_id = str(uuid.uuid4())
        subject = None
        if self.subject_header is not None and self.subject_header in headers:
            subject = headers[self.subject_header].decode("latin-1").strip() or None
            if subject is not None and not _usable(subject):
                await _bad_request(send, f"{self.subject_header.decode('latin-1')} header: at most 1024 characters without control characters")
                return
        alias, version_id = _target_fields(self.target, self.alias, self.version_id)
        started_at = utc_now()
        started = time.perf_counter()
        state: dict[str, Any] = {"status": None, "request": [], "response": [], "request_id": request_id}

        async def receive_wrapper() -> Message:
            message = await receive()
            if self.bodies and message["type"] == "http.request":
                state["request"].append(message.get("body", b""))
            return message

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message = dict(message)
                headers = list(message.get("headers", []))
                own = [value for key, value in headers if key.lower() == self.request_id_header]
                if own and _usable(own[-1].decode("latin-1").strip()):
                    # The app named the request itself: the record takes its ID, so the client
                    # sees one ID, the one it can query (never two headers).
                    state["request_id"] = own[-1].decode("latin-1").strip()
                else:
                    headers = [(key, value) for key, value in headers if key.lower() != self.request_id_header]
                    headers.append((self.request_id_header, request_id.encode("latin-1")))
                message["headers"] = headers
            elif self.bodies and message["type"] == "http.response.body":
                state["response"].append(message.get("body", b""))
            await send(message)

        error_type: str | None = None
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except Exception as exc:
            error_type = type(exc).__qualname__ if type(exc).__module__ == "builtins" else f"{type(exc).__module__}.{type(exc).__qualname__}"
            raise
        finally:
            status_code = state["status"]
            if error_type is None and status_code is not None and status_code >= 500:
                error_type = f"HTTP {status_code}"
            attributes: dict[str, Any] = {"http.request.method": scope.get("method", ""), "url.path": scope.get("path", "")}
            if status_code is not None:
                attributes["http.response.status_code"] = status_code
            latency_ms = (time.perf_counter() - started) * 1000

            await self.log.append_async(
                alias=alias, version_id=version_id, request_id=state["request_id"], subject=subject, attributes=attributes,
                input=b"".join(state["request"]) if self.bodies else _MISSING,
                output=b"".join(state["response"]) if self.bodies else _MISSING,
                latency_ms=latency_ms, status="error" if error_type else "ok", error_type=error_type, time=started_at,
            )


def _usable(value: str) -> bool:
    """Whether the audit log accepts ``value`` as a request ID or subject."""
    try:
        _text_field("header", value, True)
    except AuditRecordError:
        return False
    return True


async def _bad_request(send: Send, reason: str) -> None:
    """Refuse a request whose record could not be written, before any handler answers it."""
    body = f"Bad Request: {reason}\n".encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
