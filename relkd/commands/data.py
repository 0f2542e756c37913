"""``relkd data synth|import|download|validate``: build, import, fetch and check datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from relkd.commands.arguments import NONNEG_FLOAT, NONNEG_INT, POSITIVE_INT, UNIT_FLOAT


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build, import, download and validate datasets")
    dsub = data.add_subparsers(dest="data_cmd", required=True)

    synth = dsub.add_parser("synth", help="generate the embedded synthetic catalogue")
    synth.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    synth.add_argument(
        "--pairs", type=POSITIVE_INT, default=20_000, help="labelled query-item pairs"
    )
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scheme", choices=["esci", "wands"], default="esci")
    synth.add_argument("--noise", type=UNIT_FLOAT, default=0.05, help="annotator noise rate")
    synth.add_argument(
        "--unlabeled-ratio",
        type=NONNEG_FLOAT,
        default=5.0,
        help="unlabelled pool size as a multiple of labelled pairs",
    )
    synth.add_argument(
        "--val-pairs",
        type=NONNEG_INT,
        default=0,
        help="more labelled pairs on held-out queries that join only the val split",
    )
    synth.add_argument(
        "--test-pairs",
        type=NONNEG_INT,
        default=0,
        help="more labelled pairs on held-out queries that join only the test split",
    )
    synth.add_argument("--overwrite", action="store_true")

    imp = dsub.add_parser("import", help="import a public or custom dataset into canonical form")
    isub = imp.add_subparsers(dest="source", required=True)
    esci = isub.add_parser("esci", help="Amazon Shopping Queries (ESCI) parquet files")
    esci.add_argument("src", type=Path, help="folder with shopping_queries_dataset_*.parquet")
    esci.add_argument("--out", required=True, type=Path)
    esci.add_argument("--locale", default="us", help="product_locale to keep (us, es, jp, or all)")
    esci.add_argument("--version", choices=["small", "large"], default="small")
    esci.add_argument("--val-fraction", type=float, default=0.1)
    esci.add_argument("--seed", type=int, default=0)
    esci.add_argument(
        "--on-empty",
        choices=["error", "drop"],
        default="error",
        help="empty product title or query text: error, or drop (counted in stats)",
    )
    esci.add_argument("--overwrite", action="store_true")
    wands = isub.add_parser(
        "wands", help="Wayfair WANDS folder (product.csv, query.csv, label.csv)"
    )
    wands.add_argument("src", type=Path)
    wands.add_argument("--out", required=True, type=Path)
    wands.add_argument("--val-fraction", type=float, default=0.1)
    wands.add_argument("--test-fraction", type=float, default=0.2)
    wands.add_argument("--seed", type=int, default=0)
    wands.add_argument(
        "--on-empty",
        choices=["error", "drop"],
        default="error",
        help="empty product name or query text: error, or drop (counted in stats)",
    )
    wands.add_argument("--overwrite", action="store_true")
    table = isub.add_parser("table", help="your own pairs/items/queries as CSV, JSONL or Parquet")
    table.add_argument("--pairs", required=True, type=Path)
    table.add_argument("--items", required=True, type=Path)
    table.add_argument("--queries", type=Path, default=None)
    table.add_argument("--behavior", type=Path, default=None)
    table.add_argument("--scheme", choices=["esci", "wands"], required=True)
    table.add_argument("--out", required=True, type=Path)
    table.add_argument("--val-fraction", type=float, default=0.1)
    table.add_argument("--test-fraction", type=float, default=0.1)
    table.add_argument("--seed", type=int, default=0)
    table.add_argument(
        "--on-empty",
        choices=["error", "drop"],
        default="error",
        help="empty item title or query text: error, or drop (counted in stats)",
    )
    table.add_argument("--overwrite", action="store_true")

    dl = dsub.add_parser("download", help="fetch ESCI or WANDS upstream files (needs internet)")
    dl.add_argument("dataset", choices=["esci", "wands"])
    dl.add_argument("--to", required=True, type=Path)

    val = dsub.add_parser("validate", help="check a dataset folder; exit 1 on any problem")
    val.add_argument("root", type=Path)
    synth.set_defaults(func=synth_command)
    for p in (esci, wands, table):
        p.set_defaults(func=import_command)
    dl.set_defaults(func=download_command)
    val.set_defaults(func=validate_command)


def _wrote(ds: Any) -> None:
    print(f"wrote {ds.root}: " + ", ".join(f"{k}={v.rows}" for k, v in ds.manifest.tables.items()))


def synth_command(args: argparse.Namespace) -> int:
    from relkd.data.synth.synthetic_catalogue import SynthConfig, generate_dataset

    cfg = SynthConfig(
        pairs=args.pairs,
        seed=args.seed,
        scheme=args.scheme,
        noise=args.noise,
        unlabeled_ratio=args.unlabeled_ratio,
        val_pairs=args.val_pairs,
        test_pairs=args.test_pairs,
    )
    _wrote(generate_dataset(cfg, args.out, overwrite=args.overwrite))
    return 0


def import_command(args: argparse.Namespace) -> int:
    from relkd.data.loaders import import_dataset

    ds = import_dataset(args)
    _wrote(ds)
    for key, value in sorted(ds.manifest.stats.get("import", {}).items()):
        print(f"  {key}: {value}")
    return 0


def download_command(args: argparse.Namespace) -> int:
    from relkd.data.loaders.download import download

    download(args.dataset, args.to)
    return 0


def validate_command(args: argparse.Namespace) -> int:
    from relkd.data.validator import validate_dataset

    problems = validate_dataset(args.root)
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    if problems:
        print(f"{args.root}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.root}: OK")
    return 0
