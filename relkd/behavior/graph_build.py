"""``relkd graph build EXPERIMENT [k=v ...]``: build (or reuse) the click graph a config reads."""

from __future__ import annotations

import time
from pathlib import Path

from relkd.behavior.click_graph_artifact import ClickGraphArtifact
from relkd.config import compose
from relkd.runs.dataset_resolver import dataset_with_behavior


def build_graph_from_cli(experiment: str | Path, overrides: list[str]) -> ClickGraphArtifact:
    """Build the config's dataset's click graph under data.click_graph's settings; print it."""
    cfg = compose(experiment, overrides)
    _, dataset = dataset_with_behavior(cfg, "a graph")
    g = cfg.data.click_graph
    t0 = time.perf_counter()
    graph = ClickGraphArtifact.open_or_build(
        dataset,
        Path(cfg.data.cache_dir).parent / "graphs",
        min_clicks=g.min_clicks,
        eval_queries=g.eval_queries,
        top_k=g.top_k,
    )
    m = graph.manifest
    print(
        f"click graph: {graph.root} ({time.perf_counter() - t0:.1f} s; built in "
        f"{m['build_seconds']} s, matrix {m['matrix_seconds']} s)\n"
        f"  {m['log_rows']} log rows -> {m['edges']} edges; queries with clicks "
        f"{m['queries_with_clicks']}, items with clicks {m['items_with_clicks']}; "
        f"eval_queries {g.eval_queries}, top_k {g.top_k}"
    )
    for kind in ("qiq", "iqi"):
        for order in (1, 2):
            nb = graph.neighbors(kind, order)
            have = (nb.index[:, 0] >= 0).mean() if len(nb.index) else 0.0
            print(f"  {kind} order {order}: {have:.1%} of nodes have a neighbour")
    return graph
