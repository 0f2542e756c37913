"""Stable identifiers: a pair_id must not change when a dataset is re-imported or re-ordered."""

from __future__ import annotations

import hashlib


def stable_pair_id(query_id: str, item_id: str) -> int:
    """A positive int63 derived from (query_id, item_id) alone, for sources without pair ids."""
    digest = hashlib.blake2b(f"{query_id}\x1f{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def stable_unit(key: str, seed: int) -> float:
    """A deterministic pseudo-uniform number in [0, 1) for ``key`` under ``seed``."""
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
