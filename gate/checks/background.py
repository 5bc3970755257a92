"""Check kind ``background``: does the model read the object or its background? (Xiao et al. 2020)

Every sample is scored under the five variants of the Backgrounds Challenge (gate/metrics/background.py):
the object alone, the background alone, and the object on the background of another image of the same
class, of a random other class and of the next class. A model that decides by the object keeps its
accuracy when the background changes; ``bg_gap`` = accuracy(mixed_same) - accuracy(mixed_rand) measures
how much it loses, as the mean of the paired per-sample differences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gate.checks.base import CheckContext, CheckKind, Columns
from gate.checks.evidence import caption, to_tile
from gate.data.evaldata import Batch
from gate.errors import CheckError
from gate.figures import save_image, tile_grid
from gate.measurement import Measurement
from gate.metrics.background import RELATIONS, VARIANTS, choose_partners, only_bg, only_fg, paste
from gate.policy.specs import BackgroundSpec

MISSING_MASK = "background needs mask in the data (1 on the object)"
EXAMPLE_COLUMNS = ("original", "mixed_rand", "only_bg")


@dataclass
class _Examples:
    """The first ``wanted`` samples' images and predictions, for the evidence grid."""

    wanted: int
    images: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    rows: list[tuple[int, ...]] = field(default_factory=list)  # label, then one prediction per column

    def add(
        self, batch: Batch, images: dict[str, torch.Tensor], predictions: dict[str, torch.Tensor]
    ) -> None:
        for row in range(min(len(batch), self.wanted - len(self.images))):
            self.images.append(tuple(images[name][row].cpu() for name in EXAMPLE_COLUMNS))
            self.rows.append((int(batch.y[row]), *(int(predictions[name][row]) for name in EXAMPLE_COLUMNS)))


class BackgroundCheck(CheckKind[BackgroundSpec]):
    spec_type = BackgroundSpec

    def run(self, spec: BackgroundSpec, context: CheckContext) -> Measurement:
        if context.features is not None or len(context.data.sample_shape) != 3:
            shape = context.data.sample_shape
            raise CheckError(f"background needs images [N, C, H, W]; this data's samples have shape {shape}")
        if not context.data.has_mask:
            raise CheckError(MISSING_MASK)
        key = f"background:{spec.fill}:{spec.examples}"  # checks differing only in metric score once
        if key not in context.cache:
            context.cache[key] = _score_variants(spec, context)
        columns, examples = context.cache[key]
        _, labels, clean_predictions = context.clean_predictions()
        clean_accuracy = float(context.task.correct(clean_predictions, labels).float().mean())
        accuracy = {name: float(columns[name].float().mean()) for name in VARIANTS}
        gap = accuracy["mixed_same"] - accuracy["mixed_rand"]
        details: dict[str, object] = {
            "fill": spec.fill,
            "clean_accuracy": clean_accuracy,
            **{f"{name}_accuracy": value for name, value in accuracy.items()},
            "bg_gap": gap,
        }
        artifacts = _save_examples(spec, context, examples) if examples.images else []
        message = (
            f"mixed_same {accuracy['mixed_same']:.3g}, mixed_rand {accuracy['mixed_rand']:.3g} "
            f"(gap {gap:.3g}), only_bg {accuracy['only_bg']:.3g}, clean {clean_accuracy:.3g}"
        )
        extra = {"details": details, "artifacts": artifacts, "message": message}
        if spec.metric == "bg_gap":
            paired = columns["mixed_same"].to(torch.int8) - columns["mixed_rand"].to(torch.int8)
            return Measurement.mean_of(paired, **extra)
        return Measurement.proportion(columns[spec.metric.removesuffix("_accuracy")], **extra)


def _score_variants(spec: BackgroundSpec, context: CheckContext) -> tuple[Columns, _Examples]:
    """Whether each sample is still classified correctly under each variant, and the first examples."""
    pool = context.full_selection if context.full_selection is not None else context.data.selected
    pool_labels = context.data.with_selection(pool).labels()
    black = float(context.policy.input.range[0])
    examples = _Examples(spec.examples)
    _, _, clean_predictions = context.clean_predictions()

    def variant_batch(batch: Batch, rows: torch.Tensor) -> Columns:
        if batch.mask is None:
            raise CheckError(MISSING_MASK)
        images = {
            "only_fg": only_fg(batch.x, batch.mask, spec.fill, black),
            "only_bg": only_bg(batch.x, batch.mask, spec.fill, black),
        }
        try:
            partners = [
                choose_partners(batch.index, batch.y, pool, pool_labels, relation, seed=context.seed)
                for relation in RELATIONS
            ]
        except ValueError as error:
            raise CheckError(str(error)) from None
        # one read and one fill for the three relations' partners (a partner often serves several)
        backgrounds = _partner_backgrounds(context, np.concatenate(partners), spec, black, batch.x.device)
        for relation, background in zip(RELATIONS, backgrounds.split(len(batch)), strict=True):
            images[f"mixed_{relation}"] = paste(batch.x, batch.mask, background)
        predictions = {
            name: context.task.predict(context.model.scores(image.to(context.device))).cpu()
            for name, image in images.items()
        }
        if len(examples.images) < examples.wanted:
            images["original"], predictions["original"] = batch.x, clean_predictions[rows]
            examples.add(batch, images, predictions)
        labels = batch.y.cpu()
        return {name: context.task.correct(predictions[name], labels) for name in VARIANTS}

    columns = context.per_sample(f"{spec.id}: background variants", variant_batch)
    if not columns:
        raise CheckError("the evaluation data selected no samples")
    return columns, examples


def _partner_backgrounds(
    context: CheckContext, partners: np.ndarray, spec: BackgroundSpec, black: float, device: torch.device
) -> torch.Tensor:
    """Each partner's background (its image with its own object removed), in the order of ``partners``."""
    unique, position = np.unique(partners, return_inverse=True)
    (batch,) = context.data.with_selection(unique).batches(len(unique), device)
    if batch.mask is None:
        raise CheckError(MISSING_MASK)
    return only_bg(batch.x, batch.mask, spec.fill, black)[torch.from_numpy(position).to(device)]


def _save_examples(spec: BackgroundSpec, context: CheckContext, examples: _Examples) -> list[Path]:
    """The evidence grid: original | mixed_rand | only_bg, each tile captioned "label / prediction"."""
    names = context.model.class_names
    captions = [[f"{caption(row[0], names)} / {caption(p, names)}" for p in row[1:]] for row in examples.rows]
    path = context.artifact_path(spec.id, "examples.png")
    return [save_example_grid(path, examples.images, captions, context.policy.input.range)]


def save_example_grid(
    path: Path,
    images: Sequence[Sequence[torch.Tensor]],
    captions: Sequence[Sequence[str]],
    bounds: tuple[float, float],
    *,
    titles: Sequence[str] = EXAMPLE_COLUMNS,
) -> Path:
    """A grid with one row per example and one titled column per variant, each tile captioned; tiles
    upscaled to :data:`gate.checks.evidence.TILE`, text at a reading size, the captions in the PNG's
    ``Description``."""
    tiles = [[to_tile(image, bounds) for image in row] for row in images]
    sheet = tile_grid(tiles, captions=captions, column_titles=titles)
    described = "\n".join(" | ".join(row) for row in captions)
    return save_image(sheet, path, text={"Title": " | ".join(titles), "Description": described})
