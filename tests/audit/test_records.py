"""Record validation and the canonical leaf encoding."""

from __future__ import annotations

import datetime as _dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.audit.records import AuditRecordError, Payload, Record, format_time, make_record, salted_digest
from tether.ids.canonical import canonical_bytes

VID = "ab" * 32

text = st.text(st.characters(blacklist_categories=("Cs",), min_codepoint=0x20), min_size=1, max_size=20).map(str.strip).filter(bool)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=10),
                    st.floats(allow_nan=False, allow_infinity=False))
attributes = st.dictionaries(st.text(max_size=8), st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                                                             | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6), max_size=5)


@settings(max_examples=150, deadline=None)
@given(request_id=text, subject=st.one_of(st.none(), text), alias=text, attrs=attributes,
       latency=st.integers(0, 10**9), error=st.booleans(), index=st.integers(0, 2**40))
def test_the_spliced_leaf_is_exactly_the_canonical_json(request_id: str, subject: str | None, alias: str, attrs: dict,
                                                        latency: int, error: bool, index: int) -> None:
    pending = make_record(alias=alias, version_id=VID, request_id=request_id, subject=subject, attributes=attrs,
                          latency_us=latency, status="error" if error else "ok", error_type="ValueError" if error else None,
                          output=Payload.of("x", False))
    leaf = pending.leaf(index, "ef" * 32)
    assert leaf == canonical_bytes({**pending.fields, "index": index, "prev": "ef" * 32})
    record = Record.from_leaf(leaf)
    assert (record.index, record.request_id, record.subject, record.attributes) == (index, request_id, subject, json.loads(json.dumps(attrs)))


@pytest.mark.parametrize(("fields", "message"), [
    ({"request_id": None}, "request_id is required"),
    ({"request_id": ""}, "request_id must be non-empty"),
    ({"request_id": " padded "}, "without surrounding spaces"),
    ({"request_id": 3.5}, "request_id must be a string"),
    ({"alias": None}, "alias is required"),
    ({"version_id": "abc"}, "full 64-character version ID"),
    ({"version_id": None}, "full 64-character version ID"),
    ({"subject": "a\nb"}, "control characters"),
    ({"attributes": {"x": float("nan")}}, "attributes"),
    ({"attributes": {1: "x"}}, "attributes"),
    ({"attributes": ["x"]}, "attributes must be a dict"),
    ({"status": "maybe"}, "status must be one of"),
    ({"status": "error"}, "needs error_type"),
    ({"latency_us": -1}, "latency"),
])
def test_missing_or_malformed_fields_get_a_clear_error(fields: dict, message: str) -> None:
    base = {"alias": "prod", "version_id": VID, "request_id": "r-1"}
    with pytest.raises(AuditRecordError, match=message):
        make_record(**{**base, **fields})


def test_integer_and_uuid_identifiers_become_text() -> None:
    import uuid

    rid = uuid.UUID(int=7)
    pending = make_record(alias="prod", version_id=VID, request_id=rid, subject=42)
    assert pending.fields["request_id"] == str(rid) and pending.fields["subject"] == "42"


def test_payload_digest_is_salted_and_content_kept_only_when_asked() -> None:
    first, second = Payload.of("same answer", False), Payload.of("same answer", True)
    assert first.digest != second.digest  # salted: equal content is not linkable
    assert first.content is None and second.content == b"same answer"
    assert salted_digest(second.salt, b"same answer") == second.digest
    assert Payload.of({"b": 1, "a": [1, 2]}, True).content == b'{"a":[1,2],"b":1}'
    with pytest.raises(AuditRecordError, match="no canonical form"):
        Payload.of(object(), True)


def test_time_is_utc_with_microseconds_and_naive_times_are_refused() -> None:
    moment = _dt.datetime(2026, 3, 1, 9, 30, 0, 1234, tzinfo=_dt.timezone(_dt.timedelta(hours=2)))
    assert format_time(moment) == "2026-03-01T07:30:00.001234Z"
    with pytest.raises(AuditRecordError, match="timezone-aware"):
        format_time(_dt.datetime(2026, 3, 1))


def test_non_canonical_or_foreign_leaves_are_not_records() -> None:
    leaf = make_record(alias="prod", version_id=VID, request_id="r").leaf(0, "0" * 64)
    Record.from_leaf(leaf)
    with pytest.raises(ValueError, match="canonical"):
        Record.from_leaf(json.dumps(json.loads(leaf), indent=1).encode())
    with pytest.raises(ValueError, match="unexpected fields"):
        Record.from_leaf(b'{"a":1}')
    with pytest.raises(ValueError, match="not a JSON"):
        Record.from_leaf(b"\xff")
