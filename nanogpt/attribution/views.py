"""Views of an attribution result: terminal colours, a self-contained HTML page, matplotlib figures.

All of them share one colour scale: red for characters that pushed F up, blue for those that
pulled it down, white for zero, and the strongest score of the row at full colour (for scores
that have a size but no sign, such as saliency's norm: white to red). The page's markup, styles
and script live in page.py.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import os
import sys

import numpy as np

from nanogpt.attribution import page
from nanogpt.attribution.page import BLUE, RED, fixed, probability, rgb
from nanogpt.attribution.paths import COMPLETENESS_TOLERANCE

VISIBLE = {" ": "·", "\n": "↵", "\t": "→"}  # whitespace drawn so that its colour can be seen
TARGET_NAMES = {"logprob": "log p", "prob": "p", "logit": "logit"}
_ids = itertools.count()  # each HTML view in one notebook needs its own element id


def visible(token: str) -> str:
    """A token with its whitespace made visible."""
    return "".join(VISIBLE.get(ch, ch) for ch in token)


def label(token: str) -> str:
    """How the views name a character: its visible form in quotes, 'e' or '·'."""
    return f"'{visible(token)}'"


def _default_target(result, t):
    return int(result.targets[-1]) if t is None else t


def complete(result) -> bool:
    """Do the scores add up to dF (integrated gradients' signed sums)? Only then delta means something."""
    return result.settings.get("method", "ig") == "ig" and result.settings.get("aggregate", "sum") == "sum"


def one_sided(result) -> bool:
    """Scores with a size but no sign: the L2 norm, or saliency whose scores are all >= 0."""
    s = result.settings
    return s.get("aggregate") == "norm" or (s.get("method") == "saliency" and float(result.scores.min()) >= 0)


def flagged(result) -> tuple[np.ndarray, str]:
    """(T,) the targets the page marks, and why: stopped at the cap, or (fixed rule) missed completeness."""
    if result.capped is not None:
        return np.asarray(result.capped, dtype=bool), "stopped at the cap before the tolerance"
    if complete(result):
        return result.incomplete(), "misses completeness"
    return np.zeros(len(result.targets), dtype=bool), ""


def caption(result, t: int) -> str:
    """One line on target t: its character, F (and p), then for IG the baseline, dF, delta, the points."""
    i = int(np.flatnonzero(result.targets == t)[0])
    key = result.settings.get("target")
    name, f = TARGET_NAMES.get(key, "F"), float(result.f_input[i])
    line = f"character {t} {label(result.tokens[t])}: {name} = {fixed(f, 4)}"
    if key == "logprob":
        line += f" (p = {probability(float(np.exp(f)))})"
    if not complete(result):
        return line
    flags, why = flagged(result)
    points = "" if result.steps_used is None else f", {result.steps_used[i]} points"
    return (f"{line}; baseline {fixed(result.f_baseline[i], 4)}, dF = {fixed(result.dF[i], 4)}, "
            f"delta = {fixed(result.delta[i], 4)} ({why if flags[i] else 'within tolerance'}){points}")


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
HEAD = f"the {TOP} earlier characters that mattered most for "  # + the selected character
OUTSIDE = "outside the model's window: not read"
TEXT_LABEL = ("The text. Arrow keys, Home and End choose the character to explain, Enter pins it, "
              "Escape releases it.")
BASELINES = {"zero": "the zero embedding", "mean": "the mean embedding"}
PIN_NOTE = " \u2014 Pinned: click it again or press Escape to release."


def summary(result) -> str:
    """One line on how the scores were integrated and how many targets are marked."""
    s, flags = result.settings, flagged(result)[0]
    n, how = len(result.targets), s.get("integration", "fixed" if s.get("method") == "ig" else "none")
    if how == "adaptive":
        used = result.steps_used
        return (f"{n} targets integrated to |delta| <= max({s['tol']:g} |dF|, {s['abs_tol']:g}) with "
                f"{s['steps']}-point {s['rule']} pieces: {n - flags.sum()} within, {flags.sum()} stopped at "
                f"the cap of {s['max_steps']} points (underlined in orange); points per target: "
                f"median {np.median(used):g}, max {used.max()}, total {used.sum()}")
    if how == "fixed" and complete(result):
        return (f"{n} targets, fixed {s.get('steps')}-point {s.get('rule')} rule: {flags.sum()} miss "
                f"completeness by more than {COMPLETENESS_TOLERANCE:.0%} of |dF| (underlined in orange)")
    return f"{n} targets"


def _rounded_rows(result) -> tuple[list[int], list[list[float]]]:
    """Each target's window start and its scores there, rounded once: the page and its script both
    format these same numbers, so they read alike with and without the script."""
    starts = [result.window(tt)[0] for tt in result.targets.tolist()]
    rows = [[float(f"{v:.6g}") for v in result.scores[r, s:tt]]
            for r, (s, tt) in enumerate(zip(starts, result.targets.tolist(), strict=True))]
    return starts, rows


def _snippet(tokens, s: int) -> str:
    """Where position s is in the text: a few characters either side, s in brackets."""
    before, after = "".join(tokens[max(0, s - 3):s]), "".join(tokens[s + 1:s + 3])
    return f"{visible(before)}[{visible(tokens[s])}]{visible(after)}"


def _top_items(result, t: int, start: int, row: list[float]) -> list[str]:
    """The list beside the text, as the script writes it: score, character, position, where."""
    order = sorted(range(len(row)), key=lambda k: (-abs(row[k]), k))[:TOP]
    items = [f"{fixed(row[k], 3)} {label(result.tokens[start + k])} at {start + k}, in "
             f"{_snippet(result.tokens, start + k)}" for k in order]
    return items + [""] * (TOP - len(items))


def _span(result, s: int, t: int, view: dict) -> str:
    """Character s as drawn while target t is selected: coloured, outlined, greyed or faded."""
    token, esc = result.tokens[s], html.escape
    r = view["row_of"].get(s)
    classes, style, attrs = [], [page.SPAN], f' data-ch="{esc(token, quote=True)}"'
    if token.isspace():
        classes.append("ws")
    if s < view["prompt"]:
        style.append(page.PROMPT)
    elif s == view["prompt"] > 0:
        style.append(page.START)
    if r is not None:
        flag = bool(view["flags"][r])
        classes += ["tg"] + (["flag"] if flag else [])
        attrs += f' data-r="{r}"'
        style += [page.TARGET] + ([page.FLAG] if flag else [])
    title = None
    if view["start"] <= s < t:  # target t's colours, which need no script; its number as a tooltip
        v = view["row"][s - view["start"]]
        bg = rgb(v, view["scale"])
        style.append(f"background: {page.css(bg)}; color: {page.css(page.ink(bg))}")
        title = f"{label(token)} at {s}: score {fixed(v, 3)}"
    elif s < view["start"]:
        style.append(f"background: {page.css(page.OUTSIDE_BG)}; color: {page.css(page.OUTSIDE_INK)}")
        title = OUTSIDE
    elif token.isspace():
        style.append(f"color: {page.WS_INK}")
    if s == t:
        style.append(f"outline: {page.CUR}")
        title = f"selected: {label(token)} at {t}"
    elif s > t:
        style.append(f"opacity: {page.AFTER}")
    cls = f' class="{" ".join(classes)}"' if classes else ""
    attrs += f' title="{esc(title, quote=True)}"' if title else ""
    tail = "<br>" if token == "\n" else "<wbr>" if token.isspace() else ""  # lines break after spaces
    return f'<span{cls}{attrs} style="{"; ".join(style)}">{esc(visible(token), quote=True)}</span>{tail}'


def _intro(result) -> str:
    """The first lines: what the colours mean, in plain words, and how to choose a character."""
    if one_sided(result):
        what = ("the earlier characters are coloured by how much each one influenced the model's "
                "choice to write it (size only, not direction): the redder, the more influence.")
    else:
        what = ("the earlier characters are coloured by how much each one pushed the model towards "
                "writing it: red raised its probability, blue lowered it, white did little.")
    return (f'<p class="intro" style="{page.PLAIN}">Choose a character of the text below; {what}</p>'
            f'<p class="hint" style="{page.PLAIN}; font-size: 90%">Hover over a character, click it to pin '
            "it (click it again or press Escape to release), or Tab into the text and use the arrow keys "
            "(up and down jump 10), Home and End; Enter pins.</p>")


def _key(result, view: dict) -> str:
    """A legend entry for every mark the text can carry, only those that occur."""
    items = [page.swatch("", "·", "a space"), page.swatch("", "↵", "a new line")]
    if "\t" in result.text:
        items.append(page.swatch("", "→", "a tab"))
    if view["prompt"] > 0:
        items.append(page.swatch(page.PROMPT, "abc", "the prompt (given, not generated)"))
        items.append(page.swatch(page.START, "x", "generated from here"))
    items.append(page.swatch(f"outline: {page.CUR}", "x", "the selected character"))
    items.append(page.swatch(page.TARGET, "x", "characters you can select"))
    if view["flags"].any():
        items.append(page.swatch(page.FLAG, "x", view["why"]))
    if any(s > 0 for s in view["starts"]):
        bg, fg = page.css(page.OUTSIDE_BG), page.css(page.OUTSIDE_INK)
        items.append(page.swatch(f"background: {bg}; color: {fg}", "abc", OUTSIDE))
    items.append(page.swatch(f"opacity: {page.AFTER}", "abc", "after the selected character"))
    return f'<div class="key" style="{page.LEGEND}">{" ".join(items)}</div>'


def _glossary(result, name: str, view: dict) -> str:
    """What the caption's words mean, the summary, and which characters are marked."""
    parts = [f"{name}: what the scores explain"
             + (", the log of the probability p the model gave the selected character." if
                result.settings.get("target") == "logprob" else ".")]
    if complete(result):
        base = result.settings.get("baseline", "zero")
        base = BASELINES.get(base, f"the character {base!r}")
        tol = result.settings.get("tol") or COMPLETENESS_TOLERANCE
        parts.append(f"baseline: {name} with every earlier character in the window replaced by {base}, "
                     f"where the path starts. dF = {name} - baseline: what the scores add up to. delta = "
                     "their sum - dF: what the integral missed; within tolerance: |delta| <= "
                     f"max({tol:g} |dF|, {result.settings.get('abs_tol') or 0.001:g}). points: where the "
                     "path was evaluated.")
    parts.append(summary(result) + ".")
    marked = [f"{label(result.tokens[t])} at {t}" for t in result.targets[view["flags"]].tolist()]
    if marked:
        more = f" and {len(marked) - 20} more" if len(marked) > 20 else ""
        parts.append(f"Underlined in orange ({view['why']}): {', '.join(marked[:20])}{more}.")
    return f'<div class="glossary" style="{page.SMALL}">{html.escape(" ".join(parts))}</div>'


def html_view(result, t: int | None = None, prompt: int | None = None) -> str:
    """A self-contained page fragment (inline CSS and JS, no network) with the heat map of target t.

    prompt: how many characters were given rather than generated (default: those before the first
    target), drawn in italics. It reads without its script and stylesheet (an untrusted notebook in
    JupyterLab strips both): target t's colours, the colour bar and the marks are inline styles,
    every scored character carries its number as a tooltip, the strongest contributors are static
    text, and a note says what the script adds. The script re-colours the text for the character
    hovered, clicked or chosen with the keys.
    """
    t = _default_target(result, t)
    result.row(t)  # a UserError when t was not attributed
    digest = hashlib.sha1(result.scores.tobytes() + result.text.encode()).hexdigest()[:8]
    uid = f"nga-{digest}-{next(_ids)}"
    row_of = {tt: r for r, tt in enumerate(result.targets.tolist())}
    starts, rows = _rounded_rows(result)
    flags, why = flagged(result)
    name = TARGET_NAMES.get(result.settings.get("target"), "F")
    signed = not one_sided(result)
    row = rows[row_of[t]]
    scale = max([abs(v) for v in row] + [0.0])
    view = dict(row_of=row_of, starts=starts, flags=flags, why=why, row=row, start=starts[row_of[t]],
                scale=scale, prompt=int(result.targets.min()) if prompt is None else prompt)
    caps = [caption(result, tt) for tt in result.targets.tolist()]
    data = dict(targets=result.targets.tolist(), starts=starts, first=row_of[t], rows=rows, caps=caps,
                labels=[label(c) for c in result.tokens], snips=[_snippet(result.tokens, s) for s in
                                                                 range(len(result.tokens))],
                red=RED, blue=BLUE, signed=signed, cur=page.CUR, pinned=page.PINNED, after=page.AFTER,
                outBg=page.css(page.OUTSIDE_BG), outInk=page.css(page.OUTSIDE_INK), wsInk=page.WS_INK,
                outside=OUTSIDE, head=HEAD, pinNote=PIN_NOTE)
    esc = html.escape
    spans = "".join(_span(result, s, t, view) for s in range(len(result.tokens)))
    top = "".join(f"<li>{esc(i)}</li>" for i in _top_items(result, t, view["start"], row))
    method = METHOD_NAMES.get(result.settings.get("method"), "Attribution")
    settings = ", ".join(f"{k}={v!r}" for k, v in result.settings.items())
    nojs = (f'<div class="nojs" style="{page.NOJS}">Hovering, clicking and the keys re-colour the text once '
            "the notebook is trusted (File &gt; Trust Notebook) or run.</div>")  # the script removes this
    script = page.JS.replace("{id}", uid).replace("{data}", page.script_json(data))
    return (f'<div id="{uid}" lang="en" style="{page.ROOT}"><style>{page.STYLE.format(id=uid)}</style>'
            f'<div class="title" style="{page.TITLE}">{esc(method)} of {esc(name)}: '
            "which earlier characters made the model write each one</div>"
            f"{_intro(result)}{nojs}"
            f'<div class="live" aria-live="polite" style="{page.SUB}"><span class="cap">'
            f'{esc(caption(result, t))}</span><span class="pin"></span></div>'
            f"{page.colour_bar(scale, signed)}{_key(result, view)}"
            f'<div class="txt" tabindex="0" role="group" aria-label="{TEXT_LABEL}" style="{page.TXT}">'
            f"{spans}</div>"
            f'<div class="tophead" style="{page.SUB}">{esc(HEAD + label(result.tokens[t]))} at {t}:</div>'
            f'<ol class="top" style="{page.TOP}">{top}</ol>{_glossary(result, name, view)}'
            f"{page.details('settings', esc(settings))}<script>{script}</script></div>")


def html_page(result, t: int | None = None, prompt: int | None = None, faithfulness=None) -> str:
    """The HTML view as a whole page, to open from a file: UTF-8 (for '·' and '↵'), English, sized to
    the screen; with a Faithfulness report, its curves and table below the view."""
    title = f"{METHOD_NAMES.get(result.settings.get('method'), 'Attribution')}: {len(result.targets)} targets"
    extra = "" if faithfulness is None else page.faithfulness_section(faithfulness)
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title></head>"
            f'<body style="margin: 8px">{html_view(result, t, prompt)}{extra}</body></html>\n')


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
