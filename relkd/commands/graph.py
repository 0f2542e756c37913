"""``relkd graph build EXPERIMENT``: the click graph an experiment reads (BERM, slices)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from relkd.experiment_files import experiment_arg


def register(sub: argparse._SubParsersAction) -> None:
    graph = sub.add_parser("graph", help="the click graph (BERM neighbours, clicked/cold slices)")
    gsub = graph.add_subparsers(dest="graph_cmd", required=True)
    gbuild = gsub.add_parser("build", help="build the click graph an experiment reads")
    gbuild.add_argument("experiment", type=experiment_arg(), help="an experiment YAML or name")
    gbuild.add_argument(
        "overrides", nargs="*", help="dotlist overrides, e.g. data.click_graph.top_k=4"
    )
    gbuild.set_defaults(func=build_command)


def build_command(args: argparse.Namespace) -> int:
    build_graph_from_cli(args.experiment, args.overrides)
    return 0


def build_graph_from_cli(experiment: str | Path, overrides: list[str]) -> Any:
    """Build the config's dataset's click graph under data.click_graph's settings; print it."""
    from relkd.behavior.click_graph_artifact import ClickGraphArtifact
    from relkd.config import compose
    from relkd.runs.dataset_resolver import dataset_with_behavior

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
