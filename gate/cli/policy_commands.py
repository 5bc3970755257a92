"""``gate policy ...``: write, validate, explain and compare policy files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gate import console
from gate.cli import main
from gate.errors import GateError, UsageError
from gate.verdict import EXIT_INVALID


@main.group()
def policy() -> None:
    """Write, validate and inspect policy files."""


@policy.command("validate")
@click.argument("files", nargs=-1, required=True)
def policy_validate(files: tuple[str, ...]) -> None:
    """Validate policy files (with everything they extend); exit 2 if any is invalid."""
    from gate.policy import load_policy

    invalid = 0
    for name in files:
        try:
            resolved = load_policy(name)
        except GateError as exc:
            invalid += 1
            console.error(exc.render())
            continue
        console.out(
            f"{name}: valid ({len(resolved.policy.checks)} checks, {len(resolved.policy.waivers)} waivers)"
        )
    if invalid:
        sys.exit(EXIT_INVALID)


@policy.command("schema")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to a file instead of stdout.")
def policy_schema(output: Path | None) -> None:
    """Print the JSON Schema of the policy format (for editors and the YAML language server)."""
    from gate.policy.schema import policy_json_schema

    text = json.dumps(policy_json_schema(), indent=2) + "\n"
    if output:
        from gate.report import write_atomic

        write_atomic(output, text)
        console.info(f"wrote {output}")
    else:
        console.out(text.rstrip("\n"))


@policy.command("init")
@click.argument("file", type=click.Path(path_type=Path), default=Path("gate-policy.yaml"))
@click.option("--name", default="my-model-release", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def policy_init(file: Path, name: str, force: bool) -> None:
    """Write a commented starter policy."""
    from gate.policy.starter import STARTER_POLICY
    from gate.report import write_atomic

    if file.exists() and not force:
        raise UsageError("the file exists; pass --force to overwrite it", path=file)
    write_atomic(file, STARTER_POLICY.format(name=name, filename=file.name))
    console.out(f"wrote {file}; validate it with: gate policy validate {file}")


