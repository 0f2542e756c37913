"""Lightning data modules: the shared QueryItemDataModule and the teacher cache it joins."""

from datamodules.pair_collator import PairCollator
from datamodules.query_item_datamodule import QueryItemDataModule, SplitFrame
from datamodules.samplers import (
    LengthBucketBatchSampler,
    QueryGroupedBatchSampler,
    SequentialBatchSampler,
)
from datamodules.teacher_cache import TeacherCache
from datamodules.tokenized_store import TokenizedStore

__all__ = [
    "LengthBucketBatchSampler",
    "PairCollator",
    "QueryGroupedBatchSampler",
    "QueryItemDataModule",
    "SequentialBatchSampler",
    "SplitFrame",
    "TeacherCache",
    "TokenizedStore",
]
