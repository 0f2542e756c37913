"""Professional terms in the vocabulary: the tokenizer matches them whole, the encoder gets one
embedding row per term.

- ``add_terms`` returns a copy of the tokenizer with the terms as added tokens
  (``AddedToken(term, single_word=True, normalized=True)``): matched on the normalized text
  (so "Stainless Steel" finds the term "stainless steel" under an uncased tokenizer), only as
  whole words ("oak" is not cut out of "soak"), longest match first ("stainless steel pan"
  before "stainless steel"). The ids follow the base vocabulary in term-list order.
- ``extend_embeddings`` resizes an encoder's word embeddings to the extended vocabulary, keeps
  every old row exactly and sets each term's row to the mean of the rows of the sub-tokens the
  base tokenizer splits it into. The mean starts the term where the pretrained model already
  "reads" it (the average of its pieces lies in the span the encoder's first layer was trained
  on, with the usual norm), rather than at a random vector the model has never seen; training
  then refines it. A random-init encoder (tiny-bert) gets the same, harmlessly.
- The encoder also gets a ``term_vocab_sha256`` buffer (uint8 [32]) and a load hook: a
  checkpoint trained with another term list (another dataset, other ``data.terms`` settings)
  is refused when loaded, instead of silently reading the wrong rows for the term ids.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from relkd.artifacts.identity import sha256_hex

SHA_BUFFER = "term_vocab_sha256"


def added_token(term: str) -> Any:
    from tokenizers import AddedToken

    return AddedToken(term, single_word=True, normalized=True)


def add_terms(tokenizer: Any, terms: Sequence[str]) -> Any:
    """A copy of ``tokenizer`` with ``terms`` added whole (the base is left unchanged)."""
    extended = copy.deepcopy(tokenizer)
    if terms:
        extended.add_tokens([added_token(t) for t in terms])
    return extended


def term_token_ids(tokenizer: Any, terms: Sequence[str]) -> np.ndarray:
    """int64 ids of ``terms`` in an extended tokenizer (ValueError for a term it lacks)."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in terms if t not in vocab]
    if missing:
        raise ValueError(f"tokenizer lacks professional terms {missing[:5]}")
    return np.asarray([vocab[t] for t in terms], dtype=np.int64)


def term_list_sha256(terms: Sequence[str]) -> str:
    return sha256_hex("\n".join(terms))


def sub_token_ids(base_tokenizer: Any, terms: Sequence[str]) -> list[list[int]]:
    """The base tokenizer's ids for each term (what a term's embedding row is averaged from)."""
    if not terms:
        return []
    return base_tokenizer(list(terms), add_special_tokens=False)["input_ids"]


@torch.no_grad()
def extend_embeddings(encoder: nn.Module, base_tokenizer: Any, terms: Sequence[str]) -> np.ndarray:
    """Resize ``encoder``'s word embeddings for ``terms`` (see the module docstring); returns
    the terms' ids. Rows below the base vocabulary keep their values bit for bit."""
    extended = add_terms(base_tokenizer, terms)
    ids = term_token_ids(extended, terms)
    old = encoder.get_input_embeddings().weight
    n_old = old.shape[0]
    if len(ids) and int(ids.min()) < n_old:
        raise ValueError(
            f"term ids start at {int(ids.min())} but the encoder already has {n_old} rows"
        )
    kept = old.detach().clone()
    encoder.resize_token_embeddings(len(extended), mean_resizing=False)
    weight = encoder.get_input_embeddings().weight
    weight[:n_old] = kept
    for tid, pieces in zip(ids.tolist(), sub_token_ids(base_tokenizer, terms), strict=True):
        weight[tid] = kept[torch.as_tensor(pieces, dtype=torch.long)].mean(0)
    _guard(encoder, terms)
    return ids


def _guard(encoder: nn.Module, terms: Sequence[str]) -> None:
    """Record the term list's hash in the state dict and refuse checkpoints with another."""
    digest = torch.tensor(list(bytes.fromhex(term_list_sha256(terms))), dtype=torch.uint8)
    encoder.register_buffer(SHA_BUFFER, digest)

    def check(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        have = state_dict.get(prefix + SHA_BUFFER)
        mine = getattr(module, SHA_BUFFER)
        if have is not None and not torch.equal(have.to(mine.dtype).cpu(), mine.cpu()):
            errors.append(
                f"{prefix}{SHA_BUFFER}: the checkpoint was trained with another professional-term "
                f"list ({bytes(have.tolist()).hex()[:12]} != {bytes(mine.tolist()).hex()[:12]} "
                "built here: another dataset or data.terms settings)"
            )

    encoder.register_load_state_dict_pre_hook(check)
