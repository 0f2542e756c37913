"""LightningModules: training logic only; architectures and losses are injected."""

from lightning_modules.student_module import StudentModule

__all__ = ["StudentModule"]
