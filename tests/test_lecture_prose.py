"""The lectures' prose holds: every number a solution notebook's text states is one its code shows,
and no figure's text is set below 8 pt.

Numbers that hold. In each committed solution notebook (lectures/solutions/NN_*.ipynb), every
number of these kinds in a markdown cell

    decimals        2.4819  0.3  1e-3  3.5e-04
    comma-grouped   1,500  32,033  1,000,000
    percentages     12%  0.5%

must appear verbatim in some code cell of the same notebook: in its source, or in its outputs
(stream text; the text/plain, text/markdown, text/html and text/latex of results and displays).
So prose refers to printed values, and a cell prints every number the prose quotes, with as many
digits as the prose gives them. The rule in detail:

- Verbatim, with numeric edges: 2.48 is not found in 2.4819, 0.3 not in 0.31 or 10.3, 12% not in
  0.12%. Write the rounding a cell prints, or print the rounding you write.
- A sign is not part of the number (prose "-3.71" is found in "+0.0000 -3.71" and in "3.71").
- A comma-grouped number is found in code also as Python writes it: 10,000 as 10_000 or 10000.
- Inside LaTeX math ($...$, $$...$$), code spans (`...`) and code blocks the rule is the same: a
  number in a formula or in quoted code must be in a code cell too (usually the one computing it).
- Not numbers: integers without a comma (counts the prose defines: 3 layers, 200 units, 2015);
  list and section numbers ("1." then a space); dotted runs such as versions (2.13.0); digits
  glued to a name (float64, GPT-2, W1.5), except after an x, which reads "times" (x0.01); link
  targets, URLs and HTML comments.
- Deliberate quotes of numbers no cell can print (a paper's result, a run too long to repeat) go
  into the notebook's metadata, each with its reason:
      metadata["nanogpt"]["prose_numbers_quoted"] = {"1.510": "why no cell can print it"}
  An entry must be a number that the prose states and no cell shows, so stale entries fail too.
  Prefer printing: a quoted number is one the suite cannot keep true.

Readable figures. The lectures' PNGs cannot be measured, so the rule is enforced where the sizes
are written: `nanogpt.course.notebooks.plot_style` (applied by `banner()`, the first line of every lecture)
sets every font size of matplotlib's rcParams to at least 8 pt; and no code cell of a solution
notebook, and no module that draws for them (nanogpt/diagnostics/plots.py, nanogpt/attribution/views.py),
sets a font size below 8 pt: fontsize=, size=, labelsize=, titlesize=, set_fontsize(), rcParams
font keys, or the named sizes 'xx-small' and 'x-small' (and 'small' should the base size fall
below 9.6 pt, where 'small', 0.833 of it, is under 8).

Reading JSON only: no notebook is executed here.
"""

import json
import re
from functools import cache
from pathlib import Path

import pytest

from nanogpt.course.notebooks import FONT_SIZES, MIN_FONT_PT, SOLUTIONS, banner, lecture_paths, plot_style

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = lecture_paths()
DRAWING_MODULES = [ROOT / "nanogpt" / "diagnostics" / "plots.py",
                   ROOT / "nanogpt" / "attribution" / "views.py"]
QUOTED = "prose_numbers_quoted"  # the notebook-metadata key of deliberate quotes, under "nanogpt"

# --- numbers in prose --------------------------------------------------------------------------------

# A number starts outside a name, a longer number or a dotted run (an x before it reads "times"),
# and ends where no digit, decimal part or comma group follows.
_START = r"(?<![0-9.])(?<![0-9],)(?<![A-Za-wyz_])"
_END = r"(?![0-9])(?!\.[0-9])(?!,[0-9]{3})"
NUMBER = re.compile(_START + r"""(?:
      [0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?       # 1,500  32,033  1,234.5
    | [0-9]+\.[0-9]+(?:[eE][-+]?[0-9]+)?          # 2.4819  0.3  3.5e-04
    | [0-9]+[eE][-+]?[0-9]+                        # 1e-3
    | [0-9]+(?=%)                                  # 12%
    )%?""" + _END, re.VERBOSE)
DOTTED_RUN = re.compile(r"[0-9]+(?:\.[0-9]+){2,}")  # 2.13.0: a version, not a number
NOT_PROSE = [
    re.compile(r"<!--.*?-->", re.DOTALL),  # HTML comments
    re.compile(r"!?\[([^\]]*)\]\([^)]*\)"),  # links and images: keep the text, drop the target
    re.compile(r"<https?://[^>]*>|https?://\S+"),  # URLs
    re.compile(r"^\s*(?:[0-9]+\.)+\s", re.MULTILINE),  # list and section numbers: "1. ", "2.3. "
    re.compile(r"^#+\s*(?:[0-9]+\.)*[0-9]+\.?\s", re.MULTILINE),  # headings: "## 5. The lens", "### 2.1 ..."
]


def prose_numbers(markdown: str) -> list[str]:
    """The numbers of one markdown cell that must hold, in order of appearance (see module doc)."""
    text = NOT_PROSE[0].sub(" ", markdown)
    text = NOT_PROSE[1].sub(r"\1", text)
    for pattern in NOT_PROSE[2:]:
        text = pattern.sub(" ", text)
    text = DOTTED_RUN.sub(" ", text)
    return [m.group(0) for m in NUMBER.finditer(text)]


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def code_text(cells: list[dict]) -> tuple[str, str]:
    """(sources, outputs) of a notebook's code cells, each as one string to search."""
    sources, outputs = [], []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        sources.append(_text(cell["source"]))
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                outputs.append(_text(out["text"]))
            elif out["output_type"] in ("execute_result", "display_data"):
                data = out.get("data", {})
                outputs += [_text(data[k]) for k in ("text/plain", "text/markdown", "text/html",
                                                     "text/latex") if k in data]
    return "\n".join(sources), "\n".join(outputs)


def spellings(number: str, in_source: bool) -> list[str]:
    """How a prose number may be written where it is looked for."""
    found = [number]
    if in_source and "," in number:
        found += [number.replace(",", "_"), number.replace(",", "")]
    return found


def shown(number: str, sources: str, outputs: str) -> bool:
    """Whether a prose number appears verbatim, with numeric edges, in the code's sources or outputs."""
    for text, in_source in ((outputs, False), (sources, True)):
        for spelling in spellings(number, in_source):
            edge_after = "" if spelling.endswith("%") else r"(?![0-9])(?!\.[0-9])(?!,[0-9]{3})"
            if re.search(r"(?<![0-9])(?<![0-9]\.)" + re.escape(spelling) + edge_after, text):
                return True
    return False


@cache
def read(path: Path) -> dict:
    return json.loads(path.read_text())


def unheld(path: Path) -> tuple[list[str], dict[str, str]]:
    """The notebook's prose numbers that no code cell shows ("cell N: number", deduplicated per
    cell), and its deliberate quotes (number -> reason)."""
    nb = read(path)
    sources, outputs = code_text(nb["cells"])
    quoted = nb.get("metadata", {}).get("nanogpt", {}).get(QUOTED, {})
    missing = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for number in dict.fromkeys(prose_numbers(_text(cell["source"]))):
            if not shown(number, sources, outputs):
                missing.append(f"cell {i}: {number}")
    return missing, quoted


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_number_in_the_prose_is_one_a_code_cell_shows(path):
    missing, quoted = unheld(path)
    not_quoted = [m for m in missing if m.split(": ", 1)[1] not in quoted]
    assert not not_quoted, (
        f"{path.name}: numbers in the prose that no code cell prints or writes (print them, or "
        f"rephrase; see tests/test_lecture_prose.py): {', '.join(not_quoted)}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_deliberate_quotes_have_reasons_and_are_still_needed(path):
    missing, quoted = unheld(path)
    assert isinstance(quoted, dict), f"metadata nanogpt.{QUOTED}: a mapping of number to reason"
    needed = {m.split(": ", 1)[1] for m in missing}
    for number, reason in quoted.items():
        assert isinstance(reason, str) and reason.strip(), f"{path.name}: quote {number!r} without a reason"
        assert number in needed, (f"{path.name}: {number!r} is listed in {QUOTED} but the prose no "
                                  "longer states it, or a code cell shows it now: drop the entry")


# --- the rule itself, on made-up prose -----------------------------------------------------------------

def test_prose_numbers_are_decimals_comma_groups_percentages_and_exponents():
    text = ("Validation 2.4819 after 1,500 steps; 12% saturated, a 0.5% gap, lr 1e-3, ratio 3.5e-04. "
            "The guide is `-3`, 5 heads, 200 units, the year 2015, and x0.01 reads times 0.01.")
    assert prose_numbers(text) == ["2.4819", "1,500", "12%", "0.5%", "1e-3", "3.5e-04", "0.01", "0.01"]


def test_list_headings_versions_names_and_links_are_not_numbers():
    text = ("## 5. The lens\n### 2.1 Heads\n1. first\n2. second\n"
            "torch 2.13.0, float64, GPT-2, W1.5, python3.11; "
            "[the paper](https://arxiv.org/abs/1706.03762) <!-- 9.99 --> see <https://x.org/1.5>")
    assert prose_numbers(text) == []


def test_math_and_code_spans_are_checked_like_prose():
    assert prose_numbers("$$ W \\sim \\mathcal{N}(0, 0.25) $$ and `lr = 0.1` and `(1000, 200)`") == [
        "0.25", "0.1"]


def test_a_number_is_shown_only_verbatim_with_its_edges():
    outputs = "val 2.4819 | saturated  3.3% | 10.25 | +0.0041 | step 5,000"
    assert shown("2.4819", "", outputs) and shown("3.3%", "", outputs) and shown("0.0041", "", outputs)
    assert not shown("2.48", "", outputs) and not shown("0.25", "", outputs) and not shown("3%", "", outputs)
    assert shown("5,000", "", outputs) and not shown("5,00", "", outputs)
    assert shown("10,000", "pick(10_000, 30)", "") and shown("200,000", "max_iters=200000", "")
    assert not shown("10,000", "", "10000 steps")  # outputs: verbatim only


# --- readable figures ---------------------------------------------------------------------------------

SIZE_NUMBER = re.compile(
    r"""(?:\b(?:fontsize|labelsize|titlesize|size)\s*=\s*     # fontsize=7, tick_params(labelsize=7)
         |["'](?:fontsize|size|[a-z.]*(?:font\.size|fontsize|labelsize|titlesize))["']\s*:\s*  # {"size": 7}
         |\[["'][a-z.]*size["']\]\s*=\s*                   # rcParams["font.size"] = 7
         |\bset_(?:font)?size\(\s*)                          # text.set_fontsize(7)
        ["']?(?P<pt>[0-9]+(?:\.[0-9]*)?)""", re.VERBOSE)
TOO_SMALL_NAMES = ("xx-small", "x-small")


def small_fonts(code: str, base: float) -> list[str]:
    """The lines of `code` that set a font size below MIN_FONT_PT (base: the base font size in pt)."""
    names = TOO_SMALL_NAMES + (("small",) if 0.833 * base < MIN_FONT_PT else ())
    named = re.compile(r"""["'](?:%s)["']""" % "|".join(map(re.escape, names)))
    found = []
    for n, line in enumerate(code.split("\n"), 1):
        code_part = line.split("#", 1)[0]
        too_small = any(float(m["pt"]) < MIN_FONT_PT for m in SIZE_NUMBER.finditer(code_part))
        if too_small or named.search(code_part):
            found.append(f"line {n}: {line.strip()}")
    return found


def test_small_fonts_are_found_in_every_spelling():
    base = float(FONT_SIZES["font.size"])
    code = "\n".join([
        'ax.legend(fontsize=7)', 'ax.tick_params(axis="x", labelsize=6)', 'ax.legend(prop={"size": 5})',
        'plt.rcParams.update({"font.size": 7.5})', 't.set_fontsize(4); plt.rcParams["legend.fontsize"] = 6',
        'ax.set_title("t", fontsize="x-small")',
        'ax.legend(fontsize=8)  # fontsize=6 in a comment is fine', 'fig, ax = plt.subplots(figsize=(6, 4))',
        'torch.randint(3, size=(5,))', 'ax.plot(x, ms=3)'])
    assert [line.split(":")[0] for line in small_fonts(code, base)] == [f"line {n}" for n in range(1, 7)]
    small = "ax.legend(fontsize='small')"
    assert small_fonts(small, 9.0) and not small_fonts(small, 10.0)


def test_the_shared_style_sets_every_font_size_to_8_pt_or_more_and_banner_applies_it():
    import matplotlib

    assert set(FONT_SIZES) >= {"font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize",
                               "ytick.labelsize", "legend.fontsize"}
    assert all(isinstance(v, (int, float)) and v >= MIN_FONT_PT for v in FONT_SIZES.values())
    before = {k: matplotlib.rcParams[k] for k in FONT_SIZES}
    try:
        matplotlib.rcParams.update({k: 6.0 for k in FONT_SIZES})
        banner()
        assert {k: matplotlib.rcParams[k] for k in FONT_SIZES} == {k: float(v) for k, v in FONT_SIZES.items()}
        matplotlib.rcParams.update({k: 6.0 for k in FONT_SIZES})
        plot_style()
        assert all(matplotlib.rcParams[k] >= MIN_FONT_PT for k in FONT_SIZES)
    finally:
        matplotlib.rcParams.update(before)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_code_cell_of_a_lecture_sets_a_font_below_8_pt(path):
    base = float(FONT_SIZES["font.size"])
    found = [f"cell {i}, {line}" for i, cell in enumerate(read(path)["cells"]) if cell["cell_type"] == "code"
             for line in small_fonts(_text(cell["source"]), base)]
    assert not found, f"{path.name}: fonts below {MIN_FONT_PT} pt: " + "; ".join(found)


@pytest.mark.parametrize("path", DRAWING_MODULES, ids=[p.name for p in DRAWING_MODULES])
def test_no_module_that_draws_for_the_lectures_sets_a_font_below_8_pt(path):
    found = small_fonts(path.read_text(), float(FONT_SIZES["font.size"]))
    assert not found, f"nanogpt/{path.name}: fonts below {MIN_FONT_PT} pt: " + "; ".join(found)


def test_the_solution_notebooks_are_the_ones_checked():
    assert NOTEBOOKS and all(p.parent == SOLUTIONS for p in NOTEBOOKS)
