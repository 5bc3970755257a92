"""Per-sample randomness: a sample's noise depends on the run's seed and its data set index, never on
its batch or shard, which is what lets sharded and resumed runs reproduce an unsharded one.

Two forms of the same idea: ``streams`` (counter-based numbers computed on the input's device, for the
attacks and export parity) and ``generators`` (seeded CPU ``torch.Generator`` objects, for code that
draws with torch's own samplers: corruptions, SmoothGrad, max-sensitivity).
"""
