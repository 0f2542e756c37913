"""The interaction-based student: one encoder reads query and item together."""

from __future__ import annotations

import torch
from torch import nn


class CrossEncoder(nn.Module):
    """A Hugging Face encoder over ``[CLS] query [SEP] item [SEP]`` plus a label head.

    Shapes:
        input_ids, attention_mask, token_type_ids: (B, L) int64.
        returns {"logits": (B, K) float, "pooled": (B, H) float, "features": (B, H) (the pooled
        vector again: what auxiliary heads such as cot_aspects read)}.
    ``input_keys`` names the batch keys the student module passes in (a two-tower net declares
    its query/item keys instead). The pooled vector is returned so later terms (contrastive
    adversarial training, CoT distillation heads) can read it without a second forward pass.
    """

    input_keys = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(
        self, encoder: nn.Module, num_labels: int, dropout: float = 0.1, pooling: str = "cls"
    ):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be cls or mean, got {pooling!r}")
        if getattr(encoder, "pooler", None) is not None:
            # BERT-family encoders carry a pooler we never read; unused parameters break DDP.
            encoder.pooler = None
        self.encoder = encoder
        self.pooling = pooling
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_labels)
        self.train()  # from_pretrained returns the encoder in eval mode; Lightning keeps modes

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        logits = self.head(self.dropout(pooled))
        return {"logits": logits, "pooled": pooled, "features": pooled}
