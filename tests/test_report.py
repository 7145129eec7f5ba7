"""report.html: comparison up front, every executed notebook rendered without code, links that resolve,
and a real headless browser that renders it."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from lus_utils.compare import comparison as C
from lus_utils.compare import figures, reporting, synthetic_figures
from lus_utils.config.classify import EvaluationParams
from lus_utils.config.compare import CompareParams
from report_browser import check_first_screen, probe_report, run_browser
from test_comparison import write_run

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
    figures.answer_plot(comp)
    figures.forest_plot(comp.effects, 0.95, comp.figures)
    figures.patient_plot(comp.patients, "viral", comp.figures)
    synthetic_figures.example_pairs_plot(out, comp.audits, 2, comp.figures)
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
    order = [page.index(marker) for marker in ("id='answer'", 'id="answer-figure"', "id='references'",
                                               "id='patients'", "id='exploratory'", "id='glossary'",
                                               "Executed notebooks", "id='made'")]
    assert order == sorted(order), "the report's sections are out of their reading order"
    assert "data:image/png;base64," in page and "FAILED (partly executed)" in page
    assert "weighted loss (unaugmented)" in page and "Machine:" in page and "Commit:" in page
    rendered = (out / "notebooks_html" / "resnet18-none-seed0.html").read_text()
    assert "OUTPUT-MARKER resnet18-none-seed0.ipynb" in rendered and "CODE-MARKER')" not in rendered
    assert "cdnjs" not in rendered and not re.search(r'<script[^>]+src="https?://', rendered)
    before = (out / "notebooks_html" / "resnet18-none-seed0.html").stat().st_mtime_ns
    reporting.build_report(out)  # a rebuild renders only what changed
    assert (out / "notebooks_html" / "resnet18-none-seed0.html").stat().st_mtime_ns == before


def test_the_first_screen_shows_the_answer_and_its_figure(report, tmp_path):
    measured = probe_report(report, tmp_path)
    check_first_screen(measured, ["weighted_loss", "minority_ap", "minority_auroc"])
    assert "Synthetic data" in measured["prose"] or "Answer." in measured["prose"]


def test_the_probe_sees_a_raw_name_and_a_figure_below_the_first_screen(report, tmp_path):
    """The checks can fail: a raw name put into the prose and a tall block above the figure are caught."""
    page = report.read_text()
    page = page.replace("<section id='answer'>", "<section id='answer'><div style='height:1200px'></div>"
                        "<p>raw weighted_loss here</p>", 1)
    report.write_text(page)
    measured = probe_report(report, tmp_path)
    with pytest.raises(AssertionError, match="ends at"):
        check_first_screen(measured, [])
    measured["answer_bottom"] = measured["figure_bottom"] = 0
    with pytest.raises(AssertionError, match="weighted_loss"):
        check_first_screen(measured, ["weighted_loss"])


def test_headless_browser_renders_the_report(report, tmp_path):
    dom = run_browser(tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Question." in dom.stdout and "Exploratory effects" in dom.stdout and "resnet18-none-seed0" in dom.stdout
    notebook = report.parent / "notebooks_html" / "resnet18-none-seed0.html"
    dom = run_browser(tmp_path, "--dump-dom", notebook.as_uri())
    assert dom.returncode == 0 and "OUTPUT-MARKER" in dom.stdout
    shot = tmp_path / "report.png"
    result = run_browser(tmp_path, f"--screenshot={shot}", "--window-size=1300,1000", report.as_uri())
    assert result.returncode == 0 and shot.is_file() and shot.stat().st_size > 20_000, result.stderr[-2000:]
