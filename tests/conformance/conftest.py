"""Backend fixtures for the conformance suite.

To add a backend, write a factory that returns a harness and register it in ``STORE_BACKENDS``
or ``METADATA_BACKENDS`` (and its marks in ``BACKEND_MARKS``); a factory may call ``pytest.skip``
when its service is unavailable. The PostgreSQL backend runs on the session's throwaway server
(``tests/services.py``), one fresh database per test.
A harness carries the backend under test plus the few hooks a test cannot express through the
interface alone (damaging an object, leaving a killed writer's temporary file behind).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tether.meta import MetadataRepository, open_metadata
from tether.store import ObjectStore, open_store


@dataclass
class StoreHarness:
    """An object store under test and backend-specific hooks."""

    name: str
    store: ObjectStore
    corrupt: Callable[[str], None]  # flip one byte of a stored object in place
    plant_temporary: Callable[[float], None]  # leave a killed writer's temporary file, this many seconds old


@dataclass
class MetadataHarness:
    """A metadata backend under test: how to open it, and a location that holds no database."""

    name: str
    url: str
    missing_url: str
    base: Path

    def open(self, create: bool = False) -> MetadataRepository:
        return open_metadata(self.url, self.base, create=create)


def _local_store(tmp_path: Path) -> StoreHarness:
    root = tmp_path / "objects"
    store = open_store(str(root), tmp_path)

    def corrupt(digest: str) -> None:
        path = root / digest[:2] / digest[2:]
        path.chmod(0o644)
        with open(path, "r+b") as handle:
            first = handle.read(1)
            handle.seek(0)
            handle.write(bytes([first[0] ^ 0xFF]) if first else b"x")

    def plant_temporary(age_seconds: float) -> None:
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        path = root / "tmp" / f"obj-planted-{age_seconds:g}.tmp"
        path.write_bytes(b"partial")
        stamp = time.time() - age_seconds
        os.utime(path, (stamp, stamp))

    return StoreHarness("local", store, corrupt, plant_temporary)


def _sqlite_metadata(tmp_path: Path) -> MetadataHarness:
    # The database path is relative to the project root, as in tether.toml.
    return MetadataHarness(
        name="sqlite",
        url="sqlite:///meta/tether.db",
        missing_url="sqlite:///absent/tether.db",
        base=tmp_path,
    )


def _postgresql_metadata(tmp_path: Path) -> MetadataHarness:
    # A fresh database per test on the session's throwaway server; "absent_..." is never created.
    from tests.services import postgres

    server = postgres()  # skips (fails under CI) when PostgreSQL cannot be had
    database = server.create_database("tether_conformance")
    return MetadataHarness(
        name="postgresql",
        url=server.url(database),
        missing_url=server.url(f"absent_{database}"),
        base=tmp_path,
    )


STORE_BACKENDS: dict[str, Callable[[Path], StoreHarness]] = {"local": _local_store}
METADATA_BACKENDS: dict[str, Callable[[Path], MetadataHarness]] = {
    "sqlite": _sqlite_metadata,
    "postgresql": _postgresql_metadata,
}
#: Marks a backend's tests carry, to select or deselect them (``-m "not postgres"``).
BACKEND_MARKS: dict[str, tuple[pytest.MarkDecorator, ...]] = {"postgresql": (pytest.mark.postgres,)}


def _params(names: Iterable[str]) -> list[Any]:  # pytest.param objects
    return [pytest.param(name, marks=BACKEND_MARKS.get(name, ())) for name in sorted(names)]


@pytest.fixture(params=_params(STORE_BACKENDS))
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreHarness:
    return STORE_BACKENDS[request.param](tmp_path)


@pytest.fixture
def store(store_backend: StoreHarness) -> ObjectStore:
    return store_backend.store


@pytest.fixture(params=_params(METADATA_BACKENDS))
def metadata_backend(request: pytest.FixtureRequest, tmp_path: Path) -> MetadataHarness:
    return METADATA_BACKENDS[request.param](tmp_path)


@pytest.fixture
def meta(metadata_backend: MetadataHarness) -> Iterator[MetadataRepository]:
    repository = metadata_backend.open(create=True)
    try:
        yield repository
    finally:
        repository.close()
