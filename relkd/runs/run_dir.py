"""``runs/<experiment>/<version>/``: config.yaml, checkpoints/, metrics.json, TensorBoard events.

Under DDP every process must agree on the version, so the launching process picks it and
passes it to the processes Lightning starts through ``RELKD_RUN_VERSION``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

VERSION_ENV = "RELKD_RUN_VERSION"


def next_version(experiment_dir: Path) -> str:
    taken = [
        int(m.group(1))
        for p in experiment_dir.glob("version_*")
        if (m := re.fullmatch(r"version_(\d+)", p.name))
    ]
    return f"version_{max(taken, default=-1) + 1}"


def choose_run_dir(output_dir: str, experiment: str, version: str | None) -> Path:
    """Pick (and share with child processes) the run folder of a new run."""
    chosen = os.environ.get(VERSION_ENV) or version or next_version(Path(output_dir) / experiment)
    os.environ[VERSION_ENV] = chosen
    return Path(output_dir) / experiment / chosen
