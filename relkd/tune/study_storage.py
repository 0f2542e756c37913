"""Where a study lives: SQLite by default, a PostgreSQL (any SQLAlchemy) URL for workers on many
machines, or an append-only journal file where no database is available.

Database storages beat a heartbeat for each running trial: a worker killed mid-trial stops
beating, and after the grace period the next worker to start a trial marks it failed and
re-queues its parameters (``RetryFailedTrialCallback``), so no trial is silently lost. Journal
storage has no heartbeat, and Optuna prunes DDP trials only with a database (the pruning
callback stores its decision in the trial's system attributes).
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from relkd.errors import ConfigError
from relkd.tune.study_config import HeartbeatConfig, StudyConfig

JOURNAL = "journal:"
# renamed in Optuna 4.9 (the old name warns)
RetryCallback = getattr(
    optuna.storages, "RetryHeartbeatStaleTrialCallback", optuna.storages.RetryFailedTrialCallback
)


def storage_url(cfg: StudyConfig, study_dir: Path, override: str | None = None) -> str:
    """``--storage``, else the study YAML's ``storage``, else SQLite in the study folder."""
    url = override or cfg.storage
    if url:
        return url
    return f"sqlite:///{(study_dir / 'study.db').resolve()}"


def is_database(url: str) -> bool:
    return not url.startswith(JOURNAL)


def open_storage(url: str, heartbeat: HeartbeatConfig) -> BaseStorage:
    """The storage behind ``url``; a ConfigError names the URL when it cannot be opened."""
    if url.startswith(JOURNAL):
        path = Path(url[len(JOURNAL) :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, object] = {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        # several worker processes on one SQLite file wait for its lock instead of failing
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat.interval,
            grace_period=heartbeat.grace,
            heartbeat_stale_trial_callback=RetryCallback(max_retry=heartbeat.max_retry),
        )
    except ImportError as exc:
        raise ConfigError(
            f"storage {url}: its database driver is not installed ({exc}); for PostgreSQL "
            "install relkd[postgres] and use postgresql+psycopg://USER@HOST:PORT/DB"
        ) from None
    except Exception as exc:  # sqlalchemy's OperationalError and friends: no traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"storage {url}: cannot open ({first})") from None


def load_study(url: str, heartbeat: HeartbeatConfig, name: str, **kwargs: object) -> optuna.Study:
    """An existing study; a ConfigError when ``name`` is not in the storage."""
    storage = open_storage(url, heartbeat)
    try:
        return optuna.load_study(study_name=name, storage=storage, **kwargs)  # type: ignore[arg-type]
    except KeyError:
        raise ConfigError(f"storage {url}: no study named {name!r}") from None
