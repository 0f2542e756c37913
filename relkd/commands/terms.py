"""``relkd terms build [EXPERIMENT.yaml] [k=v ...]``: mine (or open) an experiment's professional
term list and show what it does to the item titles.

Uses the experiment's dataset (a synthetic one is built if missing), its encoder's tokenizer
and ``data.terms``, whatever ``data.professional_terms`` says. Prints the artifact folder, the
term count, the most frequent terms with their token counts without / with the terms, and the
tokens of all item titles before and after (the paper's "20 tokens become 13" figure).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    terms = sub.add_parser("terms", help="professional terms: the catalogue's term list")
    tsub = terms.add_subparsers(dest="terms_cmd", required=True)
    build = tsub.add_parser(
        "build", help="mine (or open) an experiment's term list; print its effect on titles"
    )
    build.add_argument(  # not experiment_arg: a lone key=value here is an override
        "experiment",
        nargs="?",
        default=None,
        help="an experiment YAML or bundled name (default: experiments/quickstart.yaml)",
    )
    build.add_argument(
        "overrides", nargs="*", help="dotlist overrides, e.g. data.terms.min_count=5"
    )
    build.set_defaults(func=build_command)


def build_command(args: argparse.Namespace) -> int:
    print(build_terms_from_cli(args.experiment, args.overrides))
    return 0


def build_terms_from_cli(experiment: str | Path | None, overrides: Sequence[str]) -> str:
    """``relkd terms build``; an experiment given as ``k=v`` is an override."""
    overrides = list(overrides)
    if experiment is not None and "=" in str(experiment) and not Path(experiment).is_file():
        overrides.insert(0, str(experiment))
        experiment = None
    from relkd.config.compose import BUNDLED_EXPERIMENTS, compose
    from relkd.runs.dataset_resolver import resolve_dataset
    from relkd.runs.student_factory import encoder_spec
    from relkd.terms.term_report import report, term_figures

    cfg = compose(experiment or BUNDLED_EXPERIMENTS / "quickstart.yaml", overrides)
    data_dir = resolve_dataset(cfg.data, build=True)
    return report(term_figures(cfg, data_dir, encoder_spec(cfg, data_dir).load_tokenizer()))
