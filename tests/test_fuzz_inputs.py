"""Property-based tests: generated data files and broken model files never crash ``gate check``.

Data: NaN/inf pixels, wrong dtypes, empty arrays, mismatched lengths, out-of-range values, object arrays,
bad labels and masks, missing keys, truncated or random files. Models: truncated ONNX, random bytes named
.onnx, flipped bytes, a sequence output, outputs of the wrong rank, factories that raise. Each run ends
with exit 0, 1 or 2 (3 only as a clean ``error`` verdict), never a traceback, and a refusal names the file.
"""

from __future__ import annotations

import itertools
import os
import struct
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from onnx import TensorProto, helper
from PIL import Image, ImageFile
from torch import nn

from gate.cli import main
from gate.report.model import Report

# Hypothesis imports libcst to suggest @example patches for a failure; under warnings-as-errors its
# deprecation warning would replace the failure report with an INTERNALERROR.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

# Generated inputs per test; docs/reliability.md quotes these numbers.
DATA_EXAMPLES = 60
IMAGE_EXAMPLES = 30
MODEL_EXAMPLES = 25
SLOW_FACTOR = 10

FUZZ = settings(
    max_examples=DATA_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

POLICY = """
    version: 1
    name: inputs
    checks:
      - id: clean-accuracy
        kind: accuracy
        min: 0.05
    """


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class _Counter:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.numbers = itertools.count()

    def path(self, name: str) -> Path:
        folder = self.folder / str(next(self.numbers))
        folder.mkdir()
        return folder / name


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from gate.model import export_to_onnx

    folder = tmp_path_factory.mktemp("fuzz-inputs")
    model = folder / "tiny.onnx"
    export_to_onnx(_Tiny(), torch.rand(2, 1, 8, 8), model)
    data = folder / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((32, 1, 8, 8), dtype=np.float32), y=rng.integers(0, 10, 32))
    policy = folder / "policy.yaml"
    policy.write_text(textwrap.dedent(POLICY).lstrip())
    return {"model": model, "data": data, "policy": policy, "files": _Counter(folder)}


def gate_check(
    setup: dict,
    *,
    model: str | Path | None = None,
    data: Path | None = None,
    args: list[str] | tuple[str, ...] = (),
) -> tuple[int, str, Path]:
    report_dir = setup["files"].path("report")
    command = [
        "check", "-p", setup["policy"], "-m", model or setup["model"], "-d", data or setup["data"],
        "-o", report_dir, "--device", "cpu", "--timeout", "60", *args,
    ]  # fmt: skip
    result = CliRunner().invoke(main, [str(a) for a in command])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if currently_in_test_context():
        event(f"exit {result.exit_code}")
    return result.exit_code, result.output, report_dir


def assert_clean(code: int, output: str, report_dir: Path, culprit: str | Path) -> None:
    assert "Traceback" not in output and "internal error" not in output, output
    assert code in (0, 1, 2, 3), output
    if code == 2 and "input shape mismatch" in output:  # data and model disagree: named from the model's side
        assert "the evaluation data is" in output, output
    elif code == 2:
        assert str(culprit) in output, output
    else:  # 0/1, or 3 only as a clean error verdict with the reason in the report
        report = Report.model_validate_json((report_dir / "report.json").read_text())
        assert report.exit_code == code
        if code == 3:
            assert report.verdict == "error" and all(c.message for c in report.checks if c.status == "error")


# --------------------------------------------------------------------- data files
X_SHAPES = [(1, 8, 8), (64,), (8, 8), (), (1, 8, 8, 1), (3, 8, 8), (1, 4, 4), (0, 8, 8)]
X_DTYPES = ["float32", "float64", "float16", "int8", "uint8", "bool", "complex64", "object", "<U3"]
FILLS = ["uniform", "nan", "inf", "-inf", "out_of_range", "huge", "zeros", "negative_zero", "subnormal"]
Y_KINDS = ["valid", "negative", "too_large", "huge", "float", "object", "bool", "2d", "short", "long"]
MASKS = [None, "valid", "wrong_shape", "nan", "object", "short"]


def _x(n: int, shape: tuple, dtype: str, fill: str, rng: np.random.Generator) -> np.ndarray:
    if dtype == "object":
        array = np.empty((n, *shape), dtype=object)
        array.fill(0.5)
        return array
    values = rng.random((n, *shape))
    values = {
        "nan": np.where(values < 0.1, np.nan, values),
        "inf": np.where(values < 0.1, np.inf, values),
        "-inf": np.where(values < 0.1, -np.inf, values),
        "out_of_range": values * 3 - 1,
        "huge": values * 1e300,
        "zeros": np.zeros_like(values),
        "negative_zero": -np.zeros_like(values),
        "subnormal": values * 1e-310,
    }.get(fill, values)
    with np.errstate(all="ignore"):
        return values.astype(dtype)


def _y(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    labels = rng.integers(0, 10, n)
    return {
        "negative": labels - 20,
        "too_large": labels + 10,
        "huge": np.full(n, 2**62, dtype=np.int64),
        "float": labels.astype(np.float32) + 0.5,
        "object": labels.astype(object),
        "bool": labels > 4,
        "2d": labels.reshape(-1, 1),
        "short": labels[:-1],
        "long": np.concatenate([labels, labels[:1]]),
    }.get(kind, labels)


@st.composite
def data_files(draw: st.DrawFn) -> dict:
    return {
        "n": draw(st.integers(0, 24)),
        # Half the draws keep each part valid, so that the others are reached past the first refusal.
        "shape": draw(st.sampled_from(X_SHAPES) | st.just((1, 8, 8))),
        "dtype": draw(st.sampled_from(X_DTYPES) | st.just("float32")),
        "fill": draw(st.sampled_from(FILLS) | st.just("uniform")),
        "y": draw(st.sampled_from(Y_KINDS) | st.just("valid")),
        "mask": draw(st.sampled_from(MASKS) | st.none()),
        "drop": draw(st.sampled_from([None, None, None, "x", "y"])),
        "extra_key": draw(st.booleans()),
        "compressed": draw(st.booleans()),
        "damage": draw(
            st.sampled_from([None, None, None, "truncate", "random", "empty", "npy", "flip", "header"])
        ),
        "cut": draw(st.floats(0, 1)),
        "garbage": draw(st.binary(max_size=64)),
        "flips": draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=8)),
        "seed": draw(st.integers(0, 2**16)),
    }


def write_data(path: Path, spec: dict) -> None:
    rng = np.random.default_rng(spec["seed"])
    n = spec["n"]
    arrays = {"x": _x(n, spec["shape"], spec["dtype"], spec["fill"], rng), "y": _y(n, spec["y"], rng)}
    mask = spec["mask"]
    if mask is not None:
        hw = spec["shape"][-2:] if len(spec["shape"]) >= 2 else (8, 8)
        arrays["mask"] = {
            "valid": (rng.random((n, *hw)) > 0.5).astype(np.float32),
            "wrong_shape": np.ones((n, 3), dtype=np.float32),
            "nan": np.full((n, *hw), np.nan, dtype=np.float32),
            "object": np.empty((n, *hw), dtype=object),
            "short": np.ones((max(n - 1, 0), *hw), dtype=np.float32),
        }[mask]
    if spec["drop"]:
        del arrays[spec["drop"]]
    if spec["extra_key"]:
        arrays["notes"] = np.arange(3)
        arrays["meta"] = np.array([{"pickled": True}], dtype=object)  # ignored, never unpickled
    if spec["damage"] == "npy":
        np.save(path.with_suffix(".npy"), arrays.get("x", np.zeros(1)), allow_pickle=True)
        path.with_suffix(".npy").rename(path)
        return
    (np.savez_compressed if spec["compressed"] else np.savez)(path, **arrays)
    content = path.read_bytes()
    if spec["damage"] == "truncate":
        path.write_bytes(content[: int(len(content) * spec["cut"])])
    elif spec["damage"] == "random":
        path.write_bytes(spec["garbage"])
    elif spec["damage"] == "empty":
        path.write_bytes(b"")
    elif spec["damage"] == "flip":
        flipped = bytearray(content)
        for position in spec["flips"]:
            flipped[position % len(flipped)] ^= 0xFF
        path.write_bytes(bytes(flipped))
    elif spec["damage"] == "header":
        _garbage_npy_header(path, spec["garbage"], compressed=spec["compressed"])


def _garbage_npy_header(path: Path, garbage: bytes, *, compressed: bool) -> None:
    """Rewrite the archive with garbage inside the first member's .npy header (CRCs stay valid)."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    first = next(iter(members))
    member = members[first]
    start = 10 + member[10:].find(b"'") if len(member) > 10 else 0
    members[first] = member[:start] + garbage + member[start + len(garbage) :]
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@settings(FUZZ, max_examples=DATA_EXAMPLES)
@given(spec=data_files())
def test_generated_data_files_never_crash(setup: dict, spec: dict) -> None:
    path = setup["files"].path("data.npz")
    write_data(path, spec)
    code, output, report_dir = gate_check(setup, data=path)
    assert_clean(code, output, report_dir, path)


@pytest.mark.slow
@settings(FUZZ, max_examples=DATA_EXAMPLES * SLOW_FACTOR)
@given(spec=data_files())
def test_generated_data_files_never_crash_many(setup: dict, spec: dict) -> None:
    path = setup["files"].path("data.npz")
    write_data(path, spec)
    code, output, report_dir = gate_check(setup, data=path)
    assert_clean(code, output, report_dir, path)


@pytest.mark.parametrize(
    ("fill", "dtype", "message"),
    [
        ("nan", "float32", "NaN"),
        ("inf", "float32", "inf"),
        ("out_of_range", "float32", "range"),
        ("huge", "float64", "beyond float32's range"),  # found by the fuzzer: was an internal error
    ],
)
def test_bad_pixels_are_refused_with_the_reason(setup: dict, fill: str, dtype: str, message: str) -> None:
    path = setup["files"].path("data.npz")
    spec = {"n": 16, "shape": (1, 8, 8), "dtype": dtype, "fill": fill, "y": "valid", "mask": None}
    spec.update(drop=None, extra_key=False, compressed=False, damage=None, seed=1)
    write_data(path, spec)
    code, output, _ = gate_check(setup, data=path)
    assert code == 2 and str(path) in output
    assert message.lower() in output.lower()


# --------------------------------------------------------------------- image folders
IMAGE_MODES = ["L", "RGB", "RGBA", "LA", "P", "P+tRNS", "1", "I;16", "CMYK"]
JPEG_MODES = {"L", "RGB", "CMYK"}
IMAGE_DAMAGE = [
    "truncate", "short-stream", "flip", "huge-header", "random", "empty", "bmp", "fifo", "device", "dangling",
]  # fmt: skip


@st.composite
def image_folders(draw: st.DrawFn) -> dict:
    return {
        "classes": draw(st.integers(1, 3)),
        "per_class": draw(st.integers(1, 3)),
        "modes": draw(st.lists(st.sampled_from(IMAGE_MODES), min_size=1, max_size=3)),
        "size": draw(st.sampled_from([(8, 8), (8, 8), (5, 7)])),
        "jpeg": draw(st.booleans()),
        "damage": draw(st.sampled_from(IMAGE_DAMAGE) | st.none()),
        "cut": draw(st.floats(0, 1)),
        "flips": draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=8)),
        "garbage": draw(st.binary(max_size=64)),
        "grey_model": draw(st.booleans()),  # --input-shape 1,8,8: every mode converted to the model's L
        "seed": draw(st.integers(0, 2**16)),
    }


def _image(mode: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16))
    return rgb.quantize(8) if mode.startswith("P") else rgb.convert(mode)


def _short_stream_png(width: int, height: int) -> bytes:
    """Valid chunks and IEND around a pixel stream that stops halfway (Pillow fills the rest in)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"".join(b"\x00" + bytes(width) for _ in range(height // 2)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def write_folder(root: Path, spec: dict) -> Path:
    """The folder, and the file the damage went to (the one a refusal must name)."""
    rng = np.random.default_rng(spec["seed"])
    paths = []
    for c in range(spec["classes"]):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(spec["per_class"]):
            mode = spec["modes"][(c + i) % len(spec["modes"])]
            jpeg = (spec["jpeg"] and mode in JPEG_MODES) or mode == "CMYK"  # PNG has no CMYK
            path = root / f"class{c}" / f"{i}.{'jpg' if jpeg else 'png'}"
            options = {"transparency": bytes([0, 90] + [255] * 6)} if mode == "P+tRNS" else {}
            _image(mode, spec["size"], rng).save(path, **options)
            paths.append(path)
    target = paths[0]
    damage = spec["damage"]
    content = target.read_bytes()
    if damage in ("fifo", "device", "dangling"):
        target.unlink()
        if damage == "fifo":
            os.mkfifo(target)
        else:
            target.symlink_to("/dev/zero" if damage == "device" else root / "missing.png")
    elif damage == "truncate":
        target.write_bytes(content[: int(len(content) * spec["cut"])])
    elif damage == "short-stream":
        target.with_suffix(".png").write_bytes(_short_stream_png(*spec["size"]))
        target = target.with_suffix(".png")
    elif damage == "flip":
        flipped = bytearray(content)
        for position in spec["flips"]:
            flipped[position % len(flipped)] ^= 0xFF
        target.write_bytes(bytes(flipped))
    elif damage == "huge-header" and content.startswith(b"\x89PNG"):
        target.write_bytes(content[:16] + struct.pack(">II", 100_000, 100_000) + content[24:])
    elif damage == "random":
        target.write_bytes(spec["garbage"])
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "bmp":
        _image("RGB", spec["size"], rng).save(target, format="BMP")
    return target


def check_folder(setup: dict, spec: dict) -> None:
    root = setup["files"].path("images")
    write_folder(root, spec)
    args = ["--input-shape", "1,8,8"] if spec["grey_model"] else []
    code, output, report_dir = gate_check(setup, data=root, args=args)
    assert_clean(code, output, report_dir, root)


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and device links are POSIX")
@settings(FUZZ, max_examples=IMAGE_EXAMPLES)
@given(spec=image_folders())
def test_generated_image_folders_never_crash(setup: dict, spec: dict) -> None:
    check_folder(setup, spec)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and device links are POSIX")
@settings(FUZZ, max_examples=IMAGE_EXAMPLES * SLOW_FACTOR)
@given(spec=image_folders())
def test_generated_image_folders_never_crash_many(setup: dict, spec: dict) -> None:
    check_folder(setup, spec)


FOLDER_BASE = {
    "classes": 2, "per_class": 2, "modes": ["L"], "size": (8, 8), "jpeg": False, "damage": None, "cut": 0.6,
    "flips": [100], "garbage": b"\x00", "grey_model": True, "seed": 0,
}  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and device links are POSIX")
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"damage": "truncate"}, "truncated"),
        ({"damage": "truncate", "jpeg": True, "cut": 0.97}, "image file is truncated"),  # in its scan
        ({"damage": "short-stream"}, "truncated"),
        ({"damage": "huge-header"}, "claims 100000x100000"),
        ({"damage": "bmp"}, "expected a PNG or JPEG image"),
        ({"damage": "fifo"}, "named pipe"),
        ({"damage": "device"}, "character device"),
    ],
)
def test_broken_images_are_exit_2_with_the_file_named(
    setup: dict, monkeypatch: pytest.MonkeyPatch, change: dict, message: str
) -> None:
    """Found at load, before any check runs (a check would end as an error, exit 3), even with Pillow's
    LOAD_TRUNCATED_IMAGES set by code in the process."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    root = setup["files"].path("images")
    culprit = write_folder(root, {**FOLDER_BASE, **change})
    code, output, _ = gate_check(setup, data=root)
    assert code == 2, output
    assert str(culprit) in output and message in output and "Traceback" not in output


@pytest.mark.parametrize("modes", [["RGBA"], ["P+tRNS", "LA"], ["CMYK", "I;16"], ["1", "P"]])
def test_other_image_modes_are_evaluated(setup: dict, modes: list[str]) -> None:
    root = setup["files"].path("images")
    write_folder(root, {**FOLDER_BASE, "modes": modes, "jpeg": True})
    code, output, _ = gate_check(setup, data=root, args=["--input-shape", "1,8,8"])
    assert code in (0, 1), output


def _flipped(path: Path) -> None:
    content = bytearray(path.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 8] = bytes(b ^ 0x10 for b in content[middle : middle + 8])
    path.write_bytes(bytes(content))


def _npz_case(kind: str, path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    np.savez(path, x=x, y=y)
    if kind == "flipped.npz":
        _flipped(path)
    elif kind == "header-garbage.npz":
        _garbage_npy_header(path, b'garbage((("""', compressed=False)
    elif kind == "fifo.npz":
        path.unlink()
        os.mkfifo(path)
    elif kind == "dev-zero.npz":
        path.unlink()
        path.symlink_to("/dev/zero")
    elif kind == "bomb.npz":
        np.savez_compressed(path, x=np.zeros((4096, 1, 8, 8), np.float32), y=np.zeros(4096, np.int64))
    return path


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and device links are POSIX")
@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("flipped.npz", "CRC"),
        ("header-garbage.npz", "unreadable header"),
        ("fifo.npz", "named pipe"),
        ("dev-zero.npz", "character device"),
        ("bomb.npz", "MAX_NPZ_EXTRACTED_BYTES"),
    ],
)
def test_broken_npz_files_are_exit_2_with_the_file_named(
    setup: dict, monkeypatch: pytest.MonkeyPatch, kind: str, message: str
) -> None:
    """flipped.npz passed, header-garbage.npz was "internal error (TokenError ...)", /dev/zero ran out of
    memory; the bomb (1 MiB decompressed from a few KB, against a 256 KiB limit) is refused unextracted."""
    from gate.data import files

    monkeypatch.setattr(files, "MAX_NPZ_EXTRACTED_BYTES", 256 * 1024)
    rng = np.random.default_rng(0)
    path = _npz_case(
        kind, setup["files"].path(kind), rng.random((32, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, 32)
    )
    code, output, _ = gate_check(setup, data=path)
    assert code == 2, output
    assert str(path) in output and message in output and "Traceback" not in output


# --------------------------------------------------------------------- model files
BROKEN_ONNX = {
    "kind": st.sampled_from(["truncate", "random", "flip", "empty"]),
    "fraction": st.floats(0, 1, exclude_max=True),
    "garbage": st.binary(max_size=256),
    "flips": st.lists(st.integers(0, 10**9), min_size=1, max_size=8),
}


def check_broken_onnx(setup: dict, kind: str, fraction: float, garbage: bytes, flips: list[int]) -> None:
    content = bytearray(Path(setup["model"]).read_bytes())
    if kind == "truncate":
        content = content[: int(len(content) * fraction)]
    elif kind == "random":
        content = bytearray(garbage)
    elif kind == "flip":
        for position in flips:
            content[position % len(content)] ^= 0xFF
    else:
        content = bytearray()
    path = setup["files"].path("model.onnx")
    path.write_bytes(bytes(content))
    code, output, report_dir = gate_check(setup, model=path)
    assert_clean(code, output, report_dir, path)


@settings(FUZZ, max_examples=MODEL_EXAMPLES)
@given(**BROKEN_ONNX)
def test_broken_onnx_files_never_crash(
    setup: dict, kind: str, fraction: float, garbage: bytes, flips
) -> None:
    check_broken_onnx(setup, kind, fraction, garbage, flips)


@pytest.mark.slow
@settings(FUZZ, max_examples=MODEL_EXAMPLES * SLOW_FACTOR)
@given(**BROKEN_ONNX)
def test_broken_onnx_files_never_crash_many(
    setup: dict, kind: str, fraction: float, garbage: bytes, flips
) -> None:
    check_broken_onnx(setup, kind, fraction, garbage, flips)


def _sequence_output_model(path: Path) -> None:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])
    seq = helper.make_tensor_sequence_value_info("logits", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"]),
            helper.make_node("SequenceConstruct", ["flat"], ["logits"]),
        ],
        "sequence",
        [x],
        [seq],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _two_outputs_model(path: Path) -> None:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("a", "b")]
    nodes = [helper.make_node("Flatten", ["input"], ["a"]), helper.make_node("Identity", ["a"], ["b"])]
    graph = helper.make_graph(nodes, "two", [x], outputs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _int_input_model(path: Path) -> None:
    x = helper.make_tensor_value_info("input", TensorProto.INT64, ["N", 1, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.INT64, None)
    graph = helper.make_graph([helper.make_node("Flatten", ["input"], ["logits"])], "int", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


class _Reshaped(nn.Module):
    def __init__(self, output: str) -> None:
        super().__init__()
        self.inner = _Tiny()
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        return {"3d": logits.unsqueeze(-1), "1d": logits.sum(1), "one-class": logits[:, :1]}[self.output]


def _torch_model(output: str):
    def write(path: Path) -> None:
        from gate.model import export_to_onnx

        export_to_onnx(_Reshaped(output), torch.rand(2, 1, 8, 8), path)

    return write


ONNX_BUILDERS = {
    "sequence-output": _sequence_output_model,
    "two-outputs": _two_outputs_model,
    "int-input": _int_input_model,
    "rank-3-output": _torch_model("3d"),
    "rank-1-output": _torch_model("1d"),
    "one-class": _torch_model("one-class"),
}


@pytest.mark.parametrize("name", sorted(ONNX_BUILDERS))
def test_onnx_models_with_the_wrong_interface_are_refused(setup: dict, name: str) -> None:
    path = setup["files"].path(f"{name}.onnx")
    ONNX_BUILDERS[name](path)
    code, output, _ = gate_check(setup, model=path)
    assert code == 2, output
    assert str(path) in output and "Traceback" not in output


FACTORIES = """
import torch
from torch import nn


class RaisesInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        raise RuntimeError("the forward pass is broken")


class FeatureMap(nn.Module):
    def forward(self, x):
        return x * 2


def raises_in_forward():
    return RaisesInForward()


def raises_when_built():
    raise ValueError("cannot build")


def not_a_module():
    return "a string"


def feature_map():
    return FeatureMap()


not_callable = 42
"""


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("fuzz_factories:raises_in_forward", "could not export"),
        ("fuzz_factories:raises_when_built", "raised ValueError"),
        ("fuzz_factories:not_a_module", "to return a torch.nn.Module"),
        ("fuzz_factories:feature_map", "logits"),
        ("fuzz_factories:not_callable", "to be callable"),
        ("fuzz_factories:missing", "has no attribute"),
        ("fuzz_no_such_module:factory", "cannot import module"),
    ],
)
def test_broken_factories_are_refused(setup: dict, monkeypatch, reference: str, message: str) -> None:
    folder = setup["files"].path("factories")
    folder.mkdir()
    (folder / "fuzz_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "fuzz_factories", raising=False)
    code, output, _ = gate_check(setup, model=reference)
    assert code == 2, output
    assert message in output and "Traceback" not in output
