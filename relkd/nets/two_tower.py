"""The representation-based student: query and item are encoded apart, then compared.

Item embeddings depend on the item alone, so a search engine computes them once per catalogue
refresh; serving a query costs one query-tower pass plus a cheap comparison per candidate. That
is why a two-tower student is what an engine can afford online, and what it costs in quality is
one of the comparisons relkd makes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from relkd.nets.student_spec import StudentParts, StudentSpec

SIMILARITIES = ("cosine", "dot")


def pool_hidden(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, L, H) token states -> (B, H): the [CLS] state or the mean over real tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class TwoTower(nn.Module):
    """Two encoders (or one shared) and a relevance head over the pair of embeddings.

    ``logits = W [u, v, |u − v|, u ∘ v] + a · sim(u, v) + b`` where ``sim`` is the cosine times a
    learned scale (initialised at ``scale``) or the dot product. With ``concat_head=False`` the
    ``W`` term is dropped, so every class logit is affine in ``sim`` and the ranking score is
    monotone in it: the form an approximate-nearest-neighbour index can retrieve with.

    Shapes:
        query_input_ids, query_attention_mask: (B, Lq) int64.
        item_input_ids, item_attention_mask: (B, Li) int64.
        item_index: (B,) int64, optional: item rows; in eval mode embeddings are cached by it,
            so every item of an evaluation pass is encoded once.
        returns {"logits": (B, K), "similarity": (B,), "query_embedding": (B, H),
        "item_embedding": (B, H), "pooled": (B, H) (the query embedding, for hidden-state
        matching), "features": (B, 4H) ([u, v, |u − v|, u ∘ v], for auxiliary heads)}.
    """

    input_keys = (
        "query_input_ids",
        "query_attention_mask",
        "item_input_ids",
        "item_attention_mask",
        "item_index",
    )

    def __init__(
        self,
        query_encoder: nn.Module,
        item_encoder: nn.Module | None,
        num_labels: int,
        *,
        pooling: str = "mean",
        similarity: str = "cosine",
        scale: float = 20.0,
        concat_head: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be cls or mean, got {pooling!r}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        for enc in (query_encoder, item_encoder):
            if enc is not None and getattr(enc, "pooler", None) is not None:
                enc.pooler = None  # never read; unused parameters break DDP
        self.query_encoder = query_encoder
        self.item_encoder = item_encoder  # None: the towers share the query encoder's weights
        self.pooling = pooling
        self.similarity = similarity
        self.concat_head = concat_head
        hidden = query_encoder.config.hidden_size
        if item_encoder is not None and item_encoder.config.hidden_size != hidden:
            raise ValueError("the two towers must have the same hidden size")
        self.hidden_size = hidden
        self.feature_dim = 4 * hidden  # outputs["features"]: [u, v, |u - v|, u * v]
        self.dropout = nn.Dropout(dropout)
        self.log_scale = nn.Parameter(torch.tensor(float(scale)).log())
        # the head: "head." parameters train at optim.head_lr
        self.head = nn.ModuleDict(
            {
                "sim": nn.Linear(1, num_labels),
                **(
                    {"concat": nn.Linear(4 * hidden, num_labels, bias=False)} if concat_head else {}
                ),
            }
        )
        self._item_cache: dict[int, torch.Tensor] = {}
        self.train()

    # ---- the towers ----
    def _encode(self, encoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return pool_hidden(hidden, mask, self.pooling)

    def encode_query(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, H) query embeddings."""
        return self._encode(self.query_encoder, input_ids, attention_mask)

    def encode_item(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, H) item embeddings (computed once per item for serving)."""
        return self._encode(self.item_encoder or self.query_encoder, input_ids, attention_mask)

    # ---- the comparison ----
    def compare(self, u: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Embeddings (B, H) x (B, H) -> logits (B, K), similarity (B,), features (B, 4H)."""
        if self.similarity == "cosine":
            sim = self.log_scale.exp() * F.cosine_similarity(u.float(), v.float(), dim=-1)
        else:
            sim = (u.float() * v.float()).sum(-1)
        features = torch.cat([u, v, (u - v).abs(), u * v], dim=-1)
        logits = self.head["sim"](sim.unsqueeze(-1).to(u.dtype))
        if self.concat_head:
            logits = logits + self.head["concat"](self.dropout(features))
        return {"logits": logits, "similarity": sim, "features": features}

    def _items(
        self, ids: torch.Tensor, mask: torch.Tensor, item_index: torch.Tensor | None
    ) -> torch.Tensor:
        if self.training or item_index is None or torch.is_grad_enabled():
            return self.encode_item(ids, mask)
        keys = item_index.tolist()
        missing = sorted({k for k in keys if k not in self._item_cache})
        if missing:
            pos = {k: i for i, k in enumerate(keys)}
            rows = torch.tensor([pos[k] for k in missing], device=ids.device)
            width = int(mask[rows].sum(1).max())
            fresh = self.encode_item(ids[rows, :width], mask[rows, :width])
            self._item_cache.update(zip(missing, fresh, strict=True))
        return torch.stack([self._item_cache[k] for k in keys])

    def reset_item_cache(self) -> None:
        """Forget cached item embeddings (the weights changed, or a new evaluation pass)."""
        self._item_cache.clear()

    def train(self, mode: bool = True) -> TwoTower:
        self.reset_item_cache()
        return super().train(mode)

    def forward(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        item_input_ids: torch.Tensor,
        item_attention_mask: torch.Tensor,
        item_index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        u = self.encode_query(query_input_ids, query_attention_mask)
        v = self._items(item_input_ids, item_attention_mask, item_index)
        out = self.compare(u, v)
        out.update(query_embedding=u, item_embedding=v, pooled=u)
        return out


def build_two_tower(parts: StudentParts) -> TwoTower:
    """model.student two_tower: one shared encoder, or two (``model.two_tower.shared`` false)."""
    m = parts.cfg.model
    t = m.two_tower
    return TwoTower(
        parts.encoder(),
        None if t.shared else parts.encoder(),
        parts.num_labels,
        pooling=m.pooling,
        similarity=t.similarity,
        scale=t.scale,
        concat_head=t.concat_head,
        dropout=m.dropout,
    )


SPEC = StudentSpec(
    name="two_tower",
    display="two-tower",
    encoding="bi",
    build=build_two_tower,
    serving_graph="two_tower",
)
