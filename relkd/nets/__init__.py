"""Plain nn.Module architectures, injected into the LightningModules."""

from relkd.nets.cross_encoder import CrossEncoder
from relkd.nets.encoder_presets import EncoderSpec, resolve_encoder

__all__ = ["CrossEncoder", "EncoderSpec", "resolve_encoder"]
