"""Views of an attribution result: terminal colours, a self-contained HTML page, matplotlib figures.

All of them share one colour scale: red for characters that pushed F up, blue for those that
pulled it down, white for zero, and the strongest score of the row at full colour.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import os
import sys

import numpy as np

from nanogpt.attribution.paths import COMPLETENESS_TOLERANCE

RED, BLUE = (178, 24, 43), (33, 102, 172)  # the two ends of matplotlib's RdBu colormap
VISIBLE = {" ": "·", "\n": "↵", "\t": "→"}  # whitespace drawn so that its colour can be seen
TARGET_NAMES = {"logprob": "log p", "prob": "p", "logit": "logit"}
_ids = itertools.count()  # each HTML view in one notebook needs its own element id


def rgb(score: float, scale: float) -> tuple[int, int, int]:
    """The diverging colour of a score: white at 0, full red at +scale, full blue at -scale."""
    a = min(1.0, abs(score) / scale) if scale > 0 else 0.0
    end = RED if score > 0 else BLUE
    return tuple(round(255 + a * (c - 255)) for c in end)


def visible(token: str) -> str:
    """A token with its whitespace made visible."""
    return "".join(VISIBLE.get(ch, ch) for ch in token)


def _default_target(result, t):
    return int(result.targets[-1]) if t is None else t


def flagged(result) -> tuple[np.ndarray, str]:
    """(T,) the targets the page marks, and why: stopped at the cap, or (fixed rule) missed completeness."""
    if result.capped is not None:
        return np.asarray(result.capped, dtype=bool), "stopped at the cap before the tolerance"
    if result.settings.get("method", "ig") == "ig" and result.settings.get("aggregate", "sum") == "sum":
        return result.incomplete(), "misses completeness"
    return np.zeros(len(result.targets), dtype=bool), ""


def caption(result, t: int) -> str:
    """One line on target t: its character, F(x), F(baseline), dF, the completeness delta, the points."""
    i = int(np.flatnonzero(result.targets == t)[0])
    name = TARGET_NAMES.get(result.settings.get("target"), "F")
    flags, why = flagged(result)
    points = "" if result.steps_used is None else f", {result.steps_used[i]} points"
    return (f"target {t} {result.tokens[t]!r}: {name} = {result.f_input[i]:+.4f}, baseline "
            f"{result.f_baseline[i]:+.4f}, dF = {result.dF[i]:+.4f}, delta = {result.delta[i]:+.2e}"
            f"{points}{f' ({why})' if flags[i] else ''}")


def top_contributors(result, t: int, top: int = 3) -> list[tuple[int, float]]:
    """The `top` positions with the largest |score| for target t, strongest first."""
    row, (start, _) = result.row(t), result.window(t)
    order = start + np.argsort(-np.abs(row[start:t]), kind="stable")[:top]
    return [(int(s), float(row[s])) for s in order]


# ----------------------------------------------------------------------------- terminal


def terminal_view(result, t: int | None = None, color: bool | None = None, top: int = 3) -> str:
    """The context of target t coloured by its scores (or with numbers), then one line per target."""
    t = _default_target(result, t)
    if color is None:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    row, (start, _) = result.row(t), result.window(t)
    scale = float(np.abs(row).max())
    lines = [caption(result, t)]
    if color:
        out = []
        for s in range(start, t + 1):
            ch = visible(result.tokens[s])
            if s == t:  # the target itself: reversed, so that it stands out from its context
                out.append(f"\x1b[7m{ch}\x1b[0m")
            else:
                r, g, b = rgb(row[s], scale)
                out.append(f"\x1b[48;2;{r};{g};{b}m\x1b[38;2;0;0;0m{ch}\x1b[0m")
            if result.tokens[s] == "\n":
                out.append("\n")
        lines += ["".join(out), f"(red raises F, blue lowers it; full colour = {scale:.3g})"]
    else:  # plain numbers, eight to a line
        cells = [f"{result.tokens[s]!r:>6} {row[s]:+.3f}" for s in range(start, t)]
        lines += ["  ".join(cells[k:k + 8]) for k in range(0, len(cells), 8)]
        lines.append(f"{'->':>6} {result.tokens[t]!r}")
    flags, why = flagged(result)
    points = "" if result.steps_used is None else ", points on the path"
    lines.append(f"per target: F, dF, delta{points}, and the {top} strongest contributions (position:char)"
                 + (f"; ! = {why}" if flags.any() else ""))
    for i, tt in enumerate(result.targets.tolist()):
        best = "  ".join(f"{s}:{result.tokens[s]!r} {v:+.3f}" for s, v in top_contributors(result, tt, top))
        n = "" if result.steps_used is None else f" n={result.steps_used[i]}"
        lines.append(f"{tt:5d} {result.tokens[tt]!r:>6} F={result.f_input[i]:+.3f} "
                     f"dF={result.dF[i]:+.3f} delta={result.delta[i]:+.1e}{n}{' !' if flags[i] else ''}"
                     f" | {best}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- HTML

TOP = 5  # contributors listed beside the page's text
METHOD_NAMES = {"ig": "Integrated gradients", "saliency": "Saliency", "grad-input": "Gradient x input",
                "occlusion": "Occlusion"}

# Everything a reader needs is in inline style= attributes, which JupyterLab's sanitizer keeps in an
# untrusted notebook (it strips <style>, <script> and event handlers). The stylesheet only adds
# what inline styles cannot express: the warning glyph after a flagged target.
_CSS = """
#{id} .txt .flag::after {{content: "\\26A0"; color: #d35400; font-size: 60%; vertical-align: super}}
"""
_ROOT = "font-family: monospace; line-height: 1.7; max-width: 66em"
_TITLE = "font-family: sans-serif; font-weight: bold; font-size: 130%; margin: 4px 0"
_SUB = "margin: 4px 0; font-size: 90%"
_TXT = "font-size: 115%; margin: 6px 0; white-space: pre"
_SPAN = "padding: 1px 0; border-radius: 2px"
_WS = "color: #999"
_TG = "cursor: pointer; border-bottom: 1px dotted #666"
_FLAG = "border-bottom: 2px solid #d35400"
_CUR = "2px solid #222"  # outline of the target, set here and by the script
_AFTER = "0.35"  # opacity of the text after the target
_SCALE = "margin: 6px 0; font-size: 85%"
_BAR = "display: inline-block; vertical-align: middle; border: 1px solid #999; margin: 0 6px; line-height: 0"
_CELL = "display: inline-block; width: 0.75em; height: 0.9em"
_TOP = "margin: 2px 0 6px; padding-left: 2.5em; font-size: 90%"
_NOJS = "margin: 4px 0; font-size: 90%; color: #8a4b00"
LEGEND_CELLS = 21  # the colour bar: -scale .. +scale in equal steps, zero in the middle

# Hover a target to see its context's scores; click to pin it (hovering elsewhere comes back).
_JS = """
(function () {
  var root = document.getElementById("{id}"), D = {data};
  var spans = root.querySelectorAll(".txt span"), cap = root.querySelector(".cap");
  var items = root.querySelectorAll(".top li"), head = root.querySelector(".tophead");
  var lo = root.querySelector(".lo"), hi = root.querySelector(".hi");
  var note = root.querySelector(".nojs");  // shown only where this script cannot run
  if (note && note.parentNode) note.parentNode.removeChild(note);
  var pinned = D.first;
  function signed(x, d) { return (x >= 0 ? "+" : "") + x.toFixed(d); }
  function colour(s, m) {
    var a = m > 0 ? Math.min(1, Math.abs(s) / m) : 0, e = s > 0 ? D.red : D.blue;
    return "rgb(" + e.map(function (c) { return Math.round(255 + a * (c - 255)); }).join(",") + ")";
  }
  function show(r) {
    var t = D.targets[r], start = D.starts[r], row = D.rows[r];
    var m = Math.max.apply(null, row.map(Math.abs).concat([0]));
    spans.forEach(function (sp, s) {
      var inside = s >= start && s < t;
      sp.style.background = inside ? colour(row[s - start], m) : "";
      sp.title = inside ? "position " + s + " " + JSON.stringify(sp.dataset.ch) + ": score " +
        signed(row[s - start], 3) : s === t ? "target " + s : "";
      sp.style.outline = s === t ? D.cur : "";
      sp.style.opacity = s > t ? D.after : "";
    });
    var ch = JSON.stringify(spans[t].dataset.ch);
    cap.textContent = "target " + t + " " + ch + ": " +
      D.name + " = " + signed(D.f[r], 4) + ", baseline " + signed(D.fb[r], 4) +
      ", dF = " + signed(D.f[r] - D.fb[r], 4) + ", delta = " + D.delta[r].toExponential(2) +
      (D.steps ? ", " + D.steps[r] + " points" : "") + (D.flag[r] ? " (" + D.flagged + ")" : "");
    lo.textContent = signed(-m, 3); hi.textContent = signed(m, 3);
    head.textContent = "strongest contributions to target " + t + " " + ch + " (|score|):";
    var order = row.map(function (v, k) { return k; });
    order.sort(function (i, j) { return Math.abs(row[j]) - Math.abs(row[i]) || i - j; });
    items.forEach(function (li, k) {
      var s = start + order[k];
      li.textContent = k < order.length ?
        "position " + s + " " + JSON.stringify(spans[s].dataset.ch) + " " + signed(row[order[k]], 3) : "";
    });
  }
  root.addEventListener("mouseover", function (e) {
    if (e.target.dataset.r !== undefined) show(+e.target.dataset.r);
  });
  root.addEventListener("mouseleave", function () { show(pinned); });
  root.addEventListener("click", function (e) {
    if (e.target.dataset.r !== undefined) { pinned = +e.target.dataset.r; show(pinned); }
  });
  show(pinned);
})();
"""


def _script_json(obj) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' can close the tag or start an entity."""
    text = json.dumps(obj, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def summary(result) -> str:
    """One line on how the scores were integrated and how many targets are marked."""
    s, flags = result.settings, flagged(result)[0]
    n, how = len(result.targets), s.get("integration", "fixed" if s.get("method") == "ig" else "none")
    if how == "adaptive":
        used = result.steps_used
        return (f"{n} targets integrated to |delta| <= max({s['tol']:g} |dF|, {s['abs_tol']:g}) with "
                f"{s['steps']}-point {s['rule']} pieces: {n - flags.sum()} within, {flags.sum()} stopped at "
                f"the cap of {s['max_steps']} points (underlined in orange, \u26a0); points per target: "
                f"median {np.median(used):g}, max {used.max()}, total {used.sum()}")
    if how == "fixed" and s.get("method", "ig") == "ig":
        return (f"{n} targets, fixed {s.get('steps')}-point {s.get('rule')} rule: {flags.sum()} miss "
                f"completeness by more than {COMPLETENESS_TOLERANCE:.0%} of |dF| "
                "(underlined in orange, \u26a0)")
    return f"{n} targets"


def _legend(scale: float) -> str:
    """The colour bar as inline-styled cells (no gradient, no stylesheet), labelled with the scale."""
    cells = "".join(
        f'<span style="{_CELL}; background: rgb({r},{g},{b})"></span>'
        for r, g, b in (rgb(v, 1.0) for v in np.linspace(-1.0, 1.0, LEGEND_CELLS)))
    return (f'<div class="scale" style="{_SCALE}">colour scale <i class="lo">{-scale:+.3f}</i>'
            f'<span class="bar" style="{_BAR}">{cells}</span><i class="hi">{scale:+.3f}</i> (white = 0): '
            "blue lowers F, red raises it; full colour = the strongest score of the selected target</div>")


def html_view(result, t: int | None = None) -> str:
    """A self-contained page fragment (inline CSS and JS, no network) with the heat map of target t.

    It reads without its script and stylesheet (an untrusted notebook in JupyterLab strips both):
    target t's colours, the colour bar and the marks are inline styles, every scored character
    carries its number as a tooltip, the strongest contributors are static text, and a note says
    what the script adds. The script re-colours the text for the target hovered or clicked.
    """
    t = _default_target(result, t)
    row, start = result.row(t), result.window(t)[0]  # a UserError when t was not attributed
    digest = hashlib.sha1(result.scores.tobytes() + result.text.encode()).hexdigest()[:8]
    uid = f"nga-{digest}-{next(_ids)}"
    row_of = {tt: r for r, tt in enumerate(result.targets.tolist())}
    starts = [result.window(tt)[0] for tt in result.targets.tolist()]
    flags, why = flagged(result)
    name = TARGET_NAMES.get(result.settings.get("target"), "F")
    rows = [[float(f"{v:.4g}") for v in result.scores[r, s:tt]]
            for r, (s, tt) in enumerate(zip(starts, result.targets.tolist(), strict=True))]
    data = dict(targets=result.targets.tolist(), starts=starts, first=row_of[t], name=name, red=RED,
                blue=BLUE, rows=rows, cur=_CUR, after=_AFTER,
                f=result.f_input.tolist(), fb=result.f_baseline.tolist(), delta=result.delta.tolist(),
                steps=None if result.steps_used is None else result.steps_used.tolist(),
                flag=flags.astype(int).tolist(), flagged=why)
    scale = float(np.abs(row).max())
    esc = html.escape
    spans = []
    for s, token in enumerate(result.tokens):
        classes, style = [], [_SPAN]
        if token.isspace():
            classes, style = ["ws"], style + [_WS]
        attrs = f' data-ch="{esc(token, quote=True)}"'
        if s in row_of:
            classes += ["tg"] + (["flag"] if flags[row_of[s]] else [])
            attrs += f' data-r="{row_of[s]}"'
            style += [_TG] + ([_FLAG] if flags[row_of[s]] else [])
        if start <= s < t:  # target t's colours, which need no script; its number as a tooltip
            style.append("background: rgb({},{},{})".format(*rgb(row[s], scale)))
            attrs += f' title="{esc(f"position {s} {result.tokens[s]!r}: score {row[s]:+.3f}", quote=True)}"'
        elif s == t:
            style.append(f"outline: {_CUR}")
            attrs += f' title="target {t}"'
        elif s > t:
            style.append(f"opacity: {_AFTER}")
        cls = f' class="{" ".join(classes)}"' if classes else ""
        spans.append(f'<span{cls}{attrs} style="{"; ".join(style)}">{esc(visible(token), quote=True)}</span>')
        if token == "\n":
            spans.append("<br>")
    best = top_contributors(result, t, TOP)
    top = "".join(f"<li>position {s} {esc(repr(result.tokens[s]))} {v:+.3f}</li>" for s, v in best)
    top += "<li></li>" * (TOP - len(best))
    method = METHOD_NAMES.get(result.settings.get("method"), "Attribution")
    settings = ", ".join(f"{k}={v!r}" for k, v in result.settings.items())
    css = _CSS.format(id=uid)
    nojs = (f'<div class="nojs" style="{_NOJS}">Hovering or clicking re-colours the text once the notebook '
            "is trusted (File &gt; Trust Notebook) or run.</div>")  # the script removes this line
    return (f'<div id="{uid}" style="{_ROOT}"><style>{css}</style>'
            f'<div class="title" style="{_TITLE}">{esc(method)} of {esc(name)}: '
            "which characters made the model write each one</div>"
            f'<div class="sub" style="{_SUB}">{esc(summary(result))}</div>'
            f'<div class="cap" style="{_SUB}">{esc(caption(result, t))}</div>'
            f"{_legend(scale)}{nojs}"
            f'<div class="txt" style="{_TXT}">{"".join(spans)}</div>'
            f'<div class="cap tophead" style="{_SUB}">strongest contributions to target {t} '
            f"{esc(repr(result.tokens[t]))} (|score|):</div>"
            f'<ol class="top" style="{_TOP}">{top}</ol>'
            f'<div class="sub" style="{_SUB}">{esc(settings)}; hover or click an underlined character</div>'
            f'<script>{_JS.replace("{id}", uid).replace("{data}", _script_json(data))}</script></div>')


def html_page(result, t: int | None = None) -> str:
    """The HTML view as a whole page, to open from a file (UTF-8 declared for '·' and '↵')."""
    title = f"{METHOD_NAMES.get(result.settings.get('method'), 'Attribution')}: {len(result.targets)} targets"
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
            f"<body>{html_view(result, t)}</body></html>\n")


# ----------------------------------------------------------------------------- matplotlib


def _axes(ax, ncols=1, width=6.0):
    from matplotlib.figure import Figure

    if ax is not None:
        return ax.figure, [ax]
    fig = Figure(figsize=(width * ncols, 4.5), layout="constrained")
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _draw(ax, result, scale: float, title: str):
    """One (T, L) heat map on ax, zero at white, characters on the axes when few enough."""
    im = ax.imshow(result.scores, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto",
                   interpolation="nearest")
    ax.set_xlabel("context position s")
    ax.set_ylabel("target position t")
    ax.set_title(title, fontsize=10)
    if len(result.tokens) <= 60:
        ax.set_xticks(range(len(result.tokens)), [visible(c) for c in result.tokens], fontsize=8)
        ax.set_yticks(range(len(result.targets)),
                      [visible(result.tokens[t]) for t in result.targets], fontsize=8)
    return im


def plot_matrix(result, ax=None):
    """The T x L score matrix; rows are targets, zero outside each target's window."""
    fig, (ax,) = _axes(ax)
    scale = float(np.abs(result.scores).max()) or 1.0
    s = result.settings
    title = (f"{s.get('method')} of {TARGET_NAMES.get(s.get('target'), 'F')}; "
             f"max |delta| = {np.abs(result.delta).max():.1e}")
    fig.colorbar(_draw(ax, result, scale, title), ax=ax, shrink=0.8)
    return fig


def plot_methods(results: dict):
    """Several results (e.g. saliency, gradient * input, IG) side by side on one colour scale."""
    fig, axes = _axes(None, ncols=len(results), width=4.5)
    scale = max(float(np.abs(r.scores).max()) for r in results.values()) or 1.0
    for ax, (name, r) in zip(axes, results.items(), strict=True):
        im = _draw(ax, r, scale, f"{name}: sum {r.scores.sum():+.2f}, |max| {np.abs(r.scores).max():.2f}")
    fig.colorbar(im, ax=axes, shrink=0.8, label=f"score (one scale, +-{scale:.3g})")
    return fig
