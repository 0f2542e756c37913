"""Per-user, time-ordered query–item sequences from the behaviour table (SEMINAR's input).

A *history* is what a user had clicked strictly before a moment: the clicked (query, item) log
rows of that user with ``timestamp < t``, oldest first, the most recent ``max_length`` kept. Every
consumer asks for a history through :meth:`UserSequences.history`, which never returns an event
at or after ``t``, so no future event can feed a past prediction.

Each row of the pairs table also gets a *context* ``(user, t)``: the moment a live system would
have scored it. That is its query's last search in the log (the user who issued it, just before
the session's first impression), so the history is as long as the log allows; a query never
searched has no context (an empty history: the cold rows). The context never depends on whether
the pair was clicked, so the choice of user does not leak the click into a feature, and a
history never holds the target pair itself (``exclude``): its own earlier clicks would hand the
model its label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import DataError

TIME_BITS = 36  # a (user, time) key packs the user above 2^36 s (~2,000 years) of time offset
ITEM_ATTRIBUTES = ("brand", "color", "product_type")  # the item's attribute view, one code each
SESSION_GAP = 60  # s: a search's impressions lie within a minute of its last one


def _ints(arr: pa.Array | pa.ChunkedArray, dtype: type = np.int64) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


@dataclass(frozen=True)
class UserSequences:
    """Arrays of one dataset's behaviour, indexed like its queries/items/pairs tables.

    Events (every log row with a user and a timestamp), sorted by (user, time, position):
        ``ev_user, ev_time, ev_query, ev_item, ev_clicked, ev_pair`` (pairs-table row, -1: none).
    Clicks (the clicked events, same order): ``cl_key`` (user << TIME_BITS | time - t0),
        ``cl_query, cl_item``, and ``cl_user_start`` [users + 1] offsets into them.
    Contexts per pairs-table row: ``ctx_user`` (-1: none), ``ctx_time``, ``ctx_clicked``
        (the context impression was clicked).
    ``item_attr`` int32 [items, 3]: brand, colour and type codes (0 = missing).
    """

    ev_user: np.ndarray
    ev_time: np.ndarray
    ev_query: np.ndarray
    ev_item: np.ndarray
    ev_clicked: np.ndarray
    ev_pair: np.ndarray
    cl_key: np.ndarray
    cl_query: np.ndarray
    cl_item: np.ndarray
    cl_user_start: np.ndarray
    ctx_user: np.ndarray
    ctx_time: np.ndarray
    ctx_clicked: np.ndarray
    item_attr: np.ndarray
    t0: int

    # ---- lookups ----
    def history(
        self,
        user: np.ndarray,
        time: np.ndarray,
        max_length: int,
        exclude: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Click indices of each (user, time)'s history: ``(idx, mask)`` int64 [N, max_length],
        oldest first and left-aligned, -1 / 0 past the end; user -1 has none. ``exclude``:
        (query rows, item rows) [N] whose clicks are left out of the row's history."""
        user = np.asarray(user, np.int64)
        valid = user >= 0
        u = np.where(valid, user, 0)
        t = np.asarray(time, np.int64) - self.t0
        key = (u << TIME_BITS) | np.clip(t, 0, (1 << TIME_BITS) - 1)
        end = np.searchsorted(self.cl_key, key, side="left")  # first click at or after t
        start = self.cl_user_start[u]
        end = np.where(t < 0, start, end)  # before the log began: nothing yet
        # a window twice as long, so the excluded clicks can be dropped and L still filled
        width = 2 * max_length if exclude is not None else max_length
        n = np.where(valid, np.minimum(end - start, width), 0)
        cols = np.arange(width)[None, :]
        mask = cols < n[:, None]
        idx = np.where(mask, (end - n)[:, None] + cols, -1)
        if exclude is not None:
            safe = np.maximum(idx, 0)
            own = (self.cl_query[safe] == np.asarray(exclude[0])[:, None]) & (
                self.cl_item[safe] == np.asarray(exclude[1])[:, None]
            )
            mask &= ~own
            # keep the most recent max_length survivors, oldest first, left-aligned
            rank = np.cumsum(mask[:, ::-1], axis=1)[:, ::-1]  # survivors at or after a column
            mask &= rank <= max_length
            order = np.argsort(~mask, axis=1, kind="stable")[:, :max_length]
            idx = np.take_along_axis(idx, order, axis=1)
            mask = np.take_along_axis(mask, order, axis=1)
            idx = np.where(mask, idx, -1)
        return idx.astype(np.int64), mask.astype(np.int64)

    @property
    def num_users(self) -> int:
        return len(self.cl_user_start) - 1

    def attr_sizes(self) -> list[int]:
        """Codes per attribute, 0 (missing) included."""
        return [int(self.item_attr[:, a].max(initial=0)) + 1 for a in range(len(ITEM_ATTRIBUTES))]

    # ---- construction ----
    @classmethod
    def from_dataset(cls, dataset: CanonicalDataset) -> UserSequences:
        """Build from a dataset whose behaviour table has ``user_id`` and ``timestamp``."""
        if not dataset.has_table("behavior"):
            raise DataError(f"{dataset.root}: no behavior table (user sequences need one)")
        path = dataset.path("behavior")
        names = set(dataset.table("behavior").column_names)
        for column in ("user_id", "timestamp"):
            if column not in names:
                raise DataError(f"{path}: column {column} missing (user sequences need it)")
        cols = ["query_id", "item_id", "clicks", "user_id", "timestamp"]
        cols += ["position"] if "position" in names else []
        log = dataset.table("behavior", cols)
        keep = pc.and_(pc.is_valid(log["user_id"]), pc.is_valid(log["timestamp"]))
        log = log.filter(keep)
        if log.num_rows == 0:
            raise DataError(f"{path}: column user_id/timestamp: no row has both")

        queries = dataset.table("queries", ["query_id"]).column("query_id").combine_chunks()
        items_t = dataset.table("items")
        items = items_t.column("item_id").combine_chunks()
        q = pc.index_in(log["query_id"], value_set=queries)
        i = pc.index_in(log["item_id"], value_set=items)
        for name, idx in (("query_id", q), ("item_id", i)):
            if idx.null_count:
                raise DataError(
                    f"{path}: column {name} has {idx.null_count} value(s) not in the dataset"
                )
        users = pc.unique(log["user_id"]).sort()
        u = _ints(pc.index_in(log["user_id"], value_set=users))
        q, i = _ints(q), _ints(i)
        time = _ints(log["timestamp"])
        pos = (
            _ints(log["position"].fill_null(0))
            if "position" in cols
            else np.zeros(len(q), np.int64)
        )
        clicked = (_ints(log["clicks"].fill_null(0)) > 0).astype(np.int8)
        if len(users) >= 1 << (63 - TIME_BITS):
            raise DataError(f"{path}: column user_id: too many users ({len(users)})")
        t0 = int(time.min())
        if int(time.max()) - t0 >= 1 << TIME_BITS:
            raise DataError(f"{path}: column timestamp: spans more than 2^{TIME_BITS} s")

        order = np.lexsort((pos, time, u))
        u, time, q, i, clicked = u[order], time[order], q[order], i[order], clicked[order]
        pair = cls._pair_rows(dataset, q, i)
        c = clicked.astype(bool)
        cl_user = u[c]
        cl_key = (cl_user << TIME_BITS) | (time[c] - t0)
        cl_user_start = np.searchsorted(cl_user, np.arange(len(users) + 1), side="left")

        n_pairs = dataset.table("pairs", ["pair_id"]).num_rows
        ctx_user, ctx_time, ctx_clicked = cls._contexts(dataset, u, time, q, pair, clicked, n_pairs)
        return cls(
            ev_user=u.astype(np.int32),
            ev_time=time,
            ev_query=q.astype(np.int32),
            ev_item=i.astype(np.int32),
            ev_clicked=clicked,
            ev_pair=pair,
            cl_key=cl_key.astype(np.int64),
            cl_query=q[c].astype(np.int32),
            cl_item=i[c].astype(np.int32),
            cl_user_start=cl_user_start.astype(np.int64),
            ctx_user=ctx_user,
            ctx_time=ctx_time,
            ctx_clicked=ctx_clicked,
            item_attr=cls._item_attributes(items_t),
            t0=t0,
        )

    @staticmethod
    def _pair_rows(dataset: CanonicalDataset, q: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Pairs-table row of each event's (query, item), -1 when the pair is not in the table."""
        queries = dataset.table("queries", ["query_id"]).column("query_id").combine_chunks()
        items = dataset.table("items", ["item_id"]).column("item_id").combine_chunks()
        pairs = dataset.table("pairs", ["query_id", "item_id"])
        pq_ = _ints(pc.index_in(pairs["query_id"], value_set=queries))
        pi_ = _ints(pc.index_in(pairs["item_id"], value_set=items))
        if len(pq_) == 0:
            return np.full(len(q), -1, np.int64)
        n_items = max(len(items), 1)
        pair_key = pq_ * n_items + pi_
        order = np.argsort(pair_key, kind="stable")
        sorted_key = pair_key[order]
        ev_key = q * n_items + i
        at = np.minimum(np.searchsorted(sorted_key, ev_key), len(sorted_key) - 1)
        return np.where(sorted_key[at] == ev_key, order[at], -1).astype(np.int64)

    @staticmethod
    def _contexts(
        dataset: CanonicalDataset,
        u: np.ndarray,
        time: np.ndarray,
        q: np.ndarray,
        pair: np.ndarray,
        clicked: np.ndarray,
        n_pairs: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user, time, clicked) per pairs-table row: its query's last search in the log (the
        session's user and start), whether the pair was clicked in that session; (-1, 0, 0) for
        a query never searched."""
        queries = dataset.table("queries", ["query_id"]).column("query_id").combine_chunks()
        pairs_q = _ints(
            pc.index_in(dataset.table("pairs", ["query_id"])["query_id"], value_set=queries)
        )
        # the latest event of each query, then that session's first event (same user, query,
        # within SESSION_GAP seconds before it)
        by_time = np.lexsort((time, q))
        last = np.r_[np.flatnonzero(np.diff(q[by_time])), len(by_time) - 1] if len(q) else []
        q_last = np.full(len(queries), -1, np.int64)
        q_last[q[by_time[last]]] = by_time[last]
        e = q_last[pairs_q]
        has = e >= 0
        ctx_user = np.full(n_pairs, -1, np.int32)
        ctx_time = np.zeros(n_pairs, np.int64)
        ctx_user[has] = u[e[has]]
        ctx_time[has] = time[e[has]] - SESSION_GAP  # before the whole session's impressions
        ctx_clicked = np.zeros(n_pairs, np.int8)
        # clicked in that session: an event of the pair by that user within the session window
        hit = pair >= 0
        p, eu, et = pair[hit], u[hit], time[hit]
        same = (eu == ctx_user[p]) & (et >= ctx_time[p]) & (et <= ctx_time[p] + 2 * SESSION_GAP)
        ctx_clicked[p[same & (clicked[hit] > 0)]] = 1
        return ctx_user, ctx_time, ctx_clicked

    @staticmethod
    def _item_attributes(items: pa.Table) -> np.ndarray:
        out = np.zeros((items.num_rows, len(ITEM_ATTRIBUTES)), np.int32)
        for a, name in enumerate(ITEM_ATTRIBUTES):
            if name not in items.column_names:
                continue
            col = pc.utf8_lower(items[name].combine_chunks())
            codes = pc.dictionary_encode(col).indices  # nulls stay null
            out[:, a] = _ints(codes.fill_null(-1), np.int64) + 1
        return out
