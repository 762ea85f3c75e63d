"""Audit records as OpenTelemetry spans (optional extra ``tether[otel]``).

Model attributes follow the GenAI semantic conventions (``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``; span name ``{operation} {model}``; ``error.type``
on failures); what only tether knows goes under ``tether.*`` (``tether.alias``,
``tether.version_id``, the request, the leaf index and digests). The model of a record comes from
its version's ``model`` components, so a span names the exact model the version pinned.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tether.audit.records import Record
from tether.errors import UsageError

if TYPE_CHECKING:
    from tether.audit.log import AuditLog

DEFAULT_OPERATION = "chat"
Describe = Callable[[str], dict[str, Any]]


def _tracer(tracer_provider: Any) -> Any:
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise UsageError("audit.otel: OpenTelemetry is not installed; pip install 'tether[otel]'") from exc
    from tether import __version__

    provider = tracer_provider or trace.get_tracer_provider()
    return provider.get_tracer("tether.audit", __version__)


def span_attributes(record: Record, version: dict[str, Any] | None = None, operation: str = DEFAULT_OPERATION) -> dict[str, Any]:
    """The attributes of a record's span."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": str(record.attributes.get("gen_ai.operation.name", operation)),
        "tether.alias": record.alias,
        "tether.version_id": record.version_id,
        "tether.request_id": record.request_id,
        "tether.leaf_index": record.index,
        "tether.status": record.status,
    }
    models = (version or {}).get("models", [])
    if models:
        attributes["gen_ai.provider.name"] = models[0]["provider"]
        attributes["gen_ai.request.model"] = models[0]["model"]
        if len(models) > 1:
            attributes["tether.models"] = [f"{m['component']}={m['provider']}/{m['model']}" for m in models]
    if record.subject is not None:
        attributes["tether.subject"] = record.subject
    if record.input_digest:
        attributes["tether.input_digest"] = record.input_digest
    if record.output_digest:
        attributes["tether.output_digest"] = record.output_digest
    if record.status == "error" and record.error_type:
        attributes["error.type"] = record.error_type
    for key, value in record.attributes.items():
        if key == "gen_ai.operation.name":
            continue
        if isinstance(value, str | bool | int | float):
            attributes[key if key.startswith(("gen_ai.", "tether.")) else f"tether.attributes.{key}"] = value
    return attributes


def _nanoseconds(iso: str) -> int:
    moment = _dt.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def emit_span(tracer: Any, record: Record, version: dict[str, Any] | None = None, operation: str = DEFAULT_OPERATION) -> None:
    """One finished span for one record, timed as the request was."""
    from opentelemetry.trace import SpanKind, Status, StatusCode

    attributes = span_attributes(record, version, operation)
    model = attributes.get("gen_ai.request.model")
    name = f"{attributes['gen_ai.operation.name']} {model}" if model else attributes["gen_ai.operation.name"]
    start = _nanoseconds(record.time)
    span = tracer.start_span(name, kind=SpanKind.CLIENT, start_time=start, attributes=attributes)
    if record.status == "error":
        span.set_status(Status(StatusCode.ERROR, record.error_type or "error"))
    span.end(end_time=start + record.latency_us * 1000)


class SpanEmitter:
    """An audit-log sink: each record, once durable, becomes a span (``log.sinks.append(...)``;
    ``[audit] otel = true`` adds one using the global tracer provider)."""

    def __init__(self, tracer_provider: Any = None, describe: Describe | None = None, operation: str = DEFAULT_OPERATION):
        self.tracer = _tracer(tracer_provider)
        self.describe = describe
        self.operation = operation

    def __call__(self, record: Record) -> None:
        emit_span(self.tracer, record, self.describe(record.version_id) if self.describe else None, self.operation)


def export_spans(log: AuditLog, tracer_provider: Any = None, start: _dt.datetime | None = None,
                 end: _dt.datetime | None = None, operation: str = DEFAULT_OPERATION) -> int:
    """Emit stored records (optionally a time range) as spans; returns how many."""
    emitter = SpanEmitter(tracer_provider, log.describe_version, operation)
    count = 0
    for _, record in log.iter_records(start, end):
        if record.type != "request":
            continue
        emitter(record)
        count += 1
    return count
