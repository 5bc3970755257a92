"""Pure metric functions: arrays in, numbers out, no I/O (calibration, ...)."""
