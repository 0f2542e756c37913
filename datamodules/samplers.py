"""Batch samplers: each yields whole batches (lists of dataset indices), sharded across ranks.

- ``LengthBucketBatchSampler``: random batches; with bucketing, indices are shuffled, sorted by
  length within mega-batches of ``mega_batch_factor * batch_size`` and the batch order shuffled,
  so a batch holds rows of similar length (less padding) yet the epoch stays random.
- ``QueryGroupedBatchSampler``: each batch is ``queries_per_batch`` blocks of ``group_size`` rows
  of one query, picked round-robin over label strata (for Margin-MSE and listwise losses).
- ``SequentialBatchSampler``: every index once, sorted by length (longest first), for val/test.

DDP: every sampler builds the same global batch list on every rank (seed + epoch), pads it by
repeating batches from its start until it divides by ``num_replicas``, and gives rank ``r`` the
batches ``r, r + R, r + 2R, ...``: disjoint batches, and the same count on every rank (so no rank
waits in a collective). For eval this repeats a few pairs on some ranks; every batch carries
``pair_id`` so the metrics module drops the duplicates.

They subclass ``DistributedSampler`` (without its __init__) so that Lightning sees them as
already distributed, does not inject its own sampler, and calls ``set_epoch`` each epoch. The
DataLoader takes them as ``sampler`` with ``batch_size=None``: the dataset is indexed with a whole
list of indices at once and collation is vectorised.

Mid-epoch resume: the training loader is a ``ResumableLoader``. Lightning saves its
``state_dict()`` (epoch, batches served) with every checkpoint and, when it resumes inside that
epoch, calls ``load_state_dict()`` before the first batch; the sampler then skips the batches this
rank already trained on (every rank skips the same count of its own batches), so a resumed run
sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


def world(num_replicas: int | None = None, rank: int | None = None) -> tuple[int, int]:
    """(num_replicas, rank): the given values, else torch.distributed's when initialised."""
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"invalid rank {rank} for num_replicas {num_replicas}")
    return int(num_replicas), int(rank)


class ShardedBatchSampler(DistributedSampler):
    """Base class: subclasses build the global batch list for an epoch in ``global_batches``."""

    def __init__(
        self, *, seed: int = 0, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        # DistributedSampler.__init__ is not called: it needs a dataset and does its own indexing.
        self.num_replicas, self.rank = world(num_replicas, rank)
        self.seed = int(seed)
        self.epoch = 0
        self.shuffle = False
        self.drop_last = False
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip_next(self, batches: int) -> None:
        """Start the next pass ``batches`` batches into this rank's shard (mid-epoch resume)."""
        if batches < 0:
            raise ValueError(f"cannot skip {batches} batches")
        self._skip = int(batches)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def num_global_batches(self) -> int:
        raise NotImplementedError

    def global_batches(self) -> list[np.ndarray]:
        """Every rank's batches for the current epoch, before sharding."""
        raise NotImplementedError

    def shard(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        n, r = len(batches), self.num_replicas
        if r == 1 or n == 0:
            return batches
        per_rank = -(-n // r)
        padded = [batches[i % n] for i in range(per_rank * r)]
        return padded[self.rank :: r]

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        for batch in self.shard(self.global_batches())[skip:]:
            yield batch.tolist()

    def __len__(self) -> int:
        n = self.num_global_batches()
        return -(-n // self.num_replicas) if n else 0


class ResumableLoader(DataLoader):
    """A DataLoader over a ``ShardedBatchSampler`` whose place in the epoch survives a kill.

    Lightning treats a train loader with ``state_dict``/``load_state_dict`` as stateful: it
    stores the state in every checkpoint and loads it back on a mid-epoch resume. The position
    is counted here, in batches handed to the training loop, not in the sampler, which worker
    processes read ahead of the loop. The pass is a generator, so nothing is drawn before the
    loop asks for the first batch, by which time Lightning has set the epoch being resumed.
    """

    sampler: ShardedBatchSampler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ShardedBatchSampler):
            raise TypeError("ResumableLoader needs a ShardedBatchSampler as its sampler")
        self._epoch = 0
        self._served = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches) from a checkpoint

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        epoch = self.sampler.epoch
        start = self._resume[1] if self._resume and self._resume[0] == epoch else 0
        self._resume = None
        self.sampler.skip_next(start)
        self._epoch, self._served = epoch, start
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["batches"]))


class LengthBucketBatchSampler(ShardedBatchSampler):
    """Random batches of ``batch_size`` indices, optionally length-bucketed.

    Args:
        lengths: per-index sequence length (any int array).
        bucketing: sort by length within mega-batches (less padding); False = plain random.
        mega_batch_factor: mega-batch size in batches.
        drop_last: drop the final incomplete batch.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        *,
        bucketing: bool = True,
        mega_batch_factor: int = 50,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank)
        if batch_size < 1 or mega_batch_factor < 1:
            raise ValueError("batch_size and mega_batch_factor must be >= 1")
        self.lengths = np.asarray(lengths, dtype=np.int32)
        self.batch_size = int(batch_size)
        self.bucketing = bucketing
        self.mega_batch_factor = int(mega_batch_factor)
        self.drop_last = drop_last
        self.shuffle = True

    def num_global_batches(self) -> int:
        n, b = len(self.lengths), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def global_batches(self) -> list[np.ndarray]:
        rng = self._rng()
        n, b = len(self.lengths), self.batch_size
        perm = rng.permutation(n)
        if self.bucketing:
            mega = np.arange(n) // (b * self.mega_batch_factor)
            perm = perm[np.lexsort((-self.lengths[perm], mega))]
        batches = [perm[i : i + b] for i in range(0, n, b)]
        batches = batches[: self.num_global_batches()]
        if self.bucketing:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches


class SequentialBatchSampler(ShardedBatchSampler):
    """Every index exactly once (before DDP padding), longest first, for val/test."""

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        *,
        sort_by_length: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(seed=0, num_replicas=num_replicas, rank=rank)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = np.asarray(lengths, dtype=np.int32)
        self.batch_size = int(batch_size)
        self.sort_by_length = sort_by_length

    def num_global_batches(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def global_batches(self) -> list[np.ndarray]:
        n, b = len(self.lengths), self.batch_size
        order = np.argsort(-self.lengths, kind="stable") if self.sort_by_length else np.arange(n)
        return [order[i : i + b] for i in range(0, n, b)]


class QueryGroupedBatchSampler(ShardedBatchSampler):
    """Batches of ``queries_per_batch`` groups, each ``group_size`` rows of a single query.

    Sampling rule, per epoch:

    - A query with fewer than ``min_group_items`` rows is skipped.
    - A query with ``n`` rows yields ``ceil(n / group_size)`` groups, so an epoch holds about as
      many rows as there are rows.
    - Rows are split into strata by ``strata`` (the label; see the DataModule for unlabelled
      rows). Each group takes ``min(group_size, n)`` distinct rows spread as evenly as possible
      over the strata (water-filling: a stratum smaller than its share gives all its rows, the
      rest share what is left), so a group covers as many distinct labels as it can. Each
      stratum is shuffled every epoch and walked cyclically across the query's groups: a rare
      label reappears in every group (over-sampled on purpose) while common ones rotate.
    - A query with fewer rows than ``group_size`` is padded to exactly ``group_size`` by repeating
      its rows from the start of the group (duplicates share ``pair_id``).
    - Groups are ordered round by round (every query's first group, then second groups, ...) with
      queries shuffled, cut into batches, and the batch order shuffled, so a query rarely occurs
      twice in one batch. A batch is laid out as ``[queries_per_batch, group_size]`` blocks:
      ``tensor.view(-1, group_size)`` recovers the groups; ``query_index`` names each block's query.
    """

    def __init__(
        self,
        query_index: np.ndarray,
        strata: np.ndarray,
        group_size: int,
        queries_per_batch: int,
        *,
        min_group_items: int = 2,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank)
        if group_size < 1 or queries_per_batch < 1:
            raise ValueError("group_size and queries_per_batch must be >= 1")
        query_index = np.asarray(query_index, dtype=np.int64)
        strata = np.asarray(strata, dtype=np.int64)
        if query_index.shape != strata.shape:
            raise ValueError("query_index and strata must have the same length")
        self.group_size = int(group_size)
        self.queries_per_batch = int(queries_per_batch)
        self.batch_size = self.group_size * self.queries_per_batch
        self.min_group_items = max(1, int(min_group_items))
        self.drop_last = drop_last
        self.shuffle = True
        # Elements sorted by (query, stratum); runs of equal (query, stratum) are the strata.
        order = np.lexsort((strata, query_index))
        q, s = query_index[order], strata[order]
        new_run = np.ones(len(order), dtype=bool)
        new_run[1:] = (q[1:] != q[:-1]) | (s[1:] != s[:-1])
        run_start = np.flatnonzero(new_run)
        run_size = np.diff(np.append(run_start, len(order)))
        run_query = q[run_start]
        new_query = np.ones(len(run_start), dtype=bool)
        new_query[1:] = run_query[1:] != run_query[:-1]
        q_first_run = np.flatnonzero(new_query)
        q_runs = np.diff(np.append(q_first_run, len(run_start)))
        q_size = np.add.reduceat(run_size, q_first_run) if len(run_start) else run_size
        keep = q_size >= self.min_group_items
        self._order = order
        self._run_id = np.repeat(np.arange(len(run_start)), run_size)
        self._run_start, self._run_size = run_start, run_size
        self._q_first_run, self._q_runs = q_first_run[keep], q_runs[keep]
        self._q_size = q_size[keep]
        self._q_groups = -(-self._q_size // self.group_size)
        self.num_groups = int(self._q_groups.sum())
        self.num_queries = int(keep.sum())

    def num_global_batches(self) -> int:
        q = self.queries_per_batch
        return self.num_groups // q if self.drop_last else -(-self.num_groups // q)

    def global_batches(self) -> list[np.ndarray]:
        rng = self._rng()
        k = self.group_size
        # Shuffle within every stratum run (the runs stay where they are).
        elems = self._order[np.lexsort((rng.random(len(self._order)), self._run_id))]
        groups = np.empty((self.num_groups, k), dtype=np.int64)
        rounds = np.empty(self.num_groups, dtype=np.int64)
        owner = np.empty(self.num_groups, dtype=np.int64)
        g0 = 0
        for qi in range(self.num_queries):
            first, m = int(self._q_first_run[qi]), int(self._q_runs[qi])
            n_groups = int(self._q_groups[qi])
            starts = self._run_start[first : first + m]
            sizes = self._run_size[first : first + m]
            shares = _water_fill(sizes, min(k, int(self._q_size[qi])), rng)
            cols = []
            for start, size, share in zip(starts, sizes, shares, strict=True):
                if share:
                    offset = rng.integers(size)
                    walk = (offset + np.arange(n_groups * share)) % size
                    cols.append(elems[start + walk].reshape(n_groups, share))
            block = np.concatenate(cols, axis=1)
            if block.shape[1] < k:  # fewer rows than group_size: repeat from the start
                block = _pad_cols(block, k)
            groups[g0 : g0 + n_groups] = block
            rounds[g0 : g0 + n_groups] = np.arange(n_groups)
            owner[g0 : g0 + n_groups] = qi
            g0 += n_groups
        priority = rng.permutation(self.num_queries)
        arrangement = np.lexsort((priority[owner], rounds))
        q = self.queries_per_batch
        batches = [
            groups[arrangement[i : i + q]].reshape(-1) for i in range(0, self.num_groups, q)
        ][: self.num_global_batches()]
        return [batches[i] for i in rng.permutation(len(batches))]


def _pad_cols(block: np.ndarray, k: int) -> np.ndarray:
    reps = -(-k // block.shape[1])
    return np.tile(block, (1, reps))[:, :k]


def _water_fill(sizes: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` over strata of ``sizes`` as evenly as possible (ties broken at random)."""
    m = len(sizes)
    shares = np.zeros(m, dtype=np.int64)
    order = rng.permutation(m)
    order = order[np.argsort(sizes[order], kind="stable")]
    left = total
    for i, j in enumerate(order):
        take = min(int(sizes[j]), -(-left // (m - i)))
        shares[j] = take
        left -= take
    return shares
