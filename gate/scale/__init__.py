"""Scaling a run: the batch size chosen for the device, and shards run as Ray tasks."""

from gate.scale.autobatch import (
    BatchProbe,
    choose_batch_size,
    cpu_batch_size,
    cuda_batch_size,
    largest_power_of_two,
)

__all__ = [
    "BatchProbe",
    "choose_batch_size",
    "cpu_batch_size",
    "cuda_batch_size",
    "largest_power_of_two",
]
