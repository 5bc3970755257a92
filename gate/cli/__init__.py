"""The command line (one module per command group): parse options, call the library, render, exit with the verdict's code.

Exit codes: 0 pass · 1 fail · 2 invalid invocation, policy, model or data · 3 a check could not complete.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from gate import __version__, console
from gate.errors import EXIT_ERROR, GateError, ModelError, UsageError


class GateGroup(click.Group):
    """Turns every GateError into its message and exit code; anything unexpected fails closed (exit 3)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GateError as exc:
            console.error(exc.render())
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            console.error("interrupted")
            sys.exit(EXIT_ERROR)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                _internal_error(exc)
            where = f" writing {exc.filename}" if exc.filename else ""
            console.error(
                f"disk full{where}: no space left on the device; nothing partial was kept, free space and "
                "rerun. The gate fails closed."
            )
            sys.exit(EXIT_ERROR)
        except Exception as exc:
            _internal_error(exc)


def _internal_error(exc: BaseException) -> NoReturn:
    logging.getLogger("gate").debug("unexpected error", exc_info=True)
    console.error(
        f"internal error ({type(exc).__name__}: {exc}); the gate fails closed. Rerun with --debug for details."
    )
    sys.exit(EXIT_ERROR)


def complete_path(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a file or folder path (the shell lists them)."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


def complete_policy(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion for ``--policy``: the built-in policies as ``builtin:NAME``, else file paths."""
    from click.shell_completion import CompletionItem

    from gate.policy import builtin_policy_names

    builtins = [CompletionItem(f"builtin:{name}") for name in builtin_policy_names()]
    if incomplete.startswith("builtin:"):
        return [item for item in builtins if item.value.startswith(incomplete)]
    files = [CompletionItem(incomplete, type="file")]
    return [*builtins, *files] if "builtin:".startswith(incomplete) else files


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise UsageError(
            f"expected comma-separated numbers such as 0.485,0.456,0.406; found {text!r}"
        ) from None


def _ints(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.replace(" ", "").replace("x", ",").split(",") if part)
    except ValueError:
        raise UsageError(f"expected a shape such as 3,224,224; found {text!r}") from None


def _batch_size(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise UsageError(f"--batch-size expects a positive integer or auto; found {text!r}")
    return size


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        index, total = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard expects K/N such as 2/4; found {text!r}") from None
    if not 1 <= index <= total:
        raise UsageError(f"--shard K/N needs 1 <= K <= N; found {text!r}")
    return index, total


@click.group(cls=GateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gate")
@click.option("--debug", is_flag=True, help="Log details (and tracebacks of internal errors) to stderr.")
@click.option(
    "--no-color", "no_color", is_flag=True, help="Plain text, no colour (NO_COLOR set does the same)."
)
def main(debug: bool, no_color: bool) -> None:
    """gate: decide whether an ML model may ship, with evidence."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if no_color:
        console.disable_colour()


def policy_root_option(function: Any) -> Any:
    """``--policy-root DIR``: a folder the person running gate lets ``extends`` read; a policy cannot."""
    return click.option(
        "--policy-root",
        "policy_roots",
        multiple=True,
        metavar="DIR",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Let extends also read policy files under DIR (repeatable); by default only builtin:NAME "
        "and files inside the policy's own repository.",
    )(function)


def model_options(function: Any) -> Any:
    """Options that say which model to load; shared by ``check`` and ``export``."""
    options = [
        click.option(
            "--model",
            "-m",
            "model",
            help="An .onnx/.pt/.ts/.pt2 file, or package.module:factory.",
            shell_complete=complete_path,
        ),
        click.option(
            "--weights",
            "-w",
            type=click.Path(path_type=Path),
            help="Weights for a factory or a trusted pickled model: .safetensors or a state dict.",
        ),
        click.option(
            "--model-card",
            type=click.Path(path_type=Path),
            help="A gate-model.yaml with the model options (flags override it).",
        ),
        click.option("--mean", help="Per-channel mean applied inside gate, e.g. 0.485,0.456,0.406."),
        click.option("--std", help="Per-channel standard deviation applied inside gate."),
        click.option(
            "--input-scale",
            type=float,
            default=None,
            help="Multiply inputs by this before --mean/--std, e.g. 255 for a model that expects 0..255.",
        ),
        click.option(
            "--channels",
            type=click.Choice(["RGB", "BGR"]),
            default=None,
            help="The channel order the model expects (gate's images are RGB).",
        ),
        click.option(
            "--layout",
            type=click.Choice(["NCHW", "NHWC"]),
            default=None,
            help="The layout the model expects: NHWC for channels last (tf2onnx); gate's data stays NCHW.",
        ),
        click.option(
            "--input-shape", help="Per-sample input shape, e.g. 3,224,224 (default: from the data)."
        ),
        click.option(
            "--model-output",
            metavar="NAME",
            help="The ONNX output whose scores gate judges (default: the one float output, else a ZipMap).",
        ),
        click.option(
            "--exporter",
            type=click.Choice(["auto", "dynamo", "torchscript"]),
            default=None,
            help="ONNX exporter (default auto: dynamo, and TorchScript where dynamo fails).",
        ),
        click.option("--opset", type=int, default=None, help="ONNX opset for the export."),
        click.option(
            "--trust-pickle",
            is_flag=True,
            help="Allow loading a fully pickled model or a .pt2 holding pickles (runs code from the file!).",
        ),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda"]),
            default=None,
            help="Where to run (default auto).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def build_model_spec(
    model: str | None,
    weights: Path | None,
    model_card: Path | None,
    mean: str | None,
    std: str | None,
    input_scale: float | None,
    channels: str | None,
    layout: str | None,
    input_shape: str | None,
    model_output: str | None,
    exporter: str | None,
    opset: int | None,
    trust_pickle: bool,
    device: str | None,
) -> Any:
    from gate.model import load_model_card, merge_spec

    card = load_model_card(model_card) if model_card else None
    if model is None and card is None:
        default_card = Path("gate-model.yaml")
        card = load_model_card(default_card) if default_card.exists() else None
    if model is None and (card is None or "source" not in card):
        raise UsageError("no model given: pass --model (or --model-card, or put a gate-model.yaml here)")
    return merge_spec(
        card,
        source=model,
        weights=weights,
        mean=_floats(mean),
        std=_floats(std),
        scale=input_scale,
        channels=channels,
        layout=layout,
        input_shape=_ints(input_shape),
        output=model_output,
        exporter=exporter,
        opset=opset,
        trust_pickle=trust_pickle or None,
        device=device,
    )


@main.command()
@click.option(
    "--policy",
    "-p",
    required=True,
    help="Policy file, or builtin:NAME.",
    shell_complete=complete_policy,
)
@policy_root_option
@model_options
@click.option(
    "--data",
    "-d",
    required=True,
    help="An .npz (x, y[, mask]), an image folder, or package.module:function.",
    shell_complete=complete_path,
)
@click.option(
    "--report-dir", "-o", type=click.Path(path_type=Path), default=Path("gate-report"), show_default=True
)
@click.option(
    "--samples", type=click.IntRange(min=1), help="Evaluate at most N samples (overrides the policy)."
)
@click.option("--seed", type=click.IntRange(min=0), help="Seed (overrides the policy).")
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    help="report.json of the model in production, for max_drop.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds for the whole run; checks past it end as error.",
)
@click.option(
    "--batch-size",
    metavar="N|auto",
    default="auto",
    show_default=True,
    help="Evaluation batch size: a number, or auto (the largest that fits the device).",
)
@click.option(
    "--shard", help="Evaluate the K-th of N deterministic shards, e.g. 2/4 (merge with gate merge)."
)
@click.option(
    "--resume", is_flag=True, help="Reuse the checks and batches an interrupted run in --report-dir finished."
)
@click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS",
    help="Run the shards as Ray tasks on this cluster (local: a local instance) and merge them.",
)
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    help="With --ray: how many shards (default: the cluster's GPUs, or its CPUs when it has none).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="What goes to stdout: the summary table, or the report as JSON (for scripts).",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no table: only errors, and the exit code.")
@click.option(
    "--export-cache",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="A folder of exports shared by every report folder, so a second run of the same model skips the "
    "export (default: $GATE_EXPORT_CACHE; the report folder's model/ is always reused).",
)
def check(
    policy: str,
    policy_roots: tuple[Path, ...],
    data: str,
    report_dir: Path,
    samples: int | None,
    seed: int | None,
    baseline: Path | None,
    timeout: float | None,
    batch_size: str,
    shard: str | None,
    resume: bool,
    ray_address: str | None,
    shards: int | None,
    output_format: str,
    as_json: bool,
    quiet: bool,
    export_cache: Path | None,
    **model_flags: Any,
) -> None:
    """Evaluate a model against a policy and write the reports."""
    from gate.report import write_reports
    from gate.report.folder import clear_reports

    if report_dir.is_dir():
        clear_reports(report_dir)  # an earlier verdict must not outlive a run that stops with exit 2
    _check_before_loading(policy, policy_roots, model_flags.get("model"), data)
    from gate.model.spec import own_weights_note  # torch and ONNX Runtime load from here on
    from gate.runner import RunOptions, run_gate

    spec = build_model_spec(**model_flags)
    if (note := own_weights_note(spec)) and not quiet:
        console.warn(note.upper()[:1] + note[1:])
    options = RunOptions(
        policy=policy,
        model=spec,
        data=data,
        report_dir=report_dir,
        samples=samples,
        seed=seed,
        baseline=baseline,
        timeout=timeout,
        batch_size=_batch_size(batch_size),
        shard=_shard(shard),
        resume=resume,
        progress=console.Progress(enabled=False if quiet or as_json or output_format == "json" else None),
        policy_roots=tuple(policy_roots),
        exit_when_stuck=True,
        export_cache=export_cache,
    )
    try:
        if ray_address is not None:
            from gate.scale.ray_shards import run_on_ray

            if options.shard is not None:
                raise UsageError("--ray splits the run itself: give --shards N instead of --shard K/N")
            report = run_on_ray(options, address=ray_address, shards=shards)
        elif shards is not None:
            raise UsageError("--shards needs --ray ADDRESS; to run one shard here, give --shard K/N")
        else:
            report = run_gate(options)
        write_reports(report, report_dir)
    except SystemExit as exc:
        # gate itself never exits inside a run: this came from the model's or the data's code.
        raise ModelError(
            f"code run for the model or the data called sys.exit({exc.code!r}); an exit never passes"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:  # the export cache may hold a truncated model.onnx: drop it
            shutil.rmtree(report_dir / "model", ignore_errors=True)
        raise
    if not quiet:
        print_summary(report, report_dir, "json" if as_json else output_format)
    sys.exit(report.exit_code)


def _check_before_loading(policy: str, policy_roots: tuple[Path, ...], model: str | None, data: str) -> None:
    """Name a mistake in the invocation before torch and ONNX Runtime load (seconds, on a cold machine):
    the policy is read and validated, and the model and data paths must exist unless they are
    ``package.module:function`` references."""
    from gate.errors import DataError
    from gate.policy import load_policy
    from gate.references import is_reference

    load_policy(policy, policy_roots=policy_roots)
    if not is_reference(data) and not Path(data).exists():
        raise DataError(
            "no such file or folder; expected an .npz file, a CSV or Parquet table, an image folder or "
            "package.module:function",
            path=data,
        )
    if model is not None and not is_reference(model) and not Path(model).exists():
        raise ModelError(
            "model file not found: expected an existing .onnx/.pt/.ts/.pt2/.pth file "
            "or a package.module:factory reference",
            path=model,
        )


def print_summary(report: Any, report_dir: Path, output_format: str = "text") -> None:
    """What ``gate check`` prints on stdout: the table (``text``), or the whole report.json (``json``)."""
    if output_format == "json":
        from gate.report.formats import JsonFormat

        click.echo(JsonFormat().render(report), nl=False)
        return
    console.out(f"gate {__version__} · " + console.summary_table(report, report_dir).removeprefix("gate · "))


@main.command()
@model_options
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), required=True, help="Where to write the .onnx file."
)
def export(output: Path, **model_flags: Any) -> None:
    """Export a PyTorch model to ONNX (checked, shape-inferred, dynamic batch) and print its SHA-256."""
    from gate.model import export_model

    spec = build_model_spec(**model_flags)
    info = export_model(spec, output)
    console.out(f"exported {info.path} (sha256 {info.sha256}, opset {info.opset}, exporter {info.exporter})")


@main.command("report-schema")
def report_schema() -> None:
    """Print the JSON Schema of report.json."""
    from gate.report.model import Report

    console.out(json.dumps(Report.model_json_schema(), indent=2))


@main.command()
@click.argument("directories", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--report-dir", "-o", type=click.Path(path_type=Path), default=Path("gate-report"), show_default=True
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    help="report.json of the model in production, for max_drop.",
)
def merge(directories: tuple[Path, ...], report_dir: Path, baseline: Path | None) -> None:
    """Combine the report folders of gate check --shard 1/N ... N/N into the final verdict and reports."""
    from gate.merge import merge_reports
    from gate.report import load_baseline, write_reports

    report = merge_reports(
        list(directories), report_dir, baseline=load_baseline(baseline) if baseline else None
    )
    write_reports(report, report_dir)
    print_summary(report, report_dir)
    sys.exit(report.exit_code)


from gate.cli import attest_commands, demo_command, policy_commands  # noqa: E402  (registers the command modules)

__all__ = ["attest_commands", "demo_command", "main", "policy_commands"]
