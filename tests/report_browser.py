"""The report as a reader's browser shows it: headless Chromium at 1300 x 1000 px, a probe script that measures
where the answer and its figure sit, whether every image loaded and what the page's prose says."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
FIRST_SCREEN = (1300, 1000)  # width and height in px of what a reader sees before scrolling
# Runs after every image loaded; writes what it measured into the page, which --dump-dom then prints.
PROBE = """<script>
window.addEventListener('load', () => {
  const prose = [...document.querySelectorAll('h1, h2, h3, h4, p, li, figcaption, caption')]
    .filter(e => !e.closest('#glossary') && !e.closest('table'));
  const answer = [...document.querySelectorAll('#answer p')].find(p => p.textContent.includes('Answer.'));
  const figure = document.getElementById('answer-figure');
  const box = e => e ? e.getBoundingClientRect() : null;
  const result = {
    answer_bottom: answer ? box(answer).bottom + window.scrollY : null,
    figure_top: figure ? box(figure).top + window.scrollY : null,
    figure_bottom: figure ? box(figure).bottom + window.scrollY : null,
    images: document.images.length,
    broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
    prose: prose.map(e => e.textContent).join('\\n'),
  };
  const out = document.createElement('pre');
  out.id = 'probe-result';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def browser() -> Path:
    if CHROMIUM.is_file():
        return CHROMIUM
    if os.environ.get("LUS_REQUIRE_BROWSER"):
        pytest.fail(f"{CHROMIUM} is missing but LUS_REQUIRE_BROWSER is set: apt-get install -y chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium); set LUS_REQUIRE_BROWSER=1 to fail instead")


def run_browser(scratch: Path, *args: str) -> subprocess.CompletedProcess:
    profile = scratch / "chromium-profile"
    return subprocess.run([str(browser()), *BROWSER_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


def probe_report(report: Path, scratch: Path) -> dict:
    """What the browser measured on a copy of `report` (beside it, so its relative links still resolve)."""
    probed = report.with_name(".probe_" + report.name)
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        result = run_browser(scratch, f"--window-size={FIRST_SCREEN[0]},{FIRST_SCREEN[1]}",
                             "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    finally:
        probed.unlink()
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the probe script did not run: {result.stdout[-1000:]}"
    import html

    return json.loads(html.unescape(found.group(1)))


def check_first_screen(measured: dict, raw_names: list[str]) -> None:
    """The issue's reader checks: the answer sentence and its figure on the first screen, every image loaded, no
    raw condition or metric name in the prose outside the glossary."""
    height = FIRST_SCREEN[1]
    assert measured["answer_bottom"] is not None, "no 'Answer.' paragraph in the #answer section"
    assert measured["answer_bottom"] <= height, f"the answer ends at {measured['answer_bottom']:.0f} px"
    assert measured["figure_top"] is not None, "no #answer-figure image"
    assert measured["figure_bottom"] <= height, f"the answer figure ends at {measured['figure_bottom']:.0f} px"
    assert measured["images"] >= 1 and not measured["broken"], f"images that did not load: {measured['broken']}"
    prose = measured["prose"]
    raw_names = [n for n in raw_names if set(n) & set("_@+/")]  # "none" is also an English word
    leaked = sorted({name for name in raw_names if name and re.search(rf"(?<![\w@+-]){re.escape(name)}(?![\w@+-])",
                                                                     prose)})
    assert not leaked, f"raw names in the report's prose (use their labels): {leaked}"
