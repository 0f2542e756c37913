"""The canonical relevance dataset: schema, label schemes, manifest, readers and writers."""

from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import LABEL_SCHEMES, LabelScheme, get_label_scheme

__all__ = ["LABEL_SCHEMES", "CanonicalDataset", "LabelScheme", "get_label_scheme"]
