"""``relkd pipeline``: teacher -> annotate -> students -> one comparison table."""

from relkd.pipeline.pipeline_config import PipelineConfig, load_pipeline
from relkd.pipeline.pipeline_runner import run_pipeline

__all__ = ["PipelineConfig", "load_pipeline", "run_pipeline"]
