"""DataConfig: the typed ``data`` section of an experiment, and the rules between its settings.

One declaration of every data setting. ``relkd.config.experiment_config`` puts it in the
experiment schema (``experiments/base.yaml`` documents the same defaults, checked value by value
in tests/test_config.py); ``datamodules.QueryItemDataModule`` takes it as its constructor
argument. The rules between its settings live here once: ``relkd.config.compose`` reports
them against the YAML layer that set the key, the DataModule refuses a config that breaks one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from relkd.data.schema import EVAL_QUERY_POLICIES, ITEM_TEXT_FIELDS
from relkd.errors import ConfigError

DATASET_KINDS = ("synthetic", "path")
LAYOUTS = ("packed", "slots")  # cross batches: query and item packed, or in fixed slots
SEQUENCE_EXAMPLES = ("pairs", "events")  # seminar training rows: the split's pairs, or log events
BATCH_ENCODINGS = (
    "cross",
    "bi",
    "prompt",
)  # how the DataModule batches a pair (students: cross, bi)


@dataclass
class SyntheticDataConfig:
    """Parameters of the embedded synthetic catalogue; the dataset is cached by these."""

    pairs: int = 20_000
    seed: int = 0
    scheme: str = "esci"
    noise: float = 0.05
    unlabeled_ratio: float = 5.0
    # base.yaml sets 4,000 / 10,000; 0 here so that a run saved before these keys existed (its
    # config.yaml lacks them) reopens on the dataset it trained on, not a larger one.
    val_pairs: int = 0
    test_pairs: int = 0


@dataclass
class TermSettings:
    """Professional terms mined from the catalogue (data.professional_terms)."""

    min_count: int = 3  # a term must name at least this many items
    max_terms: int = 2000  # the most frequent terms kept


@dataclass
class ClickGraphSettings:
    """The query-item click graph: metapath neighbours (BERM) and clicked/cold eval slices."""

    top_k: int = 8  # neighbours kept per node and metapath, by weight
    min_clicks: int = 1  # a (query, item) edge needs this many clicks
    eval_queries: str = "logs"  # logs | hidden (drop val/test queries' clicks: the leak test)
    neighbor_tokens: int = 16  # tokens of each neighbour's text in a batch
    slices: bool = True  # report metrics on clicked and cold pairs (datasets with behaviour)


@dataclass
class SequenceSettings:
    """Each pair's user history from the behaviour table (model.student seminar)."""

    max_length: int = 64  # most recent clicked query-item pairs kept, all before the context time
    query_tokens: int = 8  # tokens of each history (and target) query
    item_tokens: int = 16  # tokens of each history (and target) item text
    negatives: int = 8  # random catalogue items per row (next_pair's sampled negatives)
    train_on: str = "pairs"  # pairs (the train split's pairs) | events (its log impressions)


@dataclass
class DataConfig:
    """What a run reads and how it is batched (the ``data`` section).

    The batch settings, as ``QueryItemDataModule`` reads them:
        cache_dir: where tokenized stores live: ``<cache_dir>/<dataset name>-<fingerprint>``
            (relative to the cwd); term lists, click graphs and sequences go beside it.
        max_length: cross: tokens per pair incl. [CLS]/[SEP]/[SEP]; bi: per side incl. 2 specials.
        max_query_tokens / max_item_tokens: caps applied once when tokenizing into the store.
        item_fields: items columns joined (" | ") into the item text, in this order.
        batch_size / eval_batch_size: training rows per batch (grouped mode: ``batch_size //
            group_size`` queries of ``group_size`` rows), val/test rows per batch.
        group_size: 0 = plain batches; k >= 2 = query-grouped batches of k rows per query.
        length_bucketing: plain mode: sort by length within mega-batches (less padding).
        include_unlabeled: also train on unlabelled train pairs the teacher cache covers
            (their ``labels`` are -1; the teacher fields carry the targets).
        pool_ratio: with include_unlabeled, only a fixed, nested subset of the pool:
            ``round(pool_ratio * labelled train pairs)`` pairs chosen by relkd.data.pool_subset
            (the ones ``relkd teacher annotate --pool-ratio`` annotates); a ConfigError when the
            cache lacks any of them. None: every pool pair the cache covers; 0: none.
        teacher_cache: a teacher cache folder to join by pair_id.
        with_cot: add ``teacher_cot`` strings to batches.
        with_hidden: add ``teacher_hidden`` (float16 [B, H], the cache's pooled hidden states,
            0 where the cache lacks the pair); the cache must have them (annotate --hidden).
        layout: cross batches ``packed`` or ``slots`` (query and item in fixed slots with
            ``position_ids``; see datamodules/pair_collator.py and docs/robust_interaction.md).
        prune_padding: slots: drop the columns that are padding in every row of a batch.
        professional_terms: mine the catalogue's terms once (``terms``), add them to the
            tokenizer whole (the store is keyed by the extended vocabulary) and add
            ``term_type_ids`` to cross batches.
        num_workers: DataLoader worker processes.
    """

    kind: str = "synthetic"  # synthetic | path
    path: str | None = None  # dataset folder when kind == path
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    dataset_root: str = "data_cache/datasets"  # where synthetic datasets are built and reused
    cache_dir: str = "data_cache/tokenized"  # tokenized stores
    max_length: int = 128
    max_query_tokens: int = 32
    max_item_tokens: int = 96
    item_fields: list[str] = field(default_factory=lambda: list(ITEM_TEXT_FIELDS))
    batch_size: int = 32
    eval_batch_size: int = 128
    group_size: int = 0  # k items per query in a batch; 0 = plain batches
    length_bucketing: bool = True
    include_unlabeled: bool = False
    pool_ratio: float | None = None  # pool pairs as a multiple of labelled train pairs; None = all
    teacher_cache: str | None = None
    with_cot: bool = False
    with_hidden: bool = False  # teacher_hidden in batches (cache annotated with --hidden)
    num_workers: int = 0
    layout: str = "packed"  # cross batches: packed | slots (query and item in fixed slots)
    prune_padding: bool = True  # slots: drop the columns that are padding in every row
    professional_terms: bool = False  # mined catalogue terms added whole; term_type_ids
    terms: TermSettings = field(default_factory=TermSettings)
    click_graph: ClickGraphSettings = field(default_factory=ClickGraphSettings)
    sequences: SequenceSettings = field(default_factory=SequenceSettings)

    @classmethod
    def of(cls, node: DataConfig | DictConfig) -> DataConfig:
        """A composed config's ``data`` section (an OmegaConf node of this schema) as the typed
        DataConfig it was validated as."""
        data = node if isinstance(node, DataConfig) else OmegaConf.to_object(node)
        if not isinstance(data, cls):
            raise TypeError(f"data section of type {type(data).__name__}, not {cls.__name__}")
        return data

    def problems(self, encoding: str) -> list[tuple[str, str]]:
        """Every broken rule as ``(key under data., message)``, for batches of ``encoding``
        (``cross``, ``bi`` or ``prompt``: a teacher's prompts)."""
        return data_problems(self, encoding)

    def check(self, encoding: str) -> None:
        """Raise a one-line ConfigError for the first broken rule (see ``problems``)."""
        found = data_problems(self, encoding)
        if found:
            key, message = found[0]
            raise ConfigError(f"data.{key}: {message}")


def data_problems(d: Any, encoding: str) -> list[tuple[str, str]]:
    """The rules of ``DataConfig.problems`` over ``d``: a DataConfig, or an OmegaConf node of
    its schema (how the composer checks a config before any object is built)."""
    found: list[tuple[str, str]] = []

    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            found.append((key, message))

    need(encoding in BATCH_ENCODINGS, "encoding", f"{encoding!r} not in {BATCH_ENCODINGS}")
    need(d.kind in DATASET_KINDS, "kind", f"{d.kind!r} not in {DATASET_KINDS}")
    need(d.kind != "path" or bool(d.path), "path", "required when data.kind is path")
    need(
        d.kind == "path" or not d.path,
        "path",
        f"is set but data.kind is {d.kind!r}, which ignores it: add data.kind=path to use that "
        "dataset (or drop data.path)",
    )
    need(d.synthetic.pairs > 0, "synthetic.pairs", "must be > 0")
    for key in ("val_pairs", "test_pairs"):
        need(getattr(d.synthetic, key) >= 0, f"synthetic.{key}", "must be >= 0")
    need(d.batch_size > 0, "batch_size", "must be > 0")
    need(d.eval_batch_size > 0, "eval_batch_size", "must be > 0")
    need(d.group_size == 0 or d.group_size >= 2, "group_size", "must be 0 or >= 2")
    need(
        d.group_size == 0 or d.batch_size % d.group_size == 0,
        "batch_size",
        f"must be a multiple of data.group_size ({d.group_size}) in grouped mode",
    )
    need(d.max_length >= 8, "max_length", "must be >= 8")
    for key in ("max_query_tokens", "max_item_tokens"):
        need(getattr(d, key) >= 1, key, "must be >= 1")
    need(d.num_workers >= 0, "num_workers", "must be >= 0")
    need(
        d.pool_ratio is None or d.include_unlabeled,
        "pool_ratio",
        "chooses pool pairs: set data.include_unlabeled true (or pool_ratio null)",
    )
    need(d.pool_ratio is None or d.pool_ratio >= 0, "pool_ratio", "must be >= 0")  # refuses nan
    for key in ("include_unlabeled", "with_cot", "with_hidden"):
        need(
            not getattr(d, key) or bool(d.teacher_cache),
            key,
            "reads a teacher cache: set data.teacher_cache",
        )
    need(d.layout in LAYOUTS, "layout", f"{d.layout!r} not in {LAYOUTS}")
    need(
        d.layout == "packed" or encoding == "cross",
        "layout",
        f"slots lays out a cross pair; these batches are {encoding}",
    )
    need(
        not d.professional_terms or encoding == "cross",
        "professional_terms",
        f"term_type_ids feed a cross student; these batches are {encoding}",
    )
    if encoding == "prompt":  # a teacher's prompts: student-only settings are refused, not ignored
        need(
            not d.teacher_cache,
            "teacher_cache",
            "a teacher cache is joined to student batches, not to a teacher's prompts",
        )
        need(d.group_size == 0, "group_size", "a teacher trains on plain batches: set 0")
    need(d.terms.min_count >= 1, "terms.min_count", "must be >= 1")
    need(d.terms.max_terms >= 1, "terms.max_terms", "must be >= 1")
    g = d.click_graph
    need(g.top_k >= 1, "click_graph.top_k", "must be >= 1")
    need(g.min_clicks >= 1, "click_graph.min_clicks", "must be >= 1")
    need(g.neighbor_tokens >= 1, "click_graph.neighbor_tokens", "must be >= 1")
    need(
        g.eval_queries in EVAL_QUERY_POLICIES,
        "click_graph.eval_queries",
        f"{g.eval_queries!r} not in {EVAL_QUERY_POLICIES}",
    )
    q = d.sequences
    for key in ("max_length", "query_tokens", "item_tokens"):
        need(getattr(q, key) >= 1, f"sequences.{key}", "must be >= 1")
    need(q.negatives >= 0, "sequences.negatives", "must be >= 0")
    need(
        q.train_on in SEQUENCE_EXAMPLES,
        "sequences.train_on",
        f"{q.train_on!r} not in {SEQUENCE_EXAMPLES}",
    )
    return found


__all__ = [
    "BATCH_ENCODINGS",
    "DATASET_KINDS",
    "LAYOUTS",
    "SEQUENCE_EXAMPLES",
    "ClickGraphSettings",
    "DataConfig",
    "SequenceSettings",
    "SyntheticDataConfig",
    "TermSettings",
    "data_problems",
]
