"""Views of an attribution: the HTML page (escaped, self-contained, marks and scale), terminal, figures."""

import html
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from test_attribution import tiny_gpt
from test_attribution_result import small_result

from nanogpt.attribution.methods import compare_methods
from nanogpt.attribution.result import Attribution
from nanogpt.attribution.views import (
    BLUE,
    LEGEND_CELLS,
    RED,
    html_page,
    plot_methods,
    rgb,
    top_contributors,
    visible,
)


def text_spans(page):
    """(attributes, content) of each character's span: those inside the view's text block."""
    block = re.search(r'<div class="txt"[^>]*>(.*?)</div>', page, re.S).group(1)
    return re.findall(r"<span ([^>]*)>(.*?)</span>", block)


def test_html_renders_markup_characters_as_text():
    r = small_result(steps=4)
    page = r.to_html()
    assert page.count("<script") == 1  # ours, not the text's
    shown = [content for _, content in text_spans(page)]  # one span per character
    assert "".join(html.unescape(s) for s in shown) == visible(r.text)
    assert "&lt;" in page and "&amp;" in page and "&quot;" in page and "&#x27;" in page
    assert "·" in page and "↵" in page  # the space and the newline can be seen
    assert "http" not in page and " src=" not in page and "@import" not in page  # nothing is fetched
    assert r._repr_html_().startswith("<div id=")


def capped_result():
    """Three targets: the second stopped at the cap, with a markup character in the text."""
    scores = np.array([[0.5, 0, 0, 0], [0.2, -0.3, 0, 0], [0.1, 0.1, 0.2, 0]])
    settings = {"method": "ig", "target": "logprob", "block_size": 8, "integration": "adaptive",
                "tol": 0.05, "abs_tol": 1e-3, "max_steps": 64, "steps": 8, "rule": "gauss-legendre"}
    return Attribution(list("ab<c"), np.array([1, 2, 3]), scores, np.array([0.5, 0.9, 0.4]), np.zeros(3),
                       settings, steps_used=np.array([8, 64, 24]), capped=np.array([False, True, False]))


def test_the_page_has_a_title_a_colour_scale_the_top_contributors_and_marks_capped_targets():
    r = capped_result()
    page = html_page(r, t=3)
    assert "<title>Integrated gradients: 3 targets</title>" in page
    assert re.search(r'class="title"[^>]*>Integrated gradients of log p', page)
    assert 'class="bar"' in page and "+0.200" in page  # the scale: the row's max
    assert "2 within, 1 stopped at the cap of 64 points" in page and "median 24, max 64" in page
    marked = re.findall(r'<span class="([^"]*)"[^>]*data-r="(\d)"', page)
    assert [("flag" in c.split()) for c, _ in marked] == [False, True, False]  # only target 2
    items = re.findall(r"<li>(.*?)</li>", page)
    expected = [f"position {s} {r.tokens[s]!r} {v:+.3f}" for s, v in top_contributors(r, 3, 5)]
    assert [html.unescape(i) for i in items if i] == expected  # strongest first; '<' escaped
    assert "&#x27;&lt;&#x27;" in page


# The inline CSS properties that JupyterLab's sanitizer keeps in an untrusted notebook's HTML output
# (a subset of its allowedStyles, enough for this view); any other property would silently vanish there.
LAB_KEEPS = {"background", "border", "border-bottom", "border-radius", "color", "cursor", "display",
             "font-family", "font-size", "font-weight", "height", "line-height", "margin", "max-width",
             "opacity", "outline", "padding", "padding-left", "vertical-align", "white-space", "width"}


def untrusted(page):
    """Roughly what an untrusted notebook shows: no <style>, no <script>, no data- attributes."""
    page = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    page = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    return re.sub(r' data-[a-z]+="[^"]*"', "", page)


def style_of(attrs):
    """{property: value} of an attribute string's style=""."""
    found = re.search(r'style="([^"]*)"', attrs)
    pairs = [p.split(":", 1) for p in found.group(1).split(";") if p.strip()] if found else []
    return {k.strip(): v.strip() for k, v in pairs}


def title_of(attrs):
    found = re.search(r'title="([^"]*)"', attrs)
    return html.unescape(found.group(1)) if found else None


def test_the_view_reads_in_an_untrusted_notebook_with_inline_styles_titles_and_a_note():
    r = capped_result()
    page = r.to_html(t=2)
    view = untrusted(page)
    row, scale = r.row(2), 0.3
    spans = [(style_of(a), title_of(a)) for a, _ in text_spans(view)]
    # Target 2's context is coloured by inline styles, each with its score as a tooltip.
    for s in (0, 1):
        assert spans[s][0]["background"] == "rgb({},{},{})".format(*rgb(row[s], scale))
        assert spans[s][1] == f"position {s} {r.tokens[s]!r}: score {row[s]:+.3f}"
    assert spans[1][0]["background"] == "rgb({},{},{})".format(*BLUE)  # -0.3, the strongest
    assert "outline" in spans[2][0] and spans[2][1] == "target 2"  # the target, framed
    assert spans[2][0]["border-bottom"].endswith("#d35400")  # stopped at the cap: marked inline
    assert "background" not in spans[3][0] and spans[3][0]["opacity"] == "0.35" and spans[3][1] is None
    # The colour bar: inline cells from full blue through white to full red, labelled with the scale.
    bar = re.search(r'<span class="bar"[^>]*>(.*?)</span><i', view).group(1)
    cells = [style_of(a)["background"] for a in re.findall(r"<span ([^>]*)></span>", bar)]
    assert len(cells) == LEGEND_CELLS == 21
    assert cells[0] == "rgb({},{},{})".format(*BLUE) and cells[-1] == "rgb({},{},{})".format(*RED)
    assert cells[10] == "rgb(255,255,255)"
    assert '<i class="lo">-0.300</i>' in view and '<i class="hi">+0.300</i>' in view
    # The strongest contributors as text, and the note on what the script adds.
    items = [html.unescape(i) for i in re.findall(r"<li>(.*?)</li>", view) if i]
    assert items == ["position 1 'b' -0.300", "position 0 'a' +0.200"]
    note = re.search(r'<div class="nojs"[^>]*>(.*?)</div>', view).group(1)
    assert "re-colours" in html.unescape(note) and "File > Trust Notebook" in html.unescape(note)
    # Colours do not depend on the stylesheet, nor on anything the sanitizer drops.
    sheet = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert "rgb" not in sheet and "background" not in sheet and "linear-gradient" not in page
    used = {k for attrs in re.findall(r"<[a-z]+ ([^>]*)>", view) for k in style_of(attrs)}
    assert used <= LAB_KEEPS, used - LAB_KEEPS


def test_the_untrusted_view_escapes_the_text_and_titles():
    text = '<b>x</b> & "q" <script>'
    scores = np.tril(np.full((len(text) - 1, len(text)), 0.1), k=0)
    r = Attribution(list(text), np.arange(1, len(text)), scores, np.ones(len(text) - 1),
                    np.zeros(len(text) - 1), {"method": "ig", "target": "logprob", "block_size": 64})
    view = untrusted(r.to_html())
    spans = text_spans(view)
    assert "".join(html.unescape(c) for _, c in spans) == visible(text)
    assert "<b>" not in view and view.count("<script") == 0  # nothing of the text became markup
    assert title_of(spans[0][0]) == "position 0 '<': score +0.100"
    assert 'title="position 0 &#x27;&lt;&#x27;: score +0.100"' in view


def test_a_fixed_rule_page_marks_the_targets_that_miss_completeness():
    r = capped_result()
    r.capped, r.settings = None, {"method": "ig", "target": "logprob", "block_size": 8, "steps": 32,
                                  "rule": "gauss-legendre", "integration": "fixed"}
    page = r.to_html()
    assert "fixed 32-point gauss-legendre rule: 1 miss completeness" in page


def test_terminal_view_prints_numbers_without_colour_and_ansi_with_it():
    r = small_result(steps=4)
    plain, coloured = r.to_terminal(color=False), r.to_terminal(color=True)
    assert "\x1b[" not in plain and "delta" in plain and " n=4 " in plain
    assert "\x1b[48;2;" in coloured
    assert len(plain.splitlines()) > len(r.targets)  # a summary line per target
    assert "n=64 !" in capped_result().to_terminal(color=False)  # the capped target is marked


def test_figures_draw_the_matrix_and_the_methods_on_one_scale():
    model = tiny_gpt()
    results = compare_methods(model, torch.arange(9), steps=4)
    assert list(results) == ["saliency", "grad-input", "ig"]
    fig = plot_methods(results)
    limits = {im.get_clim() for ax in fig.axes for im in ax.get_images()}
    assert len(limits) == 1  # one colour scale for all three
    fig.savefig(io.BytesIO(), format="png")
    results["ig"].plot().savefig(io.BytesIO(), format="png")


NODE_STUB = """
var listeners = {}, els = {};
function el() { return {textContent: ""}; }
function span(i) {
  return {style: {}, title: "", dataset: {ch: "xy<z"[i], r: i > 0 ? String(i - 1) : undefined},
          classList: {toggle: function () {}}};
}
var spans = [span(0), span(1), span(2), span(3)], items = [el(), el(), el()];
var root = {querySelectorAll: function (q) { return q === ".top li" ? items : spans; },
            querySelector: function (q) { return els[q] || (els[q] = el()); },
            addEventListener: function (kind, f) { listeners[kind] = f; }};
var removed = [];
els[".nojs"] = {parentNode: {removeChild: function (n) { removed.push(n); }}};
var document = {getElementById: function () { return root; }};
function line() {
  return [els[".cap"].textContent, spans[0].style.background, spans[1].style.background,
          els[".hi"].textContent, items.map(function (i) { return i.textContent; }).join(";")].join("|");
}
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_html_script_colours_the_hovered_targets_context_and_keeps_the_clicked_one(tmp_path):
    script = re.search(r"<script>(.*)</script>", capped_result().to_html(), re.S).group(1)
    driver = """
    console.log([removed.length, spans[0].title, spans[3].style.outline, spans[3].style.opacity].join("|"));
    listeners.mouseover({target: spans[2]}); console.log(line());
    listeners.click({target: spans[3]}); listeners.mouseover({target: spans[1]}); listeners.mouseleave();
    console.log(line());
    """
    (tmp_path / "page.js").write_text(NODE_STUB + script + driver)
    loaded, hovered, pinned = subprocess.run(["node", str(tmp_path / "page.js")], capture_output=True,
                                             text=True, check=True).stdout.splitlines()
    # On load: the no-script note is gone, target 3 (the last) is framed, each character titled.
    assert loaded == '1|position 0 "x": score +0.100|2px solid #222|'
    caption, first, second, scale, top = hovered.split("|")
    assert caption.startswith("target 2") and "log p" in caption and "64 points" in caption
    assert "stopped at the cap" in caption
    assert first.startswith("rgb(") and second == "rgb(33,102,172)"  # +0.2 reddish, -0.3 full blue
    assert scale == "+0.300" and top == 'position 1 "y" -0.300;position 0 "x" +0.200;'
    assert pinned.startswith("target 3") and "cap" not in pinned.split("|")[0]  # the clicked one again
    assert pinned.split("|")[4] == 'position 2 "<" +0.200;position 0 "x" +0.100;position 1 "y" +0.100'


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium to load the page")
def test_the_page_runs_its_script_in_a_real_browser(tmp_path):
    capped_result().save_html(tmp_path / "page.html", t=3)
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (tmp_path / "page.html").as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    # The script rewrote the list on load: its JSON quotes ("<") replace the page's repr quotes ('<').
    assert '<li>position 2 "&lt;" +0.200</li>' in dom
    assert 'class="nojs"' not in dom  # and removed the note that only a reader without scripts needs
    assert 'title="position 0 &quot;a&quot;: score +0.100"' in dom  # and titled the characters
