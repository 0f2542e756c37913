"""``relkd tune``: one worker of a study. Start one per core, node or GPU set with the same
``--storage`` and study name; each draws a trial, trains it, reports, and stops when the study
holds ``trials`` finished (complete or pruned) trials.

A trial trains inside the worker's own process (``in_process: true``, the default): each builds
a fresh model and Trainer, and the interpreter start and the imports of torch, Lightning and
transformers are paid once per worker instead of once per trial. DDP trials, and every trial
with ``in_process: false``, run in a process of their own (``relkd.tune.trial_process``), whose
ranks Lightning starts; that process dies with its worker.

A killed worker is safe to restart: the study lives in its storage, and the trial it left
running stops beating its heartbeat, so after the grace period a worker re-queues its parameters;
a worker started on the same host does so at once (``fail_dead_trials``).
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from relkd.artifacts.atomic_files import atomic_write_bytes
from relkd.errors import ConfigError
from relkd.pipeline.comparison_table import markdown_table
from relkd.runs.run_dir import VERSION_ENV
from relkd.tune.search_space import SIMPLEX_PREFIX
from relkd.tune.study_factory import directions, make_pruner, make_sampler
from relkd.tune.study_setup import StudySetup
from relkd.tune.study_storage import RetryCallback, is_database, open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_FAILURES_IN_A_ROW = 3  # a config that cannot train stops the worker instead of looping


class TrialFailed(RuntimeError):
    """A trial process exited with an error (its log is named); the study goes on."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: a trial process dies with its worker, so a killed worker leaves no orphan."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Fail (and re-queue, as a stale heartbeat would) the RUNNING trials whose worker ran on
    this host and is gone: a worker restarted after a kill need not wait out the heartbeat's
    grace period, and a study never ends with its last killed trial still RUNNING. A trial whose
    worker cannot be checked here (another host, a reused pid) is left to the heartbeat."""
    here = socket.gethostname()
    storage = study._storage
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if host != here or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        callback = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
        if callback is not None:
            callback(study, storage.get_trial(t._trial_id))
        failed.append(t.number)
    return failed


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=FINISHED)


def trial_epochs(trial: FrozenTrial) -> int:
    """Validation epochs a trial ran (each reported an intermediate value)."""
    return len(trial.intermediate_values)


class StudyWorker:
    def __init__(
        self, setup: StudySetup, cli_overrides: list[str], say: Callable[[str], None] = print
    ) -> None:
        self.setup = setup
        self.cli_overrides = cli_overrides
        self.say = say
        self.failures_in_a_row = 0
        self.failed_logs: list[str] = []
        self.gave_up: str | None = None  # why this worker stopped early, if it did
        strategy = str(setup.base.trainer.strategy)
        self.in_process = setup.cfg.in_process and "ddp" not in strategy
        if "ddp" in strategy and not is_database(setup.url):
            raise ConfigError(
                f"storage {setup.url}: DDP trials ({strategy}) are pruned only with a database "
                "storage (sqlite:/// or postgresql+psycopg://), not a journal"
            )

    # ---- the study ----
    def open(self) -> optuna.Study:
        s = self.setup
        storage = open_storage(s.url, s.cfg.heartbeat)
        try:
            study = optuna.create_study(
                study_name=s.name,
                storage=storage,
                load_if_exists=True,
                directions=directions(s.cfg),
                sampler=make_sampler(s.cfg),
                pruner=make_pruner(s.cfg, s.steps_per_trial),
            )
        except ValueError as exc:  # an existing study with other directions
            raise ConfigError(f"storage {s.url}: study {s.name!r}: {exc}") from None
        names = [s.cfg.metric, "ms_per_pair"][: len(study.directions)]
        if study.metric_names != names:
            study.set_metric_names(names)
        study.set_user_attr("study_yaml", str(s.source))
        study.set_user_attr("experiment", str(s.experiment))
        return study

    # ---- one trial ----
    def objective(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        s = self.setup
        overrides = s.space.suggest(trial)
        for term, weight in s.space.weights(trial.params).items():
            trial.set_user_attr(f"loss.weights.{term}", weight)
        run_dir = s.run_dir(trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("overrides", overrides)
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        retried = RetryCallback.retried_trial_number(frozen)
        note = f" (retry of trial {retried})" if retried is not None else ""
        self.say(f"trial {trial.number}{note}: {' '.join(overrides)} -> {run_dir}")
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        log_file = run_dir.parent / f"{run_dir.name}.log"
        t0 = time.perf_counter()
        if self.in_process:
            result = self._run_here(trial, log_file)
        else:
            result = self._run_apart(trial, run_dir, log_file)
        seconds = time.perf_counter() - t0
        trial.set_user_attr("seconds", round(seconds, 3))
        if result["state"] == "pruned":
            self.say(f"trial {trial.number}: pruned after {seconds:.0f}s ({result['reason']})")
            raise optuna.TrialPruned(result["reason"])
        values = [float(v) for v in result["values"]]
        per_seed = result.get("seed_values") or []
        if len(per_seed) > 1:  # objective.seeds: the value is their mean
            first = [v[0] for v in per_seed]
            trial.set_user_attr("seed_values", first)
            trial.set_user_attr("seed_std", float(np.std(first, ddof=1)))
            trial.set_user_attr("run_dirs", result["run_dirs"])
        self.say(f"trial {trial.number}: {values} in {seconds:.0f}s")
        return values[0] if len(values) == 1 else tuple(values)

    def _run_here(self, trial: optuna.Trial, log_file: Path) -> dict[str, Any]:
        """The trial in this process, its output written to its log; any error fails the trial
        (the study goes on), with the traceback in the log."""
        from relkd.tune.trial_process import run_trial

        with log_file.open("a") as log:
            log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} in process {os.getpid()}\n")
            log.flush()
            version = os.environ.pop(VERSION_ENV, None)
            try:
                with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                    return run_trial(self.setup, trial._trial_id)
            except optuna.TrialPruned:  # run_trial reports pruning in its result; never fail it
                raise
            except Exception as exc:  # logged, then the trial fails and the study goes on
                traceback.print_exc(file=log)
                self.say(f"trial {trial.number}: FAILED ({type(exc).__name__}); log: {log_file}")
                self.failed_logs.append(str(log_file))
                raise TrialFailed(f"trial {trial.number}: {exc}; log: {log_file}") from None
            finally:
                if version is not None:
                    os.environ[VERSION_ENV] = version
                gc.collect()

    def _run_apart(self, trial: optuna.Trial, run_dir: Path, log_file: Path) -> dict[str, Any]:
        """The trial in a process of its own (DDP: Lightning starts its ranks from it)."""
        s = self.setup
        result_file = run_dir.parent / f"{run_dir.name}.result.json"
        cmd = [
            sys.executable,
            "-m",
            "relkd.tune.trial_process",
            str(s.source),
            *self.cli_overrides,  # before the options: argparse takes positionals first
            "--storage",
            s.url,
            "--study-name",
            s.name,
            "--trial-id",
            str(trial._trial_id),  # Optuna's own handle; ranks rebuild the Trial from it
            "--result",
            str(result_file),
        ]
        env = dict(os.environ)
        env.pop(VERSION_ENV, None)
        with log_file.open("a") as log:
            log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
            log.flush()
            preexec = _die_with_parent if sys.platform == "linux" else None
            proc = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
            )
        if proc.returncode != 0 or not result_file.is_file():
            self.say(f"trial {trial.number}: FAILED (exit {proc.returncode}); log: {log_file}")
            self.failed_logs.append(str(log_file))
            raise TrialFailed(f"trial {trial.number}: exit {proc.returncode}; log: {log_file}")
        return json.loads(result_file.read_text())

    def _after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.FAIL:
            self.failures_in_a_row += 1
            if self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                self.gave_up = (
                    f"study {self.setup.name!r}: {self.failures_in_a_row} trials failed in a row, "
                    f"this worker stopped; last log: {self.failed_logs[-1]}"
                )
                study.stop()
                return
        else:
            self.failures_in_a_row = 0
        if len(finished_trials(study)) >= self.setup.cfg.trials:
            study.stop()

    def run(self, target: int | None = None) -> optuna.Study:
        """Run trials until the study holds ``target`` (default: the YAML's) finished ones."""
        # heartbeats, retries and metric names are "experimental" in Optuna: no warning per use
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        if target is not None:
            self.setup.cfg.trials = target
        study = self.open()
        for number in fail_dead_trials(study):
            self.say(f"trial {number}: its worker on this host is gone; failed and re-queued")
        have = len(finished_trials(study))
        if have >= self.setup.cfg.trials:
            self.say(f"study {self.setup.name!r}: {have} finished trials, nothing to run")
            return study
        from relkd.runs.dataset_resolver import resolve_dataset

        resolve_dataset(self.setup.base.data)  # built once here, never by racing trials
        self.say(
            f"study {self.setup.name!r} in {self.setup.url}: {have} finished, "
            f"running to {self.setup.cfg.trials}"
        )
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # this worker says what happened
        try:
            study.optimize(
                self.objective,
                n_trials=None,
                catch=(TrialFailed,),
                callbacks=[self._after_trial],
                gc_after_trial=False,
            )
        finally:
            optuna.logging.set_verbosity(verbosity)
        return study


# ---- tables ----
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def trial_rows(setup: StudySetup, study: optuna.Study) -> tuple[list[str], list[list[Any]]]:
    """One row per trial: number, state, epochs, values, then the searched settings (weights as
    loss weights, not simplex fractions)."""
    keys: list[str] = []
    rows = []
    for t in study.get_trials(deepcopy=False):
        settings = {k: v for k, v in t.user_attrs.items() if k.startswith("loss.weights.")}
        if "seed_std" in t.user_attrs:  # objective.seeds: how far the seeds spread
            settings["std over seeds"] = t.user_attrs["seed_std"]
        settings.update({k: v for k, v in t.params.items() if not k.startswith(SIMPLEX_PREFIX)})
        keys += [k for k in settings if k not in keys]
        rows.append((t, settings))
    names = study.metric_names or [setup.cfg.metric]
    header = ["trial", "state", "epochs", *names, *keys]
    body = []
    for t, settings in rows:
        values = t.values or [None] * len(names)
        body.append(
            [t.number, t.state.name.lower(), trial_epochs(t), *values]
            + [settings.get(k) for k in keys]
        )
    return header, body


def write_tables(setup: StudySetup, study: optuna.Study) -> str:
    """``trials.csv`` and ``trials.md`` in the study folder; returns the Markdown."""
    header, body = trial_rows(setup, study)
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *body])
    setup.study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(setup.study_dir / "trials.csv", buf.getvalue().encode())
    table = markdown_table(header, [[_fmt(c) for c in row] for row in body])
    finished = finished_trials(study)
    lines = [f"# Study {setup.name}", "", f"storage: `{setup.url}`", "", table, ""]
    if finished and len(study.directions) == 1:
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        if complete:
            best = study.best_trial
            lines.append(f"best: trial {best.number}, {setup.cfg.metric} = {best.value:.4f}")
    elif len(study.directions) > 1 and study.best_trials:
        front = ", ".join(str(t.number) for t in study.best_trials)
        lines.append(f"Pareto front (quality, ms per pair): trials {front}")
    lines.append(
        f"trial-epochs spent: {sum(trial_epochs(t) for t in study.get_trials(deepcopy=False))}"
    )
    text = "\n".join(lines) + "\n"
    atomic_write_bytes(setup.study_dir / "trials.md", text.encode())
    return text
