"""report.html: comparison up front, every executed notebook rendered without code, links that resolve,
and a real headless browser that renders it."""
from __future__ import annotations

import json
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from lus_utils.compare import comparison as C
from lus_utils.compare import figures, reporting
from test_comparison import write_run
from lus_utils.config.classify import EvaluationParams
from lus_utils.config.compare import CompareParams

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TINY_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def executed_notebook(out: Path, name: str, source_name: str) -> None:
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print('CODE-MARKER')")
    code.outputs = [nbformat.v4.new_output("stream", text=f"OUTPUT-MARKER {name}\n"),
                    nbformat.v4.new_output("display_data", data={"image/png": TINY_PNG, "text/plain": "fig"})]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {source_name} title\n\nSome narrative."), code]
    nb.metadata["papermill"] = {"input_path": f"notebooks/{source_name}.ipynb", "duration": 3.2,
                                "end_time": "2025-01-01T00:00:00"}
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / "notebooks" / name)


@pytest.fixture
def report(tmp_path) -> Path:
    out = tmp_path / "out"
    for seed in range(3):
        write_run(out, "none", 0, seed)
        write_run(out, "weighted_loss", 0, seed, boost=0.5)
    executed_notebook(out, "01_data_exploration.ipynb", "01_data_exploration")
    executed_notebook(out, "resnet18-none-seed0.ipynb", "02_baseline")
    executed_notebook(out, "resnet18-bad.failed.ipynb", "02_baseline")
    (out / "notebooks" / ".resnet18-x.running.ipynb").write_text("{}")  # in progress: never listed
    comp = C.compare(out, CompareParams(primary=["weighted_loss vs none: minority_ap"]), EvaluationParams(n_boot=100))
    figures.forest_plot(comp.effects, "viral", 0.95, comp.figures)
    figures.patient_plot(comp.patients, "viral", comp.figures)
    figures.example_pairs_plot(out, comp.audits, 2, comp.figures)
    return reporting.build_report(out)


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("href", "src") and value]


def relative_links(page: Path) -> list[str]:
    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return [link for link in parser.links if not urlparse(link).scheme and not link.startswith("#")]


def test_report_links_resolve_and_code_is_hidden(report):
    out = report.parent
    links = relative_links(report)
    assert "results.csv" in links and "notebooks_html/01_data_exploration.html" in links
    assert "notebooks_html/resnet18-bad.failed.html" in links and not any("running" in link for link in links)
    for link in links:
        assert (out / unquote(link.split("#")[0])).is_file(), f"broken link {link}"
    page = report.read_text()
    assert page.index("Conclusions") < page.index("Executed notebooks")  # comparison up front
    assert "weighted_loss" in page and "data:image/png;base64," in page and "FAILED (partly executed)" in page
    assert page.index("Primary comparisons") < page.index("Per minority patient")
    rendered = (out / "notebooks_html" / "resnet18-none-seed0.html").read_text()
    assert "OUTPUT-MARKER resnet18-none-seed0.ipynb" in rendered and "CODE-MARKER')" not in rendered
    assert "cdnjs" not in rendered and not re.search(r'<script[^>]+src="https?://', rendered)
    before = (out / "notebooks_html" / "resnet18-none-seed0.html").stat().st_mtime_ns
    reporting.build_report(out)  # a rebuild renders only what changed
    assert (out / "notebooks_html" / "resnet18-none-seed0.html").stat().st_mtime_ns == before


def browser() -> Path:
    if CHROMIUM.is_file():
        return CHROMIUM
    if os.environ.get("LUS_REQUIRE_BROWSER"):
        pytest.fail(f"{CHROMIUM} is missing but LUS_REQUIRE_BROWSER is set: apt-get install -y chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium); set LUS_REQUIRE_BROWSER=1 to fail instead")


def run_browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([str(browser()), *BROWSER_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def test_headless_browser_renders_the_report(report, tmp_path):
    dom = run_browser(tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Conclusions" in dom.stdout and "Effects against the matching baseline runs" in dom.stdout
    assert "weighted_loss" in dom.stdout and "resnet18-none-seed0" in dom.stdout
    notebook = report.parent / "notebooks_html" / "resnet18-none-seed0.html"
    dom = run_browser(tmp_path, "--dump-dom", notebook.as_uri())
    assert dom.returncode == 0 and "OUTPUT-MARKER" in dom.stdout
    shot = tmp_path / "report.png"
    result = run_browser(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    assert result.returncode == 0 and shot.is_file() and shot.stat().st_size > 20_000, result.stderr[-2000:]
