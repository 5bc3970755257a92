"""Certified robustness: guarantees that no perturbation inside a ball changes a prediction.

``smoothing`` certifies the Gaussian-smoothed classifier of a model (randomized smoothing, L2); ``curve``
draws certified accuracy against radius.
"""
