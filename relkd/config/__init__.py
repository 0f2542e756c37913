"""Experiment configuration: the typed schema and the layered composer."""

from relkd.config.compose import compose, save, to_container, validate
from relkd.config.experiment_config import ExperimentConfig

__all__ = ["ExperimentConfig", "compose", "save", "to_container", "validate"]
