"""relkd tune: the search space, the study YAML's checks, and whole studies run as users run them
(SQLite with DDP trials and pruning; two PostgreSQL workers, one killed; a latency objective)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from relkd.cli import main
from relkd.config import compose
from relkd.tune.search_space import SearchSpace, simplex_point
from relkd.tune.study_config import HeartbeatConfig, SearchSpaceConfig, load_study_config
from relkd.tune.study_factory import make_pruner
from relkd.tune.study_setup import study_setup
from relkd.tune.study_storage import open_storage
from relkd.tune.study_worker import StudyWorker
from tests.conftest import QUICKSTART, REPO, tiny_overrides
from tests.postgres_server import postgres_server

STUDIES = sorted((REPO / "experiments" / "studies").glob("*.yaml"))
DDP_VARS = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")


def write_study(path: Path, **fields: Any) -> Path:
    body = {"name": "s", "experiment": str(QUICKSTART), **fields}
    OmegaConf.save(OmegaConf.create(body), path)
    return path


def tune(
    cwd: Path, *args: str, wait: bool = True
) -> subprocess.Popen | subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in DDP_VARS}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "relkd.cli", "tune", *args]
    if not wait:
        log = (cwd / f"worker-{time.monotonic_ns()}.log").open("w")
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


# ---- the search space -------------------------------------------------------------------------
def test_simplex_point_is_uniform_on_the_simplex() -> None:
    rng = np.random.default_rng(0)
    points = np.array([simplex_point(list(rng.random(2))) for _ in range(20000)])
    assert np.allclose(points.sum(axis=1), 1.0) and (points >= 0).all()
    # Dirichlet(1, 1, 1): every weight has mean 1/3 and variance 1/18; breaking the stick at
    # uniform fractions would give means 1/2, 1/4, 1/4 (the first term favoured)
    assert np.allclose(points.mean(axis=0), 1 / 3, atol=0.01)
    assert np.allclose(points.var(axis=0), 1 / 18, atol=0.004)


def test_simplex_keeps_the_base_sum_and_replaces_kd_ratio() -> None:
    base = {"hard_ce": 1.0, "soft_kl": 1.0, "cot_aspects": 0.5}
    space = SearchSpace(SearchSpaceConfig(weights=["hard_ce", "soft_kl", "cot_aspects"]), base)
    trial = optuna.trial.FixedTrial({"simplex.hard_ce": 0.3, "simplex.soft_kl": 0.6})
    overrides = space.suggest(trial)
    weights = space.weights(trial.params)
    assert sum(weights.values()) == pytest.approx(2.5)
    assert len(trial.params) == 2  # k terms, k - 1 parameters: no direction searched twice
    assert "loss.kd_ratio=null" in overrides  # the simplex is the label/KD split
    assert overrides == space.overrides(dict(trial.params))  # ranks rebuild the same overrides


def test_ratio_parametrisation_keeps_kd_ratio() -> None:
    space = SearchSpace(SearchSpaceConfig(weights=["soft_kl", "margin_mse"]), {"soft_kl": 1.0})
    overrides = space.overrides({"simplex.soft_kl": 0.5, "loss.kd_ratio": 0.25})
    assert "loss.kd_ratio=0.25" in overrides and "loss.kd_ratio=null" not in overrides


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        (
            {"space": {"weights": ["hard_ce", "soft_kl"], "kd_ratio": {"low": 0, "high": 1}}},
            "space.kd_ratio",
        ),
        (
            {"latency_objective": True, "space": {"temperature": {"low": 1, "high": 2}}},
            "pruner.kind",
        ),
        ({"space": {"nope": 1}}, "space.nope"),
        ({"space": {}}, "key space"),
        ({"space": {"params": {"optim.lr": {"low": 0, "high": 1, "log": True}}}}, "optim.lr"),
        ({"space": {"weights": ["hard_ce"]}}, "space.weights"),
        (
            {"pruner": {"monitor": "class_nll"}, "space": {"temperature": {"low": 1, "high": 2}}},
            "pruner.monitor",
        ),
        (
            {
                "pruner": {"monitor": "val/class_nll", "monitor_direction": "down"},
                "space": {"temperature": {"low": 1, "high": 2}},
            },
            "pruner.monitor_direction",
        ),
        (
            {"objective": {"seeds": [0, 0]}, "space": {"temperature": {"low": 1, "high": 2}}},
            "objective.seeds",
        ),
    ],
)
def test_bad_study_is_one_line_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fields: dict[str, Any], key: str
) -> None:
    path = write_study(tmp_path / "bad.yaml", **fields)
    assert main(["tune", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and key in err


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_shipped_studies_compose_a_drawn_trial(path: Path) -> None:
    setup = study_setup(path, ["data.teacher_cache=cache"])  # the cache is the user's to give
    trial = optuna.create_study().ask()
    setup.space.suggest(trial)
    cfg = setup.trial_config(trial.params, trial.number)
    for term, weight in setup.space.weights(trial.params).items():
        assert cfg.loss.weights[term] == pytest.approx(weight)
    assert cfg.output_dir == str(setup.study_dir)


@pytest.mark.parametrize("kind", ["median", "hyperband", "successive_halving", "threshold"])
def test_no_pruner_prunes_the_final_epoch(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial pruned at its last epoch has paid for every epoch and loses its result, so the
    last step is kept whatever Optuna's rule says; the pruner keeps Optuna's class (TPE reads
    Hyperband's brackets by it)."""
    cfg = load_study_config(
        write_study(
            Path(tempfile.mkdtemp()) / "s.yaml",
            pruner={"kind": kind, "lower": 0.9},
            space={"temperature": {"low": 1, "high": 2}},
        )
    )
    pruner = make_pruner(cfg, max_epochs=4)
    library = type(pruner).__mro__[2]
    assert library.__module__.startswith("optuna.") and isinstance(pruner, library)
    monkeypatch.setattr(library, "prune", lambda self, study, trial: True)  # always "prune"
    trial = optuna.create_study(pruner=pruner).ask()
    trial.report(0.1, 2)
    assert trial.should_prune()
    trial.report(0.1, 3)
    assert not trial.should_prune()


def test_seed_mean_pruning_reports_the_signed_running_mean() -> None:
    """Seed 2 of a trial monitoring a loss in a maximised study: its epochs report at steps
    after the first two seeds', the negated mean of their final losses and its current one;
    checkpointing still reads the seed's own value."""
    import torch

    from relkd.tune.seed_mean_pruning import SeedMeanPruning

    class Trainer:
        sanity_checking = False
        should_stop = False

        def __init__(self, value: float) -> None:
            self._metrics = {"val/class_nll": torch.tensor(value)}

        @property
        def callback_metrics(self) -> dict:  # Lightning builds a fresh dict on every read
            return dict(self._metrics)

    class Module:
        current_epoch = 1

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    callback = SeedMeanPruning(trial, "val/class_nll", [0.9, 0.6], step_offset=8, sign=-1.0)
    trainer = Trainer(0.3)
    callback.on_validation_end(trainer, Module())  # type: ignore[arg-type]
    (frozen,) = study.get_trials(deepcopy=False)
    assert frozen.intermediate_values == {9: pytest.approx(-(0.9 + 0.6 + 0.3) / 3)}
    assert float(trainer.callback_metrics["val/class_nll"]) == pytest.approx(0.3)


def test_journal_storage_runs_a_study_and_refuses_ddp(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'study.log'}"
    study = optuna.create_study(storage=open_storage(url, HeartbeatConfig()))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.trials) == 2 and (tmp_path / "study.log").stat().st_size > 0
    path = write_study(tmp_path / "s.yaml", space={"temperature": {"low": 1, "high": 2}})
    setup = study_setup(path, ["trainer.strategy=ddp", "trainer.devices=2"], storage=url)
    with pytest.raises(Exception, match="journal"):
        StudyWorker(setup, [])


# ---- whole studies ------------------------------------------------------------------------------
def _tiny(tmp: Path, data_root: Path, **extra: object) -> list[str]:
    """The shared tiny run, cut to 8 steps an epoch: these tests measure the study machinery,
    not what a trial learns."""
    return tiny_overrides(tmp / "unused", data_root, **{"trainer.limit_train_batches": 8, **extra})


@pytest.mark.slow  # 84 s: two trial processes, each a 2-rank DDP job
def test_ddp_study_prunes_resumes_and_exports_best(tmp_path: Path, shared_data_root: Path) -> None:
    """Two DDP ranks per trial: both train the trial's parameters read from the storage, the
    pruning callback stops a trial on every rank, a re-run resumes (runs nothing more), and the
    best trial becomes an experiment YAML that composes. The second trial meets a threshold no
    model reaches, so the pruning decision does not hang on a tiny model's noisy NDCG."""
    overrides = _tiny(
        tmp_path,
        shared_data_root,
        **{"trainer.max_epochs": 2, "trainer.devices": 2, "trainer.strategy": "ddp"},
    )
    fields: dict[str, Any] = {
        "output_dir": str(tmp_path / "studies"),
        "trials": 1,
        "overrides": overrides,
        "pruner": {"kind": "none"},
        "space": {"params": {"optim.lr": {"low": 1e-4, "high": 0.01}}},
    }
    study_file = write_study(tmp_path / "study.yaml", **fields)
    setup = study_setup(study_file)
    setup.study_dir.mkdir(parents=True)
    study = optuna.create_study(storage=setup.url, study_name="s", direction="maximize")
    study.enqueue_trial({"optim.lr": 0.003})
    out = tune(tmp_path, str(study_file))
    assert out.returncode == 0, out.stdout + out.stderr
    fields["pruner"] = {"kind": "threshold", "lower": 1.01, "warmup_epochs": 0}
    write_study(study_file, **fields)
    out = tune(tmp_path, str(study_file), "--trials", "2", "--export-best", "best.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    trials = optuna.load_study(study_name="s", storage=setup.url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert len(trials[0].intermediate_values) == 2 and list(trials[1].intermediate_values) == [0]
    for t in trials:  # rank 1 read the same parameters as rank 0
        log = (setup.run_dir(t.number).parent / f"trial-{t.number:04d}.log").read_text()
        lines = {r: ln for ln in log.splitlines() for r in "01" if f"rank {r}:" in ln}
        assert lines["0"].split(":", 1)[1] == lines["1"].split(":", 1)[1]
        assert f"optim.lr={t.params['optim.lr']}" in lines["0"]
    assert (setup.run_dir(0) / "metrics.json").is_file()
    assert not (setup.run_dir(1) / "metrics.json").exists()  # pruned before its test
    table = (setup.study_dir / "trials.md").read_text()
    assert "complete" in table and "pruned" in table and "trial-epochs spent: 3" in table
    best = compose(tmp_path / "best.yaml", [])
    assert best.optim.lr == pytest.approx(0.003) and best.trainer.devices == 2
    again = tune(tmp_path, str(study_file), "--trials", "2")
    assert again.returncode == 0 and "nothing to run" in again.stdout
    assert len(optuna.load_study(study_name="s", storage=setup.url).trials) == 2


def test_latency_objective_is_a_second_value(tmp_path: Path, shared_data_root: Path) -> None:
    study_file = write_study(
        tmp_path / "study.yaml",
        output_dir=str(tmp_path / "studies"),
        trials=1,
        latency_objective=True,
        pruner={"kind": "none"},
        overrides=_tiny(tmp_path, shared_data_root),
        space={"temperature": {"low": 1.0, "high": 4.0, "log": True}},
    )
    out = tune(tmp_path, str(study_file))
    assert out.returncode == 0, out.stdout + out.stderr
    setup = study_setup(study_file)
    (trial,) = optuna.load_study(study_name="s", storage=setup.url).trials
    serving = OmegaConf.load(setup.run_dir(0) / "serving.json")
    assert trial.values[1] == pytest.approx(serving.ms_per_pair) and serving.ms_per_pair > 0
    assert "Pareto front" in (setup.study_dir / "trials.md").read_text()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_two_postgres_workers_share_a_study_and_retry_a_killed_workers_trial(
    tmp_path: Path, shared_data_root: Path
) -> None:
    """Workers A and B run one study on a real PostgreSQL server at once; A is killed mid-trial.
    Its trial process dies with it, its trial stops beating, and a surviving worker re-runs the
    same parameters to completion."""
    with postgres_server() as url:
        study_file = write_study(
            tmp_path / "study.yaml",
            name="shared",
            output_dir=str(tmp_path / "studies"),
            trials=4,
            storage=url,
            # trials in processes of their own: the orphan check below is theirs (in-process
            # kills are test_kill_resume's tune test)
            in_process=False,
            pruner={"kind": "none"},
            heartbeat={"interval": 1, "grace": 3, "max_retry": 1},
            overrides=_tiny(tmp_path, shared_data_root),
            space={"params": {"optim.lr": {"low": 1e-3, "high": 5e-3, "log": True}}},
        )
        a = tune(tmp_path, str(study_file), wait=False)
        b = tune(tmp_path, str(study_file), wait=False)
        storage = optuna.storages.RDBStorage(url)  # one connection pool for all the polling

        def by(worker: subprocess.Popen, state: TrialState) -> list[optuna.trial.FrozenTrial]:
            try:
                study = optuna.load_study(study_name="shared", storage=storage)
            except KeyError:  # no worker has created it yet
                return []
            trials = study.get_trials(states=(state,))
            return [t for t in trials if t.user_attrs.get("worker", "").endswith(f":{worker.pid}")]

        try:
            _wait(lambda: by(a, TrialState.COMPLETE) and by(a, TrialState.RUNNING), 600, "A")
            killed = by(a, TrialState.RUNNING)[0]
            a.kill()
            a.wait()
            time.sleep(2)
            orphans = subprocess.run(
                ["pgrep", "-f", "--", f"{study_file} .*--trial-id {killed._trial_id} "],
                capture_output=True,
            )
            assert orphans.returncode == 1, "the killed worker's trial process outlived it"
            assert b.wait(timeout=600) == 0
            # a later worker (or B, if it started a trial after the grace period) re-runs it
            c = tune(tmp_path, str(study_file), "--trials", "5")
            assert c.returncode == 0, c.stdout + c.stderr
        finally:
            for p in (a, b):
                if p.poll() is None:
                    p.kill()
        study = optuna.load_study(study_name="shared", storage=url)
        states = {t.number: t.state for t in study.trials}
        assert states[killed.number] == TrialState.FAIL
        retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
        assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
        assert retries[0].params == killed.params
        done = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(done) >= 5
        workers = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in done}
        assert str(a.pid) in workers and str(b.pid) in workers  # both shared the study


@pytest.mark.slow  # two tiny trainings in a tune subprocess (.ci/run runs the slow tune tests)
def test_a_seed_averaged_trial_reports_the_mean_of_its_seeds(
    tmp_path: Path, shared_data_root: Path
) -> None:
    """objective.seeds [0, 1]: the trial trains twice (seed in each run's config), its value is
    the mean of the two runs' metric, their std a user attribute, and the intermediate values run
    over both seeds: seed 1's epochs report the running mean with seed 0's final value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    study_file = write_study(
        tmp_path / "study.yaml",
        output_dir=str(tmp_path / "studies"),
        trials=1,
        objective={"seeds": [0, 1]},
        pruner={"kind": "median"},
        overrides=_tiny(tmp_path, shared_data_root, **{"trainer.max_epochs": 2}),
        space={"params": {"optim.lr": {"low": 1e-3, "high": 5e-3, "log": True}}},
    )
    out = tune(tmp_path, str(study_file))
    assert out.returncode == 0, out.stdout + out.stderr
    setup = study_setup(study_file)
    (trial,) = optuna.load_study(study_name="s", storage=setup.url).trials
    final, per_epoch = [], []
    for seed in (0, 1):
        run = setup.run_dir(0, seed)
        assert OmegaConf.load(run / "config.yaml").seed == seed
        final.append(OmegaConf.load(run / "metrics.json").val.overall["ndcg@10"])
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
        acc.Reload()
        per_epoch.append([e.value for e in acc.Scalars("val/ndcg@10")][:2])
    assert final[0] != final[1]  # two seeds, two different runs
    assert trial.value == pytest.approx(np.mean(final))
    assert trial.user_attrs["seed_std"] == pytest.approx(np.std(final, ddof=1))
    assert trial.user_attrs["seed_values"] == pytest.approx(final)
    steps = trial.intermediate_values
    assert sorted(steps) == [0, 1, 2, 3]
    assert [steps[0], steps[1]] == pytest.approx(per_epoch[0], abs=1e-6)
    running = [(final[0] + v) / 2 for v in per_epoch[1]]
    assert [steps[2], steps[3]] == pytest.approx(running, abs=1e-6)
    assert "std over seeds" in (setup.study_dir / "trials.md").read_text()


@pytest.mark.slow  # five tune subprocesses (.ci/run runs the slow tune tests)
def test_in_process_trials_equal_trials_in_their_own_process(
    tmp_path: Path, shared_data_root: Path
) -> None:
    """The same parameters give the same value whether the trial trains inside the worker or
    in a process of its own; both write the trial's log, and an in-process trial that raises
    is FAILed with its traceback in that log while the study goes on."""
    values = {}
    for in_process in (True, False):
        name = f"p{int(in_process)}"
        study_file = write_study(
            tmp_path / f"{name}.yaml",
            name=name,
            output_dir=str(tmp_path / "studies"),
            trials=1,
            in_process=in_process,
            pruner={"kind": "none"},
            overrides=_tiny(tmp_path, shared_data_root),
            space={"params": {"optim.lr": {"low": 1e-3, "high": 5e-3, "log": True}}},
        )
        setup = study_setup(study_file)
        setup.study_dir.mkdir(parents=True)
        study = optuna.create_study(storage=setup.url, study_name=name, direction="maximize")
        study.enqueue_trial({"optim.lr": 0.002})
        out = tune(tmp_path, str(study_file))
        assert out.returncode == 0, out.stdout + out.stderr
        (trial,) = optuna.load_study(study_name=name, storage=setup.url).trials
        values[in_process] = trial.value
        log = (setup.run_dir(0).parent / "trial-0000.log").read_text()
        assert "trial 0 rank 0: optim.lr=0.002" in log
        assert ("in process" in log) == in_process
    assert values[True] == pytest.approx(values[False], abs=1e-6)
    broken = write_study(
        tmp_path / "broken.yaml",
        name="broken",
        output_dir=str(tmp_path / "studies"),
        trials=1,
        pruner={"kind": "none"},
        overrides=_tiny(tmp_path, shared_data_root),
        space={"params": {"optim.lr": {"low": -2e-3, "high": -1e-3}}},  # refused in the trial
    )
    out = tune(tmp_path, str(broken))
    setup = study_setup(broken)
    trials = optuna.load_study(study_name="broken", storage=setup.url).trials
    assert out.returncode != 0 and "trials failed in a row" in out.stdout + out.stderr
    assert [t.state for t in trials] == [TrialState.FAIL] * 3  # MAX_FAILURES_IN_A_ROW
    log = (setup.run_dir(0).parent / "trial-0000.log").read_text()
    assert "Traceback" in log and "optim.lr" in log
