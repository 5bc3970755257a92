"""``gate demo``: train a standard and a PGD-trained digit classifier and gate both with a built-in policy;
``gate demo --tabular``: a random forest and an MLP on breast cancer under a constrained feature schema."""

from gate.demo.run import DemoResult, run_demo, run_tabular_demo

__all__ = ["DemoResult", "run_demo", "run_tabular_demo"]
