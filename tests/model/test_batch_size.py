"""gate/model/batch_size.py: the CPU rule, the CUDA search (on a mocked probe) and the run's choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import write_policy

from gate.cli import main
from gate.model.batch_size import choose_batch_size, cpu_batch_size, cuda_batch_size, largest_power_of_two

POLICY = """
    version: 1
    name: autobatch
    samples: 120
    checks:
      - id: accuracy
        kind: accuracy
        min: 0.5
    """


@pytest.mark.parametrize(("value", "expected"), [(0.5, 1), (1, 1), (3, 2), (4, 4), (1000, 512), (4096, 4096)])
def test_largest_power_of_two(value, expected):
    assert largest_power_of_two(value) == expected


@pytest.mark.parametrize(
    ("shape", "samples", "expected"),
    [
        ((1, 8, 8), 10_000, 1024),  # tiny samples: the maximum
        ((3, 32, 32), 10_000, 256),  # 12 KiB per sample x 64 activations -> 341 -> 256
        ((3, 224, 224), 10_000, 32),  # large images: the minimum
        ((1, 8, 8), 300, 300),  # never more than the data
        ((64,), 1, 1),
    ],
)
def test_cpu_rule(shape, samples, expected):
    assert cpu_batch_size(shape, samples) == expected


def test_cpu_rule_is_a_power_of_two_within_its_range():
    for side in range(1, 300, 7):
        batch = cpu_batch_size((3, side, side), 100_000)
        assert 32 <= batch <= 1024 and batch & (batch - 1) == 0


class FakeDevice:
    """A probe for a device with ``capacity`` bytes: ``per_sample`` bytes each, OOM beyond capacity."""

    def __init__(self, per_sample: int, capacity: int, fixed: int = 0) -> None:
        self.per_sample, self.capacity, self.fixed = per_sample, capacity, fixed
        self.tried: list[int] = []

    def __call__(self, batch: int) -> int:
        self.tried.append(batch)
        used = self.fixed + batch * self.per_sample
        if used > self.capacity:
            raise torch.OutOfMemoryError(f"tried {used} bytes")
        return used


def test_cuda_search_takes_the_largest_fitting_power_of_two():
    device = FakeDevice(per_sample=1 << 20, capacity=1 << 40)
    # 10 GiB free, 70 % headroom: 7168 MiB / 1 MiB per sample -> 4096 (also the cap)
    assert cuda_batch_size(device, 10 << 30, samples=100_000) == 4096
    device = FakeDevice(per_sample=1 << 20, capacity=1 << 40)
    assert cuda_batch_size(device, 1 << 30, samples=100_000) == 512  # 716 MiB -> 512
    assert device.tried == [8, 512]


def test_cuda_search_halves_on_out_of_memory():
    # The probe under-estimates (a fixed cost appears only at large batches): OOM, then halve.
    device = FakeDevice(per_sample=1 << 20, capacity=300 << 20)
    assert cuda_batch_size(device, 1 << 30, samples=100_000) == 256
    assert device.tried == [8, 512, 256]


def test_cuda_search_refuses_a_batch_that_fits_but_leaves_no_headroom():
    device = FakeDevice(per_sample=1 << 20, capacity=1 << 40, fixed=500 << 20)
    # 8 samples use 508 MiB -> the estimate is 1024 * 0.7 * 8/508 -> 8; with the fixed cost nothing larger fits
    assert cuda_batch_size(device, 1 << 30, samples=100_000) == 8


def test_cuda_search_is_capped_by_the_data_and_survives_a_tiny_device():
    assert cuda_batch_size(FakeDevice(1 << 10, 1 << 40), 10 << 30, samples=300) == 300
    assert cuda_batch_size(FakeDevice(1 << 30, 1 << 20), 10 << 30, samples=300) == 1


def test_choose_uses_an_explicit_number_and_the_cpu_rule():
    assert (
        choose_batch_size(77, model=None, device=torch.device("cpu"), sample_shape=(1, 8, 8), samples=9) == 77
    )  # type: ignore[arg-type]
    assert choose_batch_size("auto", None, torch.device("cpu"), (3, 32, 32), 10_000) == 256  # type: ignore[arg-type]


def test_choose_on_cuda_probes_free_memory(monkeypatch):
    from gate.model import batch_size as autobatch

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 << 30, 80 << 30))
    monkeypatch.setattr(autobatch, "_cuda_probe", lambda model, device: FakeDevice(1 << 20, 1 << 40))
    assert choose_batch_size("auto", None, torch.device("cuda"), (3, 32, 32), 100_000) == 1024  # type: ignore[arg-type]


def run_check(tmp_path: Path, model: Path, data: Path, *extra: str) -> dict:
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    out = tmp_path / "report"
    args = ["check", "-p", str(policy), "-m", str(model), "-d", str(data), "-o", str(out), *extra]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return json.loads((out / "report.json").read_text())


def test_the_report_records_the_batch_size(tmp_path, digits_cnn_onnx, digits_npz):
    assert run_check(tmp_path, digits_cnn_onnx, digits_npz)["timings"]["batch_size"] == 120  # auto, capped
    assert (
        run_check(tmp_path, digits_cnn_onnx, digits_npz, "--batch-size", "50")["timings"]["batch_size"] == 50
    )


@pytest.mark.parametrize("value", ["0", "-3", "big", "1.5"])
def test_bad_batch_size_is_exit_2(tmp_path, digits_cnn_onnx, digits_npz, value):
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    args = ["check", "-p", str(policy), "-m", str(digits_cnn_onnx), "-d", str(digits_npz)]
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "r"), "--batch-size", value])
    assert result.exit_code == 2 and "--batch-size" in result.output
