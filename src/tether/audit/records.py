"""Audit records: validation, the canonical leaf encoding, and salted payload digests.

A leaf is the canonical JSON (sorted keys, no whitespace, UTF-8; see :mod:`tether.ids.canonical`)
of one record including its leaf ``index`` and ``prev``, the hash of the leaf before it: a record
moved to another position no longer matches where it sits, and a record rewritten together with
its stored hash still breaks the link from the record after it. Inputs and outputs enter the leaf only as SHA-256(salt || content): the
salt is kept beside the leaf (not in it), so erasing a payload's salt and content for a data-
subject request leaves the digest unlinkable to the content while every proof stays valid.
"""

from __future__ import annotations

import collections
import datetime as _dt
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from tether.errors import UsageError
from tether.ids.canonical import CanonicalEncodingError, canonical_bytes, canonical_json

FORMAT_VERSION = 1
REQUEST = "request"
PURGE = "purge"
STATUSES = ("ok", "error")
SALT_BYTES = 16
_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_LEAF_KEYS = frozenset({
    "alias", "attributes", "error_type", "index", "input_digest", "latency_us", "output_digest", "prev",
    "request_id", "status", "subject", "time", "type", "v", "version_id",
})
_TEXT, _NONE = (str,), (str, type(None))
_LEAF_TYPES = {  # the JSON types of each field of a leaf, as make_record writes them
    "alias": _TEXT, "attributes": (dict,), "error_type": _NONE, "index": (int,), "input_digest": _NONE,
    "latency_us": (int,), "output_digest": _NONE, "prev": _TEXT, "request_id": _TEXT, "status": _TEXT,
    "subject": _NONE, "time": _TEXT, "type": _TEXT, "v": (int,), "version_id": _TEXT,
}
FIRST_PREV = "0" * 64  # the "previous leaf hash" of leaf 0
MAX_TEXT = 1024


class AuditRecordError(UsageError):
    """A record that cannot be written as given (a missing or malformed field)."""


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


_second_cache: tuple[int, str] = (-1, "")


def format_time(moment: _dt.datetime) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``: sorts as text in time order."""
    global _second_cache
    if not isinstance(moment, _dt.datetime):
        raise AuditRecordError(f"time: a timezone-aware datetime is required, got {type(moment).__name__}")
    if moment.tzinfo is None:
        raise AuditRecordError("time: a timezone-aware datetime is required (UTC is recorded)")
    if moment.utcoffset():
        moment = moment.astimezone(_dt.UTC)
    second = (moment.toordinal(), moment.hour, moment.minute, moment.second)
    key = hash(second)
    cached = _second_cache
    if cached[0] != key:
        cached = (key, f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.")
        _second_cache = cached
    return f"{cached[1]}{moment.microsecond:06d}Z"


def _text_field(name: str, value: Any, required: bool) -> str | None:
    if value is None:
        if required:
            raise AuditRecordError(f"audit record: {name} is required")
        return None
    if type(value) is not str:
        if isinstance(value, uuid.UUID) or (isinstance(value, int) and not isinstance(value, bool)):
            value = str(value)
        elif not isinstance(value, str):
            raise AuditRecordError(f"audit record: {name} must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_TEXT or value != value.strip() or not value.isprintable():
        if not value or value != value.strip():
            raise AuditRecordError(f"audit record: {name} must be non-empty text without surrounding spaces, got {value!r}")
        if len(value) > MAX_TEXT or any(ord(ch) < 0x20 for ch in value):
            raise AuditRecordError(f"audit record: {name} must be at most {MAX_TEXT} characters without control characters")
    return value


def check_version_id(value: Any) -> str:
    if type(value) is not str or len(value) != 64 or not _VERSION_ID.match(value):
        raise AuditRecordError(f"audit record: version_id must be a full 64-character version ID, got {value!r}")
    return value


_SCALARS = (str, int, bool, type(None))
_json_string = json.encoder.encode_basestring  # type: ignore[attr-defined]  # == json.dumps(str, ensure_ascii=False)


def check_attributes(attributes: Any) -> tuple[dict[str, Any], str]:
    """A private copy of the attributes and their canonical JSON."""
    if attributes is None or (type(attributes) is dict and not attributes):
        return {}, "{}"
    if not isinstance(attributes, dict):
        raise AuditRecordError(f"audit record: attributes must be a dict, got {type(attributes).__name__}")
    if all(type(key) is str and type(value) in _SCALARS for key, value in attributes.items()):
        parts = []
        for key in sorted(attributes):
            value = attributes[key]
            kind = type(value)
            text = _json_string(value) if kind is str else ("null" if value is None else (
                ("true" if value else "false") if kind is bool else str(value)))
            parts.append(f"{_json_string(key)}:{text}")
        return dict(attributes), "{" + ",".join(parts) + "}"
    try:
        text = canonical_json(attributes)
    except CanonicalEncodingError as exc:
        raise AuditRecordError(f"audit record: attributes.{exc}") from exc
    return json.loads(text), text


def encode_payload(value: Any) -> tuple[str, bytes]:
    """(encoding, bytes) of an input or output: bytes as is, text as UTF-8, else canonical JSON."""
    if isinstance(value, str):
        return "text", value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes", bytes(value)
    try:
        return "json", canonical_bytes(value)
    except CanonicalEncodingError as exc:
        raise AuditRecordError(f"audit record: payload has no canonical form ({exc}); pass bytes, text or JSON data") from exc


def decode_payload(encoding: str, content: bytes) -> Any:
    if encoding == "bytes":
        return content
    if encoding == "text":
        return content.decode("utf-8")
    return json.loads(content)


def salted_digest(salt: bytes, content: bytes) -> str:
    return hashlib.sha256(salt + content).hexdigest()


_salts: collections.deque[bytes] = collections.deque()


def _new_salt() -> bytes:
    """A fresh random salt, cut from one ``os.urandom`` read per 256 salts: one system call (and
    GIL hand-off) per payload was a visible share of the recording path. ``popleft`` is atomic, so
    no salt is ever handed out twice."""
    try:
        return _salts.popleft()
    except IndexError:
        block = os.urandom(SALT_BYTES * 256)
        _salts.extend(block[offset:offset + SALT_BYTES] for offset in range(SALT_BYTES, len(block), SALT_BYTES))
        return block[:SALT_BYTES]


class Payload:
    """One input or output: its salted digest, and what is kept beside the leaf."""

    __slots__ = ("content", "digest", "encoding", "salt")

    def __init__(self, salt: bytes, digest: str, encoding: str, content: bytes | None):
        self.salt = salt
        self.digest = digest
        self.encoding = encoding
        self.content = content  # None unless the tier's payload policy keeps the content

    @classmethod
    def of(cls, value: Any, keep: bool) -> Payload:
        encoding, content = encode_payload(value)
        salt = _new_salt()
        return cls(salt, hashlib.sha256(salt + content).hexdigest(), encoding, content if keep else None)


def _json_or_null(value: str | None) -> str:
    return "null" if value is None else _json_string(value)


class PendingRecord:
    """A validated record waiting for its leaf index (assigned in the writing transaction).

    The canonical JSON is assembled around the ``index`` key once, here, so the writer only
    splices in a number (keys in sorted order; a test checks it equals the canonical encoder's).
    """

    __slots__ = ("_after", "_before", "_middle", "done", "error", "fields", "future", "index", "input", "leaf_bytes", "output", "waiter", "writer")

    def __init__(self, fields: dict[str, Any], input: Payload | None = None, output: Payload | None = None,
                 attributes_json: str | None = None):
        self.fields = fields
        self.input = input
        self.output = output
        self.index: int | None = None
        self.leaf_bytes: bytes | None = None
        self.waiter: Any = None  # a held lock the committer releases (sync mode, a thread waits)
        self.future: Any = None  # (event loop, future) the committer settles (sync mode, a coroutine waits)
        self.writer = 0  # the writing thread (sync mode), so the committer can wait for its next record
        self.error: BaseException | None = None
        self.done = False
        if attributes_json is None:
            attributes_json = canonical_json(fields["attributes"])
        self._before = (f'{{"alias":{_json_string(fields["alias"])},"attributes":{attributes_json},'
                        f'"error_type":{_json_or_null(fields["error_type"])}')
        self._middle = (
            f'"input_digest":{_json_or_null(fields["input_digest"])},"latency_us":{int(fields["latency_us"])},'
            f'"output_digest":{_json_or_null(fields["output_digest"])}'
        )
        self._after = (
            f'"request_id":{_json_string(fields["request_id"])},'
            f'"status":{_json_string(fields["status"])},"subject":{_json_or_null(fields["subject"])},'
            f'"time":{_json_string(fields["time"])},"type":{_json_string(fields["type"])},"v":{int(fields["v"])},'
            f'"version_id":{_json_string(fields["version_id"])}}}'
        )

    def leaf(self, index: int, prev: str) -> bytes:
        """The canonical leaf at ``index``, after the leaf whose hash (hex) is ``prev``."""
        return f'{self._before},"index":{index},{self._middle},"prev":"{prev}",{self._after}'.encode()

    @property
    def request_id(self) -> str:
        return self.fields["request_id"]


Checked = tuple[str, str, str | None, dict[str, Any], str]  # alias, version ID, subject, attributes and their JSON


def check_fields(alias: Any, version_id: Any, request_id: Any, subject: Any, attributes: Any) -> Checked:
    """The checks :func:`make_record` makes on what is known before a request runs; the result
    lets ``make_record`` skip them when the request ends."""
    checked_alias = _text_field("alias", alias, True)
    check_version_id(version_id)
    if request_id is not None:
        _text_field("request_id", request_id, True)
    checked_subject = _text_field("subject", subject, False)
    attrs, attributes_json = check_attributes(attributes)
    return checked_alias, version_id, checked_subject, attrs, attributes_json  # type: ignore[return-value]


def make_record(
    *,
    alias: Any,
    version_id: Any,
    request_id: Any,
    subject: Any = None,
    attributes: Any = None,
    time: _dt.datetime | None = None,
    latency_us: int = 0,
    status: str = "ok",
    error_type: str | None = None,
    input: Payload | None = None,
    output: Payload | None = None,
    record_type: str = REQUEST,
    checked: Checked | None = None,
) -> PendingRecord:
    """Validate the fields of one record; :class:`AuditRecordError` names the bad one.

    ``checked`` is :func:`check_fields`'s result for the same alias, version, subject and
    attributes (then they are not checked twice)."""
    if status != "ok":
        if status not in STATUSES:
            raise AuditRecordError(f"audit record: status must be one of {', '.join(STATUSES)}, got {status!r}")
        if not error_type:
            raise AuditRecordError("audit record: an error record needs error_type (the exception type)")
    if type(latency_us) is not int or latency_us < 0:
        raise AuditRecordError(f"audit record: latency must be a non-negative number, got {latency_us!r}")
    if checked is None:
        attrs, attributes_json = check_attributes(attributes)
        subject = _text_field("subject", subject, False)
        alias = _text_field("alias", alias, True) if record_type == REQUEST else (alias or "")
        version_id = check_version_id(version_id) if record_type == REQUEST else (version_id or "")
    else:
        alias, version_id, subject, attrs, attributes_json = checked
    fields = {
        "v": FORMAT_VERSION,
        "type": record_type,
        "request_id": _text_field("request_id", request_id, True),
        "subject": subject,
        "time": format_time(time or utc_now()),
        "alias": alias,
        "version_id": version_id,
        "input_digest": input.digest if input else None,
        "output_digest": output.digest if output else None,
        "latency_us": latency_us,
        "status": status,
        "error_type": _text_field("error_type", error_type, False) if error_type else None,
        "attributes": attrs,
    }
    return PendingRecord(fields, input, output, attributes_json)


@dataclass(frozen=True)
class Record:
    """A record as read back from its leaf."""

    index: int
    type: str
    request_id: str
    subject: str | None
    time: str
    alias: str
    version_id: str
    input_digest: str | None
    output_digest: str | None
    latency_us: int
    status: str
    error_type: str | None
    attributes: dict[str, Any]
    prev: str = FIRST_PREV
    # Set by AuditLog.query, which checks every record it returns: "ok" (its leaf hash and its
    # inclusion in the latest signed checkpoint verify), "new" (after that checkpoint: its leaf
    # hash only) or "tampered" (``proof_problem`` says why). None where nothing was checked.
    proof: str | None = field(default=None, compare=False)
    proof_problem: str | None = field(default=None, compare=False)

    @classmethod
    def from_leaf(cls, leaf: bytes) -> Record:
        """Parse a leaf strictly: exactly the known keys, in canonical form."""
        try:
            data = json.loads(leaf)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a JSON record ({exc})") from exc
        if not isinstance(data, dict) or set(data) != _LEAF_KEYS:
            raise ValueError("not a tether audit record (unexpected fields)")
        if data["v"] != FORMAT_VERSION:
            raise ValueError(f"unknown record format {data['v']!r}")
        try:  # canonical_json without its type walk: json.loads yields JSON types only
            canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError as exc:
            raise ValueError("record is not in canonical form (NaN or infinity)") from exc
        if canonical.encode("utf-8") != leaf:
            raise ValueError("record is not in canonical form")
        for name, kinds in _LEAF_TYPES.items():
            value = data[name]
            if type(value) not in kinds or (type(value) is int and value < 0):
                raise ValueError(f"field '{name}' holds {json.dumps(value)[:40]}, which tether never writes there")
        if data["type"] not in (REQUEST, PURGE) or data["status"] not in STATUSES:
            name = "type" if data["type"] not in (REQUEST, PURGE) else "status"
            raise ValueError(f"field '{name}' holds {json.dumps(data[name])[:40]}, which tether never writes there")
        return cls(
            index=data["index"],
            type=data["type"],
            request_id=data["request_id"],
            subject=data["subject"],
            time=data["time"],
            alias=data["alias"],
            version_id=data["version_id"],
            input_digest=data["input_digest"],
            output_digest=data["output_digest"],
            latency_us=data["latency_us"],
            status=data["status"],
            error_type=data["error_type"],
            attributes=data["attributes"],
            prev=data["prev"],
        )

    @property
    def latency_ms(self) -> float:
        return self.latency_us / 1000.0

    def to_json(self) -> dict[str, Any]:
        return {
            "leaf_index": self.index,
            "type": self.type,
            "request_id": self.request_id,
            "subject": self.subject,
            "time": self.time,
            "alias": self.alias,
            "version_id": self.version_id,
            "input_digest": self.input_digest,
            "output_digest": self.output_digest,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "error_type": self.error_type,
            "attributes": self.attributes,
            **({"proof": self.proof, "proof_problem": self.proof_problem} if self.proof is not None else {}),
        }
