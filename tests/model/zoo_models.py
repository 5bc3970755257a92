"""Zoo architectures as ``zoo_models:NAME`` factories, and what it takes to gate one end to end.

Shared by ``tests/model/test_zoo.py`` and ``benchmarks/bench_zoo.py``. Every model is randomly
initialised (seeded, no weights are downloaded) at a small input size and a few classes; ``gate check``
exports it, and the helpers here write the data and the policy, read the report back and recompute
gate's clean accuracy with ONNX Runtime alone.
"""

from __future__ import annotations

import importlib
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from torchvision_shim import import_torchvision, import_torchvision_if_installed

CLASSES = 4


@dataclass(frozen=True)
class ZooModel:
    """One architecture: where it comes from and the per-sample input it is gated on."""

    name: str
    library: str  # torchvision, timm or transformers: the distribution the factory needs
    input_shape: tuple[int, int, int]

    @property
    def source(self) -> str:
        return f"zoo_models:{self.name}"


SMALL = (3, 32, 32)


def calibrated(model: nn.Module, input_shape: tuple[int, ...] = SMALL) -> nn.Module:
    """``model`` in eval mode with batch-norm statistics measured on one seeded batch of random images.

    Freshly initialised running statistics (mean 0, variance 1) do not match what the layers compute, and
    in deep networks (MobileNetV3, EfficientNet) the activations then fade until every logit is 0: a
    constant model whose outputs gate reads as probabilities. Measured statistics keep each layer's
    output at unit scale, as training would.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        momenta = [norm.momentum for norm in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: one batch sets the statistics exactly
        model.eval()  # dropout and stochastic depth stay off: only the statistics are measured
        for norm in norms:
            norm.train()
        batch = torch.rand(16, *input_shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            model(batch)
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
    return model.eval()


def _torchvision(arch: str, **options: object) -> nn.Module:
    torch.manual_seed(0)
    models = import_torchvision().models
    return calibrated(getattr(models, arch)(num_classes=CLASSES, **options))


def _timm(arch: str, **options: object) -> nn.Module:
    import_torchvision()  # timm imports torchvision
    timm = importlib.import_module("timm")
    torch.manual_seed(0)
    return calibrated(timm.create_model(arch, pretrained=False, num_classes=CLASSES, **options))


def tv_resnet18() -> nn.Module:
    return _torchvision("resnet18")


def tv_mobilenet_v3_small() -> nn.Module:
    return _torchvision("mobilenet_v3_small")


def tv_efficientnet_b0() -> nn.Module:
    return _torchvision("efficientnet_b0")


def tv_densenet121() -> nn.Module:
    return _torchvision("densenet121")


def tv_regnet_y_400mf() -> nn.Module:
    return _torchvision("regnet_y_400mf")


def tv_vgg11_bn() -> nn.Module:
    return _torchvision("vgg11_bn")


def tv_shufflenet_v2_x0_5() -> nn.Module:
    return _torchvision("shufflenet_v2_x0_5")


def timm_deit_tiny() -> nn.Module:
    return _timm("deit_tiny_patch16_224", img_size=32)


def timm_convnext_atto() -> nn.Module:
    return _timm("convnext_atto")


def timm_efficientnet_b0() -> nn.Module:
    return _timm("efficientnet_b0")


def hf_vit_tiny() -> nn.Module:
    """A Hugging Face ``ViTForImageClassification`` from a config: 3x32x32, patch 8, 2 layers, width 64."""
    import_torchvision_if_installed()  # transformers imports an installed torchvision
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=CLASSES,
    )
    return ViTForImageClassification(config).eval()


ZOO = {
    model.name: model
    for model in [
        ZooModel("tv_resnet18", "torchvision", SMALL),
        ZooModel("tv_mobilenet_v3_small", "torchvision", SMALL),
        ZooModel("tv_efficientnet_b0", "torchvision", SMALL),
        ZooModel("tv_densenet121", "torchvision", SMALL),
        ZooModel("tv_regnet_y_400mf", "torchvision", SMALL),
        ZooModel("tv_vgg11_bn", "torchvision", SMALL),
        ZooModel("tv_shufflenet_v2_x0_5", "torchvision", SMALL),
        ZooModel("timm_deit_tiny", "timm", SMALL),
        ZooModel("timm_convnext_atto", "timm", SMALL),
        ZooModel("timm_efficientnet_b0", "timm", SMALL),
        ZooModel("hf_vit_tiny", "transformers", SMALL),
    ]
}

POLICY = """\
version: 1
name: zoo-{name}
samples: {samples}
seed: 0
checks:
  - id: clean-accuracy
    kind: accuracy
    min: 0.0
  - id: parity
    kind: export_parity
    min: 0.7
  - id: pgd
    kind: adversarial
    attack: pgd
    norm: linf
    epsilon: 0.01
    steps: {pgd_steps}
    min: 0.0
  - id: saliency
    kind: attribution
    method: saliency
    metric: roi_mass
    min: 0.0
    examples: 0
"""


def write_inputs(folder: Path, model: ZooModel, *, samples: int = 16, pgd_steps: int = 3) -> dict[str, Path]:
    """Random images in [0, 1], random labels and a box mask (``data.npz``), and the zoo policy."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    channels, height, width = model.input_shape
    x = rng.random((samples, channels, height, width), dtype=np.float32)
    y = rng.integers(0, CLASSES, samples).astype(np.int64)
    mask = np.zeros((samples, height, width), dtype=np.float32)
    mask[:, height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1.0
    data = folder / "data.npz"
    np.savez(data, x=x, y=y, mask=mask)
    policy = folder / "policy.yaml"
    text = POLICY.format(name=model.name.replace("_", "-"), samples=samples, pgd_steps=pgd_steps)
    policy.write_text(textwrap.dedent(text), encoding="utf-8")
    return {"data": data, "policy": policy}


def check_arguments(model: ZooModel, inputs: dict[str, Path], report_dir: Path) -> list[str]:
    """``gate check`` arguments for ``model`` on ``inputs``, reports into ``report_dir`` (on the CPU)."""
    return [
        "check",
        "--model", model.source,
        "--data", str(inputs["data"]),
        "--policy", str(inputs["policy"]),
        "--report-dir", str(report_dir),
        "--device", "cpu",
        "--quiet",
    ]  # fmt: skip


def session_accuracy(onnx_path: Path, data: Path) -> float:
    """Top-1 accuracy of the exported file on the whole ``.npz``, computed with ONNX Runtime alone."""
    with np.load(data) as arrays:
        x, y = arrays["x"], arrays["y"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = session.run(None, {name: x})[0]
    return float((logits.argmax(axis=1) == y).mean())


def twin_difference(onnx_path: Path, data: Path) -> float:
    """max |twin − session| of gate's PyTorch twin of the exported file on the ``.npz`` inputs.

    Raises:
        gate.errors.ModelError: the graph has an op the twin lacks.
    """
    import onnx

    from gate.model.twin import build_twin

    with np.load(data) as arrays:
        x = arrays["x"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    reference = session.run(None, {session.get_inputs()[0].name: x})[0]
    twin = build_twin(onnx.load(str(onnx_path)))
    with torch.no_grad():
        out = twin(torch.from_numpy(x)).numpy()
    return float(np.abs(out - reference).max())
