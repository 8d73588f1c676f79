"""A lens: which earlier characters made the model write each character?

For a text and each of its characters c_t, the lens scores every earlier character c_s in the
model's window by how much it contributed to a target F_t: log p(c_t | c_<t) by default, or the
probability p, or the logit of c_t. Three methods, all on the token embeddings x_s:

    saliency               dF_t/dx_s                                  (how sensitive F_t is)
    gradient * input       x_s . dF_t/dx_s                            (a first-order estimate)
    integrated gradients   (x_s - b_s) . integral_0^1 dF_t/dx_s(b + a (x - b)) da

Integrated gradients (Sundararajan et al., 2017) walks the embeddings of the whole window in a
straight line from a baseline b (the zero embedding by default) to the real ones, position
embeddings held fixed. Summed over the embedding dimensions, the scores add up to the change of
F along the walk, sum_s IG_s = F(x) - F(b) ("completeness"). The integral is a quadrature
(Gauss-Legendre by default); what it misses, delta = sum_s IG_s - (F(x) - F(b)), comes back
with every target so that one can see how well it did.

A baseline to be wary of: with `interpolate_positions` and the zero baseline the walk starts at
an all-zero input, where every LayerNorm divides by about sqrt(eps). There F(alpha) has
structure at every scale of alpha down to 0, no quadrature follows it, and delta comes out as
large as dF itself. Start that walk from the mean embedding (or a character) instead.

Speed. The textbook way runs one integrated-gradients computation per character
(`attribute_loop`, kept as the reference). `attribute` instead lines up every (alpha, target)
pair as one row of a batch: a row holds its target's window, interpolated with its alpha, and
reads F at its target. Rows are independent in a batch, so one backward of the batch's sum
still gives each row its own gradient. Right-padding a shorter window with the characters that
follow changes nothing, because the model is causal. Both do the same arithmetic (every pair
runs its window forward and back once); the batched path saves what fewer, larger passes save
(bench/bench_attribution.py). One forward per alpha shared by all targets would not do better:
keeping the targets apart then takes one backward per target over the whole sequence.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nanogpt.errors import UserError

METHODS = ("ig", "saliency", "grad-input")
TARGETS = ("logprob", "prob", "logit")
RULES = ("gauss-legendre", "left", "right", "middle", "trapezoid")
AGGREGATES = ("sum", "norm")
COMPLETENESS_TOLERANCE = 0.05  # |delta| above this share of |dF|: the scores are partly quadrature noise


# ----------------------------------------------------------------------------- the result


@dataclass
class Attribution:
    """Scores of every context token for each target token, with the checks that go with them."""

    tokens: list[str]  # the text, one entry per token (a character with the char tokenizer)
    targets: np.ndarray  # (T,) the positions t whose F_t is explained, one row each
    scores: np.ndarray  # (T, L): scores[i, s] = contribution of token s to F at targets[i]
    f_input: np.ndarray  # (T,) F_t at the real embeddings
    f_baseline: np.ndarray  # (T,) F_t with the baseline in place of every context embedding
    settings: dict = field(default_factory=dict)  # method, target, baseline, steps, rule, ...

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

    def incomplete(self, tolerance: float = COMPLETENESS_TOLERANCE) -> np.ndarray:
        """(T,) True where |delta| exceeds max(tolerance * |dF|, 1e-3): the quadrature missed."""
        return np.abs(self.delta) > np.maximum(tolerance * np.abs(self.dF), 1e-3)

    def completeness_warning(self, tolerance: float = COMPLETENESS_TOLERANCE) -> str:
        """'' when every |delta| is within max(tolerance * |dF|, 1e-3); else a line saying what to do."""
        if self.settings.get("method", "ig") != "ig" or self.settings.get("aggregate", "sum") != "sum":
            return ""  # completeness is a property of integrated gradients' signed sums only
        off = self.incomplete(tolerance)
        if not off.any():
            return ""
        ratio = np.abs(self.delta) / np.maximum(np.abs(self.dF), 1e-12)
        worst = int(np.argmax(np.where(off, ratio, -np.inf)))  # the worst of those that fail
        return (f"completeness: |delta| > {tolerance:.0%} of |dF| for {off.sum()} of {len(off)} targets "
                f"(worst: position {self.targets[worst]}, delta {self.delta[worst]:+.2g} for dF "
                f"{self.dF[worst]:+.2g}); the quadrature misses structure on the path: raise the steps "
                f"(now {self.settings.get('steps')}), try the middle rule or the mean baseline")

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
            return cls(tokens=list(d["tokens"]), targets=np.asarray(d["targets"], dtype=np.int64),
                       scores=np.asarray(d["scores"], dtype=np.float64).reshape(T, len(d["tokens"])),
                       f_input=np.asarray(d["f_input"], dtype=np.float64),
                       f_baseline=np.asarray(d["f_baseline"], dtype=np.float64), settings=d["settings"])
        except (KeyError, ValueError) as e:
            raise UserError(f"{path} is not an attribution result written by save ({e})") from None

    # The views live in attribution_views.py; these are shortcuts to them.
    def to_terminal(self, t: int | None = None, color: bool | None = None, top: int = 3) -> str:
        """The text coloured by the scores for target t (default: the last), then a summary."""
        from nanogpt.attribution_views import terminal_view

        return terminal_view(self, t, color=color, top=top)

    def to_html(self, t: int | None = None) -> str:
        """A self-contained HTML heat map: hover or click a character to see its context."""
        from nanogpt.attribution_views import html_view

        return html_view(self, t)

    def _repr_html_(self) -> str:
        return self.to_html()

    def save_html(self, path, t: int | None = None) -> None:
        """Write the HTML view to a file, as a whole page."""
        from nanogpt.attribution_views import html_page

        Path(path).write_text(html_page(self, t), encoding="utf-8")

    def plot(self, ax=None):
        """The (T, L) score matrix as a matplotlib Figure."""
        from nanogpt.attribution_views import plot_matrix

        return plot_matrix(self, ax=ax)


def check_save_path(path) -> None:
    """A one-line error for a result file that is neither .npz nor .json (checked before the work)."""
    if Path(path).suffix not in (".npz", ".json"):
        raise UserError(f"save to a .npz or .json file, not {Path(path).name!r}")


def describe(positions) -> str:
    """A short description of a set of positions, such as '5..200' or '7'."""
    positions = list(positions)
    if not positions:
        return "none"
    lo, hi = min(positions), max(positions)
    return str(lo) if lo == hi else f"{lo}..{hi}"


# ----------------------------------------------------------------------------- the pieces


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points alpha in [0, 1] and weights summing to 1 so that sum w f(alpha) ~ integral_0^1 f."""
    if steps < 1:
        raise UserError(f"steps must be at least 1, not {steps}")
    n, k = steps, np.arange(steps)
    if rule == "gauss-legendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)  # exact for polynomials up to 2n-1
        return (nodes + 1) / 2, weights / 2  # from [-1, 1] to [0, 1]
    if rule in ("left", "right", "middle"):
        offset = {"left": 0.0, "right": 1.0, "middle": 0.5}[rule]
        return (k + offset) / n, np.full(n, 1 / n)
    if rule == "trapezoid":  # n intervals, so n + 1 points; the two ends count half
        weights = np.full(n + 1, 1 / n)
        weights[[0, -1]] /= 2
        return np.arange(n + 1) / n, weights
    raise UserError(f"rule must be one of {', '.join(RULES)}, not {rule!r}")


def target_value(logits: torch.Tensor, next_ids: torch.Tensor, kind: str) -> torch.Tensor:
    """F for each row: logits (J, V) at the predicting position, next_ids (J,) -> (J,)."""
    if kind == "logit":
        return logits.gather(1, next_ids[:, None])[:, 0]
    logp = F.log_softmax(logits, dim=-1).gather(1, next_ids[:, None])[:, 0]
    return logp if kind == "logprob" else logp.exp()


@dataclass
class Plan:
    """Everything the passes share, checked once: the options and the quadrature."""

    method: str
    target: str
    aggregate: str
    interpolate_positions: bool
    baseline: torch.Tensor  # (C,) the embedding every context token starts from
    alphas: torch.Tensor  # (K,) points on the path
    weights: torch.Tensor  # (K,) their quadrature weights
    batch_size: int
    settings: dict  # the options as given, to travel with the result


def make_plan(model, *, method="ig", target="logprob", baseline="zero", steps=32,
              rule="gauss-legendre", aggregate="sum", interpolate_positions=False,
              batch_size=64) -> Plan:
    """Check the options (one-line UserErrors) and resolve them against the model."""
    for name, value, allowed in (("method", method, METHODS), ("target", target, TARGETS),
                                 ("aggregate", aggregate, AGGREGATES)):
        if value not in allowed:
            raise UserError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, not {batch_size}")
    alphas, weights = quadrature(rule, steps)
    if method != "ig":  # saliency and gradient * input look at the real input only
        alphas, weights = np.ones(1), np.ones(1)
    table = model.wte.weight.detach()  # (V, C)
    if baseline == "zero":
        base = torch.zeros_like(table[0])
    elif baseline == "mean":
        base = table.mean(dim=0)
    elif isinstance(baseline, int) and 0 <= baseline < len(table):
        base = table[baseline]  # a token's embedding, e.g. the space's
    else:
        raise UserError(f"baseline must be 'zero', 'mean' or a token id, not {baseline!r}")
    as_tensor = lambda a: torch.tensor(a, dtype=table.dtype, device=table.device)  # noqa: E731
    settings = dict(method=method, target=target, baseline=baseline, steps=steps, rule=rule,
                    aggregate=aggregate, interpolate_positions=interpolate_positions,
                    block_size=model.config.block_size)
    return Plan(method, target, aggregate, interpolate_positions, base, as_tensor(alphas),
                as_tensor(weights), batch_size, settings)


def path_points(model, windows: torch.Tensor, alphas: torch.Tensor, plan: Plan):
    """Embeddings alpha of the way from the baseline: (J, L, C) token part, (L, C) position part.

    With `interpolate_positions` the walk is over token + position embeddings together, from the
    baseline plus zero positions, so the whole input goes in as `tok_emb` and positions are zero.
    """
    tok = model.wte(windows)  # (J, L, C)
    pos = model.wpe(torch.arange(windows.shape[1], device=windows.device))  # (L, C)
    real = tok + pos if plan.interpolate_positions else tok
    if plan.interpolate_positions:
        pos = torch.zeros_like(pos)
    a = alphas.view(-1, 1, 1)
    return plan.baseline + a * (real - plan.baseline), pos


def gradients(model, windows, reads, next_ids, alphas, plan: Plan) -> torch.Tensor:
    """dF/d(path point), (J, L, C), for J rows: window (J, L), F read at position reads (J,)."""
    points, pos = path_points(model, windows, alphas, plan)
    points = points.detach().requires_grad_(True)
    logits, _ = model(tok_emb=points, pos_emb=pos)  # (J, L, V)
    f = target_value(logits[torch.arange(len(reads)), reads], next_ids, plan.target)
    # Rows never mix in a batch, so the gradient of the sum gives each row its own dF/dx.
    # autograd.grad with respect to the inputs leaves every parameter's .grad alone.
    (grad,) = torch.autograd.grad(f.sum(), points)
    return grad


@torch.no_grad()
def values(model, windows, reads, next_ids, alphas, plan: Plan) -> torch.Tensor:
    """F (J,) at the path points alphas (J,): 1 gives F(x), 0 gives F(baseline)."""
    points, pos = path_points(model, windows, alphas, plan)
    logits, _ = model(tok_emb=points, pos_emb=pos)
    return target_value(logits[torch.arange(len(reads)), reads], next_ids, plan.target)


def scores_from_gradient(model, window, mean_grad, plan: Plan) -> torch.Tensor:
    """One target's scores (L,) from its window (L,) ids and its averaged gradient (L, C)."""
    points, _ = path_points(model, window[None], torch.ones(1, dtype=mean_grad.dtype,
                                                            device=mean_grad.device), plan)
    real = points[0].detach()  # (L, C) the input at the end of the path
    factor = {"ig": real - plan.baseline, "grad-input": real, "saliency": 1.0}[plan.method]
    per_dim = factor * mean_grad  # (L, C)
    # "sum" keeps the sign and gives completeness for IG. For saliency it is the gradient's
    # projection on (1, ..., 1), which depends on the embedding's basis: saliency usually means
    # the norm, aggregate="norm"; "sum" stays the default so that all three methods share it.
    return per_dim.sum(-1) if plan.aggregate == "sum" else per_dim.norm(dim=-1)


@contextmanager
def eval_mode(model):
    """Run with dropout off and gradients on; put back every module's training flag after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        for m, was_training in flags:
            m.training = was_training


# ----------------------------------------------------------------------------- the lens


def _check_inputs(model, ids, positions, tokens):
    """Check the text and the targets; return ids (N,), targets (T,), tokens and block size."""
    if not (hasattr(model, "wte") and hasattr(model, "wpe")):
        raise UserError(f"attribution needs a GPT (token embeddings), not a {type(model).__name__}")
    ids = torch.as_tensor(ids, dtype=torch.long, device=model.wte.weight.device).view(-1)
    if len(ids) < 2:
        raise UserError("the text must hold at least two characters: the first has no context")
    positions = range(1, len(ids)) if positions is None else sorted(set(positions))
    bad = [t for t in positions if not 1 <= t < len(ids)]
    if bad or not positions:
        raise UserError(f"target positions must lie in 1..{len(ids) - 1}, not {describe(bad)}")
    tokens = [str(int(i)) for i in ids] if tokens is None else list(tokens)
    if len(tokens) != len(ids):
        raise UserError(f"{len(tokens)} tokens for {len(ids)} ids")
    return ids, np.asarray(positions, dtype=np.int64), tokens, model.config.block_size


def _result(tokens, targets, scores, f_x, f_b, plan: Plan) -> Attribution:
    as_numpy = lambda x: x.detach().cpu().double().numpy()  # noqa: E731
    return Attribution(tokens, targets, as_numpy(scores), as_numpy(f_x), as_numpy(f_b),
                       dict(plan.settings))


def attribute_loop(model, ids, *, positions=None, tokens=None, **options) -> Attribution:
    """The reference: one integrated-gradients computation per target character (slow, plain)."""
    ids, targets, tokens, block_size = _check_inputs(model, ids, positions, tokens)
    plan = make_plan(model, **options)
    dtype, device = plan.alphas.dtype, ids.device
    scores = torch.zeros(len(targets), len(ids), dtype=dtype, device=device)
    f_x = torch.zeros(len(targets), dtype=dtype, device=device)
    f_b = torch.zeros(len(targets), dtype=dtype, device=device)
    ends = torch.tensor([1.0, 0.0], dtype=dtype, device=device)  # F(x) and F(baseline)
    with eval_mode(model):
        for i, t in enumerate(targets.tolist()):
            start = max(0, t - block_size)
            window = ids[start:t]  # (L,) the context the model sees when it predicts ids[t]
            L, nxt = len(window), ids[t]
            mean_grad = 0
            for k in range(0, len(plan.alphas), plan.batch_size):  # the path, a chunk at a time
                alphas, weights = plan.alphas[k:k + plan.batch_size], plan.weights[k:k + plan.batch_size]
                J = len(alphas)
                reads = torch.full((J,), L - 1, device=device)  # F is read at the window's end
                g = gradients(model, window.expand(J, L), reads, nxt.expand(J), alphas, plan)
                mean_grad = mean_grad + (weights.view(-1, 1, 1) * g).sum(0)  # (L, C)
            scores[i, start:t] = scores_from_gradient(model, window, mean_grad, plan)
            reads = torch.full((2,), L - 1, device=device)
            f_x[i], f_b[i] = values(model, window.expand(2, L), reads, nxt.expand(2), ends, plan)
    return _result(tokens, targets, scores, f_x, f_b, plan)


def _rows(ids, targets, n_alphas, block_size, batch_size):
    """Batches of (target, alpha) rows: (target index, alpha index, windows (J, L), reads (J,)).

    Rows go target by target, so a batch holds neighbouring targets of similar window length.
    Each window starts where its target's does and runs to the longest window in the batch;
    the characters after a row's target pad it and, the model being causal, cannot reach F.
    """
    t_all = torch.as_tensor(targets, device=ids.device)
    row_target = torch.arange(len(targets), device=ids.device).repeat_interleave(n_alphas)
    row_alpha = torch.arange(n_alphas, device=ids.device).repeat(len(targets))
    for r in range(0, len(row_target), batch_size):
        ti, ki = row_target[r:r + batch_size], row_alpha[r:r + batch_size]
        t = t_all[ti]
        start = (t - block_size).clamp(min=0)
        L = int((t - start).max())
        windows = ids[start[:, None] + torch.arange(L, device=ids.device)]  # (J, L)
        yield ti, ki, windows, t - start - 1


def attribute(model, ids, *, positions=None, tokens=None, **options) -> Attribution:
    """Attribute each target character of `ids` to its context, all targets in batched passes.

    positions: the targets t (default: every position from 1); tokens: how to show each id.
    options: method ("ig"), target ("logprob"), baseline ("zero", "mean" or a token id), steps
    (32), rule ("gauss-legendre"), aggregate ("sum" or "norm"), interpolate_positions (False),
    batch_size (64 rows of (alpha, target) per pass; bounds memory, changes only rounding).
    """
    ids, targets, tokens, block_size = _check_inputs(model, ids, positions, tokens)
    plan = make_plan(model, **options)
    dtype, C = plan.alphas.dtype, model.wte.weight.shape[1]
    mean_grad = torch.zeros(len(targets), min(block_size, len(ids)), C, dtype=dtype, device=ids.device)
    scores = torch.zeros(len(targets), len(ids), dtype=dtype, device=ids.device)
    ends = torch.tensor([1.0, 0.0], dtype=dtype, device=ids.device)  # F(x) and F(baseline)
    f = torch.zeros(len(targets), 2, dtype=dtype, device=ids.device)
    t_all = torch.as_tensor(targets, device=ids.device)
    with eval_mode(model):
        # 1. the quadrature-weighted gradient along the path, per target: mean_grad (T, L, C)
        for ti, ki, windows, reads in _rows(ids, targets, len(plan.alphas), block_size, plan.batch_size):
            g = gradients(model, windows, reads, ids[t_all[ti]], plan.alphas[ki], plan)
            g = plan.weights[ki].view(-1, 1, 1) * g  # (J, L, C)
            # A target's rows are neighbours in a batch: sum them in a fixed order (index_add_
            # would add them with atomics on a GPU, in an order that changes from run to run).
            targets_here, counts = ti.unique_consecutive(return_counts=True)
            for i, rows in zip(targets_here.tolist(), g.split(counts.tolist()), strict=True):
                mean_grad[i, :g.shape[1]] += rows.sum(0)
        # 2. F at both ends of the path, for completeness: two "alphas", 1 (F(x)) and 0 (F(baseline))
        for ti, ki, windows, reads in _rows(ids, targets, 2, block_size, plan.batch_size):
            f[ti, ki] = values(model, windows, reads, ids[t_all[ti]], ends[ki], plan)
        # 3. the scores: (x - baseline), x or 1, times the averaged gradient, summed over C
        for i, t in enumerate(targets.tolist()):
            start = max(0, t - block_size)
            scores[i, start:t] = scores_from_gradient(model, ids[start:t], mean_grad[i, :t - start],
                                                      plan)
    return _result(tokens, targets, scores, f[:, 0], f[:, 1], plan)


def baseline_option(tokenizer, baseline: str):
    """'zero' and 'mean' as they are; a single character becomes its token id."""
    if baseline in ("zero", "mean"):
        return baseline
    ids = tokenizer.encode(baseline) if baseline else []  # unknown characters: a UserError
    if len(ids) != 1:
        raise UserError(f"baseline must be 'zero', 'mean' or one character, not {baseline!r}")
    return ids[0]


def attribute_ids(model, tokenizer, ids, *, baseline="zero", **options) -> Attribution:
    """`attribute` with the tokenizer's help: tokens shown as text, a one-character baseline allowed."""
    result = attribute(model, ids, tokens=[tokenizer.decode([i]) for i in ids],
                       baseline=baseline_option(tokenizer, baseline), **options)
    result.settings["baseline"] = baseline  # the character, not its id, for people to read
    return result


def attribute_text(model, tokenizer, text: str, **options) -> Attribution:
    """`attribute` on a string: encodes it; a one-character baseline means that token's embedding."""
    if not text:
        raise UserError("the text to attribute is empty")
    ids = tokenizer.encode(text)  # a UserError names any character outside the vocabulary
    return attribute_ids(model, tokenizer, ids, **options)


def compare_methods(model, ids, **options) -> dict[str, Attribution]:
    """Saliency, gradient * input and integrated gradients on the same text, for side by side."""
    return {m: attribute(model, ids, **{**options, "method": m}) for m in ("saliency", "grad-input", "ig")}
