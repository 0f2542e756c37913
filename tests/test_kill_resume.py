"""SIGKILL real ``relkd`` processes at seeded random moments, start them again, and check that
the end result is the uninterrupted one: ``relkd train`` (mid-epoch resume from last.ckpt),
``relkd tune`` (killed trials failed and re-queued, none left running, no orphan process) and
``relkd ablate`` (finished runs reused, half-done ones resumed, results.csv unchanged).
``relkd teacher annotate``'s kill test lives in tests/test_annotate.py and uses ``kill_at``."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from omegaconf import OmegaConf
from optuna.trial import TrialState

from tests.conftest import QUICKSTART, tiny_overrides

INHERITED = ("LOCAL_RANK", "WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "RELKD_RUN_VERSION")
KILLS = 5


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def relkd(*args: str) -> list[str]:
    return [sys.executable, "-m", "relkd.cli", *args]


def start(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """``cmd`` in its own session (process group), output appended to ``log``."""
    with log.open("a") as out:
        return subprocess.Popen(
            cmd, cwd=cwd, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def kill_at(
    cmd: list[str],
    cwd: Path,
    log: Path,
    delay: float,
    ready: Callable[[], bool] = lambda: True,
    group: bool = True,
    timeout: float = 600,
) -> bool:
    """Start ``cmd``, wait until ``ready()`` (or its exit), sleep ``delay`` seconds, SIGKILL its
    process group (``group``) or the process alone, and reap it. True when it was killed, False
    when it had already finished."""
    proc = start(cmd, cwd, log)
    deadline = time.monotonic() + timeout
    try:
        while not ready() and proc.poll() is None:
            assert time.monotonic() < deadline, f"{cmd}: timed out; see {log}"
            time.sleep(0.002)
        time.sleep(delay)
        if proc.poll() is not None:
            return False
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
        return True
    finally:
        proc.wait()


def run_to_end(cmd: list[str], cwd: Path, log: Path, timeout: float = 900) -> None:
    proc = start(cmd, cwd, log)
    assert proc.wait(timeout=timeout) == 0, log.read_text()[-4000:]


def writes_of(root: Path, pattern: str, n: int) -> Callable[[], bool]:
    """True once files matching ``root.glob(pattern)`` have been (re)written ``n`` times in all
    since this call (an atomic write replaces the file: its inode or mtime changes)."""

    def stamps() -> set[tuple[str, int, int]]:
        out = set()
        for path in root.glob(pattern):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out.add((str(path), st.st_ino, st.st_mtime_ns))
        return out

    seen = stamps()
    count = 0

    def ready() -> bool:
        nonlocal seen, count
        now = stamps()
        count += len(now - seen)
        seen = now
        return count >= n

    return ready


def processes_matching(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


def results(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json less where the run was written."""
    return {k: v for k, v in metrics.items() if k not in ("version", "experiment")}


def assert_close(got: Any, want: Any, where: str = "") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-6), where
    else:
        assert got == want, where


# ---- relkd train -------------------------------------------------------------------------------
TRAIN = {
    "trainer.max_epochs": 2,
    "checkpoint.every_n_train_steps": 1,
    "model.dropout": 0.1,  # resumed dropout masks must match the uninterrupted ones
    "data.synthetic.pairs": 600,
}


def loader_position(run_dir: Path) -> tuple[int, int] | None:
    """(epoch, batches served) that last.ckpt will resume the train loader at."""
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    states = ckpt["loops"]["fit_loop"]["state_dict"].get("combined_loader")
    return (states[0]["epoch"], states[0]["batches"]) if states else None


@pytest.mark.slow
def test_train_killed_at_random_moments_resumes_to_the_uninterrupted_metrics(
    tmp_path: Path, shared_data_root: Path
) -> None:
    overrides = tiny_overrides(tmp_path / "runs", shared_data_root, **TRAIN)
    log = tmp_path / "train.log"
    run_to_end(relkd("train", str(QUICKSTART), *overrides, "version=reference"), tmp_path, log)
    reference = tmp_path / "runs" / "quickstart" / "reference"
    per_epoch = json.loads((reference / "metrics.json").read_text())["global_step"] // 2

    run_dir = tmp_path / "runs" / "quickstart" / "killed"
    fresh = relkd("train", str(QUICKSTART), *overrides, "version=killed")
    resume = relkd("train", str(QUICKSTART), f"resume={run_dir}")
    rng = random.Random(12)
    kills, positions = 0, []
    for attempt in range(KILLS + 2):
        if (run_dir / "checkpoints" / "last.ckpt").is_file():
            cmd = resume
            positions.append(loader_position(run_dir))
        else:  # killed before its first checkpoint: nothing to resume, start again
            shutil.rmtree(run_dir, ignore_errors=True)
            cmd = fresh
        if attempt == 0:  # during start-up, before any checkpoint
            ready, delay = (lambda: True), rng.uniform(1.0, 8.0)
        else:  # after a few more optimiser steps, inside a step, a write or a validation
            ready, delay = (
                writes_of(run_dir, "checkpoints/last.ckpt", rng.randint(2, 9)),
                (rng.uniform(0.0, 0.2)),
            )
        kills += kill_at(cmd, tmp_path, log, delay, ready)
        if kills >= KILLS:
            break
    assert kills >= KILLS
    assert not (run_dir / "metrics.json").exists()  # the kills did interrupt the run
    assert any(p and 0 < p[1] < per_epoch for p in positions), positions  # a mid-epoch resume
    run_to_end(resume, tmp_path, log)
    want = json.loads((reference / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    assert_close(results(got), results(want))
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


# ---- relkd tune --------------------------------------------------------------------------------
@pytest.mark.slow
def test_tune_worker_killed_at_random_moments_leaves_no_running_trial_or_orphan(
    tmp_path: Path, shared_data_root: Path
) -> None:
    """Kill the worker (alone: its trial process must die with it, or with its whole process
    group) during start-up or at a random step checkpoint of a trial, 5 times; restart it each
    time (trials run inside the worker by default, in processes of their own otherwise). The
    study ends with the requested finished trials, every killed trial FAILed and re-queued,
    none RUNNING, and no trial process left behind."""
    from relkd.tune.study_setup import TRIALS_DIR, study_setup

    # a checkpoint every step: the kills land on a trial's n-th step write, never on wall time
    # (an in-process trial takes a few seconds; a timed kill would often find the study done)
    overrides = tiny_overrides(
        tmp_path / "unused",
        shared_data_root,
        **{"trainer.limit_train_batches": 8, "checkpoint.every_n_train_steps": 1},
    )
    study_file = tmp_path / "study.yaml"
    body = {
        "name": "killed",
        "experiment": str(QUICKSTART),
        "output_dir": str(tmp_path / "studies"),
        "trials": 2,
        "pruner": {"kind": "none"},
        "heartbeat": {"interval": 1, "grace": 600, "max_retry": KILLS},  # the pid check fails
        "overrides": overrides,
        "space": {"params": {"optim.lr": {"low": 1e-3, "high": 5e-3, "log": True}}},
    }
    OmegaConf.save(OmegaConf.create(body), study_file)
    setup = study_setup(study_file)
    log = tmp_path / "tune.log"
    cmd = relkd("tune", str(study_file))

    rng = random.Random(3)
    kills = 0
    try:
        for attempt in range(KILLS + 3):  # a kill that comes too late is not counted
            if attempt == 0:  # worker start-up: imports, opening the study, the dataset
                ready, delay = (lambda: True), rng.uniform(0.5, 3.0)
            else:  # inside a trial: at its n-th step checkpoint (8 steps, then the epoch's)
                steps = "trial-*/checkpoints/last.ckpt"
                ready, delay = (
                    writes_of(setup.study_dir / TRIALS_DIR, steps, rng.randint(1, 8)),
                    0.0,
                )
            kills += kill_at(cmd, tmp_path, log, delay, ready, group=attempt % 2 == 1)
            deadline = time.monotonic() + 15
            while processes_matching(str(study_file)):
                assert time.monotonic() < deadline, "a trial process outlived its killed worker"
                time.sleep(0.1)
            if kills == KILLS:
                break
        assert kills == KILLS
        run_to_end(cmd, tmp_path, log)
    finally:
        for pid in processes_matching(str(study_file)):
            os.kill(pid, signal.SIGKILL)
    study = optuna.load_study(study_name="killed", storage=setup.url)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 2
    assert TrialState.RUNNING not in states
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed, "no kill landed inside a trial"
    # every killed trial was re-queued (a retry's retry_history lists each failed attempt)
    retried = {n for t in study.trials for n in t.system_attrs.get("retry_history", [])}
    assert {t.number for t in failed} <= retried
    assert not processes_matching(str(study_file))


# ---- relkd ablate ------------------------------------------------------------------------------
def ablation_file(tmp: Path, data_root: Path, out: Path) -> Path:
    # two epochs of ~30 steps per run, a checkpoint each step: ~120 writes, far more than the
    # kill schedule below can consume (at most 4 x 8 writes + a few steps of overshoot), so
    # every kill lands on a live process however fast the machine is
    shared = tiny_overrides(tmp, data_root, **TRAIN)
    path = tmp / f"{out.name}.yaml"
    body = {
        "name": "tiny",
        "output_dir": str(out),
        "experiment": str(QUICKSTART),
        "overrides": [o for o in shared if not o.startswith("output_dir=")],
        "seeds": [0],
        "variants": [
            {"name": "lr 3e-3", "overrides": []},
            {"name": "lr 1e-4", "overrides": ["optim.lr=1e-4"]},
        ],
    }
    OmegaConf.save(OmegaConf.create(body), path)
    return path


def csv_rows(root: Path) -> list[dict[str, Any]]:
    """results.csv's rows, run folders relative to the ablation root, numbers as floats."""
    with (root / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["run_dir"] = str(Path(row["run_dir"]).relative_to(root))
        for key, value in row.items():
            with contextlib.suppress(ValueError):  # "" (no value) and names stay strings
                row[key] = float(value)
    return rows


@pytest.mark.slow
def test_ablate_killed_at_random_moments_ends_with_the_uninterrupted_results(
    tmp_path: Path, shared_data_root: Path
) -> None:
    """Kill ``relkd ablate`` (and the run it is training) 5 times: during start-up and a random
    number of checkpoint writes into its runs. The last ablate reuses the finished runs, resumes
    or redoes the half-done one, and writes the uninterrupted ablation's results.csv."""
    log = tmp_path / "ablate.log"
    reference = tmp_path / "reference"
    run_to_end(
        relkd("ablate", str(ablation_file(tmp_path, shared_data_root, reference))), tmp_path, log
    )
    killed = tmp_path / "killed"
    cmd = relkd("ablate", str(ablation_file(tmp_path, shared_data_root, killed)))
    rng = random.Random(5)
    kills = 0
    for attempt in range(KILLS):
        if attempt == 0:  # during start-up: before the first run has written a checkpoint
            ready, delay = (lambda: True), rng.uniform(0.5, 2.0)
        else:
            ready, delay = (
                writes_of(killed, "*/*/*/checkpoints/last.ckpt", rng.randint(1, 8)),
                (rng.uniform(0.0, 0.05)),
            )
        landed = kill_at(cmd, tmp_path, log, delay, ready)
        assert landed, f"kill {attempt} found the ablation finished; see {log}"
        kills += landed
        assert not (killed / "tiny" / "results.csv").exists()  # no half-made results
    assert kills == KILLS
    run_to_end(cmd, tmp_path, log)
    root, want = killed / "tiny", csv_rows(reference / "tiny")
    got = csv_rows(root)
    assert len(got) == len(want)  # every run once
    for g, w in zip(got, want, strict=True):
        assert_close(g, w)
    assert len(list(root.glob("*/*/metrics.json"))) == 2
