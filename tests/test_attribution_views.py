"""Views of an attribution: the HTML page (escaped, self-contained, marks and scale), terminal, figures."""

import html
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from test_attribution import tiny_gpt
from test_attribution_result import small_result

from nanogpt.attribution import page as pg
from nanogpt.attribution.methods import compare_methods
from nanogpt.attribution.page import BLUE, LEGEND_CELLS, RED, contrast, fixed, ink, rgb
from nanogpt.attribution.result import Attribution
from nanogpt.attribution.views import OUTSIDE, html_page, html_view, plot_methods, visible


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
    expected = ["+0.200 '<' at 2, in ab[<]c", "+0.100 'a' at 0, in [a]b<", "+0.100 'b' at 1, in a[b]<c"]
    assert [html.unescape(i) for i in items if i] == expected  # strongest first, then by position
    assert "&#x27;&lt;&#x27;" in page


# The inline CSS properties that JupyterLab's sanitizer keeps in an untrusted notebook's HTML output
# (a subset of its allowedStyles, enough for this view); any other property would silently vanish there.
LAB_KEEPS = {"background", "border", "border-bottom", "border-left", "border-radius", "color", "cursor",
             "display", "font-family", "font-size", "font-style", "font-weight", "height", "line-height",
             "margin", "max-width", "opacity", "outline", "padding", "padding-left", "vertical-align",
             "white-space", "width"}


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
        assert spans[s][1] == f"'{r.tokens[s]}' at {s}: score {row[s]:+.3f}"
        assert spans[s][0]["color"] == "rgb({},{},{})".format(*ink(rgb(row[s], scale)))
    assert spans[1][0]["background"] == "rgb({},{},{})".format(*BLUE)  # -0.3, the strongest
    assert "outline" in spans[2][0] and spans[2][1] == "selected: '<' at 2"  # the target, framed
    assert spans[2][0]["border-bottom"].endswith("#d35400")  # stopped at the cap: marked inline
    assert "background" not in spans[3][0] and spans[3][0]["opacity"] == "0.55" and spans[3][1] is None
    # The colour bar: inline cells from full blue through white to full red, labelled with the scale.
    bar = re.search(r'<span class="bar"[^>]*>(.*?)</span><i', view).group(1)
    cells = [style_of(a)["background"] for a in re.findall(r"<span ([^>]*)></span>", bar)]
    assert len(cells) == LEGEND_CELLS == 21
    assert cells[0] == "rgb({},{},{})".format(*BLUE) and cells[-1] == "rgb({},{},{})".format(*RED)
    assert cells[10] == "rgb(255,255,255)"
    assert '<i class="lo">-0.300</i>' in view and '<i class="hi">+0.300</i>' in view
    # The strongest contributors as text, and the note on what the script adds.
    items = [html.unescape(i) for i in re.findall(r"<li>(.*?)</li>", view) if i]
    assert items == ["-0.300 'b' at 1, in a[b]<c", "+0.200 'a' at 0, in [a]b<"]
    note = re.search(r'<div class="nojs"[^>]*>(.*?)</div>', view).group(1)
    assert "re-colour the text" in html.unescape(note) and "File > Trust Notebook" in html.unescape(note)
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
    assert title_of(spans[0][0]) == "'<' at 0: score +0.100"
    assert 'title="&#x27;&lt;&#x27; at 0: score +0.100"' in view


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
  return {style: {}, title: "", dataset: {ch: TEXT[i], r: i > 0 ? String(i - 1) : undefined}};
}
var spans = [], items = [el(), el(), el(), el(), el()];
for (var i = 0; i < TEXT.length; i++) spans.push(span(i));
var on = function (kind, f) { listeners[kind] = f; };
var root = {querySelectorAll: function (q) { return q === ".top li" ? items : spans; },
            querySelector: function (q) { return els[q] || (els[q] = el()); }, addEventListener: on};
els[".txt"] = {addEventListener: on};
var removed = [];
els[".nojs"] = {parentNode: {removeChild: function (n) { removed.push(n); }}};
var document = {getElementById: function () { return root; }};
function key(k) { listeners.keydown({key: k}); }
function line() {
  return [els[".cap"].textContent, spans[0].style.background, spans[1].style.background,
          els[".hi"].textContent, items.map(function (i) { return i.textContent; }).join(";"),
          els[".pin"].textContent].join("|");
}
"""


def run_script(result, driver, tmp_path):
    """Run the view's script under node against a stub of its DOM; the lines it printed."""
    script = re.search(r"<script>(.*)</script>", result.to_html(), re.S).group(1)
    stub = f"var TEXT = {json.dumps(result.text)};" + NODE_STUB
    (tmp_path / "page.js").write_text(stub + script + driver)
    return subprocess.run(["node", str(tmp_path / "page.js")], capture_output=True, text=True,
                          check=True).stdout.splitlines()


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")


@needs_node
def test_html_script_colours_the_hovered_target_and_a_click_pins_it(tmp_path):
    driver = """
    console.log([removed.length, spans[0].title, spans[3].style.outline, spans[3].style.opacity].join("|"));
    listeners.mouseover({target: spans[2]}); console.log(line());
    listeners.click({target: spans[3]}); listeners.mouseover({target: spans[1]}); console.log(line());
    listeners.click({target: spans[3]}); listeners.mouseover({target: spans[1]}); console.log(line());
    """
    loaded, hovered, pinned, released = run_script(capped_result(), driver, tmp_path)
    # On load: the no-script note is gone, target 3 (the last) is framed, each character titled.
    assert loaded == "1|'a' at 0: score +0.100|2px solid #222|"
    caption, first, second, scale, top, pin = hovered.split("|")
    assert caption.startswith("character 2 '<'") and "log p" in caption and "64 points" in caption
    assert "stopped at the cap" in caption and pin == ""
    assert first.startswith("rgb(") and second == "rgb(33,102,172)"  # +0.2 reddish, -0.3 full blue
    assert scale == "+0.300" and top == "-0.300 'b' at 1, in a[b]<c;+0.200 'a' at 0, in [a]b<;;;"
    # Clicked: hovering another character no longer switches the view; clicking it again releases.
    assert pinned.startswith("character 3 'c'") and "Pinned" in pinned.split("|")[5]
    assert pinned.split("|")[4].startswith("+0.200 '<' at 2, in ab[<]c;")
    assert released.startswith("character 1 'b'") and released.split("|")[5] == ""


@needs_node
def test_keys_move_the_selection_pin_and_release_it(tmp_path):
    driver = """
    key("Home"); console.log(line());
    key("ArrowRight"); console.log(line());
    key("Enter"); listeners.mouseover({target: spans[1]}); console.log(line());
    key("End"); console.log(line());
    key("Escape"); listeners.mouseover({target: spans[1]}); console.log(line());
    key("ArrowLeft"); key("ArrowUp"); console.log(line());
    """
    lines = run_script(capped_result(), driver, tmp_path)
    home, right, pinned, end, released, up = [x.split("|") for x in lines]
    assert home[0].startswith("character 1 'b'") and right[0].startswith("character 2 '<'")
    assert pinned[0].startswith("character 2 '<'") and "Pinned" in pinned[5]  # the hover did not switch
    assert end[0].startswith("character 3 'c'") and "Pinned" in end[5]  # the pin moves with the keys
    assert released[0].startswith("character 1 'b'") and released[5] == ""
    assert up[0].startswith("character 1 'b'")  # clamped at the first target


@needs_node
def test_the_script_writes_what_the_page_shows_without_it_for_every_target(tmp_path):
    r = capped_result()
    r.scores = r.scores * 1.0001 + 0.00025  # numbers whose last digit rounds
    driver = """
    spans.forEach(function (sp) {
      if (sp.dataset.r === undefined) return;
      listeners.mouseover({target: sp});
      console.log(JSON.stringify([els[".cap"].textContent, els[".tophead"].textContent,
        items.map(function (i) { return i.textContent; }), spans.map(function (s) { return s.title; }),
        els[".lo"].textContent, els[".hi"].textContent]));
    });
    """
    for t, out in zip(r.targets.tolist(), run_script(r, driver, tmp_path), strict=True):
        static = html_view(r, t)
        cap, head, items, titles, lo, hi = json.loads(out)
        assert cap == html.unescape(re.search(r'class="cap">(.*?)</span>', static).group(1))
        assert head == html.unescape(re.search(r'class="tophead"[^>]*>(.*?)</div>', static).group(1))
        assert items == [html.unescape(i) for i in re.findall(r"<li>(.*?)</li>", static)]
        assert titles == [title_of(a) or "" for a, _ in text_spans(static)]
        assert f'<i class="lo">{lo}</i>' in static and f'<i class="hi">{hi}</i>' in static


def test_fixed_rounds_halves_away_from_zero_as_javascript_does():
    assert fixed(0.0625, 3) == "+0.063" and fixed(-0.0625, 3) == "-0.063"  # Python's format: 0.062
    assert fixed(-0.0, 3) == "+0.000" and fixed(-0.0001, 3) == "-0.000" and fixed(1.5, 0, sign=False) == "2"


def test_every_coloured_character_reads_at_4_5_to_1():
    shades = [rgb(v, 1.0) for v in np.linspace(-1, 1, 201)] + [RED, BLUE]
    worst = min(contrast(ink(c), c) for c in shades)
    assert worst >= 4.5, worst
    assert contrast(ink(RED), RED) > 5.5 and contrast(ink(BLUE), BLUE) > 5.5  # white text on the ends
    assert contrast((0, 0, 0), RED) < 4.5  # black on full red would not do (3.06:1)
    white = (255, 255, 255)
    assert contrast(pg.OUTSIDE_INK, pg.OUTSIDE_BG) >= 4.5
    assert contrast((0x76,) * 3, white) >= 4.5  # the '·' of uncoloured spaces
    faded = round(255 * (1 - float(pg.AFTER)))  # black text at the opacity of what follows the target
    assert contrast((faded,) * 3, white) >= 4.5


def test_the_page_explains_itself_and_is_usable_from_the_keyboard_and_on_a_phone():
    r = capped_result()
    page = html_page(r, prompt=1)
    assert '<html lang="en">' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    # A plain first line, then the hint, both before the caption, the legend and the text.
    intro = html.unescape(re.search(r'class="intro"[^>]*>(.*?)</p>', page).group(1))
    assert "red raised its probability, blue lowered it" in intro
    order = [page.index(k) for k in ('class="intro"', 'class="hint"', 'aria-live="polite"', 'class="bar"',
                                     'class="key"', 'class="txt"', 'class="top"', "<details")]
    assert order == sorted(order)
    assert "arrow keys" in re.search(r'class="hint"[^>]*>(.*?)</p>', page).group(1)
    assert re.search(r'class="txt" tabindex="0" role="group" aria-label="[^"]*Arrow keys', page)
    assert "log p = +0.4000 (p = 1.492)" in html.unescape(page)  # p beside log p (a made-up F)
    assert "<details" in page and "<summary>settings</summary>" in page
    key = html.unescape(re.sub(r"<[^>]+>", "", re.search(r'class="key"[^>]*>(.*?)</div>', page).group(1)))
    for meaning in ("· a space", "↵ a new line", "the prompt", "generated from here", "stopped at the cap"):
        assert meaning in key
    # The glossary names the caption's words and lists the marked characters.
    glossary = html.unescape(re.search(r'class="glossary"[^>]*>(.*?)</div>', page).group(1))
    assert "baseline: log p with every earlier character" in glossary and "within tolerance" in glossary
    assert "Underlined in orange (stopped at the cap before the tolerance): '<' at 2." in glossary
    # Narrow screens: cells of fixed width in a bar that does not wrap, and a break after each space.
    assert 'class="bar" style="display: inline-block; white-space: nowrap' in page
    assert all("width: 9px" in style for style in re.findall(r'<span style="([^"]*)"></span>', page))
    assert "white-space: pre" not in page


def test_lines_break_after_spaces_and_the_prompt_and_the_window_are_marked():
    text = "ab cd\nef"
    scores = np.tril(np.full((len(text) - 2, len(text)), 0.1), k=1)
    r = Attribution(list(text), np.arange(2, len(text)), scores, np.ones(6), np.zeros(6),
                    {"method": "ig", "target": "logprob", "block_size": 3})
    view = html_view(r, prompt=2)
    assert re.search(r">·</span><wbr>", view) and re.search(r">↵</span><br>", view)
    spans = [style_of(a) for a, _ in text_spans(view)]
    assert spans[0]["font-style"] == spans[1]["font-style"] == "italic" and "font-style" not in spans[2]
    assert "border-left" in spans[2]  # generated from here
    # Target 7 reads positions 4..6: what lies before is grey and says so, never white like a zero.
    titles = [title_of(a) for a, _ in text_spans(view)]
    assert titles[:4] == [OUTSIDE] * 4 and spans[3]["background"] == "rgb(230,230,230)"
    assert titles[4] == "'d' at 4: score +0.100" and titles[7] == "selected: 'f' at 7"


def test_incomplete_targets_are_underlined_not_interrupted_by_a_glyph():
    r = capped_result()
    page = html_page(r)
    shown = "".join(html.unescape(c) for _, c in text_spans(page))
    assert shown == visible(r.text) and "\u26a0" not in page and "::after" not in page
    assert style_of(text_spans(page)[2][0])["border-bottom"] == "3px solid #d35400"


def test_unsigned_scores_get_a_one_sided_scale_and_no_completeness():
    r = capped_result()
    r.scores, r.capped = np.abs(r.scores), None
    r.settings = {"method": "saliency", "target": "logprob", "block_size": 8, "aggregate": "norm"}
    page = html_page(r)
    bar = re.search(r'<span class="bar"[^>]*>(.*?)</span><i', page).group(1)
    cells = [style_of(a)["background"] for a in re.findall(r"<span ([^>]*)></span>", bar)]
    assert len(cells) == LEGEND_CELLS and cells[0] == "rgb(255,255,255)"
    assert cells[-1] == "rgb({},{},{})".format(*RED)
    assert '<i class="lo">0</i>' in page and '<i class="hi">0.200</i>' in page
    assert "larger = more influence" in page and "blue" not in page.split("<script>")[0]
    assert "delta" not in html.unescape(re.search(r'class="cap">(.*?)</span>', page).group(1))
    assert "within tolerance" not in page and "completeness" not in page.split("<script>")[0]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium to load the page")
def test_the_page_runs_its_script_in_a_real_browser(tmp_path):
    capped_result().save_html(tmp_path / "page.html", t=3)
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (tmp_path / "page.html").as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert "<li>+0.200 '&lt;' at 2, in ab[&lt;]c</li>" in dom  # the script wrote the list as the page had it
    assert 'class="nojs"' not in dom  # and removed the note that only a reader without scripts needs
    assert 'title="\'a\' at 0: score +0.100"' in dom  # and titled the characters


# Run inside the page by chromium: click, move, keys, then the results into the document's title.
BROWSER_DRIVER = """<script>
window.addEventListener("load", function () {
  var txt = document.querySelector(".txt"), tg = txt.querySelectorAll("span.tg");
  var cap = function () { return document.querySelector(".live").textContent; }, out = [];
  function fire(el, kind) { el.dispatchEvent(new MouseEvent(kind, {bubbles: true})); }
  function key(k) { txt.dispatchEvent(new KeyboardEvent("keydown", {key: k, bubbles: true})); }
  fire(tg[0], "click"); fire(tg[1], "mouseover"); fire(tg[2], "mouseover"); out.push(cap());
  key("Escape"); fire(tg[2], "mouseover"); out.push(cap());
  txt.focus(); out.push(document.activeElement === txt ? "focused" : "not focused");
  key("Home"); key("ArrowRight"); out.push(cap()); key("Enter"); key("End"); out.push(cap());
  out.push(document.documentElement.scrollWidth <= window.innerWidth ? "fits" : "scrolls sideways");
  out.push(document.querySelector(".bar").getBoundingClientRect().width);
  document.title = JSON.stringify(out);
});
</script></body>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium to load the page")
def test_a_real_browser_pins_on_click_follows_the_keys_and_fits_400_px(tmp_path):
    text = '<b>x</b> & "q" <script>alert(1)</script> and some more words to wrap ' * 3
    n = len(text)
    scores = np.tril(np.random.default_rng(0).normal(size=(n - 1, n)), k=0)
    r = Attribution(list(text), np.arange(1, n), scores, -np.ones(n - 1), -2 * np.ones(n - 1),
                    {"method": "ig", "target": "logprob", "block_size": 40})
    (tmp_path / "page.html").write_text(html_page(r).replace("</body>", BROWSER_DRIVER), encoding="utf-8")
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=400,900",
                          "--dump-dom", (tmp_path / "page.html").as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    out = json.loads(html.unescape(re.search(r"<title>(.*?)</title>", dom).group(1)))
    pinned, released, focus, keyed, ended, fits, bar = out
    assert pinned.startswith("character 1 'b'") and "Pinned" in pinned  # hovering 2 and 3 did not switch
    assert released.startswith("character 3 'x'") and "Pinned" not in released
    assert focus == "focused" and keyed.startswith("character 2 '>'")
    assert ended.startswith(f"character {n - 1} ") and "Pinned" in ended
    assert fits == "fits" and bar >= LEGEND_CELLS * 9  # no sideways scrolling; the bar whole
    assert "<b>x</b>" not in dom.split("<script>")[0] and "alert(1)" not in dom.split("<body")[0]
