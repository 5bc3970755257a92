"""The pinned test environment: refresh ``tests/constraints.txt`` from a green run on today's index.

The package's own dependencies stay ranges (pyproject.toml); the README's test command installs them
under ``tests/constraints.txt``, the exact versions the suite last passed with, so a newcomer's run does
not change with the next upstream release. To move the pins forward::

    python3 .ci/constraints.py refresh      # new venv, newest releases, the whole suite; pins only if green

It installs the README's two quick-start commands with the constraints left out, runs the README's test
command, and rewrites the file from ``pip freeze`` only when everything passed. Commit the new file with
the suite's result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONSTRAINTS = ROOT / "tests" / "constraints.txt"
CONSTRAINT_OPTION = "-c tests/constraints.txt"
OWN_DISTRIBUTION = "gate-ml"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def quick_start(readme_text: str) -> list[str]:
    """The README's quick-start commands, in order (install + demo, then the tests)."""
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme_text, re.S)
    if block is None:
        raise ValueError("README.md has no ```bash block under '## Quick start'")
    return [line for line in block.group(1).splitlines() if line.strip()]


def unconstrained(command: str) -> str:
    """``command`` without the test constraints: what installs today's newest releases."""
    return command.replace(f" {CONSTRAINT_OPTION}", "")


def normalise(name: str) -> str:
    """A distribution name as the package index compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(constraints_text: str) -> dict[str, str]:
    """``{normalised name: version}`` of a constraints file; anything but ``name==version`` is an error."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(constraints_text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"line {number}: expected name==version, found {raw!r}")
        pins[normalise(match.group(1))] = match.group(2)
    return pins


def render(freeze_text: str, *, today: dt.date, python: str) -> str:
    """A constraints file from ``pip freeze`` output: exact public versions, sorted, without gate itself.

    A local version label (``+cpu``, ``+cu128``) is dropped: it names a build, not a release, and the same
    pin must hold on a CPU runner and a GPU machine.
    """
    pins: dict[str, str] = {}
    for raw in freeze_text.splitlines():
        match = _PIN.match(raw.strip())
        if match is None or normalise(match.group(1)) == OWN_DISTRIBUTION:
            continue  # editable installs, direct URLs, comments
        pins[normalise(match.group(1))] = match.group(2).split("+", 1)[0]
    header = (
        f"# The versions the test suite last passed with (Python {python}, {today.isoformat()}).\n"
        "# Used by the README's test command; refresh with: python3 .ci/constraints.py refresh\n"
    )
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def _run(command: str, *, env: dict[str, str], cwd: Path) -> None:
    print(f"$ {command}", flush=True)
    subprocess.run(["bash", "-euo", "pipefail", "-c", command], check=True, env=env, cwd=cwd)


def refresh(python: str) -> int:
    """Install the README's commands unconstrained into a new venv, run the suite, pin on success."""
    install, tests = quick_start(README.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="gate-refresh-") as scratch:
        venv = Path(scratch) / "venv"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        env = {
            **os.environ,
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "VIRTUAL_ENV": str(venv),
        }
        env["GATE_TEST_UNPINNED"] = "1"  # the suite's pin check would refuse the newer releases
        env.pop("PYTHONPATH", None)
        demo = shlex.quote(str(Path(scratch) / "demo"))
        _run(unconstrained(install) + f" --report-dir {demo}", env=env, cwd=ROOT)
        try:
            _run(unconstrained(tests), env=env, cwd=ROOT)
        except subprocess.CalledProcessError:
            print(
                "The suite failed on today's releases: tests/constraints.txt is unchanged.", file=sys.stderr
            )
            return 1
        freeze = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude-editable"],
            check=True, capture_output=True, text=True, env=env,
        ).stdout  # fmt: skip
        version = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
    CONSTRAINTS.write_text(render(freeze, today=dt.date.today(), python=version), encoding="utf-8")
    print(f"Wrote {CONSTRAINTS.relative_to(ROOT)}; review the diff and commit it with the suite's result.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    refresh_parser = commands.add_parser("refresh", help="re-pin from a green run on today's index")
    refresh_parser.add_argument("--python", default=sys.executable, help="interpreter for the new venv")
    arguments = parser.parse_args(argv)
    return refresh(arguments.python)


if __name__ == "__main__":
    sys.exit(main())
