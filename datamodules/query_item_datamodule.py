"""QueryItemDataModule: the one LightningDataModule every relkd model trains and evaluates on.

``prepare_data`` (rank 0 of each node) tokenizes the dataset's queries and items once into a
memory-mapped store under ``cache_dir``; ``setup`` opens and verifies it (and the teacher cache,
when one is attached); the loaders draw batches of pair rows with DDP-aware batch samplers and
collate them with numpy. See docs/datamodule.md for the batch keys and the DDP rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from datamodules.graph_features import ClickGraphSpec, GraphFeatures
from datamodules.pair_collator import Encoding, PairCollator, Truncation, slot_widths
from datamodules.pair_dataset import EventPairDataset, PairDataset
from datamodules.prompt_collator import PromptCollator
from datamodules.prompt_store import PromptSpec, PromptStore
from datamodules.samplers import (
    LengthBucketBatchSampler,
    QueryGroupedBatchSampler,
    ResumableLoader,
    SequentialBatchSampler,
    ShardedBatchSampler,
)
from datamodules.sequence_features import SequenceFeatures, SequenceSpec
from datamodules.tokenized_store import TokenizedStore
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.data_config import DataConfig
from relkd.data.label_scheme import LabelScheme, get_label_scheme
from relkd.data.pool_subset import pool_mask
from relkd.data.schema import SPLITS
from relkd.errors import ConfigError
from relkd.nets.tokenizer_info import load_tokenizer
from relkd.teacher_cache.teacher_cache import TeacherCache


def _check_hidden(teacher: TeacherCache) -> np.ndarray:
    """The cache's hidden states, or a one-line ConfigError naming the cache folder."""
    if not teacher.has_hidden:
        raise ConfigError(
            f"{teacher.root}: teacher cache has no hidden states, which with_hidden needs; "
            "annotate with --hidden last|mean"
        )
    return teacher.hidden


def _plain(data: DataConfig) -> dict[str, Any]:
    """The config as plain types (paths as strings) for the checkpoint's hyperparameters."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    return plain(asdict(data))


@dataclass(frozen=True)
class SplitFrame:
    """Per-pair arrays of an evaluation split, in the order of the store (for metrics)."""

    pair_id: np.ndarray  # int64
    labels: np.ndarray  # int64, class index in the scheme (-1 = unlabelled)
    query_index: np.ndarray  # int64, query group id
    bucket: np.ndarray  # int64, index into relkd.data.schema.BUCKETS

    def __len__(self) -> int:
        return len(self.pair_id)


class QueryItemDataModule(pl.LightningDataModule):
    """Query–item pairs of a canonical dataset as cross-encoder, bi-encoder or prompt batches.

    Args:
        data_dir: canonical dataset folder (read only; nothing is written in or beside it).
        tokenizer: Hugging Face tokenizer name/path (``AutoTokenizer``) or tokenizer object.
        data: the experiment's ``data`` settings (relkd.data.data_config.DataConfig, whose
            docstring says what each does); checked here against ``encoding`` by its own rules.
            None: the defaults.
        encoding: ``cross`` ([CLS] q [SEP] item [SEP]), ``bi`` (query and item apart) or
            ``prompt`` (the teacher's causal-LM prompts and responses from a PromptStore built
            under ``data.cache_dir`` for ``prompt_spec``; training batches carry the response,
            val/test batches the prompt only; see datamodules/prompt_collator.py).
        prompt_spec: what the prompts hold (PromptSpec); required with ``encoding="prompt"``.
        click_graph: what batches read from the click graph (BERM's metapath neighbours, the
            clicked/cold eval slices); None: nothing.
        sequences: each row's user history (the seminar student); None: none.
        seed: sampler seed (with the epoch from ``set_epoch``).
        test_splits: splits ``test_dataloader`` serves, in order (one loader each; a list when
            more than one, e.g. ``("val", "test")`` to evaluate both in one ``trainer.test``).
            Also settable as the ``test_splits`` attribute before ``trainer.test``.
        store_dir: explicit store folder instead of one under ``data.cache_dir`` (a stale store
            there is refused, not rebuilt).

    Collation and loading knobs that no experiment sets (programmatic use, benchmarks):
        truncation: ``query_first`` (keep the query, trim the item) or ``longest_first``.
        token_type_ids: emit token_type_ids in cross mode; None = when the tokenizer uses them.
        pad_to_multiple_of: round each batch's width up to a multiple (None = longest row).
        queries_per_batch: groups per batch in grouped mode (default:
            max(1, data.batch_size // data.group_size)).
        min_group_items: grouped mode skips queries with fewer training rows than this.
        mega_batch_factor: mega-batch size, in batches, for length bucketing.
        drop_last: drop the last incomplete training batch.
        pin_memory / persistent_workers: DataLoader settings (with ``data.num_workers``).
    """

    def __init__(
        self,
        data_dir: str | Path,
        tokenizer: Any,
        data: DataConfig | None = None,
        *,
        encoding: Encoding | str = "cross",
        prompt_spec: PromptSpec | None = None,
        click_graph: ClickGraphSpec | None = None,
        sequences: SequenceSpec | None = None,
        seed: int = 0,
        test_splits: Sequence[str] = ("test",),
        store_dir: str | Path | None = None,
        truncation: Truncation = "query_first",
        token_type_ids: bool | None = None,
        pad_to_multiple_of: int | None = None,
        queries_per_batch: int | None = None,
        min_group_items: int = 2,
        mega_batch_factor: int = 50,
        drop_last: bool = False,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__()
        self.data = DataConfig() if data is None else data
        self.data.check(str(encoding))  # the rules between data settings: DataConfig's, once
        if (encoding == "prompt") != (prompt_spec is not None):
            raise ConfigError("encoding 'prompt' and prompt_spec go together")
        d = self.data
        if d.layout == "slots":
            slot_widths(d.max_length, d.max_query_tokens)  # refuses an item slot < 1 now
        if sequences is not None and encoding == "prompt":
            raise ConfigError("user sequences feed a student; encoding is prompt")
        self.data_dir = Path(data_dir)
        self._tokenizer_arg = tokenizer
        self._tokenizer: Any = None
        self.store_dir = None if store_dir is None else Path(store_dir)
        self.encoding = encoding
        self.prompt_spec = prompt_spec
        self.truncation: Truncation = truncation
        self.token_type_ids = token_type_ids
        self.pad_to_multiple_of = pad_to_multiple_of
        self.queries_per_batch = int(
            queries_per_batch or max(1, d.batch_size // max(d.group_size, 1))
        )
        self.min_group_items = int(min_group_items)
        self.mega_batch_factor = int(mega_batch_factor)
        self.drop_last = drop_last
        self.click_graph = click_graph
        self.sequences = sequences
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and d.num_workers > 0
        self.seed = int(seed)
        self.test_splits = tuple(test_splits)
        # Plain types only: the checkpoint stores these, and torch.load(weights_only=True)
        # refuses Path objects.
        self.save_hyperparameters(
            {
                "data_dir": str(data_dir),
                "tokenizer": tokenizer if isinstance(tokenizer, str) else None,
                "data": _plain(d),
                "encoding": encoding,
                "prompt_spec": None if prompt_spec is None else prompt_spec.to_dict(),
                "click_graph": None if click_graph is None else click_graph.to_dict(),
                "sequences": None if sequences is None else sequences.to_dict(),
                "seed": self.seed,
                "test_splits": list(self.test_splits),
                "store_dir": None if store_dir is None else str(store_dir),
                "truncation": truncation,
                "token_type_ids": token_type_ids,
                "pad_to_multiple_of": pad_to_multiple_of,
                "queries_per_batch": self.queries_per_batch,
                "min_group_items": self.min_group_items,
                "mega_batch_factor": self.mega_batch_factor,
                "drop_last": drop_last,
            },
            logger=False,  # the run's config.yaml is the record; keep these out of TensorBoard
        )
        self._dataset = CanonicalDataset(self.data_dir)
        self._store: TokenizedStore | PromptStore | None = None
        self._teacher: TeacherCache | None = None
        self._teacher_rows: np.ndarray | None = None
        self._pool: np.ndarray | None = None  # store rows of the pool pairs training draws
        self._collator: PairCollator | PromptCollator | None = None
        self._eval_collator: PromptCollator | None = None
        self._lengths: np.ndarray | None = None
        self._graph: GraphFeatures | None = None
        self._sequences: SequenceFeatures | None = None
        self._events: tuple[np.ndarray, np.ndarray] | None = None  # train_on events: rows, events
        self._terms: Any = None  # relkd.terms.TermList with professional_terms
        self._term_ids: np.ndarray | None = None

    # -- Lightning hooks -----------------------------------------------------------------

    def prepare_data(self) -> None:
        """Verify the dataset, build the tokenized store if its folder does not exist, and
        check the teacher cache's checksums (Lightning: local rank 0 only, so N ranks do not
        each hash the whole cache)."""
        self._open_store(build=True)
        self._open_teacher(verify_hash=True)
        self._open_graph(build=True)
        self._open_sequences(build=True)

    def setup(self, stage: str | None = None) -> None:
        """Verify the dataset, open and verify the store (and teacher cache). Outside DDP a
        missing store is built. Raises StaleArtifactError for a table edited since its manifest."""
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if self._store is None:
            self._open_store(build=not distributed)
        # under DDP rank 0's prepare_data hashed the cache; the other ranks check sizes only
        self._open_teacher(verify_hash=not distributed)
        self._open_graph(build=not distributed)
        self._open_sequences(build=not distributed)

    def _open_sequences(self, build: bool) -> None:
        """Each row's user history (model.student seminar), when asked for."""
        if self.sequences is None or self._sequences is not None:
            return
        self._sequences = SequenceFeatures.open(
            self.sequences, self._dataset, self.store, build=build, seed=self.seed
        )
        if self.sequences.train_on == "events":
            self._events = self._sequences.train_events(np.asarray(self.store.array("split")))

    def _open_graph(self, build: bool) -> None:
        """The click graph's features (metapath neighbours, eval slices), when asked for and the
        dataset has a behaviour table (metapaths without one are a ConfigError)."""
        if self.click_graph is None or self._graph is not None or self.encoding == "prompt":
            return
        self._graph = GraphFeatures.open(self.click_graph, self._dataset, self.store, build=build)

    def _open_teacher(self, verify_hash: bool) -> None:
        if not self.data.teacher_cache or self._teacher is not None:
            return
        root = Path(self.data.teacher_cache)
        # checks the label scheme, the dataset's tables and the pair ids
        teacher = TeacherCache.load(root, self._dataset, verify_hash=verify_hash)
        if self.data.with_hidden:
            _check_hidden(teacher)
        rows = teacher.align(np.asarray(self.store.array("pair_id")))
        self._pool = self._pool_rows(root, rows) if self.data.include_unlabeled else None
        self._teacher, self._teacher_rows = teacher, rows

    def _pool_rows(self, root: Path, teacher_rows: np.ndarray) -> np.ndarray:
        """Bool mask over store rows: the unlabelled pairs training adds (see ``pool_ratio``)."""
        s = self.store
        labelled = np.asarray(s.array("label")) >= 0
        covered = teacher_rows >= 0
        if self.data.pool_ratio is None:
            return covered & ~labelled
        train = np.asarray(s.array("split")) == SPLITS.index("train")
        want = pool_mask(np.asarray(s.array("pair_id")), labelled, train, self.data.pool_ratio)
        asked, have = int(want.sum()), int((want & covered).sum())
        if have < asked:
            r = f"{self.data.pool_ratio:g}"
            raise ConfigError(
                f"{root}: data.pool_ratio {r} asks for {asked} pool pairs "
                f"({r} x {int((labelled & train).sum())} labelled train pairs) but the teacher "
                f"cache covers {have} of them ({int((covered & ~labelled & train).sum())} pool pairs in "
                f"all); annotate them with `relkd teacher annotate RUN_DIR --out {root} "
                f"--pool-ratio {r}`"
            )
        return want

    def _open_terms(self, build: bool) -> Any:
        """The professional-term list (built first when missing and ``build``), and the
        tokenizer extended with it."""
        if self._terms is None:
            from relkd.terms import TermList, add_terms, term_token_ids, terms_cache_dir

            base = load_tokenizer(self._tokenizer_arg)
            terms = TermList.open_or_build(
                self.data_dir,
                base,
                min_count=self.data.terms.min_count,
                max_terms=self.data.terms.max_terms,
                cache_dir=terms_cache_dir(Path(self.data.cache_dir)),
                build=build,
            )
            tokenizer = add_terms(base, terms.terms)
            self._term_ids = term_token_ids(tokenizer, terms.terms)
            self._terms, self._tokenizer = terms, tokenizer
        return self._terms

    def _open_store(self, build: bool) -> TokenizedStore | PromptStore:
        # A table edited after its manifest was written would otherwise be served from a store
        # tokenized from the original: refuse it (cheap size/mtime check, cached).
        self._dataset.verify()
        if self._store is None and self.data.professional_terms:
            self._open_terms(build)
        if self._store is None and self.prompt_spec is not None:
            self._store = PromptStore.open_or_build(
                self.data_dir,
                self.tokenizer,
                self.prompt_spec,
                cache_dir=Path(self.data.cache_dir),
                store_dir=self.store_dir,
                build=build,
            )
        if self._store is None:
            self._store = TokenizedStore.open_or_build(
                self.data_dir,
                self.tokenizer,
                cache_dir=Path(self.data.cache_dir),
                store_dir=self.store_dir,
                item_fields=tuple(self.data.item_fields),
                max_query_tokens=self.data.max_query_tokens,
                max_item_tokens=self.data.max_item_tokens,
                build=build,
            )
        return self._store

    # -- accessors -----------------------------------------------------------------------

    @property
    def tokenizer(self) -> Any:
        """The tokenizer the store is built with: with professional_terms, the base one plus
        the mined terms (building the term list if it is missing)."""
        if self.data.professional_terms:
            self._open_terms(build=True)
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self._tokenizer_arg)
        return self._tokenizer

    @property
    def terms(self) -> Any:
        """The professional-term list (relkd.terms.TermList), or None without professional_terms."""
        return self._open_terms(build=True) if self.data.professional_terms else None

    @property
    def term_ids(self) -> np.ndarray | None:
        """Token ids of the professional terms in ``tokenizer`` (None without them)."""
        if self.data.professional_terms:
            self._open_terms(build=True)
        return self._term_ids

    @property
    def scheme(self) -> LabelScheme:
        return get_label_scheme(self._dataset.manifest.label_scheme)

    @property
    def num_labels(self) -> int:
        return self.scheme.num_labels

    @property
    def store(self) -> TokenizedStore | PromptStore:
        if self._store is None:
            raise RuntimeError("call prepare_data() and setup() first")
        return self._store

    @property
    def teacher(self) -> TeacherCache | None:
        return self._teacher

    @property
    def teacher_hidden_dim(self) -> int:
        """H of the ``teacher_hidden`` batch key; 0 without ``with_hidden``. Read from the
        cache (opened here if prepare_data/setup has not yet), so a model can be sized first."""
        if not self.data.with_hidden:
            return 0
        teacher = self._teacher
        if teacher is None:
            assert self.data.teacher_cache  # DataConfig's rule: with_hidden reads a cache
            # sizes only: prepare_data hashes it
            teacher = TeacherCache.load(Path(self.data.teacher_cache), verify_hash=False)
        return int(_check_hidden(teacher).shape[1])

    @property
    def collator(self) -> PairCollator | PromptCollator:
        """The training collator (prompt mode: with responses)."""
        if self._collator is None and isinstance(self.store, PromptStore):
            self._collator = PromptCollator(
                self.store, with_response=True, pad_to_multiple_of=self.pad_to_multiple_of
            )
        if self._collator is None:
            self._collator = PairCollator(
                self.store,
                encoding=self.encoding,
                max_length=self.data.max_length,
                truncation=self.truncation,
                token_type_ids=self.token_type_ids,
                pad_to_multiple_of=self.pad_to_multiple_of,
                teacher=self._teacher,
                teacher_rows=self._teacher_rows,
                with_cot=self.data.with_cot,
                with_hidden=self.data.with_hidden,
                layout=self.data.layout,
                prune_padding=self.data.prune_padding,
                term_ids=self.term_ids if self.encoding == "cross" else None,
                graph=self._graph,
                sequences=self._sequences,
            )
        return self._collator

    @property
    def eval_collator(self) -> PairCollator | PromptCollator:
        """The val/test collator: the training one, except prompt mode's has no responses."""
        if not isinstance(self.store, PromptStore):
            return self.collator
        if self._eval_collator is None:
            self._eval_collator = PromptCollator(
                self.store, with_response=False, pad_to_multiple_of=self.pad_to_multiple_of
            )
        return self._eval_collator

    def pair_lengths(self, with_response: bool = True) -> np.ndarray:
        """Per store pair: its length once collated (cross), its longer side (bi), or its prompt
        (+ response when ``with_response``) length (prompt).

        Slots: ``3 + query + item`` each cut to its slot, the width of a pruned batch of that
        pair alone (a pruned batch is 3 + its longest query + its longest item wide, so sorting
        by this groups pairs of similar items, the side that varies most); without pruning
        every pair is ``max_length`` wide."""
        s = self.store
        if isinstance(s, PromptStore):
            lengths = s.prompt_lengths()
            return lengths + s.response_lengths() if with_response else lengths
        if self._lengths is None:
            q = s.query_lengths()[np.asarray(s.array("query_row"))]
            i = s.item_lengths()[np.asarray(s.array("item_row"))]
            if self.encoding == "cross" and self.data.layout == "slots":
                big_q, big_t = slot_widths(self.data.max_length, self.data.max_query_tokens)
                if self.data.prune_padding:
                    lengths = np.minimum(q, big_q) + np.minimum(i, big_t) + 3
                else:
                    lengths = np.full(len(q), self.data.max_length)
                self._lengths = lengths.astype(np.int32)
            elif self.encoding == "cross":
                self._lengths = np.minimum(q + i + 3, self.data.max_length).astype(np.int32)
            else:
                self._lengths = np.minimum(np.maximum(q, i) + 2, self.data.max_length).astype(
                    np.int32
                )
        return self._lengths

    def rows(self, split: str) -> np.ndarray:
        """Store rows a split's loader draws from: labelled pairs (train: plus unlabelled ones the
        teacher covers, with ``include_unlabeled``; only the ``pool_ratio`` subset of them)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split == "train" and self._events is not None:
            return self._events[0]  # one row per log event (pairs repeat)
        s = self.store
        keep = np.asarray(s.array("label")) >= 0
        if split == "train" and self._pool is not None:
            keep |= self._pool
        keep &= np.asarray(s.array("split")) == SPLITS.index(split)
        return np.flatnonzero(keep)

    def split_frame(self, split: str) -> SplitFrame:
        """pair_id, labels, query_index and bucket of the rows ``split``'s loader covers."""
        rows = self.rows(split)
        s = self.store
        return SplitFrame(
            pair_id=s.array("pair_id")[rows].astype(np.int64),
            labels=s.array("label")[rows].astype(np.int64),
            query_index=s.array("query_row")[rows].astype(np.int64),
            bucket=s.array("bucket")[rows].astype(np.int64),
        )

    # -- loaders -------------------------------------------------------------------------

    def train_sampler(self, num_replicas: int | None = None, rank: int | None = None):
        """The training batch sampler (DDP rank/world default to torch.distributed's)."""
        rows = self.rows("train")
        if self.data.group_size > 0:
            strata = self.store.array("label")[rows].astype(np.int64)
            if self._teacher is not None and self._teacher_rows is not None:
                # Unlabelled rows are stratified by the teacher's argmax label.
                trow = self._teacher_rows[rows]
                fill = (strata < 0) & (trow >= 0)
                if fill.any():
                    strata[fill] = self._teacher.logits[trow[fill]].argmax(axis=1)
            return QueryGroupedBatchSampler(
                self.store.array("query_row")[rows],
                strata,
                self.data.group_size,
                self.queries_per_batch,
                min_group_items=self.min_group_items,
                drop_last=self.drop_last,
                seed=self.seed,
                num_replicas=num_replicas,
                rank=rank,
            )
        return LengthBucketBatchSampler(
            self.pair_lengths()[rows],
            self.data.batch_size,
            bucketing=self.data.length_bucketing,
            mega_batch_factor=self.mega_batch_factor,
            drop_last=self.drop_last,
            seed=self.seed,
            num_replicas=num_replicas,
            rank=rank,
        )

    def eval_sampler(self, split: str, num_replicas: int | None = None, rank: int | None = None):
        return SequentialBatchSampler(
            self.pair_lengths(with_response=False)[self.rows(split)],
            self.data.eval_batch_size,
            num_replicas=num_replicas,
            rank=rank,
        )

    def loader(self, split: str, sampler: ShardedBatchSampler) -> DataLoader:
        dataset = (
            EventPairDataset(*self._events)
            if split == "train" and self._events is not None
            else PairDataset(self.rows(split))
        )
        # The train loader keeps its place in the epoch across a resume. Every loader draws its
        # worker seeds from its own generator, not the global one, so starting a loader pass
        # mid-epoch (a resumed run) leaves the dropout RNG where an uninterrupted run has it.
        cls = ResumableLoader if split == "train" else DataLoader
        return cls(
            dataset,
            sampler=sampler,
            batch_size=None,
            collate_fn=self.collator if split == "train" else self.eval_collator,
            num_workers=self.data.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", self.train_sampler())

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", self.eval_sampler("val"))

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """One sequential loader per split in ``test_splits`` (a bare loader when only one)."""
        loaders = [self.loader(s, self.eval_sampler(s)) for s in self.test_splits]
        return loaders[0] if len(loaders) == 1 else loaders
