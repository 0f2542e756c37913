"""Lightning data modules: the shared QueryItemDataModule, its tokenized and prompt stores,
samplers and collators (the teacher cache it joins is relkd/teacher_cache/)."""

from datamodules.pair_collator import PairCollator
from datamodules.prompt_collator import PromptCollator
from datamodules.prompt_store import PromptSpec, PromptStore
from datamodules.query_item_datamodule import QueryItemDataModule, SplitFrame
from datamodules.samplers import (
    LengthBucketBatchSampler,
    QueryGroupedBatchSampler,
    SequentialBatchSampler,
)
from datamodules.tokenized_store import TokenizedStore

__all__ = [
    "LengthBucketBatchSampler",
    "PairCollator",
    "PromptCollator",
    "PromptSpec",
    "PromptStore",
    "QueryGroupedBatchSampler",
    "QueryItemDataModule",
    "SequentialBatchSampler",
    "SplitFrame",
    "TokenizedStore",
]
