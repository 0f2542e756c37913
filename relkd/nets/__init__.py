"""Plain nn.Module architectures, injected into the LightningModules."""

from relkd.nets.causal_lm_presets import CausalLMSpec, resolve_causal_lm
from relkd.nets.causal_lm_teacher import CausalLMTeacher, TeacherTokens
from relkd.nets.cross_encoder import CrossEncoder
from relkd.nets.encoder_presets import EncoderSpec, resolve_encoder
from relkd.nets.kv_decoder import KVDecoder

__all__ = [
    "CausalLMSpec",
    "CausalLMTeacher",
    "CrossEncoder",
    "EncoderSpec",
    "KVDecoder",
    "TeacherTokens",
    "resolve_causal_lm",
    "resolve_encoder",
]
