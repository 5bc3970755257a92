"""Certified robustness: guarantees that no perturbation inside a ball changes a prediction.

``smoothing`` certifies the Gaussian-smoothed classifier of a model (randomized smoothing, L2); ``bounds``
(with its operator rules in ``bound_ops``) propagates an input box through the deployed ONNX graph
(interval bounds, deterministic); ``curve`` draws certified accuracy against radius. The check that gates
on them is ``gate/checks/certified.py``.
"""
