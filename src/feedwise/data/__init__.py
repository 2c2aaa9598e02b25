"""Datasets held in memory as tensors, and transforms on them (validation split, label noise)."""

from feedwise.data.sources import Dataset, load_dataset, DATASETS
from feedwise.data.noise import add_label_noise

__all__ = ["Dataset", "load_dataset", "DATASETS", "add_label_noise"]
