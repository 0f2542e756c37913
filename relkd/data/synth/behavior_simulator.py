"""Search logs simulated from the true (clean) relevance with a position-biased click model.

Each *session* is one user issuing one query and seeing a ranked list of that query's
candidate items. Clicks follow the examination hypothesis (Craswell et al., 2008):
P(click) = P(examine position) * P(attractive | relevance), with P(examine) = 1 / pos**eta.
The shown ranking comes from an imperfect production ranker (relevance plus noise, reshuffled
a little per session), so the same item is seen at several positions and position bias can be
separated from relevance.

Users have a favourite category and brand: they issue more queries in their category and
click their brand a bit more, so per-user lifelong sequences (sorted by timestamp) carry signal
for a SEMINAR-style behaviour-sequence model. Sessions per query follow query frequency.
One row is one impression (impressions = 1, clicks 0/1); rows total about
``rows_per_pair`` x labelled pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from relkd.data.synth.zipf import draw_zipf

# P(click | examined) by esci grade: Exact, Substitute, Complement, Irrelevant
ATTRACTIVENESS = np.array([0.62, 0.26, 0.12, 0.04])
RANKER_GAIN = np.array([1.0, 0.55, 0.25, 0.0])  # what the production ranker believes, +noise
RANKER_NOISE = 0.35
SHORTLIST = 12  # items per query the ranker can show; each session shows the top `positions`
START_TIME = 1_700_000_000  # unix seconds; logs span LOG_DAYS from here
LOG_DAYS = 90
HOME_CATEGORY_SHARE = 0.7  # share of a user's sessions in their favourite category
BRAND_BOOST = 1.5


@dataclass
class BehaviorLog:
    pair: np.ndarray  # int64 pair row each impression belongs to
    query: np.ndarray  # int32 query row
    item: np.ndarray  # int32 item row
    clicks: np.ndarray  # int64 0/1
    user: np.ndarray  # int32 user index
    timestamp: np.ndarray  # int64
    position: np.ndarray  # int64, 1-based
    n_users: int


def simulate_behavior(
    pair_query: np.ndarray,
    pair_item: np.ndarray,
    pair_esci: np.ndarray,
    query_frequency: np.ndarray,
    query_category: np.ndarray,
    item_brand: np.ndarray,
    brands_by_category: list[np.ndarray],
    n_rows: int,
    positions: int,
    eta: float,
    rng: np.random.Generator,
) -> BehaviorLog:
    """Simulate about ``n_rows`` impressions. ``pair_query`` must be sorted (grouped)."""
    n_queries = len(query_frequency)
    # 1. the production ranker's shortlist per query: top SHORTLIST by noisy relevance
    score = RANKER_GAIN[pair_esci] + rng.normal(0.0, RANKER_NOISE, len(pair_esci))
    order = np.lexsort((-score, pair_query))
    q_sorted = pair_query[order]
    starts = np.searchsorted(q_sorted, np.arange(n_queries))
    rank = np.arange(len(order)) - starts[q_sorted]
    keep = rank < SHORTLIST
    shortlist = np.full((n_queries, SHORTLIST), -1, dtype=np.int64)
    shortlist[q_sorted[keep], rank[keep]] = order[keep]
    shown_per_query = np.minimum((shortlist >= 0).sum(1), positions)

    # 2. sessions per query in proportion to search volume
    n_sessions = max(1, n_rows // max(positions, 1))
    weights = query_frequency * (shown_per_query > 0)
    per_query = rng.multinomial(n_sessions, weights / weights.sum())
    s_query = np.repeat(np.arange(n_queries), per_query)
    n_sessions = len(s_query)

    # 3. users: Zipf activity, a favourite category and brand
    n_categories = len(brands_by_category)
    n_users = max(8, n_sessions // 20)
    u_cat = rng.integers(0, n_categories, n_users)
    u_activity = 1.0 / np.arange(1, n_users + 1) ** 0.8
    u_brand = np.empty(n_users, dtype=np.int64)
    for c in range(n_categories):
        members = np.flatnonzero(u_cat == c)
        pool = brands_by_category[c]
        u_brand[members] = pool[draw_zipf(rng, len(pool), len(members), 0.9)]
    s_user = _assign_users(s_query, query_category, u_cat, u_activity, n_categories, rng)
    s_time = START_TIME + rng.integers(0, LOG_DAYS * 86_400, n_sessions)

    # 4. each session reshuffles the shortlist slightly and shows the top `positions`
    slots = shortlist[s_query]  # [S, SHORTLIST] pair indices
    noise = rng.gumbel(0.0, 1.0, slots.shape) * 1.2
    pref = np.where(slots >= 0, -np.arange(SHORTLIST)[None, :] + noise, -np.inf)
    top = np.argsort(-pref, axis=1, kind="stable")[:, :positions]
    shown = np.take_along_axis(slots, top, axis=1)
    valid = shown >= 0
    pos = np.broadcast_to(np.arange(1, positions + 1)[None, :], shown.shape)
    pair = shown[valid]
    pos = pos[valid]
    sess = np.broadcast_to(np.arange(n_sessions)[:, None], shown.shape)[valid]

    # 5. clicks by the examination hypothesis, with a favourite-brand boost
    item = pair_item[pair]
    user = s_user[sess]
    attract = ATTRACTIVENESS[pair_esci[pair]]
    attract = np.where(
        item_brand[item] == u_brand[user], np.minimum(attract * BRAND_BOOST, 0.95), attract
    )
    p_click = attract / pos.astype(np.float64) ** eta
    clicks = (rng.random(len(pair)) < p_click).astype(np.int64)
    timestamp = s_time[sess] + 5 * (pos - 1)

    order = np.lexsort((pos, timestamp, user))
    return BehaviorLog(
        pair=pair[order],
        query=pair_query[pair][order].astype(np.int32),
        item=item[order].astype(np.int32),
        clicks=clicks[order],
        user=user[order].astype(np.int32),
        timestamp=timestamp[order].astype(np.int64),
        position=pos[order].astype(np.int64),
        n_users=n_users,
    )


def _assign_users(
    s_query: np.ndarray,
    query_category: np.ndarray,
    u_cat: np.ndarray,
    u_activity: np.ndarray,
    n_categories: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """A user per session: mostly one whose favourite category is the query's, by activity."""
    n = len(s_query)
    out = np.empty(n, dtype=np.int64)
    cat = query_category[s_query]
    home = rng.random(n) < HOME_CATEGORY_SHARE
    all_cum = np.cumsum(u_activity)
    for c in range(n_categories):
        members = np.flatnonzero(u_cat == c)
        rows = np.flatnonzero(home & (cat == c))
        if len(members) == 0:
            home[rows] = False
            continue
        cum = np.cumsum(u_activity[members])
        pick = np.searchsorted(cum, rng.random(len(rows)) * cum[-1], side="right")
        out[rows] = members[np.minimum(pick, len(members) - 1)]
    rest = np.flatnonzero(~home)
    pick = np.searchsorted(all_cum, rng.random(len(rest)) * all_cum[-1], side="right")
    out[rest] = np.minimum(pick, len(u_activity) - 1)
    return out
