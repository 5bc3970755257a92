"""Tests of gate/certify: randomized smoothing and the certified-accuracy curve."""
