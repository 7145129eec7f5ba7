"""One page for the whole study: the question, the answer and its figure on the first screen; then the reference
points, the real-patient curve, the patients, the original study's claim, the synthetic images and their audit, the
exploratory effects, the glossary, every executed notebook rendered to HTML, and where the figures were made.

`<out>/report.html` links only relative paths inside the output folder, so the folder can be copied,
zipped or served as it is and read without Jupyter and without network: the notebooks are rendered with
nbconvert (code hidden, figures embedded) into `<out>/notebooks_html/`, with no script loaded from a CDN
(MathJax included: formulas show as TeX), and the comparison's figures are embedded in the page as PNG.
Rendering is skipped for a notebook whose HTML is newer than it, so rebuilding the report is cheap.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from lus_utils.compare.result import comparison_dir
from lus_utils.compare.runs import RUNNER_SUMMARY, missing_runs
from lus_utils.paths import OutLayout
from lus_utils.provenance import atomic_path, read_json, write_text_atomic

HTML_DIR = "notebooks_html"
REPORT_FILE = "report.html"
# lab template without its CDN scripts (require.js, MathJax, mermaid): the pages must work offline.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; font-size: .82rem; margin: .5rem 0 1rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } .scroll { overflow-x: auto; } img { max-width: 100%; }
.failed { color: #b00020; font-weight: bold; } .muted { color: #666; font-size: .85rem; }
nav a { margin-right: 1rem; } #answer { font-size: 1.02rem; } #answer ul { margin: .3rem 0; }
footer { margin-top: 2.5rem; }
"""


def _exporter() -> Any:
    from jinja2 import DictLoader  # lazy: nbconvert and its templates load only when a report is built
    from nbconvert import HTMLExporter

    return HTMLExporter(extra_loaders=[DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
                        template_file="offline.html.j2", exclude_input=True, exclude_input_prompt=True,
                        exclude_output_prompt=True)


def render_notebook(source: Path, target: Path, exporter: Any = None) -> bool:
    """Render one executed notebook to HTML (code hidden) unless `target` is already newer; True if rendered."""
    if target.is_file() and target.stat().st_mtime_ns >= source.stat().st_mtime_ns:
        return False
    body, _ = (exporter or _exporter()).from_filename(str(source))
    with atomic_path(target) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return True


def _title(nb: dict[str, Any]) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def notebook_entries(out_dir: Path) -> list[dict[str, Any]]:
    """Every executed notebook of the study (finished or failed), rendered, with what the page lists."""
    layout = OutLayout(Path(out_dir))
    html_dir = layout.root / HTML_DIR
    sources = sorted(p for p in layout.notebooks.glob("*.ipynb") if not p.name.startswith("."))
    exporter = None
    entries = []
    for source in sources:
        failed = source.name.endswith(".failed.ipynb")
        run_id = source.name[: -len(".failed.ipynb")] if failed else source.stem
        target = html_dir / f"{source.stem}.html"
        stale = not target.is_file() or target.stat().st_mtime_ns < source.stat().st_mtime_ns
        if stale:
            exporter = exporter or _exporter()
            render_notebook(source, target, exporter)
        nb = json.loads(source.read_text(encoding="utf-8"))
        meta = nb.get("metadata", {}).get("papermill", {})
        notebook = Path(meta.get("input_path") or run_id).stem
        entries.append({"run_id": run_id, "notebook": notebook, "stage": notebook[:2], "title": _title(nb),
                        "failed": failed, "html": target.relative_to(layout.root).as_posix(),
                        "ipynb": source.relative_to(layout.root).as_posix(), "duration": meta.get("duration"),
                        "finished": meta.get("end_time") or ""})
    keep = {f"{Path(e['html']).name}" for e in entries}
    for old in html_dir.glob("*.html") if html_dir.is_dir() else []:
        if old.name not in keep:
            old.unlink()
    return sorted(entries, key=lambda e: (e["stage"], e["notebook"], e["run_id"]))


def _png(path: Path, alt: str, element_id: str = "") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    identity = f' id="{element_id}"' if element_id else ""
    return f'<img{identity} alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fragment(path: Path) -> str:
    return f'<div class="scroll">{path.read_text(encoding="utf-8")}</div>' if path.is_file() else ""


def _figure(folder: Path, name: str, alt: str, element_id: str = "") -> str:
    path = folder / "figures" / f"{name}.png"
    return _png(path, alt, element_id) if path.is_file() else ""


# The sections after the answer, in reading order: (id, heading, [(kind, file, alt text)]); figures are the
# files notebook 06 saved (comparison/figures/<name>.png), tables the HTML fragments it wrote beside its CSVs.
SECTIONS = (
    ("references", "Reference points: the practitioner's baseline, the metadata shortcut, the oversampling control",
     [("table", "references.html", "")]),
    ("curve", "What a synthetic set is worth in real patients (simulated minorities)",
     [("figure", "real_patient_curve", "the target's average precision against real patients, with the synthetic "
                                       "points"), ("table", "curve.html", "")]),
    ("patients", "Per minority patient",
     [("figure", "patients", "each minority patient under every condition"), ("table", "patients.html", "")]),
    ("claim", "The original study's claim, correction by correction", [("table", "original_claim.html", "")]),
    ("synthetic", "The synthetic images and their audit",
     [("figure", "synthetic_grid", "random kept synthetic images of every family beside real frames"),
      ("table", "synthetic.html", ""),
      ("figure", "example_pairs", "the closest synthetic images beside their nearest training frames")]),
    ("exploratory", "Exploratory effects (intervals only, no tests)",
     [("figure", "forest", "paired differences of every comparison"), ("table", "effects.html", "")]),
    ("tables", "Results per design and architecture", [("table", "tables.html", "")]),
)


def answer_section(folder: Path) -> str:
    """The first screen: the question, the generated answer and the figure that shows it."""
    import mistune  # lazy: as nbconvert

    if not (folder / "answer.md").is_file():
        return ("<section id='answer'><p>Notebook 06 has not written a comparison in this output folder yet "
                "(<code>python run_all.py --only 06</code>).</p></section>")
    answer = mistune.html((folder / "answer.md").read_text(encoding="utf-8"))
    return (f"<section id='answer'>{answer}"
            f"{_figure(folder, 'answer', 'the primary effects, their reference points and the real-patient curve', 'answer-figure')}"
            "</section>")


def body_sections(out_dir: Path) -> list[tuple[str, str, str]]:
    """(id, heading, html) of every section notebook 06 left something for, in reading order."""
    folder = comparison_dir(out_dir)
    sections = []
    for section_id, heading, items in SECTIONS:
        parts = [_figure(folder, name, alt) if kind == "figure" else _fragment(folder / name)
                 for kind, name, alt in items]
        if any(parts):
            sections.append((section_id, heading, "\n".join(p for p in parts if p)))
    if (folder / "conclusions.md").is_file():
        import mistune  # lazy: as nbconvert

        sections.append(("conclusions", "The conclusions in full",
                         mistune.html((folder / "conclusions.md").read_text(encoding="utf-8"))))
    return sections


def data_links(out_dir: Path) -> str:
    folder = comparison_dir(out_dir)
    links = [p for p in ("results.csv",) if (Path(out_dir) / p).is_file()]
    links += [f"comparison/{p.name}" for p in sorted(folder.glob("*.csv"))]
    if not links:
        return ""
    return "<p class='muted'>Data: " + " · ".join(f'<a href="{html.escape(p)}">{html.escape(p)}</a>'
                                                  for p in links) + "</p>"


def footer(out_dir: Path) -> str:
    """Where and how the figures were made: machine, versions, wall time, commit, and what reproduces."""
    folder = comparison_dir(out_dir)
    try:
        record = read_json(folder / "provenance.json")
    except (OSError, ValueError):
        record = {}
    env = record.get("environment", {})
    machine = env.get("machine", {})
    machine_text = (f"{machine.get('cpu', '?')} ({machine.get('isa', '?')}, {machine.get('cores', '?')} cores)"
                    if machine else "unknown")
    device = env.get("device", "")
    if device and not str(device).startswith("cpu"):
        machine_text = f"{device} on {machine_text}"
    versions = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
    summary_path = Path(out_dir) / RUNNER_SUMMARY
    try:
        summary = read_json(summary_path) if summary_path.is_file() else {}
    except (OSError, ValueError):
        summary = {}
    wall = (f"{summary['seconds'] / 60:.1f} minutes for the runner's last call (profile {summary.get('profile', '?')}, "
            f"{summary.get('runs', '?')} runs)") if isinstance(summary.get("seconds"), (int, float)) else "not recorded"
    commit = record.get("code_version", {}).get("git_commit", "unknown")
    evaluation = record.get("params", {}).get("evaluation", {})
    return ("<footer id='made'><h2>How these figures were made</h2><ul>"
            f"<li>Machine: {html.escape(machine_text)}</li>"
            f"<li>Versions: Python {html.escape(str(env.get('python', '?')))}; {html.escape(versions)}</li>"
            f"<li>Wall time: {html.escape(wall)}</li>"
            f"<li>Commit: <code>{html.escape(str(commit))}</code>; comparison computed "
            f"{html.escape(str(record.get('created', '?')))} from {record.get('n_units', '?')} paired units, "
            f"intervals at {evaluation.get('ci_level', '?')} from {evaluation.get('n_boot', '?')} resamples</li>"
            "</ul><p class='muted'>The same commit, profile and seeds reproduce these figures exactly on the same "
            "machine; on another CPU or a GPU (other float kernels) they move within their intervals.</p></footer>")


def notebooks_section(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "<h2 id='notebooks'>Executed notebooks</h2><p>None yet.</p>"
    rows = []
    for e in entries:
        status = "<span class='failed'>FAILED (partly executed)</span>" if e["failed"] else "finished"
        duration = f"{e['duration']:.0f} s" if isinstance(e["duration"], (int, float)) else ""
        rows.append(f"<tr><td>{html.escape(e['stage'])}</td><td><a href=\"{html.escape(e['html'])}\">"
                    f"{html.escape(e['run_id'])}</a></td><td>{html.escape(e['title'])}</td><td>{status}</td>"
                    f"<td>{duration}</td><td>{html.escape(str(e['finished'])[:19])}</td>"
                    f"<td><a href=\"{html.escape(e['ipynb'])}\">ipynb</a></td></tr>")
    return ("<h2 id='notebooks'>Executed notebooks</h2><p class='muted'>Rendered without code; the .ipynb holds "
            "code and outputs.</p><div class='scroll'><table><tr><th>stage</th><th>run</th><th>notebook</th>"
            "<th>status</th><th>time</th><th>finished (UTC)</th><th>source</th></tr>"
            + "\n".join(rows) + "</table></div>")


def unfinished_section(out_dir: Path) -> str:
    """The runs the runner's last summary (logs/runner_summary.json) lists as failed, blocked or interrupted."""

    rows = [f"<li><code>{html.escape(r['run_id'])}</code>: {html.escape(r['status'])}. {html.escape(r['message'])}</li>"
            for _, r in missing_runs(out_dir).iterrows()]
    if not rows:
        return ""
    return ("<h2 id='unfinished'>Runs that did not finish</h2><p class='failed'>The comparison above uses only "
            "the runs that finished; these are missing from it:</p><ul>" + "\n".join(rows) + "</ul>")


def build_report(out_dir: Path, title: str = "Synthetic data for a tiny minority class: study report") -> Path:
    """Write <out>/report.html (atomically): the answer and its figure first, then the sections in reading order,
    the glossary, every rendered notebook, and how the figures were made."""
    layout = OutLayout(Path(out_dir))
    folder = comparison_dir(layout.root)
    entries = notebook_entries(layout.root)
    sections = body_sections(layout.root)
    nav = "".join(f'<a href="#{i}">{html.escape(h.split(":")[0].split(" (")[0])}</a>' for i, h, _ in sections)
    body = "\n".join(f"<section id='{i}'><h2>{html.escape(h)}</h2>{content}</section>" for i, h, content in sections)
    glossary = (f"<section id='glossary'><h2>Glossary: the CSVs' names and the labels used here</h2>"
                f"{_fragment(folder / 'glossary.html')}</section>") if (folder / "glossary.html").is_file() else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{answer_section(folder)}
<nav>{nav}<a href="#glossary">Glossary</a><a href="#notebooks">Notebooks</a><a href="#made">How it was made</a></nav>
{body}
{unfinished_section(layout.root)}
{glossary}
{data_links(layout.root)}
{notebooks_section(entries)}
{footer(layout.root)}
</body></html>
"""
    return write_text_atomic(layout.root / REPORT_FILE, page)
