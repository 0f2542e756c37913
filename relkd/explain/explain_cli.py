"""``relkd explain``: the command-line arguments checked, one pair explained and laid out."""

from __future__ import annotations

import argparse
import shutil
import sys

from relkd.errors import ConfigError
from relkd.explain.pair_explainer import PairExplainer
from relkd.explain.render import render_explanation
from relkd.explain.text_pairs import clean_text

DEFAULT_WIDTH = 100


def explain_from_args(args: argparse.Namespace) -> str:
    """The layout for ``relkd explain QUERY ITEM`` or ``relkd explain --pair-id N``; a one-line
    RelkdError for both or neither, missing or empty text, and ``--data`` with free text."""
    texts = [t for t in (args.query, args.item) if t is not None]
    if args.pair_id is not None and texts:
        raise ConfigError("relkd explain: give QUERY and ITEM text, or --pair-id N, not both")
    if args.pair_id is None:
        if not texts:
            raise ConfigError("relkd explain: give QUERY and ITEM text, or --pair-id N")
        if args.item is None:
            raise ConfigError("ITEM: missing; give QUERY and ITEM text (or --pair-id N)")
        if args.data is not None:
            raise ConfigError("--data: picks the dataset of --pair-id; free text needs none")
        query, item = clean_text(args.query, "QUERY"), clean_text(args.item, "ITEM")
    explainer = PairExplainer(args.run, ckpt=args.ckpt, data=args.data, teacher=args.teacher)
    try:
        if args.pair_id is not None:
            explanation = explainer.explain_pair(args.pair_id)
        else:
            explanation = explainer.explain_text(query, item)
    finally:
        explainer.close()
    color = sys.stdout.isatty()
    width = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns if color else DEFAULT_WIDTH
    return render_explanation(explanation, width=width, color=color).rstrip("\n")
