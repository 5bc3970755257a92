"""``gate demo``: train a standard and a PGD-trained digit classifier and gate both with a built-in policy;
``gate demo --tabular``: a random forest and an MLP on breast cancer under a constrained feature schema;
``gate demo --certified``: a standard and a noise-trained digit classifier under randomized smoothing."""

from gate.demo.run import DemoResult, run_certified_demo, run_demo, run_tabular_demo

__all__ = ["DemoResult", "run_certified_demo", "run_demo", "run_tabular_demo"]
