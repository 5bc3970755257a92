"""Evaluation data intake: .npz files, CSV and Parquet tables, image folders and entry points, validated and
streamed in batches."""

from gate.data.evaldata import Batch, EvalData, from_arrays, load_data
from gate.data.features import FeatureStats
from gate.data.sampling import select_indices

__all__ = ["Batch", "EvalData", "FeatureStats", "from_arrays", "load_data", "select_indices"]
