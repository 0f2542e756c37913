"""Everything a worker and its trial processes derive from the same inputs (study YAML, command
line overrides, storage URL, study name), so both sides agree on each trial's config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from relkd.config import compose
from relkd.pipeline.pipeline_runner import experiment_path
from relkd.tune.search_space import SearchSpace
from relkd.tune.study_config import StudyConfig, load_study_config
from relkd.tune.study_storage import storage_url

TRIALS_DIR = "trials"


@dataclass
class StudySetup:
    source: Path  # the study YAML
    cfg: StudyConfig
    name: str  # the study's name in the storage
    url: str  # the storage
    experiment: Path  # the base experiment YAML
    overrides: list[str]  # the study's, then the command line's: every trial's first
    base: DictConfig  # the base experiment composed with ``overrides`` (no trial parameters)
    space: SearchSpace

    @property
    def study_dir(self) -> Path:
        return Path(self.cfg.output_dir) / self.name

    @property
    def seeds(self) -> list[int | None]:
        """The seeds each trial trains at: ``objective.seeds``, or [None] (the experiment's
        own seed, one run)."""
        return list(self.cfg.objective.seeds) or [None]

    @property
    def steps_per_trial(self) -> int:
        """Validation steps a complete trial reports: its epochs, once per seed."""
        return int(self.base.trainer.max_epochs) * len(self.seeds)

    def run_dir(self, number: int, seed: int | None = None) -> Path:
        """``trials/trial-<n>`` (one seed), or ``trials/trial-<n>/seed-<s>`` for each of
        ``objective.seeds`` (the trial's log and result file stay beside ``trial-<n>``)."""
        trial = self.study_dir / TRIALS_DIR / f"trial-{number:04d}"
        return trial if seed is None else trial / f"seed-{seed}"

    def trial_overrides(
        self, params: dict[str, Any], number: int, seed: int | None = None
    ) -> list[str]:
        run = self.run_dir(number, seed)
        placement = [
            f"output_dir={run.parent.parent}",
            f"experiment={run.parent.name}",
            f"version={run.name}",
            *([] if seed is None else [f"seed={seed}"]),
        ]
        return [*self.overrides, *self.space.overrides(params), *placement]

    def trial_config(
        self, params: dict[str, Any], number: int, seed: int | None = None
    ) -> DictConfig:
        return compose(self.experiment, self.trial_overrides(params, number, seed))


def study_setup(
    path: str | Path,
    cli_overrides: list[str] | tuple[str, ...] = (),
    storage: str | None = None,
    name: str | None = None,
) -> StudySetup:
    """Read a study YAML and compose its base experiment; ConfigErrors name file and key."""
    source = Path(path)
    cfg = load_study_config(source)
    study_name = name or cfg.name
    experiment = experiment_path(cfg.experiment, source)
    overrides = [*cfg.overrides, *cli_overrides]
    base = compose(experiment, overrides)
    weights = {str(k): float(v) for k, v in base.loss.weights.items()}
    setup = StudySetup(
        source=source,
        cfg=cfg,
        name=study_name,
        url="",
        experiment=experiment,
        overrides=overrides,
        base=base,
        space=SearchSpace(cfg.space, weights),
    )
    setup.url = storage_url(cfg, setup.study_dir, storage)
    return setup
