"""``relkd ablate``: one base experiment, its variants x seeds, one results table."""

from relkd.ablate.ablation_config import AblationConfig, load_ablation
from relkd.ablate.ablation_runner import run_ablation

__all__ = ["AblationConfig", "load_ablation", "run_ablation"]
