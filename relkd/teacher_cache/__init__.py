"""The teacher cache, one format in one package: the record a teacher writes (``Annotation``), the
sharded writer and its finalizer, the reader students join by ``pair_id`` (``TeacherCache``), and
the fitted aspect aggregator a progressive teacher's scores come from. It sits with the data
layer: it imports nothing above ``relkd.data`` and ``relkd.artifacts``."""

from relkd.teacher_cache.annotation import Annotation
from relkd.teacher_cache.aspect_aggregator import AspectAggregator
from relkd.teacher_cache.teacher_cache import TeacherCache

__all__ = ["Annotation", "AspectAggregator", "TeacherCache"]
