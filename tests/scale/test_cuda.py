"""On a CUDA device: the measured batch-size search, pinned host-to-device batches and a whole auto-batched run.

``--device auto`` rather than ``cuda``: torch runs on the GPU, and ONNX Runtime too where onnxruntime-gpu
works (a CPU-only onnxruntime would make ``cuda`` a usage error).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_policy

from gate.cli import main
from gate.data import from_arrays
from gate.model import ModelSpec, load_model
from gate.model.batch_size import choose_batch_size

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA = torch.device("cuda")


def test_measured_batch_size_fits_and_runs(tmp_path, digits_cnn_onnx):
    model = load_model(ModelSpec(source=str(digits_cnn_onnx), device="auto"), work_dir=tmp_path)
    chosen = choose_batch_size("auto", model, CUDA, (1, 8, 8), samples=100_000)
    assert 8 <= chosen <= 4096 and chosen & (chosen - 1) == 0
    assert choose_batch_size("auto", model, CUDA, (1, 8, 8), samples=300) <= 300
    x = torch.rand((chosen, 1, 8, 8), device=CUDA, requires_grad=True)
    module = model.require_gradient_model()
    module(x).sum().backward()
    assert model.scores(x.detach()).shape == (chosen, 10)


def test_pinned_batches_equal_the_host_data():
    x = np.random.default_rng(0).uniform(size=(50, 1, 8, 8)).astype(np.float32)
    y = np.arange(50) % 10
    data = from_arrays(x, y)
    for batch in data.batches(16, CUDA):
        assert batch.x.is_cuda and batch.y.is_cuda
        torch.testing.assert_close(batch.x.cpu(), torch.from_numpy(x[batch.index.cpu().numpy()]))


def test_auto_batch_run_on_cuda_records_its_batch_size(tmp_path, digits_cnn_onnx, digits_npz):
    policy = write_policy(
        tmp_path / "policy.yaml",
        """
        version: 1
        name: cuda-auto
        checks:
          - id: accuracy
            kind: accuracy
            min: 0.5
          - id: pgd
            kind: adversarial
            attack: pgd
            epsilon: 0.1
            steps: 5
            min: 0.0
        """,
    )
    out = tmp_path / "report"
    args = ["check", "-p", str(policy), "-m", str(digits_cnn_onnx), "-d", str(digits_npz), "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--device", "auto"], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    report = json.loads((out / "report.json").read_text())
    assert report["environment"]["device"].startswith("cuda")
    assert 1 <= report["timings"]["batch_size"] <= 297
