"""Time the synthetic catalogue generator end to end, with a per-stage breakdown.

    python benchmarks/bench_synth.py                 # 1,000,000 labelled pairs
    python benchmarks/bench_synth.py --pairs 200000 --keep /tmp/synth200k

Prints wall time, labelled pairs/s, total rows/s (pairs incl. the unlabelled pool, plus
behaviour rows) and peak RSS (ru_maxrss) after each stage.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from relkd.data.synth.synthetic_catalogue import StageTimer, SynthConfig, generate_dataset


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, B on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class RssStageTimer(StageTimer):
    """StageTimer that also records the peak RSS reached by the end of each stage."""

    def __init__(self) -> None:
        super().__init__()
        self.rss: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        super().lap(stage)
        self.rss[stage] = peak_rss_mib()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=1_000_000, help="labelled pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scheme", default="esci", choices=["esci", "wands"])
    parser.add_argument("--keep", type=Path, default=None, help="write here and keep the dataset")
    args = parser.parse_args(argv)

    cfg = SynthConfig(pairs=args.pairs, seed=args.seed, scheme=args.scheme)
    tmp = None
    if args.keep is None:
        tmp = tempfile.mkdtemp(prefix="bench_synth_")
        out = Path(tmp) / "synth"
    else:
        out = args.keep
    timer = RssStageTimer()
    start = time.perf_counter()
    try:
        ds = generate_dataset(cfg, out, overwrite=args.keep is not None, timer=timer)
        wall = time.perf_counter() - start
        rows = {name: entry.rows for name, entry in ds.manifest.tables.items()}
        disk = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    stats = ds.manifest.stats
    total_rows = rows["pairs"] + rows.get("behavior", 0)
    print(f"synthetic catalogue: pairs={args.pairs:,} seed={args.seed} scheme={args.scheme}")
    print(
        f"rows: items={rows['items']:,} queries={rows['queries']:,} pairs={rows['pairs']:,} "
        f"(labelled {stats['labelled_pairs']:,}, unlabelled {stats['unlabelled_pairs']:,}) "
        f"behavior={rows.get('behavior', 0):,}; {disk:.1f} MiB on disk"
    )
    print(f"wall time: {wall:.2f} s")
    print(
        f"throughput: {args.pairs / wall:,.0f} labelled pairs/s, {total_rows / wall:,.0f} rows/s (pairs + behaviour)"
    )
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB")
    print("stages:")
    for stage, seconds in timer.seconds.items():
        print(
            f"  {stage:<11} {seconds:7.2f} s  {100 * seconds / wall:5.1f}%   peak RSS {timer.rss[stage]:7,.0f} MiB"
        )
    print("label share:", {k: round(v, 3) for k, v in stats["label_share"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
