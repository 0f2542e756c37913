"""The LLM teacher beyond its LightningModule: the exported adapter, CoT writing and annotation
(the cache it writes, and the aspect aggregator, live in relkd/teacher_cache/)."""

from relkd.teacher.teacher_adapter import LoadedTeacher, export_teacher, load_teacher

__all__ = ["LoadedTeacher", "export_teacher", "load_teacher"]
