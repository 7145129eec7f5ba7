"""One page for the whole study: the comparison up front, then every executed notebook rendered to HTML.

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
from lus_utils.compare.runs import missing_runs
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
nav a { margin-right: 1rem; }
"""


def _exporter() -> Any:
    from jinja2 import DictLoader
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


def _png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fragment(path: Path) -> str:
    return f'<div class="scroll">{path.read_text(encoding="utf-8")}</div>' if path.is_file() else ""


def comparison_section(out_dir: Path) -> str:
    """The comparison written by notebook 06 (comparison.compare and its figures), in reading order."""
    import mistune

    layout = OutLayout(Path(out_dir))
    folder = comparison_dir(layout.root)
    if not (folder / "conclusions.md").is_file():
        return ("<h2 id='comparison'>Comparison</h2><p>Notebook 06 has not written a comparison in this "
                "output folder yet (<code>python run_all.py --only 06</code>).</p>")
    figures = folder / "figures"
    parts = ["<h2 id='comparison'>Conclusions</h2>", mistune.html((folder / "conclusions.md").read_text(encoding="utf-8"))]
    try:
        record = read_json(folder / "provenance.json")
        params = record.get("params", {})
        parts.append(f"<p class='muted'>Computed {html.escape(str(record.get('created', '')))} from "
                     f"{record.get('n_runs', '?')} runs; intervals {params.get('ci_level')} from "
                     f"{params.get('n_boot')} class-stratified patient-bootstrap resamples "
                     f"({record.get('n_minority_patients', '?')} minority patients); exact Wilcoxon signed-rank "
                     f"test with Holm over the declared primary comparisons "
                     f"{html.escape(json.dumps(params.get('primary', [])))}; code "
                     f"{html.escape(json.dumps(record.get('code_version', {})))}.</p>")
    except (OSError, ValueError):
        pass
    links = [p for p in ("results.csv",) if (layout.root / p).is_file()]
    links += [f"comparison/{p.name}" for p in sorted(folder.glob("*.csv"))]
    parts.append("<p>Data: " + " · ".join(f'<a href="{html.escape(p)}">{html.escape(p)}</a>' for p in links) + "</p>")
    parts.append("<h2 id='effects'>Effects against the matching baseline runs (primary first)</h2>")
    if (figures / "forest.png").is_file():
        parts.append(_png(figures / "forest.png", "forest plot of paired differences"))
    parts.append(_fragment(folder / "effects.html"))
    parts += ["<h2 id='references'>Reference points: baseline, metadata reference, oversampling control</h2>",
              _fragment(folder / "references.html")]
    parts.append("<h2 id='patients'>Per minority patient</h2>")
    if (figures / "patients.png").is_file():
        parts.append(_png(figures / "patients.png", "each minority patient under every condition"))
    parts.append(_fragment(folder / "patients.html"))
    parts += ["<h2 id='tables'>Results per architecture</h2>", _fragment(folder / "tables.html")]
    parts += ["<h2 id='synthetic'>Synthetic sets: audit beside each condition</h2>", _fragment(folder / "synthetic.html")]
    if (figures / "example_pairs.png").is_file():
        parts.append(_png(figures / "example_pairs.png", "synthetic images beside their nearest training frames"))
    return "\n".join(parts)


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
    """Write <out>/report.html (atomically): comparison first, then links to every rendered notebook."""
    layout = OutLayout(Path(out_dir))
    entries = notebook_entries(layout.root)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">Output folder <code>{html.escape(layout.root.name)}</code>; {len(entries)} executed notebook(s).</p>
<nav><a href="#comparison">Conclusions</a><a href="#effects">Effects</a><a href="#references">Reference points</a>
<a href="#patients">Patients</a><a href="#tables">Tables</a><a href="#synthetic">Synthetic sets</a>
<a href="#notebooks">Notebooks</a></nav>
{comparison_section(layout.root)}
{unfinished_section(layout.root)}
{notebooks_section(entries)}
</body></html>
"""
    return write_text_atomic(layout.root / REPORT_FILE, page)
