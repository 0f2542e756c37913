"""``make_datamodule``: a QueryItemDataModule from flat keyword settings, for tests.

The DataModule takes its data settings as one DataConfig; tests name the few they change. This
sorts the keywords by DataConfig's own fields (``terms_min_count`` / ``terms_max_terms`` go to
``terms``; a TeacherCache is passed by its folder) and hands the rest to the constructor. As
before the DataConfig, val/test batches default to the training batch size.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from datamodules import QueryItemDataModule
from relkd.data.data_config import DataConfig, TermSettings
from relkd.teacher_cache.teacher_cache import TeacherCache

_DATA_FIELDS = {f.name for f in fields(DataConfig)}


def data_config(**settings: Any) -> DataConfig:
    """A DataConfig of ``settings`` (flat keywords, see the module docstring)."""
    terms = {
        k.removeprefix("terms_"): settings.pop(k) for k in list(settings) if k.startswith("terms_")
    }
    if terms:
        settings["terms"] = TermSettings(**terms)
    cache = settings.get("teacher_cache")
    if isinstance(cache, TeacherCache):
        settings["teacher_cache"] = str(cache.root)
    elif isinstance(cache, Path):
        settings["teacher_cache"] = str(cache)
    if "cache_dir" in settings:
        settings["cache_dir"] = str(settings["cache_dir"])
    settings.setdefault("eval_batch_size", settings.get("batch_size", DataConfig.batch_size))
    return DataConfig(**settings)


def make_datamodule(data_dir: Any, tokenizer: Any, **kw: Any) -> QueryItemDataModule:
    """QueryItemDataModule(data_dir, tokenizer, DataConfig(<data keywords>), <the others>)."""
    data = {k: kw.pop(k) for k in list(kw) if k in _DATA_FIELDS or k.startswith("terms_")}
    return QueryItemDataModule(data_dir, tokenizer, data_config(**data), **kw)
