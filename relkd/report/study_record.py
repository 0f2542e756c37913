"""The Optuna studies under the report's folders: each study folder's ``trials.md`` (written by
``relkd tune``) names the study and its storage, which is loaded read-only for the report's
study section (parameter importances and optimisation history)."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

TRIALS_MD = "trials.md"
_NAME = re.compile(r"^# Study (.+)$", re.M)
_STORAGE = re.compile(r"^storage: `(.+)`$", re.M)


@dataclass
class StudyRecord:
    """One study: its folder, name, storage URL, and its trials (None when the storage could
    not be read; ``problem`` says why)."""

    folder: Path
    name: str
    url: str
    trials: list[FrozenTrial] | None
    direction: str = "maximize"
    metric: str = "value"
    problem: str | None = None

    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.trials or [] if t.state == TrialState.COMPLETE]

    def load(self) -> optuna.Study:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.load_study(study_name=self.name, storage=self.url)


def find_studies(paths: Sequence[Path]) -> list[StudyRecord]:
    """Every study folder (a ``trials.md``) at or under ``paths``, in path order, each once."""
    found: list[StudyRecord] = []
    seen: set[Path] = set()
    for root in paths:
        for here, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "trials")
            if TRIALS_MD in files and Path(here).resolve() not in seen:
                seen.add(Path(here).resolve())
                record = _read(Path(here))
                if record is not None:
                    found.append(record)
    return found


def _located(url: str, folder: Path) -> str:
    """A SQLite URL relative to where the study ran, read from elsewhere: the study's own
    ``study.db`` beside its ``trials.md`` (the default storage) when the URL's file is not here."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not Path(url[len(prefix) :]).is_file():
        beside = folder / Path(url[len(prefix) :]).name
        if beside.is_file():
            return prefix + str(beside)
    return url


def _read(folder: Path) -> StudyRecord | None:
    text = (folder / TRIALS_MD).read_text(errors="replace")
    name, url = _NAME.search(text), _STORAGE.search(text)
    if name is None or url is None:
        return None  # not a relkd tune table
    record = StudyRecord(
        folder, name.group(1).strip(), _located(url.group(1).strip(), folder), None
    )
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = record.load()
        record.trials = study.get_trials(deepcopy=False)
        record.direction = study.directions[0].name.lower()
        record.metric = (study.metric_names or ["value"])[0]
    except Exception as exc:  # a storage this machine cannot reach: a note, not a failure
        record.problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return record
