"""The interaction-based student: one encoder reads query and item together."""

from __future__ import annotations

import torch
from torch import nn

from relkd.nets.student_spec import StudentParts, StudentSpec


class CrossEncoder(nn.Module):
    """A Hugging Face encoder over ``[CLS] query [SEP] item [SEP]`` plus a label head.

    Shapes:
        input_ids, attention_mask, token_type_ids, position_ids, term_type_ids: (B, L) int64.
        embeddings: (B, L, H) float, word embeddings to use instead of looking up input_ids
            (contrastive adversarial training passes perturbed ones).
        returns {"logits": (B, K) float, "pooled": (B, H) float, "features": (B, H) (the pooled
        vector again: what auxiliary heads such as cot_aspects read)}, plus "embeddings"
        (B, L, H), the word (+ term-type) embeddings the encoder read, when
        ``return_embeddings``.

    ``input_keys`` names the batch keys the student module passes in (a two-tower net declares
    its query/item keys instead); absent keys are simply not passed. ``position_ids`` come from
    the slot layout, whose pruned columns must not shift the positions of the tokens after them.
    ``term_types`` adds a 0/1 term-type embedding (professional terms), initialised to zero so a
    pretrained encoder starts from its own behaviour.
    """

    input_keys = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "term_type_ids")

    def __init__(
        self,
        encoder: nn.Module,
        num_labels: int,
        dropout: float = 0.1,
        pooling: str = "cls",
        term_types: bool = False,
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
        self.term_type_embeddings: nn.Embedding | None = None
        if term_types:
            self.term_type_embeddings = nn.Embedding(2, hidden)
            nn.init.zeros_(self.term_type_embeddings.weight)
        self.train()  # from_pretrained returns the encoder in eval mode; Lightning keeps modes

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    @property
    def feature_dim(self) -> int:
        """Width of outputs["features"] (the pooled vector)."""
        return self.hidden_size

    def embed(
        self, input_ids: torch.Tensor, term_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, L, H) word embeddings of ``input_ids``, plus the term-type embedding if any."""
        embeds = self.encoder.get_input_embeddings()(input_ids)
        if self.term_type_embeddings is not None:
            if term_type_ids is None:
                raise ValueError("this cross-encoder reads term_type_ids (professional terms)")
            embeds = embeds + self.term_type_embeddings(term_type_ids)
        return embeds

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        term_type_ids: torch.Tensor | None = None,
        embeddings: torch.Tensor | None = None,
        return_embeddings: bool = False,
    ) -> dict[str, torch.Tensor]:
        kwargs: dict[str, torch.Tensor] = {"attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        via_embeddings = (
            embeddings is not None or return_embeddings or self.term_type_embeddings is not None
        )
        if via_embeddings:
            if embeddings is None:
                embeddings = self.embed(input_ids, term_type_ids)
            kwargs["inputs_embeds"] = embeddings
        else:
            kwargs["input_ids"] = input_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        logits = self.head(self.dropout(pooled))
        out = {"logits": logits, "pooled": pooled, "features": pooled}
        if return_embeddings:
            out["embeddings"] = embeddings
        return out


def build_cross_encoder(parts: StudentParts) -> CrossEncoder:
    """model.student cross_encoder (and BERM's 0-order part): ``model.pooling`` over the
    encoder, with a term-type embedding when ``data.professional_terms`` is on."""
    m = parts.cfg.model
    return CrossEncoder(
        parts.encoder(),
        num_labels=parts.num_labels,
        dropout=m.dropout,
        pooling=m.pooling,
        term_types=parts.cfg.data.professional_terms,
    )


SPEC = StudentSpec(
    name="cross_encoder",
    display="cross-encoder",
    encoding="cross",
    build=build_cross_encoder,
    serving_graph="cross_encoder",
    perturbable=True,
)
