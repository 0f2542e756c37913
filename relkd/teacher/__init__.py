"""The LLM teacher beyond its LightningModule: the exported adapter, CoT writing, aggregation."""

from relkd.teacher.aspect_aggregator import AspectAggregator
from relkd.teacher.teacher_adapter import LoadedTeacher, export_teacher, load_teacher

__all__ = ["AspectAggregator", "LoadedTeacher", "export_teacher", "load_teacher"]
