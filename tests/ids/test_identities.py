"""Canonical encoding, digests, manifests and references: the rules every ID rests on."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.errors import ReferenceNotFoundError
from tether.ids import Hasher, canonical_bytes, digest_bytes, digest_json
from tether.ids.canonical import CanonicalEncodingError
from tether.project.manifest import Manifest, content_digest
from tether.project.refs import resolve_ref, split_suffixes

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_form_round_trips_and_is_a_fixed_point(value: object) -> None:
    encoded = canonical_bytes(value)
    decoded = json.loads(encoded)
    assert canonical_bytes(decoded) == encoded


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_key_order_never_changes_the_digest(mapping: dict[str, object]) -> None:
    reordered = dict(reversed(list(mapping.items())))
    assert digest_json(mapping) == digest_json(reordered)


@given(st.binary(max_size=50_000), st.integers(min_value=1, max_value=4096))
def test_incremental_digest_does_not_depend_on_block_size(data: bytes, block: int) -> None:
    hasher = Hasher()
    for start in range(0, len(data), block):
        hasher.update(data[start : start + block])
    assert hasher.hexdigest() == digest_bytes(data)


@pytest.mark.parametrize("bad", [math.nan, math.inf, {1: "x"}, {"a": {1, 2}}, b"bytes"])
def test_values_without_a_canonical_form_are_refused(bad: object) -> None:
    with pytest.raises(CanonicalEncodingError):
        canonical_bytes(bad)


def test_known_digest_is_stable() -> None:
    # Pinned: changing the canonical form or the hash would silently rename every stored version.
    assert canonical_bytes({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    assert digest_bytes(b"") == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=12)
hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@given(st.dictionaries(names, hexes, min_size=1, max_size=6), st.text(max_size=40), st.text(max_size=20))
def test_manifest_round_trip_and_id_rule(components: dict[str, str], message: str, author: str) -> None:
    manifest = Manifest(
        components=components, kinds=dict.fromkeys(components, "prompt"), parents=(), message=message,
        author=author, time="2026-01-01T00:00:00Z", tier="standard", project="p",
    )
    body = manifest.to_bytes()
    assert manifest.version_id == digest_bytes(body)
    assert Manifest.from_bytes(body, expected_id=manifest.version_id) == manifest
    assert manifest.content_digest == content_digest(dict(reversed(list(components.items()))))
    other = Manifest(**{**manifest.__dict__, "message": message + "!"})
    assert other.content_digest == manifest.content_digest and other.version_id != manifest.version_id


def test_suffix_parsing() -> None:
    assert split_suffixes("main") == ("main", 0)
    assert split_suffixes("main~2") == ("main", 2)
    assert split_suffixes("HEAD~^~3") == ("HEAD", 5)
    assert split_suffixes("feature/x~") == ("feature/x", 1)


class _FakeMeta:
    """Just enough of a metadata repository to resolve references."""

    def __init__(self, ids: list[str], parents: dict[str, list[str]], branches: dict[str, str]):
        self.ids, self.parents, self.branches = ids, parents, branches

    def get_branch(self, name: str) -> str | None:
        return self.branches.get(name)

    def get_version(self, version_id: str) -> object | None:
        return object() if version_id in self.ids else None

    def find_versions_by_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        return [i for i in self.ids if i.startswith(prefix)][:limit]

    def get_parents(self, version_id: str) -> list[str]:
        return self.parents.get(version_id, [])


def test_reference_resolution_rules() -> None:
    a, b, c = "abcdef01" + "0" * 56, "abcdef02" + "0" * 56, "123456" + "f" * 58
    meta = _FakeMeta([a, b, c], {c: [a], a: []}, {"main": c})
    head = lambda: c  # noqa: E731
    assert resolve_ref("HEAD", meta, head) == c  # type: ignore[arg-type]
    assert resolve_ref("main~1", meta, head) == a  # type: ignore[arg-type]
    assert resolve_ref("123456", meta, head) == c  # type: ignore[arg-type]
    assert resolve_ref(a.upper(), meta, head) == a  # type: ignore[arg-type]
    with pytest.raises(ReferenceNotFoundError, match="ambiguous"):
        resolve_ref("abcdef", meta, head)  # type: ignore[arg-type]
    with pytest.raises(ReferenceNotFoundError, match="at least 6"):
        resolve_ref("abcde", meta, head)  # type: ignore[arg-type]
    with pytest.raises(ReferenceNotFoundError, match="ancestors"):
        resolve_ref("main~2", meta, head)  # type: ignore[arg-type]
    with pytest.raises(ReferenceNotFoundError, match="no version yet"):
        resolve_ref("HEAD", meta, lambda: None)  # type: ignore[arg-type]
