"""The ``background`` check: the variants keep the object and swap the background exactly, partners do not
depend on batching or sharding, a background-reading model fails from the CLI and a mixed-background model
passes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_policy

from gate.cli import main
from gate.data.sampling import select_indices
from gate.metrics.background import choose_partners, next_classes, only_bg, only_fg, paste
from gate.model import export_to_onnx

from .background_models import evaluation_data, trained_cnn

# gap and only_bg share one scoring of the variants (same fill and examples); mixed_rand scores its own
SAME_SCORING = """
    version: 1
    name: background
    checks:
      - {id: gap, kind: background, metric: bg_gap, max: 0.3, examples: 3}
      - {id: only_bg, kind: background, metric: only_bg_accuracy, max: 0.6, examples: 3}
"""
POLICY = (
    SAME_SCORING
    + """\
      - {id: mixed_rand, kind: background, metric: mixed_rand_accuracy, min: 0.7, fill: blur, examples: 0}
"""
)


def gate_cli(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def report_checks(report_dir: Path) -> dict[str, dict]:
    report = json.loads((report_dir / "report.json").read_text())
    return {check["id"]: check for check in report["checks"]}


@pytest.fixture(scope="module")
def background_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("background") / "eval.npz"
    np.savez(path, **evaluation_data())
    return path


@pytest.fixture(scope="module")
def models_onnx(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("background_models")
    paths = {}
    for reads in ("background", "shape"):
        paths[reads] = folder / f"{reads}.onnx"
        model = trained_cnn(reads)
        # the TorchScript exporter takes 0.1 s where dynamo takes seconds; the check reads the same graph
        export_to_onnx(model, torch.zeros(2, 3, 16, 16), paths[reads], exporter="torchscript")
    return paths


def random_masks(n: int, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=generator)
    mask = (torch.rand(n, size, size, generator=generator) < 0.4).float()
    return x, mask


@pytest.mark.parametrize("fill", ["black", "blur"])
def test_mixed_keeps_the_object_and_takes_the_partners_background(fill):
    x, mask = random_masks(6)
    partner_x, partner_mask = random_masks(6, seed=1)
    background = only_bg(partner_x, partner_mask, fill, black=-0.5)
    mixed = paste(x, mask, background)
    on_object = mask.bool().unsqueeze(1).expand_as(x)
    assert torch.equal(mixed[on_object], x[on_object])
    assert torch.equal(mixed[~on_object], background[~on_object])
    partner_background = ~partner_mask.bool().unsqueeze(1).expand_as(x)
    assert torch.equal(background[partner_background], partner_x[partner_background])


@pytest.mark.parametrize(("fill", "size"), [("black", 8), ("blur", 8), ("blur", 48)])  # 48: blurred small
def test_a_removed_region_leaves_nothing_of_itself(fill, size):
    x, mask = random_masks(4, size)
    on_object = mask.bool().unsqueeze(1).expand_as(x)
    other = torch.where(on_object, torch.rand_like(x), x)  # the same background, another object
    assert torch.allclose(only_bg(x, mask, fill), only_bg(other, mask, fill), atol=1e-6)
    swapped = torch.where(on_object, x, torch.rand_like(x))  # the same object, another background
    assert torch.allclose(only_fg(x, mask, fill), only_fg(swapped, mask, fill), atol=1e-6)
    removed = only_bg(x, mask, fill)[on_object]
    if fill == "black":
        assert torch.all(only_bg(x, mask, fill, black=-1.0)[on_object] == -1.0)
    else:  # filled from the surroundings: inside the range of the kept pixels
        assert removed.min() >= x[~on_object].min() - 1e-6 and removed.max() <= x[~on_object].max() + 1e-6


def test_partners_follow_their_relation():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    index = torch.arange(len(labels)) * 10
    pool_index, pool_labels = index.numpy(), labels.numpy()
    by_index = dict(zip(pool_index.tolist(), pool_labels.tolist(), strict=True))
    for seed in range(5):
        same = choose_partners(index, labels, pool_index, pool_labels, "same", seed=seed)
        rand = choose_partners(index, labels, pool_index, pool_labels, "rand", seed=seed)
        following = choose_partners(index, labels, pool_index, pool_labels, "next", seed=seed)
        for row, label in enumerate(labels.tolist()):
            assert by_index[int(same[row])] == label
            assert int(same[row]) != int(index[row]) or label == 3  # class 3 has no other sample
            assert by_index[int(rand[row])] != label
            assert by_index[int(following[row])] == (label + 1) % 4
    assert next_classes([4, 0, 2]) == {0: 2, 2: 4, 4: 0}
    with pytest.raises(ValueError, match="at least two classes"):
        choose_partners(index[:2], labels[:2], pool_index[:2], pool_labels[:2], "rand", seed=0)


def test_partners_do_not_depend_on_batch_or_shard():
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 4, 200))
    pool = select_indices(200, samples=120, seed=3, shard=None)
    pool_labels = labels[pool].numpy()
    whole = choose_partners(torch.from_numpy(pool), labels[pool], pool, pool_labels, "rand", seed=7)
    for batch_size in (1, 7, 64):
        parts = [
            choose_partners(torch.from_numpy(chunk), labels[chunk], pool, pool_labels, "rand", seed=7)
            for chunk in np.array_split(pool, range(batch_size, len(pool), batch_size))
        ]
        assert np.array_equal(np.concatenate(parts), whole)
    for k in (1, 2, 3):
        shard = select_indices(200, samples=120, seed=3, shard=(k, 3))
        mine = choose_partners(torch.from_numpy(shard), labels[shard], pool, pool_labels, "rand", seed=7)
        assert np.array_equal(mine, whole[np.searchsorted(pool, shard)])
    other_seed = choose_partners(torch.from_numpy(pool), labels[pool], pool, pool_labels, "rand", seed=8)
    assert not np.array_equal(other_seed, whole)


def test_a_background_reader_fails_and_a_mixed_background_model_passes(tmp_path, background_npz, models_onnx):
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    codes, checks = {}, {}
    for reads, model in models_onnx.items():
        codes[reads], output = gate_cli("check", "-p", policy, "-m", model, "-d", background_npz,
                                        "-o", tmp_path / reads)  # fmt: skip
        checks[reads] = report_checks(tmp_path / reads)
    assert codes == {"background": 1, "shape": 0}, output
    hans, shape = checks["background"], checks["shape"]
    assert {c["status"] for c in hans.values()} == {"fail"}
    assert {c["status"] for c in shape.values()} == {"pass"}
    gap = hans["gap"]
    assert gap["metric"] == "bg_gap" and gap["n"] == 150 and gap["value"] > 0.9
    assert gap["interval"]["lower"] <= gap["value"] <= gap["interval"]["upper"]
    details = gap["details"]
    assert details["bg_gap"] == pytest.approx(details["mixed_same_accuracy"] - details["mixed_rand_accuracy"])
    assert details["clean_accuracy"] > 0.95 and details["only_bg_accuracy"] > 0.9
    assert details["mixed_next_accuracy"] < 0.1 and details["only_fg_accuracy"] < 0.6
    assert shape["gap"]["value"] < 0.1 and shape["mixed_rand"]["details"]["fill"] == "blur"
    assert shape["mixed_rand"]["value"] > 0.9 and shape["only_bg"]["value"] < 0.6
    assert gap["artifacts"] == ["artifacts/gap/examples.png"] and hans["mixed_rand"]["artifacts"] == []
    assert hans["only_bg"]["artifacts"] == ["artifacts/only_bg/examples.png"]  # scored once, with gap
    assert (tmp_path / "background" / gap["artifacts"][0]).read_bytes().startswith(b"\x89PNG")
    html = (tmp_path / "background" / "report.html").read_text()
    assert "examples.png" in html and "data:image/png;base64," in html


def test_shards_and_batch_sizes_give_the_unsharded_result(tmp_path, background_npz, models_onnx):
    policy = write_policy(tmp_path / "policy.yaml", SAME_SCORING)
    common = ["check", "-p", policy, "-m", models_onnx["background"], "-d", background_npz, "--samples", "60"]
    gate_cli(*common, "-o", tmp_path / "full")
    gate_cli(*common, "-o", tmp_path / "small", "--batch-size", "7")
    for k in (1, 2):
        gate_cli(*common, "-o", tmp_path / f"s{k}", "--shard", f"{k}/2")
    code, output = gate_cli("merge", tmp_path / "s1", tmp_path / "s2", "--report-dir", tmp_path / "merged")
    assert code == 1, output
    full = report_checks(tmp_path / "full")
    for other in ("small", "merged"):
        for check_id, result in report_checks(tmp_path / other).items():
            for key in ("status", "value", "interval", "n", "successes"):
                assert result[key] == full[check_id][key], (other, check_id, key)


def test_data_without_a_mask_is_an_error_that_says_so(tmp_path, models_onnx):
    data = evaluation_data(30)
    path = tmp_path / "no_mask.npz"
    np.savez(path, x=data["x"], y=data["y"])
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    code, output = gate_cli(
        "check", "-p", policy, "-m", models_onnx["shape"], "-d", path, "-o", tmp_path / "r"
    )
    assert code == 3, output
    checks = report_checks(tmp_path / "r")
    assert {c["status"] for c in checks.values()} == {"error"}
    assert "background needs mask in the data (1 on the object)" in checks["gap"]["message"]
