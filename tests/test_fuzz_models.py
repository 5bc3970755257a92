"""Property-based: generated hostile ``.pt2`` archives never run code, never write outside the report folder
and are refused with exit 2 (tests/model/hostile_pt2.py builds them; gate/model/untrusted.py refuses them).

Each example takes one of the routes by which ``torch.export.load`` unpickles, a payload in one of the
pickle forms (protocols 0-5, or nested in a ``torch.save`` zip), and any of: the archive's top folder
renamed, junk members added, members stored instead of deflated, the payload copied into a second member.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_policy
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from model.hostile_pt2 import FAMILIES, RAW_PICKLE_ONLY, WritesAFile, clean_program, torch_saved

from gate.cli import main

# Generated archives per run; docs/reliability.md quotes these numbers.
MODEL_FILE_EXAMPLES = 20
SLOW_FACTOR = 10

POLICY = """
    version: 1
    name: hostile-models
    checks:
      - id: clean-accuracy
        kind: accuracy
        min: 0.1
    """


def fuzz(examples: int):
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )


@st.composite
def hostile_archives(draw: st.DrawFn) -> dict:
    family = draw(st.sampled_from(sorted(FAMILIES)))
    forms = ["raw pickle"] if family in RAW_PICKLE_ONLY else ["raw pickle", "torch.save zip"]
    return {
        "family": family,
        "form": draw(st.sampled_from(forms)),
        "protocol": draw(st.integers(0, pickle.HIGHEST_PROTOCOL)),
        "rename_top": draw(st.booleans()),
        "junk": draw(st.lists(st.binary(max_size=64), max_size=3)),
        "stored": draw(st.booleans()),
        "copy_payload": draw(st.booleans()),
    }


def build(spec: dict, clean: Path, folder: Path, marker: Path) -> Path:
    target = folder / "hostile.pt2"
    if spec["form"] == "raw pickle":
        payload = pickle.dumps({"x": WritesAFile(marker)}, protocol=spec["protocol"])
    else:
        payload = torch_saved({"x": WritesAFile(marker)})
    FAMILIES[spec["family"]](clean, target, payload)
    compression = zipfile.ZIP_STORED if spec["stored"] else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(target) as source:
        members = [(item.filename, source.read(item)) for item in source.infolist()]
    top = members[0][0].split("/")[0] if "/" in members[0][0] else None
    with zipfile.ZipFile(target, "w", compression) as out:
        for name, data in members:
            if spec["rename_top"] and top and name.startswith(f"{top}/"):
                name = "renamed" + name[len(top) :]
            out.writestr(name, data)
        for number, junk in enumerate(spec["junk"]):
            out.writestr(f"{top or 'extra'}/extra/junk_{number}.bin", junk)
        if spec["copy_payload"]:
            out.writestr(f"{top or 'extra'}/data/sample_inputs/copy.pt", payload)
    return target


def files_outside(root: Path, report_dir: Path) -> set[Path]:
    return {path for path in root.rglob("*") if report_dir not in path.parents and path != report_dir}


def check_hostile_archive(spec: dict, sandbox: Path) -> None:
    clean = sandbox / "clean.pt2"
    work = sandbox / f"run-{len(list(sandbox.glob('run-*')))}"
    work.mkdir()
    marker, report_dir = work / "pwned", work / "report"
    model = build(spec, clean, work, marker)
    event(f"family: {spec['family']}")
    before = files_outside(sandbox, report_dir)
    result = CliRunner().invoke(
        main,
        ["check", "-p", str(sandbox / "policy.yaml"), "-m", str(model), "-d", str(sandbox / "digits.npz"),
         "-o", str(report_dir), "--device", "cpu"],
        catch_exceptions=False,
    )  # fmt: skip
    assert "Traceback" not in result.output
    assert result.exit_code == 2, result.output
    assert not marker.exists(), "the payload ran"
    assert files_outside(sandbox, report_dir) == before, "gate wrote outside the report folder"
    assert not (report_dir / "report.json").exists()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile-models")
    clean_program(root / "clean.pt2")
    write_policy(root / "policy.yaml", POLICY)
    rng = np.random.default_rng(0)
    np.savez(root / "digits.npz", x=rng.random((8, 1, 8, 8), dtype=np.float32), y=rng.integers(0, 10, 8))
    return root


@fuzz(MODEL_FILE_EXAMPLES)
@given(spec=hostile_archives())
def test_hostile_pt2_archives_never_run_code(sandbox: Path, spec: dict) -> None:
    check_hostile_archive(spec, sandbox)


@pytest.mark.slow
@fuzz(MODEL_FILE_EXAMPLES * SLOW_FACTOR)
@given(spec=hostile_archives())
def test_hostile_pt2_archives_never_run_code_at_scale(sandbox: Path, spec: dict) -> None:
    check_hostile_archive(spec, sandbox)
