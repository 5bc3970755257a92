"""Check kind ``corruption``: accuracy under a common corruption (Hendrycks & Dietterich 2019).

Each sample is corrupted with randomness drawn from ``(seed, sample index)``, so the number does not
depend on batching or sharding; the ONNX Runtime session scores the corrupted inputs.
"""

from __future__ import annotations

import torch

from gate.checks.base import CheckContext, CheckKind
from gate.checks.evidence import caption, save_example_pairs
from gate.corruptions import corrupt_batch
from gate.measurement import Measurement
from gate.policy.checks import CorruptionSpec


class CorruptionCheck(CheckKind[CorruptionSpec]):
    spec_type = CorruptionSpec

    def run(self, spec: CorruptionSpec, context: CheckContext) -> Measurement:
        bounds = context.policy.input.range
        correct_parts = []
        examples: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        with context.progress.task(
            f"{spec.id}: {spec.corruption} level {spec.level}", len(context.data)
        ) as progress:
            for batch in context.data.batches(context.batch_size, "cpu"):
                context.check_deadline()
                corrupted = corrupt_batch(
                    batch.x, spec.corruption, spec.level, seed=context.seed, index=batch.index, bounds=bounds
                )
                predictions = context.model.scores(corrupted.to(context.device)).argmax(1).cpu()
                correct_parts.append(predictions == batch.y)
                if examples is None:
                    examples = (batch.x, corrupted, batch.y, predictions)
                progress.advance(len(batch))
        correct = torch.cat(correct_parts)
        _, labels, clean_predictions = context.clean_predictions()
        clean = (clean_predictions == labels).cpu()
        artifacts = []
        if examples is not None:
            count = min(4, len(examples[0]))
            names = context.model.class_names
            captions = [
                (f"clean: {caption(int(y), names)}", f"{spec.corruption}: {caption(int(p), names)}")
                for y, p in zip(examples[2][:count], examples[3][:count], strict=True)
            ]
            path = context.artifact_path(spec.id, "examples.png")
            artifacts.append(
                save_example_pairs(path, examples[0][:count], examples[1][:count], captions, bounds)
            )
        clean_accuracy = float(clean.float().mean())
        return Measurement.proportion(
            correct,
            details={
                "corruption": spec.corruption,
                "level": spec.level,
                "clean_accuracy": clean_accuracy,
                "accuracy_drop": clean_accuracy - float(correct.float().mean()),
            },
            artifacts=artifacts,
            message=f"clean accuracy on the same samples: {clean_accuracy:.4g}",
        )
