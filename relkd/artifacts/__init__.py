"""Files relkd builds and reads: fingerprinted artifacts (folders built once from known inputs,
verified on every open), atomic writes, manifests, and checkpoints opened safely
(checkpoint_file.py)."""

from relkd.artifacts.fingerprinted_artifact import (
    FingerprintedArtifact,
    fingerprint,
    folder_name,
    input_differences,
)

__all__ = ["FingerprintedArtifact", "fingerprint", "folder_name", "input_differences"]
