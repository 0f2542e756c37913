"""LightningModules: training logic only; architectures and losses are injected."""

from lightning_modules.relevance_module import RelevanceModule
from lightning_modules.student_module import StudentModule
from lightning_modules.teacher_sft_module import TeacherSFTModule

__all__ = ["RelevanceModule", "StudentModule", "TeacherSFTModule"]
