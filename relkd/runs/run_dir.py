"""``runs/<experiment>/<version>/``: config.yaml, checkpoints/, metrics.json, TensorBoard events.

Under DDP every process must agree on the version, so the launching process picks it and
passes it to the processes Lightning starts through ``RELKD_RUN_VERSION``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from relkd.errors import ConfigError

VERSION_ENV = "RELKD_RUN_VERSION"


def next_version(experiment_dir: Path) -> str:
    taken = [
        int(m.group(1))
        for p in experiment_dir.glob("version_*")
        if (m := re.fullmatch(r"version_(\d+)", p.name))
    ]
    return f"version_{max(taken, default=-1) + 1}"


def choose_run_dir(
    output_dir: str, experiment: str, version: str | None, claim: bool = True
) -> Path:
    """Pick (and share with child processes) the run folder of a new run.

    The launching process (``claim``) creates the folder with ``exist_ok=False``, so two runs
    started at once never share one: the loser takes the next number. An explicit ``version``
    that already exists is refused rather than overwritten (use ``resume=`` to continue it).
    DDP workers (``claim=False``) take the version the launcher chose.
    """
    inherited = os.environ.get(VERSION_ENV)
    exp_dir = Path(output_dir) / experiment
    if inherited or not claim:
        chosen = inherited or version or next_version(exp_dir)
    elif version:
        chosen = version
        try:
            (exp_dir / chosen).mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise ConfigError(
                f"version: {exp_dir / chosen} already exists; pick another version or resume it "
                f"with resume={exp_dir / chosen}"
            ) from None
    else:
        exp_dir.mkdir(parents=True, exist_ok=True)
        while True:
            chosen = next_version(exp_dir)
            try:
                (exp_dir / chosen).mkdir(exist_ok=False)
                break
            except FileExistsError:
                continue  # another run claimed it first
    os.environ[VERSION_ENV] = chosen
    return exp_dir / chosen


def checkpoint_path(run_dir: Path, ckpt: str | Path) -> Path:
    """``best``/``last`` (under RUN_DIR/checkpoints) or a path; ConfigError naming it if absent.

    ``best`` falls back to ``last.ckpt``, saying so, when the run has no best.ckpt: training
    that stopped before its first validation saved only the latest weights."""
    if str(ckpt) in ("best", "last"):
        path = run_dir / "checkpoints" / f"{ckpt}.ckpt"
        last = run_dir / "checkpoints" / "last.ckpt"
        if str(ckpt) == "best" and not path.is_file() and last.is_file():
            print(
                f"relkd: {path} not found (no validation ran before training stopped); "
                f"evaluating {last} instead",
                file=sys.stderr,
            )
            return last
    else:
        path = Path(ckpt)
    if not path.is_file():
        raise ConfigError(f"--ckpt: {path} not found")
    return path
