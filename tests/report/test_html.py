"""report.html: self-contained, escaped, evidence embedded; and it renders in a real headless browser."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report.browser import HEADLESS, LAYOUT, Chromium
from report.builders import report_around

from gate.report.html import CONTENT_SECURITY_POLICY, HtmlFormat, render_value
from gate.report.model import (
    CheckResult,
    Finding,
    IntervalModel,
    Location,
    Report,
    Summary,
    ThresholdModel,
    WaiverState,
)
from gate.report.registry import FORMATS

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = '<script>alert("x")</script>'


def write_png(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_report(
    checks: list[CheckResult], verdict: str = "fail", message: str = "1 blocking check failed"
) -> Report:
    return report_around(
        checks,
        verdict=verdict,
        message=message,
        policy_file="/repo/gate-policy.yaml",
        duration_s=12.5,
        summary=Summary(passed=1, failed=1, waived=1),
    )


def adversarial_check(**changes: object) -> CheckResult:
    fields: dict[str, object] = {
        "id": "pgd-linf-8",
        "kind": "adversarial",
        "status": "fail",
        "severity": "block",
        "metric": "robust_accuracy",
        "value": 0.42,
        "interval": IntervalModel(lower=0.38, upper=0.46, confidence=0.95, method="clopper-pearson"),
        "n": 500,
        "successes": 210,
        "threshold": ThresholdModel(min=0.5),
        "message": "robust accuracy 0.42 (lower bound 0.38) is below min 0.5",
        "findings": [
            Finding(code="loss-plateau", message="loss stopped rising", data={"steps": 20, "gap": 0.01})
        ],
        "details": {
            "per_class_robust_accuracy": {"cat": 0.5, "dog": 0.25},
            "epsilon_sweep": [
                {"epsilon": 0.01, "robust_accuracy": 0.8},
                {"epsilon": 0.03, "robust_accuracy": 0.42},
            ],
            "losses": [1.0, 1.5, 2.25],
        },
        "artifacts": ["adversarial/pair-0.png", "adversarial/sweep.png"],
        "location": Location(path="/repo/gate-policy.yaml", line=12, column=5),
    }
    fields.update(changes)
    return CheckResult(**fields)


def sample_report(tmp_path: Path) -> Report:
    write_png(tmp_path / "adversarial" / "pair-0.png")
    write_png(tmp_path / "adversarial" / "sweep.png", seed=1)
    passing = CheckResult(
        id="clean-accuracy",
        kind="accuracy",
        status="pass",
        severity="block",
        metric="accuracy",
        value=0.97,
        n=500,
        threshold=ThresholdModel(min=0.9),
        message="accuracy 0.97 meets min 0.9",
    )
    waived = CheckResult(
        id="fog",
        kind="corruption",
        status="waived",
        severity="block",
        metric="corrupted_accuracy",
        value=0.6,
        n=500,
        threshold=ThresholdModel(min=0.7),
        waiver=WaiverState(
            reason="retraining", approved_by="ana", expires=dt.date(2027, 1, 1), state="active"
        ),
        message="waived",
    )
    return make_report([passing, adversarial_check(), waived])


def test_html_is_registered_under_its_cli_name() -> None:
    assert isinstance(FORMATS["html"], HtmlFormat)
    assert FORMATS["html"].filename == "report.html"


def test_verdict_comes_first_and_every_check_is_in_the_table(tmp_path: Path) -> None:
    html = HtmlFormat(tmp_path).render(sample_report(tmp_path))
    body = html.split("<body>", 1)[1]
    assert body.index('id="verdict"') < body.index("<table")
    assert "FAIL" in body[: body.index("<table")]
    table = body[body.index("<table id=checks>") : body.index("</table>")]
    for check_id in ("clean-accuracy", "pgd-linf-8", "fog"):
        assert check_id in table
    assert "[0.38, 0.46]" in table
    assert "≥ 0.5" in table


def test_images_are_embedded_as_data_uris_and_nothing_is_loaded_from_elsewhere(tmp_path: Path) -> None:
    html = HtmlFormat(tmp_path).render(sample_report(tmp_path))
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 2
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert not re.search(r"(href|src)=\"?(https?:)?//", html)
    assert "<link" not in html
    assert CONTENT_SECURITY_POLICY in html


def test_missing_or_escaping_artifacts_are_skipped_with_a_note(tmp_path: Path) -> None:
    report = make_report(
        [adversarial_check(artifacts=["gone.png", "../outside.png", "/etc/passwd", "log.txt"])]
    )
    (tmp_path.parent / "outside.png").write_bytes(b"not shown")
    html = HtmlFormat(tmp_path).render(report)
    assert "<img" not in html
    assert "missing from the report folder" in html
    assert html.count("must stay inside the report folder") == 2
    assert "not an image" in html


def test_without_an_artifact_root_images_are_noted_not_embedded(tmp_path: Path) -> None:
    html = HtmlFormat().render(sample_report(tmp_path))
    assert "<img" not in html
    assert "no report folder given" in html


@pytest.mark.parametrize(
    "where",
    ["message", "id", "description", "finding", "class name", "artifact", "policy name", "verdict message"],
)
def test_everything_from_policies_and_artifacts_is_escaped(tmp_path: Path, where: str) -> None:
    check = adversarial_check(artifacts=[])
    changes = {
        "message": {"message": HOSTILE},
        "id": {"id": HOSTILE},
        "description": {"description": HOSTILE},
        "finding": {"findings": [Finding(code=HOSTILE, message=HOSTILE, data={HOSTILE: HOSTILE})]},
        "class name": {"details": {"per_class_accuracy": {HOSTILE: 0.5}, "labels": [HOSTILE]}},
        "artifact": {"artifacts": [f"{HOSTILE}.png", 'x" onerror="alert(1).png']},
    }.get(where, {})
    report = make_report([check.model_copy(update=changes)])
    if where == "policy name":
        report = report.model_copy(update={"policy": report.policy.model_copy(update={"name": HOSTILE})})
    if where == "verdict message":
        report = report.model_copy(update={"message": HOSTILE})
    html = HtmlFormat(tmp_path).render(report)
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert 'onerror="' not in html


def test_failing_checks_come_first_and_passes_last_collapsed(tmp_path: Path) -> None:
    report = sample_report(tmp_path)  # policy order: pass, fail, waived
    errored = adversarial_check(id="masking", status="error", message="timed out", artifacts=[])
    report = report.model_copy(update={"checks": [*report.checks, errored]})
    html = HtmlFormat(tmp_path).render(report)
    table = html[html.index("<table id=checks>") : html.index("</table>", html.index("<table id=checks>"))]
    assert [table.index(name) for name in ("masking", "pgd-linf-8", "fog", "clean-accuracy")] == sorted(
        table.index(name) for name in ("masking", "pgd-linf-8", "fog", "clean-accuracy")
    )
    body = html[html.index("</table>", html.index("<table id=checks>")) :]
    sections = re.findall(r'<section class="check" id="(check-\d+)">', body)
    assert sections == ["check-3", "check-1", "check-2", "check-0"]  # error, fail, waived, then the pass
    details = body[body.index('<details class="passed"') :]
    assert "clean-accuracy" in details and "pgd-linf-8" not in details
    assert '<details class="passed" id="passed" open' not in details  # collapsed
    assert body.index('id="check-1"') < body.index('<details class="passed"')


def test_a_summary_bar_counts_the_statuses(tmp_path: Path) -> None:
    html = HtmlFormat(tmp_path).render(sample_report(tmp_path))
    bar = html[html.index('id="summary-bar"') : html.index("</div>", html.index('id="summary-bar"'))]
    assert re.findall(r'<span class="(\w+)" style="flex: (\d+)', bar) == [
        ("fail", "1"),
        ("waived", "1"),
        ("pass", "1"),
    ]
    assert html.index('id="summary-bar"') < html.index("<table id=checks>")


def test_policy_locations_read_as_the_repository_or_builtin(tmp_path: Path) -> None:
    from gate.policy.loader import builtin_policy_dir

    builtin = str(builtin_policy_dir() / "baseline.yaml")
    inside = tmp_path / "repo" / "policies" / "gate-policy.yaml"
    checks = [
        adversarial_check(id="a", location=Location(path=builtin, line=7, column=5), artifacts=[]),
        adversarial_check(id="b", location=Location(path=str(inside), line=3, column=5), artifacts=[]),
    ]
    html = HtmlFormat(tmp_path, source_root=tmp_path / "repo").render(make_report(checks))
    assert "<code>builtin:baseline:7:5</code>" in html
    assert "<code>policies/gate-policy.yaml:3:5</code>" in html
    assert "builtin_policies" not in html


def test_timings_carry_units(tmp_path: Path) -> None:
    report = sample_report(tmp_path).model_copy(
        update={"timings": {"load_data": 0.25, "batch_size": 256.0, "check:pgd-linf-8": 3.5}}
    )
    html = HtmlFormat(tmp_path).render(report)
    timings = html[html.index("<table id=timings>") :]
    assert "<th>load data</th><td class=num>0.25 s</td>" in timings
    assert "<th>batch size</th><td class=num>256 samples</td>" in timings
    assert "<th>check pgd-linf-8</th><td class=num>3.50 s</td>" in timings


def test_wide_tables_scroll_instead_of_overflowing(tmp_path: Path) -> None:
    html = HtmlFormat(tmp_path).render(sample_report(tmp_path))
    assert "<div class=scroll><table id=checks>" in html
    assert ".scroll { overflow-x: auto;" in html and "@media (max-width: 900px)" in html


class _TableNesting(HTMLParser):
    """Each outermost table of a page, and whether a scrolling box holds it."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[tuple[str, bool]] = []  # (tag, is a scrolling div)
        self.tables: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and not any(name == "table" for name, _ in self.open):
            held = any(scrolls for _, scrolls in self.open)
            self.tables.append((dict(attrs).get("id") or dict(attrs).get("class") or "table", held))
        if tag not in ("img", "meta", "br", "hr", "input", "link"):
            self.open.append((tag, tag == "div" and dict(attrs).get("class") == "scroll"))

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop()[0] != tag:
            pass


def test_every_table_scrolls_inside_its_box_instead_of_widening_the_page(tmp_path: Path) -> None:
    report = sample_report(tmp_path)
    wide = {f"field_{i}": 0.123456 for i in range(14)}  # an ε sweep with many columns
    check = adversarial_check(id="wide", details={"sweep": [wide, wide]})
    html = HtmlFormat(tmp_path).render(report.model_copy(update={"checks": [*report.checks, check]}))
    parser = _TableNesting()
    parser.feed(html)
    assert len(parser.tables) > 5
    assert [name for name, held in parser.tables if not held] == []


def test_details_render_generically() -> None:
    assert render_value([0.5, 0.25, 3]) == "<code>0.5, 0.25, 3</code>"
    mapping = render_value({"cat": 0.5, "nested": {"dog": 1}})
    assert mapping.startswith("<table>") and "<th>cat</th><td class=num>0.5</td>" in mapping
    assert "<th>dog</th>" in mapping
    records = render_value([{"level": 1, "accuracy": 0.9}, {"level": 2, "accuracy": 0.8}])
    assert "<th>level</th><th>accuracy</th>" in records
    long = render_value(list(range(100)))
    assert "36 more" in long


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_renders_in_headless_chromium_without_console_errors(tmp_path: Path) -> None:
    folder = tmp_path / "report"
    report = sample_report(folder)
    report = report.model_copy(
        update={"checks": [*report.checks, adversarial_check(id="x", message=HOSTILE)]}
    )
    page = folder / "report.html"
    page.write_text(HtmlFormat(folder).render(report), encoding="utf-8")
    command = [
        str(CHROMIUM),
        *HEADLESS,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert 'id="verdict"' in result.stdout and ">FAIL<" in result.stdout
    assert "pgd-linf-8" in result.stdout
    console_lines = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Refused" in line]
    assert console_lines == []
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def triage_report(folder: Path) -> Report:
    """Many checks in policy order pass, fail, warn, error …, with evidence, a long model path and a wide
    details table: what the browser test lays out."""
    write_png(folder / "adversarial" / "pair-0.png")
    write_png(folder / "adversarial" / "sweep.png", seed=1)
    wide = {f"column_{i}": [{f"field_{j}": 0.123456 for j in range(14)}] for i in range(2)}
    passing = [
        adversarial_check(id=f"pass-{i}", status="pass", message="meets min 0.5", artifacts=["adversarial/pair-0.png"])
        for i in range(6)
    ]  # fmt: skip
    checks = [
        *passing[:3],
        adversarial_check(id="warned", status="warn", severity="warn", details={"sweep": wide["column_0"]}),
        adversarial_check(id="failed"),
        *passing[3:],
        adversarial_check(id="errored", status="error", message="timed out", artifacts=[]),
    ]
    report = make_report(checks)
    long_source = "/home/ci/work/" + "very-long-folder-name/" * 8 + "model.onnx"
    return report.model_copy(update={"model": report.model.model_copy(update={"source": long_source})})


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_a_browser_shows_failures_first_readable_evidence_and_nothing_wider_than_the_window(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "report"
    page = folder / "report.html"
    page.write_text(HtmlFormat(folder).render(triage_report(folder)), encoding="utf-8")
    browser = Chromium(CHROMIUM, tmp_path / "profile")
    try:
        layouts = {}
        for width in (1400, 800):
            browser.open(page, width)
            layouts[width] = browser.evaluate(LAYOUT)
            (tmp_path / f"report-{width}.png").write_bytes(browser.screenshot())
    finally:
        browser.close()

    wide = layouts[1400]
    assert [section["status"] for section in wide["sections"]] == ["error", "fail", "warn"]
    tops = [section["top"] for section in wide["sections"]]
    assert tops == sorted(tops) and wide["bar"] < tops[0]
    assert wide["bar"] < 400 and tops[0] < 1600  # the first failure is near the top, not 4,500 px down
    assert wide["passed_open"] is False  # passes collapsed
    assert wide["images"] and all(
        image["width"] >= 96 and image["height"] >= 96 and image["rendering"] == "pixelated"
        for image in wide["images"]
    ), wide["images"]  # 16 px evidence drawn at a readable size, nearest-neighbour
    assert all(size >= 12 for size in wide["captions"]), wide["captions"]
    for width, layout in layouts.items():
        assert layout["overflow"] <= 0, f"horizontal overflow at {width} px"
        assert layout["clipped"] == [] and layout["wide"] == [], (width, layout)
    with Image.open(tmp_path / "report-1400.png") as screenshot:  # the screenshot check stays runnable
        assert screenshot.width == 1400 and len(screenshot.convert("L").getcolors(256) or ()) > 8
    if target := os.environ.get("GATE_REPORT_SCREENSHOT"):  # regenerates docs/report-screenshot.png
        shutil.copyfile(tmp_path / "report-1400.png", target)
