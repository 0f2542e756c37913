"""Click-graph build time on a search log of --rows impressions (default 1M), side by side.

The log is drawn like a real one: skewed query popularity over --queries, each query's impressions
spread over its own window of --items, its top items more often, about 10 % clicked. Printed, for
each step: seconds, and the share of the whole build. Steps: aggregating the log into the sparse
query x item matrices (scipy.sparse), and each metapath (q-i-q, i-q-i) at order 1 and 2 with
top-k. Nothing is asserted. Usage:

    python benchmarks/bench_click_graph.py [--rows 1000000] [--queries 100000] [--items 300000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from relkd.behavior.behavior_log import BehaviorLog
from relkd.behavior.click_graph import ClickGraph


def synthetic_log(rows: int, queries: int, items: int, seed: int = 0) -> BehaviorLog:
    rng = np.random.default_rng(seed)
    q = (queries * rng.random(rows) ** 3).astype(np.int64)  # a head of popular queries
    # each query browses a window of 200 items around its own offset, the top ones more often;
    # neighbouring queries' windows overlap, so metapaths have something to find
    offset = (q * 37) % items
    i = (offset + (200 * rng.random(rows) ** 2).astype(np.int64)) % items
    clicks = (rng.random(rows) < 0.1).astype(np.int64)
    return BehaviorLog(q, i, np.ones(rows, np.int64), clicks, queries, items)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=100_000)
    p.add_argument("--items", type=int, default=300_000)
    p.add_argument("--top-k", type=int, default=8)
    args = p.parse_args()
    log = synthetic_log(args.rows, args.queries, args.items)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    graph = ClickGraph(log)
    times["matrix (aggregate + threshold)"] = time.perf_counter() - t0
    for kind in ("qiq", "iqi"):
        for order in (1, 2):
            t = time.perf_counter()
            nb = graph.metapath(kind, order, args.top_k)
            times[f"{kind} order {order}"] = time.perf_counter() - t
            have = float((nb.index[:, 0] >= 0).mean())
            print(f"{kind}{order}: {have:.1%} of nodes have a neighbour")
    total = sum(times.values())
    print(
        f"\n{args.rows:,} log rows, {graph.clicks.nnz:,} click edges, "
        f"{args.queries:,} queries x {args.items:,} items"
    )
    for name, secs in times.items():
        print(f"{name:32s} {secs:8.2f} s  {secs / total:6.1%}")
    print(f"{'total':32s} {total:8.2f} s")


if __name__ == "__main__":
    main()
