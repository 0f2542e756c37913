"""Serving artifacts for trained students: ONNX graphs, the two-tower item table, and a small
onnxruntime wrapper that scores with them (see docs/serving.md).

``relkd export RUN_DIR --format onnx`` calls :func:`relkd.serving.onnx_export.export_from_cli`.
The onnx, onnxruntime and onnxscript packages come with the ``serve`` extra.
"""

from __future__ import annotations

from relkd.serving.onnx_export import ExportResult, export_from_cli, export_onnx
from relkd.serving.runtime import OnnxStudent, expected_gain
from relkd.serving.student_loader import LoadedStudent, load_student

__all__ = [
    "ExportResult",
    "LoadedStudent",
    "OnnxStudent",
    "expected_gain",
    "export_from_cli",
    "export_onnx",
    "load_student",
]
