"""BERM: 0-order relevance from a cross-encoder plus k-order relevance from the click graph.

0-order is the cross-encoder's own logits over ``[CLS] query [SEP] item [SEP]``. Each metapath
group (``qiq`` or ``iqi``, order 1 or 2) adds a k-order relevance read by attention:

- ``qiq``: the pair's item attends over the query's neighbour queries (queries whose clickers
  also clicked what this query's users clicked): is the item relevant to queries like this one?
- ``iqi``: the pair's query attends over the item's neighbour items: is the query relevant to
  items like this one?

Nodes (the pair's query and item, and every neighbour) are represented by the mean of their
tokens' word embeddings (the encoder's own table, so the two views share a vocabulary) through
one projection; the attention adds ``log(weight)`` of each neighbour's metapath weight to its
score, and a node without neighbours contributes zeros and a 0 "present" flag. The groups'
features go through a linear layer initialised to zero and are added to the 0-order logits, so
training starts from the plain cross-encoder and ``metapaths: []`` is exactly one.

Shapes: the cross-encoder's inputs (B, L) plus, per group, ``<m><o>_ids``/``_mask``
(B, K, T) int64 and ``<m><o>_weight`` (B, K) float (datamodules/graph_features.py). Returns
{"logits": (B, C), "pooled": (B, H), "features": (B, H), "graph_logits": (B, C)}.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from relkd.nets.cross_encoder import CrossEncoder, build_cross_encoder
from relkd.nets.student_spec import StudentParts, StudentSpec

FIELDS = ("ids", "mask", "weight")


class Berm(nn.Module):
    """Args: cross (the 0-order CrossEncoder), metapaths (subset of qiq, iqi), order (1 or 2)."""

    def __init__(self, cross: CrossEncoder, metapaths: tuple[str, ...] = (), order: int = 1):
        super().__init__()
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        unknown = sorted(set(metapaths) - {"qiq", "iqi"})
        if unknown:
            raise ValueError(f"unknown metapaths {unknown}")
        self.cross = cross
        self.groups = [f"{m}{o}" for m in metapaths for o in range(1, order + 1)]
        self.input_keys = tuple(cross.input_keys) + tuple(
            f"{g}_{f}" for g in self.groups for f in FIELDS
        )
        self.graph_head: nn.Linear | None = None
        if not self.groups:
            return  # 0-order: exactly the cross-encoder (no unused parameters, same init)
        h, c = cross.hidden_size, cross.head.out_features
        self.node = nn.Sequential(nn.Linear(h, h), nn.Tanh())
        self.key = nn.Linear(h, h, bias=False)
        self.combine = nn.ModuleDict({g: nn.Linear(3 * h, h) for g in self.groups})
        self.dropout = nn.Dropout(cross.dropout.p)
        self.graph_head = nn.Linear(len(self.groups) * (h + 1), c)
        nn.init.zeros_(self.graph_head.weight)
        nn.init.zeros_(self.graph_head.bias)

    @property
    def hidden_size(self) -> int:
        return self.cross.hidden_size

    @property
    def feature_dim(self) -> int:
        """Width of outputs["features"] (the cross-encoder's pooled vector)."""
        return self.cross.feature_dim

    def _mean_embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(..., T) ids and mask -> (..., H) node vectors (zeros where the mask is empty)."""
        emb = self.cross.encoder.get_input_embeddings()(ids)
        m = mask.unsqueeze(-1).to(emb.dtype)
        mean = (emb * m).sum(-2) / m.sum(-2).clamp_min(1.0)
        return self.node(mean)

    def _attend(
        self, anchor: torch.Tensor, nodes: torch.Tensor, present: torch.Tensor, w: torch.Tensor
    ) -> torch.Tensor:
        """anchor (B, H) over nodes (B, K, H) -> (B, 3H) [r, r*a, |r-a|], zero without nodes."""
        scores = torch.einsum("bh,bkh->bk", self.key(anchor), nodes) / math.sqrt(anchor.shape[-1])
        scores = scores + torch.log(w.clamp_min(1e-6)).to(scores.dtype)
        scores = scores.masked_fill(~present, torch.finfo(scores.dtype).min)
        alpha = scores.softmax(-1) * present.to(scores.dtype)
        r = torch.einsum("bk,bkh->bh", alpha, nodes)
        return torch.cat([r, r * anchor, (r - anchor).abs()], dim=-1)

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        cross_keys = {k: batch[k] for k in self.cross.input_keys if k in batch}
        out = dict(self.cross(**cross_keys))
        if not self.groups:
            return out
        ids, mask = batch["input_ids"], batch["attention_mask"]
        types = batch.get("token_type_ids")
        if types is None:
            raise ValueError("BERM reads token_type_ids to tell the query from the item")
        body = mask.bool() & (ids != ids[:, :1])  # drop [CLS]
        q_vec = self._mean_embed(ids, (body & (types == 0)).long())
        i_vec = self._mean_embed(ids, (body & (types == 1)).long())
        feats = []
        for g in self.groups:
            g_mask = batch[f"{g}_mask"]
            nodes = self._mean_embed(batch[f"{g}_ids"], g_mask)
            present = g_mask[..., 0] > 0
            anchor = i_vec if g.startswith("qiq") else q_vec
            rel = torch.tanh(
                self.combine[g](self._attend(anchor, nodes, present, batch[f"{g}_weight"]))
            )
            has = present.any(-1, keepdim=True).to(rel.dtype)
            feats += [rel * has, has]
        assert self.graph_head is not None
        graph_logits = self.graph_head(self.dropout(torch.cat(feats, dim=-1)))
        out["graph_logits"] = graph_logits
        out["logits"] = out["logits"] + graph_logits
        return out


def build_berm(parts: StudentParts) -> Berm:
    """model.student berm: the cross-encoder plus ``model.berm``'s metapath groups."""
    b = parts.cfg.model.berm
    return Berm(build_cross_encoder(parts), metapaths=tuple(b.metapaths), order=b.order)


SPEC = StudentSpec(
    name="berm",
    display="BERM",
    encoding="cross",
    build=build_berm,
    needs_context="reads the click-graph neighbours of a catalogue pair",
    reads_metapaths=True,
)
