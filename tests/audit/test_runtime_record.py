"""``live.record(...)`` on what ``tether.resolve`` returns writes to the project's audit log."""

from __future__ import annotations

import pytest

import tether
from tests.audit.conftest import AuditProject
from tether.audit import AuditLog


@pytest.fixture(autouse=True)
def _fresh_runtime() -> None:
    from tether.lifecycle import runtime

    runtime.clear_cache()
    yield
    runtime.clear_cache()


def test_live_record_attributes_a_request_to_the_resolved_version(audit_project: AuditProject) -> None:
    audit_project.configure('durability = "sync"')
    audit_project.dir.run("promote", audit_project.v1, "--to", "prod")
    live = tether.resolve("prod", project_dir=audit_project.root)
    with live.record(request_id="r-1", subject="42", attributes={"channel": "chat"}) as rec:
        rec.output("refund approved")
    with pytest.raises(ValueError), live.record(request_id="r-2", subject="42"):
        raise ValueError("bad input")
    head = tether.resolve("HEAD", project_dir=audit_project.root)
    with head.record(request_id="r-3"):
        pass
    from tether.audit.log import open_log

    open_log(audit_project.root).close()
    with AuditLog.open(audit_project.root) as log:
        first, second, third = (log.query(request_id=rid)[0] for rid in ("r-1", "r-2", "r-3"))
    assert (first.alias, first.version_id, first.subject, first.status) == ("prod", audit_project.v1, "42", "ok")
    assert (second.status, second.error_type) == ("error", "ValueError")
    assert (third.alias, third.version_id) == ("HEAD", audit_project.v2)


def test_recording_annotations_tell_type_checkers_it_never_swallows_and_what_live_record_returns() -> None:
    """``__exit__ -> bool`` made mypy call a ``return`` inside ``with live.record(...)`` a missing
    return; ``live.record -> Any`` left every typo on the recording unchecked."""
    from typing import get_type_hints

    from tether.audit.log import AsyncRecording, Recording
    from tether.lifecycle.runtime import LiveVersion

    assert get_type_hints(Recording.__exit__)["return"] is type(None)
    assert get_type_hints(AsyncRecording.__aexit__)["return"] is type(None)
    import tether.audit.log as log_module
    import tether.lifecycle.runtime as runtime_module

    hints = get_type_hints(LiveVersion.record, {**vars(runtime_module), "Recording": log_module.Recording})
    assert hints["return"] is Recording
