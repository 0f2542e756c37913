"""SEMINAR's student: a Pretraining Search Unit's embeddings plus search units over the history.

Embeddings (the PSU, what pretraining learns):
    query = proj(mean of its token embeddings); item views = [id embedding, proj(mean of its text
    tokens), sum of its attribute embeddings], fused by a learned softmax gate; pair =
    MLP([query, item]).
Search units (downstream):
    GSU: each history event scored against the target by a weighted sum of per-view inner
    products over V = 4 views (query, item id, item text, item attributes); the top-k events are
    kept. With ``attention="pq"`` the scores come from product-quantised history views (codebooks
    fitted on the embeddings at the start of training: :meth:`prepare_fit`).
    ESU: multi-head target attention (query: the target pair; keys and values: the kept events'
    pair vectors), its logits biased by the exact GSU score, so the view weights train.
Relevance head: an MLP over [query, item, query*item, interest, interest*item] (zero-initialised
output) plus cos(query, item) times a per-class weight (initialised from the label gains): before
fine-tuning the ranking score is the PSU's relevance similarity, so a pretraining run's val
NDCG measures its relevance objective.

Outputs also carry what the pretraining terms read (relkd/losses/next_pair.py, seq_relevance.py,
view_align.py): ``seq_query, seq_item, seq_views, seq_user, seq_pair, seq_neg_pair``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from relkd.artifacts.identity import sha256_hex
from relkd.nets.pq_attention import MultiViewPQ, exact_view_scores

VIEWS = ("query", "item_id", "item_text", "item_attr")  # the GSU's per-view inner products
PQ_FIT_VECTORS = 20_000  # history events the codebooks are fitted on


def digest_tensor(text: str) -> torch.Tensor:
    """SHA-256 of ``text`` as a uint8 [32] tensor (a buffer that travels with the weights)."""
    return torch.tensor(list(bytes.fromhex(sha256_hex(text))), dtype=torch.uint8)


class Seminar(nn.Module):
    """Behaviour-sequence relevance student.

    Args:
        vocab_size: token-table rows (the student tokenizer's vocabulary).
        num_items: catalogue size (item id embeddings).
        attr_sizes: codes per item attribute (0 = missing), e.g. brand, colour, type.
        num_labels: K classes.
        gains: the label scheme's gains (initial per-class weights of the similarity).
        hidden, heads, top_k: width, ESU heads, GSU events kept.
        attention: ``exact`` or ``pq`` GSU scores.
        pq_subquantizers, pq_bits: per-view PQ codebook shape.
        word_embeddings: a frozen token table (e.g. the encoder's word embeddings), projected to
            ``hidden``; None learns a table of width ``hidden``.
        catalogue: identifies the catalogue and vocabulary the id and token tables index
            (stored as ``catalogue_digest``; loading weights from another catalogue is refused).
        use_history: False reads no history event (every row is treated as cold): the control
            that measures what the behaviour sequence adds.
    """

    input_keys = (
        "seq_query_ids",
        "seq_query_mask",
        "seq_item_ids",
        "seq_item_mask",
        "seq_item_row",
        "seq_item_attr",
        "seq_query_row",
        "hist_query_row",
        "hist_query_ids",
        "hist_query_mask",
        "hist_item_ids",
        "hist_item_mask",
        "hist_item_row",
        "hist_item_attr",
        "hist_mask",
        "neg_item_ids",
        "neg_item_mask",
        "neg_item_row",
        "neg_item_attr",
    )

    def __init__(
        self,
        vocab_size: int,
        num_items: int,
        attr_sizes: Sequence[int],
        num_labels: int,
        gains: Sequence[float],
        hidden: int = 64,
        heads: int = 4,
        top_k: int = 16,
        attention: str = "exact",
        pq_subquantizers: int = 16,
        pq_bits: int = 8,
        word_embeddings: torch.Tensor | None = None,
        dropout: float = 0.1,
        catalogue: str = "",
        use_history: bool = True,
    ) -> None:
        super().__init__()
        if attention not in ("exact", "pq"):
            raise ValueError(f"attention must be exact or pq, got {attention!r}")
        self.hidden_size = hidden
        self.feature_dim = 5 * hidden  # outputs["features"], the head's input
        self.top_k = int(top_k)
        self.attention = attention
        self.use_history = bool(use_history)  # False: the no-behaviour control (PSU features only)
        if word_embeddings is not None:
            # frozen and rebuilt from the encoder on every load, so it stays out of checkpoints
            # (MiniLM's table is 47 MB of a 60 MB checkpoint); catalogue_digest names the vocab
            self.tokens = None
            self.register_buffer("frozen_tokens", word_embeddings.float(), persistent=False)
            width = word_embeddings.shape[1]
        else:
            self.tokens = nn.Embedding(vocab_size, hidden)
            nn.init.normal_(self.tokens.weight, std=0.02)
            width = hidden
        self.text_proj = nn.Linear(width, hidden)
        self.item_id = nn.Embedding(num_items, hidden)
        nn.init.normal_(self.item_id.weight, std=0.02)
        self.attrs = nn.ModuleList(
            nn.Embedding(max(n, 1), hidden, padding_idx=0) for n in attr_sizes
        )
        self.gate = nn.Linear(3 * hidden, 3)
        self.pair = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.user_query = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
        self.user_pool = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.user_out = nn.Linear(2 * hidden, hidden)
        self.view_log_weight = nn.Parameter(torch.zeros(len(VIEWS)))  # GSU view weights, exp()
        self.esu = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.heads = heads
        self.head = nn.Sequential(
            nn.Linear(5 * hidden, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_labels),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        g = torch.tensor(list(gains), dtype=torch.float32)
        self.sim_weight = nn.Parameter((g - g.mean()) * 10.0)
        self.pq = (
            MultiViewPQ(len(VIEWS), hidden, pq_subquantizers, pq_bits)
            if attention == "pq"
            else None
        )
        self.register_buffer("catalogue_digest", digest_tensor(catalogue))

    # ---- embeddings (the PSU) ----
    def _text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[..., T] tokens -> [..., H]: projected mean of the token embeddings (0 for none)."""
        # embedding_bag sums without materialising [N, T, E] (16k history texts x 16 tokens x
        # 384 dims would be 400 MB a batch)
        shape, t = ids.shape[:-1], ids.shape[-1]
        flat_ids, flat_mask = ids.reshape(-1, t), mask.reshape(-1, t).float()
        offsets = torch.arange(0, flat_ids.numel(), t, device=ids.device)
        summed = F.embedding_bag(
            flat_ids.reshape(-1),
            self.frozen_tokens if self.tokens is None else self.tokens.weight,
            offsets,
            mode="sum",
            per_sample_weights=flat_mask.reshape(-1),
        )
        mean = summed / flat_mask.sum(-1, keepdim=True).clamp(min=1.0)
        return self.text_proj(mean).reshape(*shape, -1)

    def item_views(
        self, ids: torch.Tensor, mask: torch.Tensor, row: torch.Tensor, attr: torch.Tensor
    ) -> torch.Tensor:
        """[..., 3, H]: the id, text and attribute views of items."""
        text = self._text(ids, mask)
        attrs = sum(emb(attr[..., a]) for a, emb in enumerate(self.attrs))
        return torch.stack([self.item_id(row), text, attrs], dim=-2)

    def fuse_item(self, views: torch.Tensor) -> torch.Tensor:
        """Gated mix of the views: [..., 3, H] -> [..., H]."""
        gate = self.gate(views.flatten(-2)).softmax(-1)
        return (gate.unsqueeze(-1) * views).sum(-2)

    def fuse_pair(self, query: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.pair(torch.cat([query, item], dim=-1))

    # ---- search units ----
    def view_weights(self) -> torch.Tensor:
        return self.view_log_weight.exp()

    def _gsu_views(self, query: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """[..., 4, H]: query, item id, item text, item attributes (L2-normalised)."""
        return F.normalize(torch.cat([query.unsqueeze(-2), views], dim=-2), dim=-1)

    def _select(
        self,
        target: torch.Tensor,
        history: torch.Tensor,
        mask: torch.Tensor,
        rows: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """GSU: indices [B, k] of the top-k events by (exact or PQ) score; masked last.
        ``rows``: the events' query and item rows [B, L] (-1 on padding); with PQ each distinct
        query and item is encoded once, as a serving system stores codes per catalogue row."""
        with torch.no_grad():
            w = self.view_weights().detach()
            if self.pq is not None and self.pq.fitted:
                pq, (b, length, v, _) = self.pq, history.shape
                flat = history.flatten(0, 1).float()
                q_codes = self._unique(rows[0].flatten(), lambda at: pq.encode_view(0, flat[at, 0]))
                i_codes = self._unique(
                    rows[1].flatten(),
                    lambda at: torch.stack(
                        [pq.encode_view(j, flat[at, j]) for j in range(1, v)], 1
                    ),
                )
                codes = torch.cat([q_codes.unsqueeze(1), i_codes], 1).view(b, length, v, -1)
                scores = pq.scores(target.float(), codes, w.float())
            else:
                scores = exact_view_scores(target, history, w)
            scores = scores.masked_fill(~mask, float("-inf"))
            k = min(self.top_k, mask.shape[1])
            return scores.topk(k, dim=1).indices

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        b = batch
        bsz, length = b["hist_mask"].shape
        n_neg = b["neg_item_row"].shape[1]
        h_mask = b["hist_mask"].bool() & self.use_history
        # one pass over every distinct query and item of the batch: history events repeat the
        # same catalogue rows many times (16k events, a few thousand items)
        q_rows = torch.cat(
            [b["seq_query_row"], b["hist_query_row"].masked_fill(~h_mask, -1).flatten()]
        )
        q_vec = self._unique(
            q_rows,
            lambda at: self._text(
                torch.cat([b["seq_query_ids"], b["hist_query_ids"].flatten(0, 1)])[at],
                torch.cat([b["seq_query_mask"], b["hist_query_mask"].flatten(0, 1)])[at],
            ),
        )
        query, h_query = q_vec[:bsz], q_vec[bsz:].view(bsz, length, -1)
        i_rows = torch.cat(
            [
                b["seq_item_row"],
                b["hist_item_row"].masked_fill(~h_mask, -1).flatten(),
                b["neg_item_row"].flatten(),
            ]
        )

        def items(at: torch.Tensor) -> torch.Tensor:
            def part(key: str) -> torch.Tensor:
                return torch.cat(
                    [b[f"seq_{key}"], b[f"hist_{key}"].flatten(0, 1), b[f"neg_{key}"].flatten(0, 1)]
                )[at]

            v = self.item_views(
                part("item_ids"), part("item_mask"), part("item_row"), part("item_attr")
            )
            return torch.cat([v.flatten(-2), self.fuse_item(v)], dim=-1)

        hidden = self.hidden_size
        i_out = self._unique(i_rows, items)
        i_views, fused = i_out[:, : 3 * hidden].view(-1, 3, hidden), i_out[:, 3 * hidden :]
        views = i_views[:bsz]
        h_views = i_views[bsz : bsz + bsz * length].view(bsz, length, 3, hidden)
        item = fused[:bsz]
        # pair vectors of the target, the history events and the negatives, each distinct
        # (query, item) once
        n_items = self.item_id.num_embeddings
        all_q = torch.cat([query, h_query.flatten(0, 1), query.repeat_interleave(n_neg, dim=0)])
        pq_rows = torch.cat(
            [
                b["seq_query_row"],
                b["hist_query_row"].flatten(),
                b["seq_query_row"].repeat_interleave(n_neg),
            ]
        )
        keys = torch.where(i_rows >= 0, pq_rows * n_items + i_rows.clamp(min=0), -1)
        pairs = self._unique(keys, lambda at: self.fuse_pair(all_q[at], fused[at]))
        pair = pairs[:bsz]
        h_pair = pairs[bsz : bsz + bsz * length].view(bsz, length, -1)
        neg_pair = pairs[bsz + bsz * length :].view(bsz, n_neg, -1)
        has = h_mask.any(1)  # rows with a history
        user = self._user(h_pair, h_mask, has)
        rows = (
            b["hist_query_row"].masked_fill(~h_mask, -1),
            b["hist_item_row"].masked_fill(~h_mask, -1),
        )
        interest = self._interest(query, views, pair, h_query, h_views, h_pair, h_mask, has, rows)
        feats = torch.cat([query, item, query * item, interest, interest * item], dim=-1)
        sim = F.cosine_similarity(query, item, dim=-1)
        logits = self.head(feats) + sim.unsqueeze(-1) * self.sim_weight
        return {
            "logits": logits,
            "features": feats,
            "pooled": pair,
            "seq_query": query,
            "seq_item": item,
            "seq_views": views,
            "seq_user": user,
            "seq_pair": pair,
            "seq_neg_pair": neg_pair,
        }

    @staticmethod
    def _unique(keys: torch.Tensor, fn: Any) -> torch.Tensor:
        """``fn(positions)`` evaluated once per distinct key (at its first position), then
        spread back to every position: [N] keys -> [N, ...]. Keys < 0 (padding) share one."""
        uniq, inverse = torch.unique(keys, return_inverse=True)
        first = torch.full((len(uniq),), len(keys), dtype=torch.long, device=keys.device)
        first = first.scatter_reduce(
            0, inverse, torch.arange(len(keys), device=keys.device), "amin"
        )
        return fn(first)[inverse]

    def _user(self, h_pair: torch.Tensor, h_mask: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
        """The user state from the history alone (next-pair prediction): attention pooling with
        a learned query, plus the latest event; 0 for an empty history."""
        safe = h_mask.clone()
        safe[~has, 0] = True  # an all-masked row would give NaN
        q = self.user_query.expand(h_pair.shape[0], -1, -1)
        pooled, _ = self.user_pool(q, h_pair, h_pair, key_padding_mask=~safe, need_weights=False)
        last = h_mask.long().sum(1).clamp(min=1) - 1
        latest = h_pair[torch.arange(h_pair.shape[0], device=h_pair.device), last]
        user = self.user_out(torch.cat([pooled.squeeze(1), latest], dim=-1))
        return user * has.unsqueeze(-1).to(user.dtype)

    def _interest(
        self,
        query: torch.Tensor,
        views: torch.Tensor,
        pair: torch.Tensor,
        h_query: torch.Tensor,
        h_views: torch.Tensor,
        h_pair: torch.Tensor,
        h_mask: torch.Tensor,
        has: torch.Tensor,
        rows: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """GSU top-k, then ESU multi-head target attention biased by the exact GSU score."""
        target = self._gsu_views(query, views)  # [B, 4, H]
        history = self._gsu_views(h_query, h_views)  # [B, L, 4, H]
        top = self._select(target, history, h_mask, rows)  # [B, k]
        gather = top.unsqueeze(-1)
        k_pair = h_pair.gather(1, gather.expand(-1, -1, h_pair.shape[-1]))
        k_mask = h_mask.gather(1, top)
        k_hist = history.gather(1, gather.unsqueeze(-1).expand(-1, -1, *history.shape[2:]))
        bias = exact_view_scores(target, k_hist, self.view_weights())  # [B, k], differentiable
        safe = k_mask.clone()
        safe[~has, 0] = True
        bias = bias.masked_fill(~safe, float("-inf"))
        attn_bias = bias.unsqueeze(1).repeat_interleave(self.heads, dim=0)  # [B*heads, 1, k]
        out, _ = self.esu(
            pair.unsqueeze(1), k_pair, k_pair, attn_mask=attn_bias, need_weights=False
        )
        return out.squeeze(1) * has.unsqueeze(-1).to(out.dtype)

    # ---- product quantisation ----
    @torch.no_grad()
    def prepare_fit(self, batches: Iterable[dict[str, Any]]) -> nn.Module | None:
        """Fit the PQ codebooks on the current (pretrained) embeddings of history events from
        ``batches`` (at most PQ_FIT_VECTORS) and return the quantiser (under DDP the student
        module shares rank 0's); a no-op returning None for exact attention or fitted codebooks."""
        if self.pq is None or self.pq.fitted:
            return None
        parts, total = [], 0
        for b in batches:
            h_query = self._text(b["hist_query_ids"], b["hist_query_mask"])
            h_views = self.item_views(
                b["hist_item_ids"], b["hist_item_mask"], b["hist_item_row"], b["hist_item_attr"]
            )
            views = self._gsu_views(h_query, h_views)[b["hist_mask"].bool()]
            parts.append(views.float())
            total += len(views)
            if total >= PQ_FIT_VECTORS:
                break
        if not parts or total == 0:
            raise RuntimeError("no history event to fit the PQ codebooks on")
        self.pq.fit(torch.cat(parts)[:PQ_FIT_VECTORS])
        return self.pq
