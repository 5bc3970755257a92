"""The report folder gate writes into: cleared of an earlier run's verdict before a run starts, and never
written through a link that someone placed there (a pull request can commit one).

A stale ``report.json`` beside a run that then failed to load its inputs would tell the action "pass";
a symlinked ``artifacts/`` or ``model/`` would send gate's writes wherever it points. The action runs
``python -m gate.report.folder clear DIR`` before ``gate check``, since a mistaken flag in ``extra-args``
stops gate before it can clear anything itself.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from gate.errors import UsageError
from gate.report.registry import FORMATS


def report_files(directory: Path) -> list[Path]:
    """Every file a run's reports are written to, whichever formats are configured."""
    return [directory / fmt.filename for fmt in FORMATS.values()]


def clear_reports(directory: Path) -> None:
    """Remove the reports of an earlier run (a link is removed itself, its target is left alone)."""
    for path in report_files(directory):
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)


def owned_folder(path: Path, *, keep: bool) -> Path:
    """``path`` as a real directory of gate's: a link or file there is removed (not followed), and so are
    the links inside it; ``keep=False`` empties it as well."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir() and not keep:
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    for entry in path.rglob("*"):
        if entry.is_symlink():
            entry.unlink()
    return path


def prepare_report_folder(directory: Path, *, state_file: str, resume: bool) -> None:
    """Get ``directory`` ready for a run: no earlier verdict, fresh evidence, the export cache and (with
    ``--resume``) the resume state kept, and no links where gate writes."""
    if directory.exists() and not directory.is_dir():
        raise UsageError("--report-dir must be a folder, found a file", path=directory)
    directory.mkdir(parents=True, exist_ok=True)
    clear_reports(directory)
    owned_folder(directory / "artifacts", keep=False)  # evidence of an earlier run is not this run's
    owned_folder(directory / "model", keep=True)  # the export cache, keyed by the source's digest
    state = directory / state_file
    if state.is_dir() and not state.is_symlink():
        shutil.rmtree(state)
    elif state.is_symlink() or (state.exists() and not state.is_file()):
        state.unlink()  # a link's target (or a FIFO) is never appended to or read


def clear_previous_run(directory: Path) -> None:
    """Before a run that may stop early: the reports and evidence of an earlier run go; the export cache
    (``model/``) and the resume state stay, for ``--resume``."""
    if not directory.is_dir() or directory.is_symlink():
        return
    clear_reports(directory)
    artifacts = directory / "artifacts"
    if artifacts.is_symlink() or artifacts.is_file():
        artifacts.unlink()
    elif artifacts.is_dir():
        shutil.rmtree(artifacts)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gate.report.folder clear DIR``: exit 0 once DIR holds no earlier run's verdict."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 2 or arguments[0] != "clear":
        from gate import console

        console.error("usage: python -m gate.report.folder clear REPORT_DIR")
        return 2
    clear_previous_run(Path(arguments[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
