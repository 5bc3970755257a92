"""Scaling a run out: shards run as Ray tasks, each one a whole gate run (``gate/runner.py``) on part of
the data. The batch size a single run chooses for its device is the model layer's (``gate/model/batch_size.py``)."""
