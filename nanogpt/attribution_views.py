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


def caption(result, t: int) -> str:
    """One line on target t: its character, F(x), F(baseline), dF and the completeness delta."""
    i = int(np.flatnonzero(result.targets == t)[0])
    name = TARGET_NAMES.get(result.settings.get("target"), "F")
    return (f"target {t} {result.tokens[t]!r}: {name} = {result.f_input[i]:+.4f}, baseline "
            f"{result.f_baseline[i]:+.4f}, dF = {result.dF[i]:+.4f}, delta = {result.delta[i]:+.2e}")


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
    lines.append(f"per target: F, dF, delta, and the {top} strongest contributions (position:char)")
    for i, tt in enumerate(result.targets.tolist()):
        best = "  ".join(f"{s}:{result.tokens[s]!r} {v:+.3f}" for s, v in top_contributors(result, tt, top))
        lines.append(f"{tt:5d} {result.tokens[tt]!r:>6} F={result.f_input[i]:+.3f} "
                     f"dF={result.dF[i]:+.3f} delta={result.delta[i]:+.1e} | {best}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- HTML

_CSS = """
#{id} {{font-family: monospace; line-height: 1.6; max-width: 100ch}}
#{id} .txt span {{padding: 1px 0; border-radius: 2px; white-space: pre}}
#{id} .txt .ws {{color: #999}}
#{id} .txt .tg {{cursor: pointer; border-bottom: 1px dotted #666}}
#{id} .txt .cur {{outline: 2px solid #222}}
#{id} .txt .after {{opacity: 0.35}}
#{id} .cap {{margin: 4px 0; font-size: 90%}}
"""

# Hover a target to see its context's scores; click to pin it (hovering elsewhere comes back).
_JS = """
(function () {
  var root = document.getElementById("{id}"), D = {data};
  var spans = root.querySelectorAll(".txt span"), cap = root.querySelector(".cap");
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
      sp.title = inside ? "score " + row[s - start] : "";
      sp.classList.toggle("cur", s === t);
      sp.classList.toggle("after", s > t);
    });
    cap.textContent = "target " + t + " " + JSON.stringify(spans[t].dataset.ch) + ": " +
      D.name + " = " + signed(D.f[r], 4) + ", baseline " + signed(D.fb[r], 4) +
      ", dF = " + signed(D.f[r] - D.fb[r], 4) + ", delta = " + D.delta[r].toExponential(2);
  }
  root.addEventListener("mouseover", function (e) {
    if (e.target.dataset.r !== undefined) show(+e.target.dataset.r);
  });
  root.addEventListener("mouseleave", function () { show(pinned); });
  root.addEventListener("click", function (e) {
    if (e.target.dataset.r !== undefined) { pinned = +e.target.dataset.r; show(pinned); }
  });
})();
"""


def _script_json(obj) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' can close the tag or start an entity."""
    text = json.dumps(obj, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def html_view(result, t: int | None = None) -> str:
    """A self-contained page fragment (inline CSS and JS, no network) with the heat map of target t."""
    t = _default_target(result, t)
    row, start = result.row(t), result.window(t)[0]  # a UserError when t was not attributed
    digest = hashlib.sha1(result.scores.tobytes() + result.text.encode()).hexdigest()[:8]
    uid = f"nga-{digest}-{next(_ids)}"
    row_of = {tt: r for r, tt in enumerate(result.targets.tolist())}
    starts = [result.window(tt)[0] for tt in result.targets.tolist()]
    data = dict(targets=result.targets.tolist(), starts=starts, first=row_of[t],
                name=TARGET_NAMES.get(result.settings.get("target"), "F"), red=RED, blue=BLUE,
                rows=[[float(f"{v:.4g}") for v in result.scores[r, s:tt]]
                      for r, (s, tt) in enumerate(zip(starts, result.targets.tolist(), strict=True))],
                f=result.f_input.tolist(), fb=result.f_baseline.tolist(), delta=result.delta.tolist())
    scale = float(np.abs(row).max())
    spans = []
    for s, token in enumerate(result.tokens):
        classes = ["ws"] if token.isspace() else []
        attrs = f' data-ch="{html.escape(token, quote=True)}"'
        if s in row_of:
            classes.append("tg")
            attrs += f' data-r="{row_of[s]}"'
        style = ""
        if start <= s < t:  # the page reads right before its script runs, or without scripts
            style = ' style="background: rgb({},{},{})"'.format(*rgb(row[s], scale))
        classes += ["cur"] if s == t else (["after"] if s > t else [])
        spans.append(f'<span class="{" ".join(classes)}"{attrs}{style}>'
                     f"{html.escape(visible(token), quote=True)}</span>")
        if token == "\n":
            spans.append("<br>")
    settings = ", ".join(f"{k}={v!r}" for k, v in result.settings.items())
    return (f'<div id="{uid}"><style>{_CSS.format(id=uid)}</style>'
            f'<div class="cap">{html.escape(caption(result, t))}</div>'
            f'<div class="txt">{"".join(spans)}</div>'
            f'<div class="cap">{html.escape(settings)}; hover or click an underlined character</div>'
            f'<script>{_JS.replace("{id}", uid).replace("{data}", _script_json(data))}</script></div>')


def html_page(result, t: int | None = None) -> str:
    """The HTML view as a whole page, to open from a file (UTF-8 declared for '·' and '↵')."""
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>attribution</title></head>'
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
