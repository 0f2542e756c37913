"""relkd.artifacts.identity, the one home of digests: each against a hand computation, short ids
that never parse as numbers, and the pipeline's step digests unchanged for every other id."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from relkd.artifacts.identity import (
    json_digest,
    looks_numeric,
    sha256_file,
    sha256_files,
    sha256_hex,
    short_id,
)


def test_digests_match_a_hand_computation(tmp_path: Path) -> None:
    assert sha256_hex("abc") == hashlib.sha256(b"abc").hexdigest()
    assert sha256_hex(b"\x00\xff") == hashlib.sha256(b"\x00\xff").hexdigest()
    obj = {"b": [1, 2], "a": {"y": 1, "x": None}}
    assert json_digest(obj) == hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
    assert json_digest({"a": {"x": None, "y": 1}, "b": [1, 2]}) == json_digest(obj)  # key order
    assert json_digest({"p": Path("/x")}, default=str) == sha256_hex('{"p": "/x"}')
    with pytest.raises(TypeError):
        json_digest({"p": Path("/x")})
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 10_000)
    b.write_bytes(b"yz")
    assert sha256_file(a, chunk=3) == hashlib.sha256(b"x" * 10_000).hexdigest()
    assert sha256_files([a, b]) == hashlib.sha256(b"a.bin" + b"x" * 10_000 + b"b.binyz").hexdigest()


@pytest.mark.parametrize(
    ("digest", "expected"),
    [
        ("76e112215421ffff", "x6e112215421"),  # YAML / OmegaConf: inf
        ("168074578e09abcd", "x68074578e09"),  # 1.68074578e+17
        ("123456789012abcd", "x23456789012"),  # an int
        ("0d682e262f0d0000", "0d682e262f0d"),  # a string already: unchanged
        ("e11111111111", "e11111111111"),
    ],
)
def test_a_short_id_never_parses_as_a_number(digest: str, expected: str) -> None:
    sid = short_id(digest, 12)
    assert sid == expected
    assert OmegaConf.create({"version": sid}).version == sid
    assert isinstance(OmegaConf.from_dotlist([f"version={sid}"]).version, str)


def test_random_short_ids_stay_strings_through_omegaconf() -> None:
    rng = random.Random(0)
    numeric = 0
    for _ in range(20_000):
        digest = f"{rng.getrandbits(256):064x}"
        numeric += looks_numeric(digest[:12])
        sid = short_id(digest)
        value = OmegaConf.from_dotlist([f"v={sid}"]).v
        assert isinstance(value, str) and value == sid, sid
    assert numeric > 0  # the case is real at this count (about 1 in 150 prefixes)


def test_step_digests_are_unchanged_where_they_were_strings() -> None:
    """Finished pipeline steps are found by their digest: the identity helper must give the
    same 12 characters the inline formula gave for every id that was not a number."""
    from omegaconf import OmegaConf as OC

    from relkd.pipeline.pipeline_runner import step_fingerprint

    cfg = OC.create({"task": "student", "seed": 3, "model": {"x": 1}, "teacher": {"y": 2}})
    extra = {"teacher_cache": {"digest": "abc"}}
    body = {"task": "student", "seed": 3, "model": {"x": 1}}
    payload = json.dumps({"config": body, "inputs": extra}, sort_keys=True, default=str)
    old = hashlib.sha256(payload.encode()).hexdigest()[:12]
    assert not looks_numeric(old)
    assert step_fingerprint(cfg, extra) == old
