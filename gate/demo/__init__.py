"""``gate demo``: train a standard and a PGD-trained digit classifier and gate both with a built-in policy."""

from gate.demo.run import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
