"""The result of the attribution lens: scores, the values of F they explain, and their checks.

An `Attribution` holds, for each target position t, one score per context position, F at the
real input and at the baseline, and how the path integral was done: the quadrature points each
target used (`steps_used`) and, when it was integrated to a tolerance, which targets hit the cap
of work before reaching it (`capped`). It shows itself (terminal, HTML, figure) through
views.py, and saves and loads itself (.npz or .json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nanogpt.attribution.paths import ABS_TOLERANCE, COMPLETENESS_TOLERANCE, describe
from nanogpt.attribution.views import html_page, html_view, plot_matrix, terminal_view
from nanogpt.errors import UserError


@dataclass
class Attribution:
    """Scores of every context token for each target token, with the checks that go with them."""

    tokens: list[str]  # the text, one entry per token (a character with the char tokenizer)
    targets: np.ndarray  # (T,) the positions t whose F_t is explained, one row each
    scores: np.ndarray  # (T, L): scores[i, s] = contribution of token s to F at targets[i]
    f_input: np.ndarray  # (T,) F_t at the real embeddings
    f_baseline: np.ndarray  # (T,) F_t with the baseline in place of every context embedding
    settings: dict = field(default_factory=dict)  # method, target, baseline, steps, rule, tol, ...
    steps_used: np.ndarray | None = None  # (T,) points on the path each target's integral used
    capped: np.ndarray | None = None  # (T,) True: the integration to a tolerance stopped at the cap

    @property
    def text(self) -> str:
        """The attributed text."""
        return "".join(self.tokens)

    @property
    def dF(self) -> np.ndarray:
        """(T,) F(x) - F(baseline): what integrated gradients' scores should add up to."""
        return self.f_input - self.f_baseline

    @property
    def delta(self) -> np.ndarray:
        """(T,) completeness gap: sum of the scores - (F(x) - F(baseline))."""
        return self.scores.sum(axis=1) - self.dF

    def tolerances(self, tolerance: float | None = None) -> np.ndarray:
        """(T,) the largest |delta| accepted: max(tol * |dF|, abs_tol), from the settings by default."""
        tol = (self.settings.get("tol") or COMPLETENESS_TOLERANCE) if tolerance is None else tolerance
        return np.maximum(tol * np.abs(self.dF), self.settings.get("abs_tol") or ABS_TOLERANCE)

    def incomplete(self, tolerance: float | None = None) -> np.ndarray:
        """(T,) True where |delta| exceeds max(tolerance * |dF|, abs_tol): the quadrature missed."""
        return np.abs(self.delta) > self.tolerances(tolerance)

    def completeness_warning(self, tolerance: float | None = None) -> str:
        """'' when every target is within tolerance; else one line naming what missed and what to do."""
        if self.settings.get("method", "ig") != "ig" or self.settings.get("aggregate", "sum") != "sum":
            return ""  # completeness is a property of integrated gradients' signed sums only
        if self.capped is not None and tolerance is None:
            return self._cap_warning()
        tol = (self.settings.get("tol") or COMPLETENESS_TOLERANCE) if tolerance is None else tolerance
        off = self.incomplete(tol)
        if not off.any():
            return ""
        ratio = np.abs(self.delta) / np.maximum(np.abs(self.dF), 1e-12)
        worst = int(np.argmax(np.where(off, ratio, -np.inf)))  # the worst of those that fail
        return (f"completeness: |delta| > {tol:.0%} of |dF| for {off.sum()} of {len(off)} targets "
                f"(worst: position {self.targets[worst]}, delta {self.delta[worst]:+.2g} for dF "
                f"{self.dF[worst]:+.2g}); the quadrature misses structure on the path: integrate "
                f"to a tolerance (--tol) or raise the steps (now {self.settings.get('steps')})")

    def _cap_warning(self) -> str:
        """The targets whose integration to a tolerance stopped at the cap, by name."""
        off = np.flatnonzero(self.capped)
        if len(off) == 0:
            return ""
        named = ", ".join(f"{self.targets[i]} {self.tokens[self.targets[i]]!r} (delta {self.delta[i]:+.2g}"
                          f" for dF {self.dF[i]:+.2g})" for i in off[:8])
        more = f" and {len(off) - 8} more" if len(off) > 8 else ""
        s = self.settings
        return (f"completeness: {len(off)} of {len(self.targets)} targets stopped at the cap of "
                f"{s.get('max_steps')} steps before |delta| <= max({s.get('tol'):g} |dF|, "
                f"{s.get('abs_tol'):g}): {named}{more}; raise --max-steps or try --baseline mean")

    def window(self, t: int) -> tuple[int, int]:
        """The context positions [start, t) that target t sees."""
        return max(0, t - self.settings.get("block_size", t)), t

    def row(self, t: int) -> np.ndarray:
        """(L,) scores of every position for the target at position t."""
        hits = np.flatnonzero(self.targets == t)
        if len(hits) == 0:
            raise UserError(f"position {t} was not attributed (targets: {describe(self.targets)})")
        return self.scores[hits[0]]

    def save(self, path) -> None:
        """Write to .npz (compact) or .json (readable); `load` reads either back."""
        path = Path(path)
        check_save_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(tokens=self.tokens, targets=self.targets.tolist(), scores=self.scores.tolist(),
                      f_input=self.f_input.tolist(), f_baseline=self.f_baseline.tolist(),
                      delta=self.delta.tolist(), settings=self.settings)
        for name in ("steps_used", "capped"):  # only when the lens filled them in
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name).tolist()
        if path.suffix == ".json":
            path.write_text(json.dumps(arrays, ensure_ascii=False), encoding="utf-8")
        else:  # .npz; delta is saved for people reading the file, `load` recomputes it
            arrays.update(tokens=np.array(self.tokens, dtype=str), settings=json.dumps(self.settings))
            np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items()})

    @classmethod
    def load(cls, path) -> Attribution:
        """Read a result written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"no attribution file at {path}")
        if path.suffix == ".json":
            d = json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
            d["tokens"], d["settings"] = d["tokens"].tolist(), json.loads(str(d["settings"]))
        else:
            raise UserError(f"load a .npz or .json file, not {path.name!r}")
        try:
            T = len(d["targets"])
            optional = {name: np.asarray(d[name], dtype=kind) for name, kind in
                        (("steps_used", np.int64), ("capped", bool)) if name in d}
            return cls(tokens=list(d["tokens"]), targets=np.asarray(d["targets"], dtype=np.int64),
                       scores=np.asarray(d["scores"], dtype=np.float64).reshape(T, len(d["tokens"])),
                       f_input=np.asarray(d["f_input"], dtype=np.float64),
                       f_baseline=np.asarray(d["f_baseline"], dtype=np.float64), settings=d["settings"],
                       **optional)
        except (KeyError, ValueError) as e:
            raise UserError(f"{path} is not an attribution result written by save ({e})") from None

    # The views live in views.py; these are shortcuts to them.
    def to_terminal(self, t: int | None = None, color: bool | None = None, top: int = 3) -> str:
        """The text coloured by the scores for target t (default: the last), then a summary."""
        return terminal_view(self, t, color=color, top=top)

    def to_html(self, t: int | None = None) -> str:
        """A self-contained HTML heat map: hover or click a character to see its context."""
        return html_view(self, t)

    def _repr_html_(self) -> str:
        return self.to_html()

    def save_html(self, path, t: int | None = None) -> None:
        """Write the HTML view to a file, as a whole page."""

        Path(path).write_text(html_page(self, t), encoding="utf-8")

    def plot(self, ax=None):
        """The (T, L) score matrix as a matplotlib Figure."""
        return plot_matrix(self, ax=ax)


def check_save_path(path) -> None:
    """A one-line error for a result file that is neither .npz nor .json (checked before the work)."""
    if Path(path).suffix not in (".npz", ".json"):
        raise UserError(f"save to a .npz or .json file, not {Path(path).name!r}")

