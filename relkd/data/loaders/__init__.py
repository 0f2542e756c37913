"""Loaders that turn public datasets and your own tables into the canonical dataset form.

- :func:`import_esci`: Amazon Shopping Queries (ESCI) parquet files;
- :func:`import_wands`: the Wayfair WANDS ``dataset/`` folder;
- :func:`import_table`: your own pairs/items/queries/behaviour files (CSV, JSONL, Parquet);
- :func:`relkd.data.loaders.download.download`: fetch the ESCI or WANDS upstream files.

``import_dataset(args)`` dispatches the ``relkd data import`` argparse namespace.
"""

from __future__ import annotations

import argparse

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.loaders.esci_loader import import_esci
from relkd.data.loaders.table_loader import import_table
from relkd.data.loaders.wands_loader import import_wands

__all__ = ["import_dataset", "import_esci", "import_table", "import_wands"]


def import_dataset(args: argparse.Namespace) -> CanonicalDataset:
    """Run the loader named by ``args.source`` (``esci``, ``wands`` or ``table``)."""
    on_empty = getattr(args, "on_empty", "error")
    overwrite = bool(getattr(args, "overwrite", False))
    if args.source == "esci":
        return import_esci(
            args.src,
            args.out,
            locale=args.locale,
            version=args.version,
            val_fraction=args.val_fraction,
            seed=args.seed,
            on_empty=on_empty,
            overwrite=overwrite,
        )
    if args.source == "wands":
        return import_wands(
            args.src,
            args.out,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            on_empty=on_empty,
            overwrite=overwrite,
        )
    if args.source == "table":
        return import_table(
            args.pairs,
            args.items,
            args.out,
            scheme=args.scheme,
            queries=args.queries,
            behavior=args.behavior,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            on_empty=on_empty,
            overwrite=overwrite,
        )
    raise ValueError(f"unknown import source {args.source!r}; expected esci, wands or table")
