"""Professional terms (robust interaction, ECML-PKDD'24): catalogue terms added to the vocabulary
whole, a 0/1 ``term_type_ids`` per token, and their embedding rows. See docs/robust_interaction.md.
"""

from relkd.terms.miner import MinedTerm, mine_terms, normalize_term
from relkd.terms.term_list import TermInputs, TermList, terms_cache_dir
from relkd.terms.vocab import add_terms, extend_embeddings, term_token_ids

__all__ = [
    "MinedTerm",
    "TermInputs",
    "TermList",
    "add_terms",
    "extend_embeddings",
    "mine_terms",
    "normalize_term",
    "term_token_ids",
    "terms_cache_dir",
    "terms_for_config",
]


def terms_for_config(cfg, data_dir, tokenizer, build: bool = True) -> TermList:
    """The term list a composed config's run uses: its dataset (``data_dir``, resolved by the
    caller), ``data.terms`` and tokenizer (a name/path or the base tokenizer object)."""
    d = cfg.data
    return TermList.open_or_build(
        data_dir,
        tokenizer,
        min_count=d.terms.min_count,
        max_terms=d.terms.max_terms,
        cache_dir=terms_cache_dir(d.cache_dir),
        build=build,
    )
