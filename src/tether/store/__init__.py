"""Content-addressed object storage.

An object is immutable bytes named by its BLAKE3 digest. The embedded default is a local
folder; other backends implement :class:`ObjectStore` and pass the same conformance tests.
"""

from tether.store.base import ObjectCorruptError, ObjectMissingError, ObjectStore, StoreError, StoreHint
from tether.store.open import open_store

__all__ = ["ObjectCorruptError", "ObjectMissingError", "ObjectStore", "StoreError", "StoreHint", "open_store"]
