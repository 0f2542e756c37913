"""PQ target attention against exact target attention over long user histories, side by side.

Each of --batch users has a history of up to max(--lengths) events, each event --views vectors of
--dim dims, drawn like learned embeddings rather than isotropic noise: a mixture of --topics
Gaussians (std --spread around N(0, I) centres) per view, every user browsing 8 topics, and the
target an item of one of them. So the exact top-K is a fine ranking inside one topic, decided by
the within-topic scatter that PQ codes only coarsely: the hard case, and recall depends on it.
One codebook per view (--subquantizers x --bits) is learnt offline on --fit-sample events and the
histories are encoded offline to uint8 (or int16) codes, as a serving system stores them.

Printed: the offline fit and encode times and the bytes per event; then, for each history length
L in --lengths, recall@K of the top-K by PQ score against the top-K by exact score (SEMINAR's
measure) and the per-request time (median of --repeats) of exact scoring (a batched mat-vec over
the float history) and of PQ scoring (build the V lookup tables, then gather and sum over the
codes), their ratio, and the table-building share of the PQ time. Then, unless --sweep-bits is
given empty, recall at each of --sweep-bits codebook sizes for L = --sweep-length. Nothing is
asserted: timings belong to benchmarks, never to tests.

``--run DIR`` (a SEMINAR run, e.g. a pretraining run) replaces the mixture by the run's own
learned GSU views (V = 4: query, item id, item text, item attributes; its view weights): the
targets are --batch random test pairs, each history --lengths events drawn from the log's clicks
(lifelong histories longer than any synthetic user's). Usage:

    python benchmarks/bench_pq_attention.py [--lengths 256 1024 4096] [--k 32] [--threads 1]
    python benchmarks/bench_pq_attention.py --run runs/seminar_pretrain/version_0
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from relkd.nets.pq_attention import MultiViewPQ, exact_view_scores, topk_recall


def synthetic(
    batch: int, length: int, views: int, dim: int, topics: int, spread: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V, D) targets and (B, L, V, D) histories from a per-view mixture of Gaussians.

    Topic centres are N(0, I), events scatter around theirs with std ``spread``.
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(views, topics, dim, generator=g)
    user_topics = torch.randint(topics, (batch, 8), generator=g)  # each user's interests
    event_topic = user_topics.gather(1, torch.randint(8, (batch, length), generator=g))
    target_topic = user_topics[:, 0]

    def draw(topic: torch.Tensor) -> torch.Tensor:  # topic (...) -> (..., V, D)
        mean = centres[:, topic].movedim(0, -2)
        return mean + spread * torch.randn(mean.shape, generator=g)

    return draw(target_topic), draw(event_topic)


@torch.no_grad()
def from_run(
    run: str, batch: int, length: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 4, H) targets, (B, L, 4, H) histories and the (4,) view weights of a SEMINAR run."""
    from pathlib import Path

    import numpy as np

    from relkd.config import compose
    from relkd.nets.seminar_build import build_seminar, load_pretrained
    from relkd.runs.dataset_resolver import resolve_dataset
    from relkd.runs.student_factory import build_datamodule, encoder_spec

    cfg = compose(Path(run) / "config.yaml", ["model.seminar.init_from=null"], with_base=False)
    data_dir = resolve_dataset(cfg.data, build=False)
    spec = encoder_spec(cfg, data_dir)
    net = build_seminar(cfg, spec, data_dir).eval()
    load_pretrained(net, Path(run))
    dm = build_datamodule(cfg, data_dir, spec)
    dm.prepare_data()
    dm.setup("test")
    feats = dm._sequences
    assert feats is not None, "not a seminar run"
    store, seq = dm.store, feats.seq
    out: dict[str, torch.Tensor] = {}
    n_items, n_queries = len(seq.item_attr), len(store.query_lengths())
    feats._items(np.arange(n_items), "item", out)
    feats._queries(np.arange(n_queries), "query", out)
    views = net.item_views(out["item_ids"], out["item_mask"], out["item_row"], out["item_attr"])
    queries = net._text(out["query_ids"], out["query_mask"])
    rng = np.random.default_rng(seed)
    test = dm.rows("test")
    rows = rng.choice(test, batch, replace=False)
    t_q = np.asarray(store.view("query_row")[rows], np.int64)
    t_i = np.asarray(store.view("item_row")[rows], np.int64)
    clicks = rng.integers(0, len(seq.cl_query), (batch, length))
    h_q = torch.from_numpy(np.asarray(seq.cl_query, np.int64)[clicks])
    h_i = torch.from_numpy(np.asarray(seq.cl_item, np.int64)[clicks])
    target = net._gsu_views(queries[t_q], views[t_i])
    history = net._gsu_views(queries[h_q], views[h_i])
    return target, history, net.view_weights()


def timed(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def compact(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Long codes -> the smallest dtype a code store would keep them in."""
    return codes.to(torch.uint8 if bits <= 8 else torch.int16 if bits <= 15 else torch.int32)


def fit_pq(args: argparse.Namespace, history: torch.Tensor, bits: int) -> MultiViewPQ:
    """Codebooks learnt offline on a sample of --fit-sample events."""
    events = history.reshape(-1, args.views, args.dim)
    pick = torch.randperm(events.shape[0], generator=torch.Generator().manual_seed(1))
    return MultiViewPQ(args.views, args.dim, args.subquantizers, bits).fit(
        events[pick[: args.fit_sample]], iters=args.iters
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--subquantizers", type=int, default=16)
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--views", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--topics", type=int, default=256, help="mixture components per view")
    p.add_argument("--spread", type=float, default=0.5, help="std of events around a topic")
    p.add_argument("--fit-sample", type=int, default=16384, help="events the codebooks learn on")
    p.add_argument("--iters", type=int, default=20, help="k-means iterations")
    p.add_argument("--sweep-bits", type=int, nargs="*", default=[2, 4, 6, 8])
    p.add_argument("--sweep-length", type=int, default=1024)
    p.add_argument("--run", default=None, help="a SEMINAR run: its learned views, not a mixture")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    longest = max([*args.lengths, args.sweep_length if args.sweep_bits else 0])
    if args.run:
        target, history, weights = from_run(args.run, args.batch, longest, args.seed)
        args.views, args.dim = history.shape[-2], history.shape[-1]
        print(f"views of {args.run}: weights {[round(float(w), 3) for w in weights]}")
    else:
        target, history = synthetic(
            args.batch, longest, args.views, args.dim, args.topics, args.spread
        )
        weights = torch.linspace(1.0, 0.5, args.views)
    with torch.inference_mode():
        exact_all = exact_view_scores(target, history, weights)
        t = time.perf_counter()
        pq = fit_pq(args, history, args.bits)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        codes_all = compact(pq.encode(history), args.bits)
        encode_s = time.perf_counter() - t

        m, d = args.subquantizers, args.dim
        print(
            f"B={args.batch} users, V={args.views} views x D={d}, PQ {m} x {args.bits} bits per "
            f"view, K={args.k}, {torch.get_num_threads()} thread(s), median of {args.repeats}"
        )
        print(
            f"offline: fit on {min(args.fit_sample, args.batch * longest):,} events "
            f"{fit_s:.1f} s, encode {args.batch * longest:,} events {encode_s:.1f} s; per event "
            f"{args.views * d * 4} B float vs {args.views * m * codes_all.element_size()} B codes"
        )
        print(
            f"\n{'L':>6} {'recall@K':>9} {'exact ms':>9} {'PQ ms':>9} {'exact/PQ':>9} {'LUT ms':>8}"
        )
        for length in args.lengths:
            hist, codes = history[:, :length].contiguous(), codes_all[:, :length].contiguous()
            recall = topk_recall(pq.scores(target, codes, weights), exact_all[:, :length], args.k)
            exact_s = timed(lambda h=hist: exact_view_scores(target, h, weights), args.repeats)
            pq_s = timed(lambda c=codes: pq.scores(target, c, weights), args.repeats)
            lut_s = timed(lambda: pq.lookup_tables(target, weights), args.repeats)
            print(
                f"{length:>6} {recall:>9.3f} {exact_s * 1e3:>9.2f} {pq_s * 1e3:>9.2f}"
                f" {exact_s / pq_s:>8.2f}x {lut_s * 1e3:>8.2f}"
            )

        if args.sweep_bits:
            length = args.sweep_length
            print(f"\nrecall@{args.k} at L={length} by codebook size ({m} sub-quantisers per view)")
            print(f"{'bits':>6} {'K/sub':>6} {'recall@K':>9}")
            for bits in args.sweep_bits:
                model = pq if bits == args.bits else fit_pq(args, history, bits)
                codes = model.encode(history[:, :length])
                recall = topk_recall(
                    model.scores(target, codes, weights), exact_all[:, :length], args.k
                )
                print(f"{bits:>6} {1 << bits:>6} {recall:>9.3f}")


if __name__ == "__main__":
    main()
