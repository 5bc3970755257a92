"""``gate policy ...``: write, validate, explain and compare policy files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gate import console
from gate.cli import main, policy_root_option
from gate.errors import EXIT_INVALID, GateError, UsageError


@main.group()
def policy() -> None:
    """Write, validate and inspect policy files."""


@policy.command("validate")
@click.argument("files", nargs=-1, required=True)
@policy_root_option
def policy_validate(files: tuple[str, ...], policy_roots: tuple[Path, ...]) -> None:
    """Validate policy files (with everything they extend); exit 2 if any is invalid."""
    from gate.policy import load_policy

    invalid = 0
    for name in files:
        try:
            resolved = load_policy(name, policy_roots=policy_roots)
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
    """Write a commented starter policy, and beside it the JSON Schema its first line points editors to."""
    from gate.policy.schema import policy_json_schema
    from gate.policy.starter import SCHEMA_FILENAME, STARTER_POLICY
    from gate.report import write_atomic

    if file.exists() and not force:
        raise UsageError("the file exists; pass --force to overwrite it", path=file)
    write_atomic(file, STARTER_POLICY.format(name=name, filename=file.name))
    schema = file.parent / SCHEMA_FILENAME  # generated, so refreshed whenever a policy is started
    write_atomic(schema, json.dumps(policy_json_schema(), indent=2) + "\n")
    console.out(f"wrote {file} and {schema}; validate it with: gate policy validate {file}")


@policy.command("explain")
@click.argument("file")
@policy_root_option
def policy_explain(file: str, policy_roots: tuple[Path, ...]) -> None:
    """Explain a policy (with everything it extends) in plain language, for reviewers."""
    from gate.policy import load_policy
    from gate.policy.plain_language import explain_policy

    console.out(explain_policy(load_policy(file, policy_roots=policy_roots)).rstrip("\n"))


@policy.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
@policy_root_option
def policy_diff(old: str, new: str, as_json: bool, policy_roots: tuple[Path, ...]) -> None:
    """Compare two policy versions; exit 1 if anything got looser (2 if a file is invalid)."""
    from gate.errors import EXIT_FAIL
    from gate.policy import load_policy
    from gate.policy.diff import diff_policies, is_looser

    before, after = (load_policy(name, policy_roots=policy_roots).policy for name in (old, new))
    changes = diff_policies(before, after)
    if as_json:
        console.out(json.dumps([change.as_dict() for change in changes], indent=2))
    elif not changes:
        console.out("no changes")
    else:
        for change in changes:
            console.out(change.render())
    if is_looser(changes):
        looser = sum(change.direction == "looser" for change in changes)
        console.info(f"{looser} change{'s' * (looser != 1)} made the gate looser")
        sys.exit(EXIT_FAIL)
