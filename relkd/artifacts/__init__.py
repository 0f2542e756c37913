"""Fingerprinted artifacts: folders built once from known inputs, verified on every open."""

from relkd.artifacts.fingerprinted_artifact import (
    FingerprintedArtifact,
    fingerprint,
    folder_name,
    input_differences,
)

__all__ = ["FingerprintedArtifact", "fingerprint", "folder_name", "input_differences"]
