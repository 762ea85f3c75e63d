"""Audit records as OpenTelemetry spans, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.audit.conftest import AuditProject
from tether.audit import AuditLog
from tether.audit.otel import SpanEmitter, export_spans


@pytest.fixture
def exporter() -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def test_each_record_becomes_a_genai_span(audit_project: AuditProject, exporter) -> None:  # type: ignore[no-untyped-def]
    provider, memory = exporter
    with AuditLog.open(audit_project.root, durability="sync") as log:
        log.sinks.append(SpanEmitter(provider, describe=log.describe_version))
        log.append(alias="prod", version_id=audit_project.v1, request_id="r-1", subject="42", latency_ms=25,
                   attributes={"channel": "chat"}, output="ok")
        with pytest.raises(TimeoutError), log.record(alias="canary", version_id=audit_project.v2, request_id="r-2"):
            raise TimeoutError
    spans = memory.get_finished_spans()
    assert len(spans) == 2
    ok, failed = spans
    assert ok.name == "chat gpt-4o-2024-08-06" and ok.kind == SpanKind.CLIENT
    attributes = dict(ok.attributes)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-2024-08-06"
    assert attributes["tether.alias"] == "prod" and attributes["tether.version_id"] == audit_project.v1
    assert attributes["tether.request_id"] == "r-1" and attributes["tether.subject"] == "42"
    assert attributes["tether.attributes.channel"] == "chat" and attributes["tether.leaf_index"] == 0
    assert ok.end_time - ok.start_time == 25_000_000
    assert failed.status.status_code == StatusCode.ERROR and dict(failed.attributes)["error.type"] == "TimeoutError"


def test_stored_records_can_be_replayed_as_spans(audit_project: AuditProject, exporter) -> None:  # type: ignore[no-untyped-def]
    provider, memory = exporter
    with AuditLog.open(audit_project.root, durability="sync") as log:
        for sample in range(3):
            log.append(alias="prod", version_id=audit_project.v2, request_id=f"r{sample}",
                       attributes={"gen_ai.operation.name": "text_completion"})
        assert export_spans(log, provider) == 3
    names = {span.name for span in memory.get_finished_spans()}
    assert names == {"text_completion gpt-4o-2024-08-06"}


def test_otel_setting_adds_a_sink_on_the_global_provider(audit_project: AuditProject) -> None:
    audit_project.configure("otel = true")
    with AuditLog.open(audit_project.root, durability="sync") as log:
        assert any(isinstance(sink, SpanEmitter) for sink in log.sinks)
