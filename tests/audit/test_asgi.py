"""The ASGI middleware records every request, with Starlette's TestClient."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

with warnings.catch_warnings():  # newer Starlette prefers httpx2 for its test client; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tests.audit.conftest import AuditProject
from tether.audit import AuditLog
from tether.audit.asgi import AuditMiddleware


class Live:
    def __init__(self, alias: str, version_id: str):
        self.alias, self.version_id = alias, version_id


def make_app(log: AuditLog, target: object, **options: object) -> Starlette:
    async def answer(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"answer": f"about {body['question']}"})

    async def broken(request: Request) -> PlainTextResponse:
        raise RuntimeError("model down")

    async def unavailable(request: Request) -> PlainTextResponse:
        return PlainTextResponse("busy", status_code=503)

    app = Starlette(routes=[Route("/answer", answer, methods=["POST"]), Route("/broken", broken), Route("/busy", unavailable)])
    app.add_middleware(AuditMiddleware, log=log, target=target, **options)
    return app


def test_every_request_is_recorded_with_its_request_id(audit_project: AuditProject) -> None:
    live = Live("prod", audit_project.v1)
    with AuditLog.open(audit_project.root, durability="sync") as log:
        client = TestClient(make_app(log, lambda: live, subject_header="x-customer-id", bodies=True), raise_server_exceptions=False)
        response = client.post("/answer", json={"question": "refunds"}, headers={"X-Request-ID": "req-1", "X-Customer-ID": "42"})
        assert response.status_code == 200 and response.headers["x-request-id"] == "req-1"
        generated = client.get("/busy").headers["x-request-id"]
        assert client.get("/broken").status_code == 500
        live.version_id = audit_project.v2  # an alias move shows up on the next request
        client.post("/answer", json={"question": "invoices"}, headers={"X-Request-ID": "req-2"})
        first = log.query(request_id="req-1")[0]
        busy = log.query(request_id=generated)[0]
        records = log.query()
    assert (first.subject, first.alias, first.version_id, first.status) == ("42", "prod", audit_project.v1, "ok")
    assert first.attributes == {"http.request.method": "POST", "url.path": "/answer", "http.response.status_code": 200}
    assert first.input_digest and first.output_digest
    assert (busy.status, busy.error_type) == ("error", "HTTP 503")
    broken = next(record for record in records if record.attributes["url.path"] == "/broken")
    assert broken.status == "error" and broken.error_type == "RuntimeError"
    assert [record.version_id for record in records if record.request_id == "req-2"] == [audit_project.v2]
    assert len(records) == 4


def test_explicit_alias_and_version_and_no_bodies_by_default(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log:
        client = TestClient(make_app(log, None, alias="prod", version_id=audit_project.v1))
        client.post("/answer", json={"question": "x"})
        record = log.query()[0]
    assert record.input_digest is None and record.output_digest is None
    with pytest.raises(TypeError, match="target="):
        AuditMiddleware(lambda *a: None, log=log)  # type: ignore[arg-type]


def _deploy_mid_request(audit_project: AuditProject, alias: str) -> Callable[[], object]:
    """A target that resolves ``alias`` (at v1), then lands a promotion of v2 before the handler runs."""
    import tether

    run, root = audit_project.dir.run, audit_project.root
    run("promote", audit_project.v1, "--to", alias)
    run("rollback", alias, "--rehearse", "--from", audit_project.v2)

    def target() -> object:
        live = tether.resolve(alias, project_dir=root, refresh_seconds=0)
        run("promote", audit_project.v2, "--to", alias)
        return live

    return target


def test_the_handler_is_answered_by_the_version_its_record_names(audit_project: AuditProject) -> None:
    """The alias moves between the middleware's resolve and the handler's: both see the first."""
    import tether
    from tether.lifecycle import runtime

    root = audit_project.root
    for path, alias in (("/async", "canary"), ("/thread", "beta")):  # Starlette runs a plain function on a thread

        async def answer(request: Request, alias: str = alias) -> JSONResponse:
            return JSONResponse({"version": tether.resolve(alias, project_dir=root, refresh_seconds=0).version_id})

        def answer_in_thread(request: Request, alias: str = alias) -> JSONResponse:
            return JSONResponse({"version": tether.resolve(alias, project_dir=root, refresh_seconds=0).version_id})

        app = Starlette(routes=[Route(path, answer if path == "/async" else answer_in_thread)])
        try:
            with AuditLog.open(root, durability="sync") as log:
                app.add_middleware(AuditMiddleware, log=log, target=_deploy_mid_request(audit_project, alias))
                served = TestClient(app).get(path, headers={"X-Request-ID": alias}).json()["version"]
                assert served == audit_project.v1 == log.query(request_id=alias)[0].version_id
            # outside a request, resolve sees the move at once
            assert tether.resolve(alias, project_dir=root, refresh_seconds=0).version_id == audit_project.v2
        finally:
            runtime.clear_cache()


def test_a_recorded_function_is_answered_by_the_version_its_record_names(audit_project: AuditProject) -> None:
    import tether
    from tether.lifecycle import runtime

    target = _deploy_mid_request(audit_project, "canary")
    try:
        with AuditLog.open(audit_project.root, durability="sync") as log:

            @log.recorded(target, request_id=lambda question: question)
            def answer(question: str) -> str:
                return tether.resolve("canary", project_dir=audit_project.root, refresh_seconds=0).version_id

            assert answer("q-1") == audit_project.v1 == log.query(request_id="q-1")[0].version_id
    finally:
        runtime.clear_cache()


def test_a_client_header_the_log_refuses_never_leaves_an_answered_request_unrecorded(audit_project: AuditProject) -> None:
    with AuditLog.open(audit_project.root, durability="sync") as log:
        client = TestClient(make_app(log, Live("prod", audit_project.v1), subject_header="x-customer-id"))
        answered = []
        for request_id in ("   ", "r" * 2000, "a\tb"):
            response = client.post("/answer", json={"question": "x"}, headers={"X-Request-ID": request_id})
            assert response.status_code == 200
            answered.append(response.headers["x-request-id"])
        refused = client.post("/answer", json={"question": "x"}, headers={"X-Customer-ID": "c" * 2000})
        records = log.query()
    assert sorted(record.request_id for record in records) == sorted(answered)  # each under a fresh ID
    assert all(len(request_id) == 36 for request_id in answered)
    assert refused.status_code == 400 and "x-customer-id header" in refused.text  # the handler never ran


def test_an_app_that_names_the_request_itself_sends_one_id_and_the_record_takes_it(audit_project: AuditProject) -> None:
    async def named(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"X-Request-ID": "app-42"})

    live = Live("prod", audit_project.v1)
    app = Starlette(routes=[Route("/named", named)])
    with AuditLog.open(audit_project.root, durability="sync") as log:
        app.add_middleware(AuditMiddleware, log=log, target=live)
        response = TestClient(app).get("/named", headers={"X-Request-ID": "client-1"})
        assert response.headers.get_list("x-request-id") == ["app-42"]
        assert [record.request_id for record in log.query()] == ["app-42"]
