"""The HTML page's parts: colours and their contrast, number formats, inline styles, the script.

views.py assembles the page from these; this module knows nothing of an attribution result.
Everything a reader needs is in inline style= attributes, which JupyterLab's sanitizer keeps in an
untrusted notebook (it strips <style>, <script> and event handlers); the script only re-colours
the text for another character, and the stylesheet only adds a focus ring.
"""

from __future__ import annotations

import html
import json
from decimal import ROUND_HALF_UP, Decimal

RED, BLUE = (178, 24, 43), (33, 102, 172)  # the two ends of matplotlib's RdBu colormap
LEGEND_CELLS = 21  # the colour bar: -scale .. +scale (or 0 .. scale) in equal steps
MIN_CONTRAST = 4.5  # WCAG AA for normal text


# ----------------------------------------------------------------------------- colours


def rgb(score: float, scale: float) -> tuple[int, int, int]:
    """The diverging colour of a score: white at 0, full red at +scale, full blue at -scale."""
    a = min(1.0, abs(score) / scale) if scale > 0 else 0.0
    end = RED if score > 0 else BLUE
    return tuple(round(255 + a * (c - 255)) for c in end)


def luminance(colour) -> float:
    """WCAG relative luminance of an (r, g, b) colour, 0 (black) .. 1 (white)."""
    lin = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in colour]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a, b) -> float:
    """WCAG contrast ratio of two colours, 1 .. 21."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def ink(background) -> tuple[int, int, int]:
    """Black or white, whichever reads better on the background: never under 4.58:1 on any colour."""
    black, white = (0, 0, 0), (255, 255, 255)
    return white if contrast(white, background) > contrast(black, background) else black


def css(colour) -> str:
    return "rgb({},{},{})".format(*colour)


# ----------------------------------------------------------------------------- numbers


def fixed(x: float, digits: int, sign: bool = True) -> str:
    """x to `digits` decimals, halves away from zero: what JavaScript's toFixed gives, so that the
    page reads the same before and after its script runs ('+' in front when sign and x >= 0)."""
    q = Decimal(abs(float(x))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return ("+" if sign and x >= 0 else "" if x >= 0 else "-") + f"{q:f}"


def probability(p: float) -> str:
    """p to three decimals, or '< 0.001' (the script formats it the same way)."""
    return fixed(p, 3, sign=False) if p >= 0.0005 else "< 0.001"


def script_json(obj) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' can close the tag or start an entity."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# ----------------------------------------------------------------------------- styles

ROOT = "font-family: monospace; line-height: 1.7; max-width: 66em"
TITLE = "font-family: sans-serif; font-weight: bold; font-size: 130%; margin: 4px 0"
PLAIN = "font-family: sans-serif; margin: 4px 0"  # sentences for a reader, not numbers
SUB = "margin: 4px 0; font-size: 90%"
# No white-space: pre: spaces are drawn as '·', so lines may only break where a <wbr> allows it.
TXT = "font-size: 115%; margin: 8px 0; padding: 4px; border: 1px solid #ccc"
SPAN = "padding: 1px 0; border-radius: 2px"
WS_INK = "#767676"  # the '·' and '↵' of uncoloured whitespace: lighter, still 4.54:1 on white
TARGET = "cursor: pointer; border-bottom: 1px dotted #666"
FLAG = "border-bottom: 3px solid #d35400"  # an underline, never a glyph between the characters
PROMPT = "font-style: italic"
START = "border-left: 2px solid #555"  # the first generated character: "generated from here"
CUR = "2px solid #222"  # outline of the selected character
PINNED = "3px solid #000"  # outline of a pinned one
AFTER = "0.55"  # opacity of the text after the selected character (still 4.7:1 on white)
OUTSIDE_BG, OUTSIDE_INK = (230, 230, 230), (99, 99, 99)  # outside the window: grey, not white
LEGEND = "margin: 4px 0; font-size: 90%"
ITEM = "display: inline-block; margin: 0 1.2em 0 0; white-space: nowrap"  # legend items wrap whole
# Fixed cells that never shrink: the bar stays whole on a 400 px screen.
BAR = "display: inline-block; white-space: nowrap; vertical-align: middle; border: 1px solid #999; " \
      "margin: 0 6px; line-height: 0"
CELL = "display: inline-block; width: 9px; height: 14px"
TOP = "margin: 2px 0 6px; padding-left: 2.5em; font-size: 90%"
NOJS = "font-family: sans-serif; margin: 4px 0; font-size: 90%; color: #8a4b00"
SMALL = "font-family: sans-serif; margin: 8px 0; font-size: 85%; color: #333"
TABLE = "border-collapse: collapse; font-size: 85%; margin: 4px 0"
CELLPAD = "padding: 2px 6px; border: 1px solid #ccc"

# The stylesheet: only a focus ring (inline styles cannot express :focus).
STYLE = "#{id} .txt:focus {{outline: 3px solid #1a73e8; outline-offset: 2px}}"


def swatch(style: str, text: str, what: str) -> str:
    """One legend item: a sample drawn as in the text, then what it means."""
    return (f'<span class="item" style="{ITEM}"><span style="{SPAN}; {style}">{html.escape(text)}</span> '
            f"{html.escape(what)}</span>")


def colour_bar(scale: float, signed: bool) -> str:
    """The colour scale as inline-styled cells (no gradient, no stylesheet), labelled with its ends.

    Signed: full blue at -scale, white at 0, full red at +scale. Unsigned: white at 0 to red."""
    lows = -1.0 if signed else 0.0
    steps = (lows + (1 - lows) * k / (LEGEND_CELLS - 1) for k in range(LEGEND_CELLS))
    cells = "".join(f'<span style="{CELL}; background: {css(rgb(v, 1.0))}"></span>' for v in steps)
    lo, hi = (fixed(-scale, 3), fixed(scale, 3)) if signed else ("0", fixed(scale, 3, sign=False))
    words = ("blue lowered the probability, red raised it, white: little effect" if signed
             else "larger = more influence (size only, not direction)")
    return (f'<div class="scale" style="{LEGEND}"><span style="{ITEM}">colour: <i class="lo">{lo}</i>'
            f'<span class="bar" style="{BAR}">{cells}</span><i class="hi">{hi}</i></span> '
            f"{words}; full colour = the strongest score for the selected character</div>")


def details(summary: str, body: str) -> str:
    return (f'<details style="{SMALL}"><summary>{html.escape(summary)}</summary>'
            f'<div style="margin: 4px 0">{body}</div></details>')


# ----------------------------------------------------------------------------- faithfulness

CURVE_COLOURS = {"ig": "#b2182b", "saliency": "#2166ac", "grad-input": "#1b7837", "occlusion": "#762a83",
                 "random": "#777777"}


def faithfulness_section(report) -> str:
    """The deletion and insertion curves (inline SVG) and the AOPC table of a Faithfulness report."""
    esc = html.escape
    methods = list(report.deletion)
    head = ("method", "deletion AOPC", "less random", "insertion AOPC", "less random",
            "Spearman vs randomized model")
    rows = []
    for m in methods:
        gap, s = report.aopc(m), report.sanity.get(m, {})
        cells = (m, fixed(report.deletion[m].mean(), 3), fixed(gap[0], 3),
                 fixed(report.insertion[m].mean(), 3), fixed(gap[1], 3),
                 fixed(s["spearman"], 2) if "spearman" in s else "-")
        rows.append("".join(f'<td style="{CELLPAD}">{esc(c)}</td>' for c in cells))
    table = (f'<table class="aopc" style="{TABLE}"><tr>'
             + "".join(f'<th style="{CELLPAD}">{esc(h)}</th>' for h in head) + "</tr>"
             + "".join(f"<tr>{r}</tr>" for r in rows) + "</table>")
    K = int(report.ks[-1])
    plots = "".join(_curve_svg(report.ks, curves, title) for curves, title in (
        (report.deletion, "deletion: fall of F after removing the top k"),
        (report.insertion, "insertion: rise of F with only the top k put back")))
    key = " ".join(f'<span style="{ITEM}"><span style="color: {CURVE_COLOURS.get(m, "#000")}">'
                   f'\u2014\u2014</span> {esc(m)}</span>' for m in methods)
    return (f'<div class="faith" style="{SMALL}"><div style="{TITLE}; font-size: 110%">Faithfulness</div>'
            f'<p style="margin: 4px 0">Does each method find what the model rests on? Replace the '
            f"characters it ranks highest by the baseline, k = 0..{K} of them (deletion: F should fall "
            "fast), or put only them back into an all-baseline window (insertion: F should rise fast). "
            "AOPC is the mean of the curve; less random: the same less a random order's, above 0 beats "
            "chance. Spearman vs randomized model: how alike the scores stay when every weight is "
            "re-drawn (near 1: the method ignores what the model learned).</p>"
            f'<div>{plots}</div><div>{key}</div><div style="overflow-x: auto">{table}</div></div>')


def _curve_svg(ks, curves: dict, title: str, w: int = 300, h: int = 150) -> str:
    """One small line chart, k on x, the mean change of F on y, one line per method."""
    values = [v for c in curves.values() for v in c]
    lo, hi = min(values + [0.0]), max(values + [0.0])
    hi = hi if hi > lo else lo + 1.0
    x = lambda k: 30 + (w - 40) * k / max(1, ks[-1])  # noqa: E731
    y = lambda v: 20 + (h - 45) * (hi - v) / (hi - lo)  # noqa: E731
    dash = {"random": ' stroke-dasharray="4 3"'}
    lines = "".join(
        f'<polyline fill="none" stroke="{CURVE_COLOURS.get(m, "#000")}" stroke-width="2"'
        f'{dash.get(m, "")} points="'
        + " ".join(f"{x(k):.1f},{y(v):.1f}" for k, v in zip(ks, c, strict=True)) + '"/>'
        for m, c in curves.items())
    axes = (f'<line x1="30" y1="{y(0):.1f}" x2="{w - 10}" y2="{y(0):.1f}" stroke="#999"/>'
            f'<text x="30" y="12" font-size="11">{html.escape(title)}</text>'
            f'<text x="{w - 10}" y="{h - 8}" font-size="10" text-anchor="end">k = {int(ks[-1])}</text>'
            f'<text x="30" y="{h - 8}" font-size="10">k = 0</text>'
            f'<text x="2" y="{y(hi) + 4:.1f}" font-size="10">{hi:+.2f}</text>'
            f'<text x="2" y="{y(lo):.1f}" font-size="10">{lo:+.2f}</text>')
    return (f'<svg role="img" aria-label="{html.escape(title)}" viewBox="0 0 {w} {h}" '
            f'style="width: {w}px; max-width: 100%; height: auto; margin: 4px 8px 4px 0">{axes}{lines}</svg>')


# ----------------------------------------------------------------------------- the script

# Hover a character to see its context's scores; click (or Enter) pins it, so that the mouse can
# cross other characters on its way to the list; clicking it again or Escape releases the pin.
# The arrow keys, Home and End move the selection when the text has the focus. Captions come
# ready-made from Python (D.caps), and numbers use fixed(), the twin of page.fixed, so the page
# reads the same before and after this script runs.
JS = """
(function () {
  var root = document.getElementById("{id}"), D = {data};
  var txt = root.querySelector(".txt"), spans = root.querySelectorAll(".txt span");
  var cap = root.querySelector(".cap"), pin = root.querySelector(".pin");
  var items = root.querySelectorAll(".top li"), head = root.querySelector(".tophead");
  var lo = root.querySelector(".lo"), hi = root.querySelector(".hi");
  var note = root.querySelector(".nojs");  // shown only where this script cannot run
  if (note && note.parentNode) note.parentNode.removeChild(note);
  var sel = D.first, pinned = null;
  function fixed(x, d) { return (x >= 0 ? "+" : "") + x.toFixed(d); }
  function lum(c) {
    var l = c.map(function (v) {
      v /= 255;
      return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2];
  }
  function colour(s, m) {  // [background, text colour]: as page.rgb and page.ink
    var a = m > 0 ? Math.min(1, Math.abs(s) / m) : 0, e = s > 0 ? D.red : D.blue;
    var c = e.map(function (v) { return Math.round(255 + a * (v - 255)); }), L = lum(c);
    return ["rgb(" + c.join(",") + ")", 1.05 / (L + 0.05) > (L + 0.05) / 0.05 ? "#fff" : "#000"];
  }
  function item(s, v) { return fixed(v, 3) + " " + D.labels[s] + " at " + s + ", in " + D.snips[s]; }
  function show(r) {
    sel = r;
    var t = D.targets[r], start = D.starts[r], row = D.rows[r];
    var m = Math.max.apply(null, row.map(Math.abs).concat([0]));
    spans.forEach(function (sp, s) {
      var inside = s >= start && s < t, st = sp.style, c = inside ? colour(row[s - start], m) : null;
      var ws = /^\\s$/.test(sp.dataset.ch);
      st.background = c ? c[0] : s < start ? D.outBg : "";
      st.color = c ? c[1] : s < start ? D.outInk : ws ? D.wsInk : "";
      sp.title = inside ? D.labels[s] + " at " + s + ": score " + fixed(row[s - start], 3) :
        s === t ? "selected: " + D.labels[s] + " at " + s : s < start ? D.outside : "";
      st.outline = s === t ? (pinned === null ? D.cur : D.pinned) : "";
      st.opacity = s > t ? D.after : "";
    });
    cap.textContent = D.caps[r];
    pin.textContent = pinned === null ? "" : D.pinNote;
    lo.textContent = D.signed ? fixed(-m, 3) : "0"; hi.textContent = D.signed ? fixed(m, 3) : m.toFixed(3);
    head.textContent = D.head + D.labels[t] + " at " + t + ":";
    var order = row.map(function (v, k) { return k; });
    order.sort(function (i, j) { return Math.abs(row[j]) - Math.abs(row[i]) || i - j; });
    items.forEach(function (li, k) {
      li.textContent = k < order.length ? item(start + order[k], row[order[k]]) : "";
    });
  }
  function hit(e) {
    var r = e.target && e.target.dataset ? e.target.dataset.r : undefined;
    return r === undefined ? null : +r;
  }
  root.addEventListener("mouseover", function (e) {
    var r = hit(e);
    if (r !== null && pinned === null) show(r);
  });
  root.addEventListener("click", function (e) {
    var r = hit(e);
    if (r === null) return;
    pinned = pinned === r ? null : r;
    show(r);
  });
  var MOVES = {ArrowLeft: -1, ArrowRight: 1, ArrowUp: -10, ArrowDown: 10, Home: -1e9, End: 1e9};
  txt.addEventListener("keydown", function (e) {  // only while the text has the focus
    var n = D.targets.length, r = sel;
    if (e.key in MOVES) {
      r = Math.max(0, Math.min(n - 1, sel + MOVES[e.key]));
      if (pinned !== null) pinned = r;  // a pinned selection moves with the keys
    } else if (e.key === "Enter" || e.key === " ") {
      pinned = pinned === sel ? null : sel;
    } else if (e.key === "Escape") {
      pinned = null;
    } else return;
    if (e.preventDefault) e.preventDefault();
    show(r);
  });
  show(sel);
})();
"""
