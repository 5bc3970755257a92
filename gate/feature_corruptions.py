"""Natural corruptions of tabular features, the counterpart of the image corruptions in ``corruptions.py``.

* ``feature_noise``: measurement noise. Every mutable, non-categorical feature gets Gaussian noise of
  ``FEATURE_NOISE_STD[level]`` times its scale (its standard deviation in the data, or the declared
  ``scale``); integer and ordinal features are rounded back to their values, and every feature is clipped
  to its range.
* ``missing_values``: an upstream field goes missing and the pipeline imputes it. Each mutable,
  non-categorical feature of a sample is missing with probability ``MISSING_RATE[level]`` and replaced
  by its median over the whole data set (what a median imputer fitted on that data would put in).

Immutable features are recorded facts (an age from a birth date) that neither corruption reaches, and one-hot
groups are left alone (a category is not noisy, and imputing one is a modelling choice). Features that an
equality constraint determines are recomputed afterwards, so a corrupted input still satisfies the schema's
deterministic relations. Randomness comes from one generator per sample seeded from ``(seed, index)``, as
for the image corruptions.
"""

from __future__ import annotations

import torch

from gate.attacks.feature_space import FeatureSpace
from gate.corruptions import CorruptionSpecError as CorruptionError
from gate.randomness import generators

FEATURE_NOISE_STD = (0.05, 0.1, 0.2, 0.35, 0.5)
"""Noise per level, in units of each feature's scale."""
MISSING_RATE = (0.05, 0.1, 0.2, 0.3, 0.5)
"""Share of a sample's eligible features that go missing, per level."""
FEATURE_CORRUPTIONS = ("feature_noise", "missing_values")


def _eligible(space: FeatureSpace) -> torch.Tensor:
    """Mutable features outside one-hot groups."""
    eligible = space.mutable.clone()
    for columns, _ in space.groups:
        eligible[columns] = False
    return eligible


def feature_noise(
    x: torch.Tensor, space: FeatureSpace, level: int, generator: torch.Generator
) -> torch.Tensor:
    """Gaussian measurement noise on one sample ``[1, F]`` (see the module docstring)."""
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)
    eligible = _eligible(space)
    noisy = x + torch.where(eligible, noise * FEATURE_NOISE_STD[level - 1] * space.scale, torch.zeros_like(x))
    return _back_into_space(noisy, x, space)


def missing_values(
    x: torch.Tensor, space: FeatureSpace, level: int, generator: torch.Generator
) -> torch.Tensor:
    """Median imputation of randomly missing features of one sample ``[1, F]``."""
    if space.median is None:
        raise CorruptionError("missing_values needs each feature's median; the data gave none")
    draw = torch.rand(x.shape, generator=generator, dtype=torch.float32).to(x.device)
    missing = _eligible(space) & (draw < MISSING_RATE[level - 1])
    imputed = torch.where(missing, space.median.expand_as(x), x)
    return _back_into_space(imputed, x, space)


def _back_into_space(changed: torch.Tensor, x: torch.Tensor, space: FeatureSpace) -> torch.Tensor:
    inside = torch.maximum(torch.minimum(changed, space.high), space.low)
    return space.repair(space.round_types(inside, x))


def corrupt_features(
    x: torch.Tensor, name: str, level: int, *, seed: int, index: torch.Tensor, space: FeatureSpace
) -> torch.Tensor:
    """Corrupt each row of ``x`` ``[N, F]`` with a generator seeded from ``(seed, index[i])``."""
    if name not in FEATURE_CORRUPTIONS:
        raise CorruptionError(f"unknown feature corruption {name!r}; expected one of {FEATURE_CORRUPTIONS}")
    if not 1 <= level <= 5:
        raise CorruptionError(f"corruption level must be an integer from 1 to 5; found {level!r}")
    apply = feature_noise if name == "feature_noise" else missing_values
    space = space.on(x.device)
    out = torch.empty_like(x)
    for row, sample_index in enumerate(index.tolist()):
        generator = torch.Generator().manual_seed(generators.sample_seed(seed, sample_index, stream=name))
        out[row : row + 1] = apply(x[row : row + 1], space, level, generator)
    return out


__all__ = ["FEATURE_CORRUPTIONS", "FEATURE_NOISE_STD", "MISSING_RATE", "corrupt_features"]
