"""``trainer.strategy: fsdp``: Lightning's FSDPStrategy, wrapped per transformer block.

A 7B teacher does not fit one GPU's memory with AdamW states under DDP; FSDP shards weights,
gradients and optimiser states. Each decoder layer is its own FSDP unit (the unit is gathered
only while that layer runs), found from the Hugging Face model itself: its ``_no_split_modules``
(``Qwen2DecoderLayer``, ``LlamaDecoderLayer`` ...) or, for models that name none (BERT), the
class repeated in its largest ``nn.ModuleList``. ``use_orig_params=True`` lets LoRA's frozen
base weights and trainable adapters share a flat parameter. Checkpoints are saved whole
(``state_dict_type="full"``) so ``relkd teacher export`` and ``resume=`` read them as usual.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from relkd.errors import ConfigError


def block_classes(model: nn.Module) -> set[type[nn.Module]]:
    """The transformer block classes of every Hugging Face model inside ``model``."""
    named: set[str] = set()
    for sub in model.modules():
        named.update(getattr(sub, "_no_split_modules", None) or ())
    found = {type(m) for m in model.modules() if type(m).__name__ in named}
    if found:
        return found
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    uniform = [m for m in lists if len({type(x) for x in m}) == 1]
    if not uniform:
        return set()
    return {type(max(uniform, key=len)[0])}


def build_strategy(trainer_cfg: Any, module: nn.Module) -> Any:
    """``trainer.strategy`` as Lightning takes it: the name, or an FSDPStrategy for ``fsdp``."""
    if trainer_cfg.strategy != "fsdp":
        return trainer_cfg.strategy
    import torch
    from lightning.pytorch.strategies import FSDPStrategy

    on_cpu = trainer_cfg.accelerator == "cpu" or (
        trainer_cfg.accelerator == "auto" and not torch.cuda.is_available()
    )
    if on_cpu:  # Lightning and torch's FSDP both need CUDA devices
        raise ConfigError("trainer.strategy: fsdp needs GPUs; on CPU use ddp (or ddp_spawn)")
    blocks = block_classes(module)
    if not blocks:
        raise ConfigError(
            "trainer.strategy: fsdp found no repeated transformer block to wrap in "
            f"{type(module).__name__}; use ddp"
        )
    fsdp = trainer_cfg.fsdp
    return FSDPStrategy(
        auto_wrap_policy=blocks,
        activation_checkpointing_policy=blocks if fsdp.activation_checkpointing else None,
        sharding_strategy=fsdp.sharding_strategy,
        cpu_offload=bool(fsdp.cpu_offload),
        state_dict_type="full",
        use_orig_params=True,
    )
