"""Check kind ``corruption``: accuracy under a common corruption (Hendrycks & Dietterich 2019).

Each sample is corrupted with randomness drawn from ``(seed, sample index)``, so the number does not
depend on batching or sharding; the ONNX Runtime session scores the corrupted inputs.
"""

from __future__ import annotations

import torch

from gate.checks.base import CheckContext, CheckKind
from gate.checks.evidence import caption, feature_examples, save_example_pairs
from gate.corruptions import corrupt_batch
from gate.data.evaldata import Batch
from gate.errors import CheckError
from gate.feature_corruptions import FEATURE_CORRUPTIONS, corrupt_features
from gate.measurement import Measurement
from gate.policy.specs import CorruptionSpec


class CorruptionCheck(CheckKind[CorruptionSpec]):
    spec_type = CorruptionSpec

    def run(self, spec: CorruptionSpec, context: CheckContext) -> Measurement:
        bounds = context.policy.input.range
        examples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

        space = context.features
        if spec.corruption in FEATURE_CORRUPTIONS and space is None:
            raise CheckError(f"{spec.corruption} corrupts feature vectors [N, F]; this data has none")

        def corrupted_batch(batch: Batch, rows: torch.Tensor) -> dict[str, torch.Tensor]:
            if spec.corruption in FEATURE_CORRUPTIONS and space is not None:
                corrupted = corrupt_features(
                    batch.x, spec.corruption, spec.level, seed=context.seed, index=batch.index, space=space
                )
            else:
                corrupted = corrupt_batch(
                    batch.x, spec.corruption, spec.level, seed=context.seed, index=batch.index, bounds=bounds
                )
            predictions = context.task.predict(context.model.scores(corrupted.to(context.device))).cpu()
            if not examples:
                examples.append((batch.x, corrupted, batch.y, predictions))
            return {"correct": context.task.correct(predictions, batch.y)}

        columns = context.per_sample(
            f"{spec.id}: {spec.corruption} level {spec.level}", corrupted_batch, device="cpu"
        )
        if not columns:
            raise CheckError("the evaluation data selected no samples")
        correct = columns["correct"]
        _, labels, clean_predictions = context.clean_predictions()
        clean = context.task.correct(clean_predictions, labels).cpu()
        artifacts = []
        details: dict[str, object] = {}
        if examples and space is not None:
            x, corrupted, y, predictions = examples[0]
            pairs = [(x[i], corrupted[i], int(y[i]), int(predictions[i])) for i in range(min(4, len(x)))]
            details["examples"] = feature_examples(pairs, space)
        elif examples:
            x, corrupted, y, predictions = examples[0]
            count = min(4, len(x))
            names = context.model.class_names
            captions = [
                (f"clean: {caption(int(y), names)}", f"{spec.corruption}: {caption(int(p), names)}")
                for y, p in zip(y[:count], predictions[:count], strict=True)
            ]
            path = context.artifact_path(spec.id, "examples.png")
            artifacts.append(save_example_pairs(path, x[:count], corrupted[:count], captions, bounds))
        clean_accuracy = float(clean.float().mean())
        return Measurement.proportion(
            correct,
            details={
                "corruption": spec.corruption,
                "level": spec.level,
                "clean_accuracy": clean_accuracy,
                "accuracy_drop": clean_accuracy - float(correct.float().mean()),
                **details,
            },
            artifacts=artifacts,
            message=f"clean accuracy on the same samples: {clean_accuracy:.4g}",
        )
