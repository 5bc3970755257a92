"""A run never ends with exit 0 unless it passed: exits from user code, stale reports, links placed in the
report folder, a timeout while loading or inside native code, a full disk (gate/runner.py, gate/cli,
gate/report/folder.py)."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import write_policy
from onnx import TensorProto, helper

from gate.cli import main

POLICY = """
    version: 1
    name: fail-closed
    checks:
      - id: clean-accuracy
        kind: accuracy
        min: 0.1
    """

ADVERSARIAL_POLICY = """
    version: 1
    name: fail-closed
    samples: 20
    checks:
      - id: clean-accuracy
        kind: accuracy
        min: 0.1
      - id: fgsm
        kind: adversarial
        attack: fgsm
        epsilon: 0.1
        min: 0.0
    """


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture()
def policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path / "policy.yaml", POLICY)


@pytest.fixture()
def user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a module into the working directory (importable, as gate makes the current directory)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        sys.modules.pop(name, None)
        return name

    return write


MODELS = """
    import sys
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, exit_on_gradient=False, exit_always=False):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
            self.exit_on_gradient, self.exit_always = exit_on_gradient, exit_always

        def forward(self, x):
            if self.exit_always or (self.exit_on_gradient and x.requires_grad):
                sys.exit(0)
            return self.net(x)

    def exits_in_forward():
        return Net(exit_always=True)

    def exits_under_attack():
        torch.manual_seed(0)
        return Net(exit_on_gradient=True)

    def exits_when_built():
        sys.exit(0)

    def raises_base_exception():
        raise BaseException("not an Exception")

    def sleeps():
        import time
        time.sleep(60)
        return Net()
"""


@pytest.mark.parametrize(
    ("model_option", "data_option", "expected"),
    [
        (None, "sys:exit", "the evaluation data's code called sys.exit"),
        ("sys:exit", None, "called sys.exit"),
        ("models:exits_when_built", None, "the model's code called sys.exit(0)"),
        ("models:exits_in_forward", None, "the model's code called sys.exit(0)"),
        ("exits_on_import:build", None, "the model's code called sys.exit(0)"),
        ("models:raises_base_exception", None, "raised BaseException: not an Exception"),
    ],
)
def test_an_exit_from_user_code_is_an_invalid_input_never_a_pass(
    tmp_path, policy, digits_npz, digits_cnn_onnx, user_code, model_option, data_option, expected
):
    user_code("models", MODELS)
    user_code("exits_on_import", "import sys\nsys.exit(0)\ndef build(): pass\n")
    model = model_option or digits_cnn_onnx
    data = data_option or digits_npz
    code, output = invoke(
        "check", "-p", policy, "-m", model, "-d", data, "-o", tmp_path / "out", "--device", "cpu"
    )
    assert code == 2, output
    assert expected in output
    assert not (tmp_path / "out" / "report.json").exists()


def test_an_exit_during_a_check_is_that_check_s_error(tmp_path, digits_split, user_code):
    import importlib

    import torch

    user_code("models", MODELS)
    # Labels the untrained model gets right, so the attack runs (and calls forward with gradients).
    x = digits_split["x_test"][:40]
    with torch.no_grad():
        y = importlib.import_module("models").exits_under_attack()(torch.from_numpy(x)).argmax(1).numpy()
    data = tmp_path / "own-labels.npz"
    np.savez(data, x=x, y=y)
    policy = write_policy(tmp_path / "policy.yaml", ADVERSARIAL_POLICY)
    out = tmp_path / "out"
    code, output = invoke(
        "check", "-p", policy, "-m", "models:exits_under_attack", "--input-shape", "1,8,8",
        "-d", data, "-o", out, "--device", "cpu",
    )  # fmt: skip
    assert code == 3, output
    report = (out / "report.json").read_text()
    assert '"verdict": "error"' in report and "called sys.exit(0)" in report


def test_a_failed_run_leaves_no_earlier_verdict_behind(tmp_path, policy, digits_npz, digits_cnn_onnx):
    out = tmp_path / "out"
    assert (
        invoke("check", "-p", policy, "-m", digits_cnn_onnx, "-d", digits_npz, "-o", out, "--device", "cpu")[
            0
        ]
        == 0
    )
    assert (out / "report.json").exists()
    code, _ = invoke(
        "check", "-p", tmp_path / "missing.yaml", "-m", digits_cnn_onnx, "-d", digits_npz, "-o", out
    )
    assert code == 2
    leftovers = {"report.json", "report.html", "summary.md", "junit.xml", "report.sarif"} & {
        p.name for p in out.iterdir()
    }
    assert not leftovers


def test_links_in_the_report_folder_are_not_written_through(tmp_path, policy, digits_npz, digits_cnn_onnx):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    for name in ("artifacts", "model"):
        (elsewhere / name).mkdir(parents=True)
    secret = elsewhere / "secret.txt"
    secret.write_text("do not touch\n")
    out.mkdir()
    (out / "artifacts").symlink_to(elsewhere / "artifacts", target_is_directory=True)
    (out / "model").symlink_to(elsewhere / "model", target_is_directory=True)
    (out / "resume-state.jsonl").symlink_to(secret)
    (out / "report.json").symlink_to(secret)
    code, output = invoke(
        "check",
        "-p",
        policy,
        "-m",
        digits_cnn_onnx,
        "-d",
        digits_npz,
        "-o",
        out,
        "--device",
        "cpu",
        "--resume",
    )
    assert code == 0, output
    assert list((elsewhere / "artifacts").iterdir()) == [] and list((elsewhere / "model").iterdir()) == []
    assert secret.read_text() == "do not touch\n"
    for name in ("artifacts", "model", "report.json"):
        assert not (out / name).is_symlink()


def test_the_timeout_covers_loading(tmp_path, policy, digits_npz, user_code):
    user_code("models", MODELS)
    start = time.monotonic()
    code, output = invoke(
        "check", "-p", policy, "-m", "models:sleeps", "--input-shape", "1,8,8",
        "-d", digits_npz, "-o", tmp_path / "out", "--device", "cpu", "--timeout", "1",
    )  # fmt: skip
    assert code == 3, output
    assert "--timeout passed while loading" in output
    assert time.monotonic() - start < 20


def looping_onnx(path: Path) -> Path:
    """Logits of a linear model, after an ONNX Loop of 10**12 additions that never returns to Python."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )  # fmt: skip
    weights = np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Loop", ["trips", "cond", "v0"], ["v"], body=body),
            helper.make_node("Flatten", ["x"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["scores"]),
            helper.make_node("Mul", ["v", "zero"], ["nothing"]),
            helper.make_node("Add", ["scores", "nothing"], ["logits"]),
        ],
        "looping",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
        [
            helper.make_tensor("trips", TensorProto.INT64, [], [10**12]),
            helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
            helper.make_tensor("v0", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("w", TensorProto.FLOAT, [64, 10], weights.ravel()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_run_stuck_in_native_code_ends_at_the_timeout(tmp_path, policy, digits_npz):
    """No Python timer interrupts ONNX Runtime inside a Loop; the watchdog ends the process (exit 3)."""
    model = looping_onnx(tmp_path / "loop.onnx")
    command = [
        sys.executable, "-c", "from gate.cli import main; main()", "check", "-p", str(policy), "-m", str(model),
        "-d", str(digits_npz), "-o", str(tmp_path / "out"), "--device", "cpu", "--timeout", "1",
    ]  # fmt: skip
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 3, result.stderr
    assert "stuck in a call that cannot be interrupted" in result.stderr
    assert time.monotonic() - start < 60
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_full_disk_leaves_no_partial_report_and_says_so(
    tmp_path, policy, digits_npz, digits_cnn_onnx, monkeypatch
):
    import gate.report as report_module
    from gate.report.folder import report_files

    names = {path.name for path in report_files(tmp_path)}
    written: list[Path] = []
    real_write = report_module.write_atomic

    def fills_up(path: Path, text: str) -> None:
        if path.name in names and len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, text)
        if path.name in names:
            written.append(path)

    monkeypatch.setattr(report_module, "write_atomic", fills_up)
    out = tmp_path / "out"
    code, output = invoke(
        "check", "-p", policy, "-m", digits_cnn_onnx, "-d", digits_npz, "-o", out, "--device", "cpu"
    )
    assert code == 3
    assert "disk full" in output and "internal error" not in output
    assert len(written) == 2 and not any(path.exists() for path in written)
    assert not (out / "report.json").exists()


def test_a_factory_without_weights_is_flagged_and_a_policy_can_refuse_it(tmp_path, digits_npz, user_code):
    user_code(
        "plain_models",
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n",
    )
    common = ("-m", "plain_models:build", "--input-shape", "1,8,8", "-d", digits_npz, "--device", "cpu")
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    result = CliRunner().invoke(
        main, ["check", "-p", str(policy), *map(str, common), "-o", str(tmp_path / "a")]
    )
    assert (
        "warning: The factory plain_models:build was evaluated with the weights it builds itself"
        in result.output
    )
    report = (tmp_path / "a" / "report.json").read_text()
    assert "weights it builds itself" in report  # model.notes
    strict = write_policy(
        tmp_path / "strict.yaml",
        POLICY.replace("name: fail-closed", "name: strict\n    require_weights: true"),
    )
    code, output = invoke("check", "-p", strict, *common, "-o", tmp_path / "b")
    assert code == 2 and "the policy requires weights (require_weights)" in output
    assert not (tmp_path / "b" / "report.json").exists()
