"""The attribution lens's machinery: options, quadrature, points on the path, batched passes.

Every computation of the lens is a set of rows, each row one target's window with its context
embeddings put somewhere (alpha of the way along the path from the baseline, or some of them
replaced by the baseline), F read at the target. Rows are independent in a batch, so one
backward of the batch's sum gives each row its own gradient; right-padding a shorter window
with the characters that follow changes nothing, because the model is causal. The functions
here run such rows in batches of `batch_size`: gradients weighted and summed per group (a
target, or a piece of its path), values of F, and values with positions masked.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nanogpt.errors import UserError

COMPLETENESS_TOLERANCE = 0.05  # |delta| above this share of |dF|: the scores are partly quadrature noise
ABS_TOLERANCE = 1e-3  # ... and above this in absolute terms, for targets whose dF is near zero

METHODS = ("ig", "saliency", "grad-input", "occlusion")
TARGETS = ("logprob", "prob", "logit")
RULES = ("gauss-legendre", "left", "right", "middle", "trapezoid")
AGGREGATES = ("sum", "norm")
FIXED_STEPS = 32  # the fixed rule's points when `steps` is asked for without a tolerance
SEGMENT_STEPS = 4  # points per piece of the path when integrating to a tolerance (measured: bench/)
FIRST_PIECES = 4  # ... on [0, 1/8], [1/8, 1/4], [1/4, 1/2], [1/2, 1] to start with (measured: bench/)
MAX_STEPS = 1024  # the cap: points one target may use when integrating to a tolerance


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
    alphas: torch.Tensor  # (K,) points on the path (a tolerance: on each piece, mapped from [0, 1])
    weights: torch.Tensor  # (K,) their quadrature weights
    batch_size: int
    integration: str  # "fixed", "adaptive" (to a tolerance) or "none" (no path to integrate)
    tol: float | None  # adaptive: |delta| <= max(tol * |dF|, abs_tol) for every target ...
    abs_tol: float | None
    max_steps: int | None  # ... unless it would take more than this many points
    pieces: int | None  # adaptive: pieces to start from, halving toward the baseline
    settings: dict  # the options as given, to travel with the result


def integration(method, steps=None, tol=None, abs_tol=ABS_TOLERANCE, max_steps=MAX_STEPS,
                pieces=FIRST_PIECES):
    """(how, steps, tol, abs_tol, max_steps, pieces), checked: `steps` alone is the fixed rule, else
    a tolerance, with `steps` points on each of `pieces` pieces to start with."""
    if steps is not None and steps < 1:
        raise UserError(f"steps must be at least 1, not {steps}")
    if method != "ig":
        return "none", None, None, None, None, None
    if tol is None and steps is not None:
        return "fixed", steps, None, None, None, None
    tol = COMPLETENESS_TOLERANCE if tol is None else tol
    steps = SEGMENT_STEPS if steps is None else steps
    if tol < 0 or abs_tol < 0 or tol + abs_tol <= 0:
        raise UserError(f"tolerances must be at least 0 and not both 0, not tol={tol}, abs_tol={abs_tol}")
    if pieces < 1:
        raise UserError(f"pieces must be at least 1, not {pieces}")
    if max_steps < steps * pieces:
        raise UserError(f"max steps ({max_steps}) must be at least the first pieces' points "
                        f"({pieces} x {steps})")
    return "adaptive", steps, float(tol), float(abs_tol), int(max_steps), int(pieces)


def make_plan(model, *, method="ig", target="logprob", baseline="zero", steps=None, tol=None,
              abs_tol=ABS_TOLERANCE, max_steps=MAX_STEPS, pieces=FIRST_PIECES, rule="gauss-legendre",
              aggregate="sum", interpolate_positions=False, batch_size=64) -> Plan:
    """Check the options (one-line UserErrors) and resolve them against the model."""
    for name, value, allowed in (("method", method, METHODS), ("target", target, TARGETS),
                                 ("aggregate", aggregate, AGGREGATES)):
        if value not in allowed:
            raise UserError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, not {batch_size}")
    if interpolate_positions and getattr(model, "wpe", None) is None:
        raise UserError("this model has no position embeddings to interpolate (its positions are "
                        "rotary, inside attention): leave out interpolate_positions")
    how, steps, tol, abs_tol, max_steps, pieces = integration(method, steps, tol, abs_tol, max_steps, pieces)
    alphas, weights = quadrature(rule, 1 if steps is None else steps)  # a bad rule: an error for all
    if how == "none":  # saliency, gradient * input and occlusion look at the real input only
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
                    block_size=model.config.block_size, integration=how, tol=tol, abs_tol=abs_tol,
                    max_steps=max_steps, pieces=pieces)
    return Plan(method, target, aggregate, interpolate_positions, base, as_tensor(alphas),
                as_tensor(weights), batch_size, how, tol, abs_tol, max_steps, pieces, settings)


def path_points(model, windows: torch.Tensor, alphas: torch.Tensor, plan: Plan):
    """Embeddings alpha of the way from the baseline: (J, L, C) token part, (L, C) position part.

    With `interpolate_positions` the walk is over token + position embeddings together, from the
    baseline plus zero positions, so the whole input goes in as `tok_emb` and positions are zero.
    """
    tok = model.wte(windows)  # (J, L, C)
    if model.wpe is None:  # rotary positions: nothing added to the input, so nothing to walk
        pos = torch.zeros_like(tok[0])
    else:
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
def values(model, windows, reads, next_ids, alphas, plan: Plan, mask=None) -> torch.Tensor:
    """F (J,) at the path points alphas (J,): 1 gives F(x), 0 gives F(baseline).

    mask (J, L), optional: True puts the path's start (the baseline) at that position instead.
    """
    points, pos = path_points(model, windows, alphas, plan)
    if mask is not None:  # the path starts at the baseline for every position
        points = torch.where(mask[..., None], plan.baseline, points)
    logits, _ = model(tok_emb=points, pos_emb=pos)
    return target_value(logits[torch.arange(len(reads)), reads], next_ids, plan.target)


def input_factor(model, window, plan: Plan) -> torch.Tensor:
    """(L, C) what the averaged gradient is multiplied by: x - baseline (IG), x, or 1 (saliency)."""
    one = torch.ones(1, dtype=plan.alphas.dtype, device=window.device)
    real = path_points(model, window[None], one, plan)[0][0].detach()  # (L, C) the path's end
    if plan.method == "saliency":
        return torch.ones_like(real)
    return real if plan.method == "grad-input" else real - plan.baseline


def scores_from_gradient(model, window, mean_grad, plan: Plan) -> torch.Tensor:
    """One target's scores (L,) from its window (L,) ids and its averaged gradient (L, C)."""
    per_dim = input_factor(model, window, plan) * mean_grad  # (L, C)
    # "sum" keeps the sign and gives completeness for IG. For saliency it is the gradient's
    # projection on (1, ..., 1), which depends on the embedding's basis, and in our GPT is zero
    # up to rounding: every path from an embedding starts at a LayerNorm, which ignores a shift
    # along (1, ..., 1). Saliency usually means the norm, aggregate="norm"; "sum" stays the
    # default so that all methods share it.
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


def check_inputs(model, ids, positions, tokens):
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


def row_batches(ids, targets, row_target: torch.Tensor, block_size: int, batch_size: int):
    """Batches of rows: (rows slice, target index (J,), windows (J, L), read positions (J,)).

    row_target (R,) names each row's target; rows should go target by target, so that a batch
    holds neighbouring targets of similar window length. Each window starts where its target's
    does and runs to the longest window in the batch; the characters after a row's target pad it
    and, the model being causal, cannot reach F.
    """
    t_all = torch.as_tensor(targets, device=ids.device)
    for r in range(0, len(row_target), batch_size):
        rows = slice(r, r + batch_size)
        ti = row_target[rows]
        t = t_all[ti]
        start = (t - block_size).clamp(min=0)
        L = int((t - start).max())
        windows = ids[start[:, None] + torch.arange(L, device=ids.device)]  # (J, L)
        yield rows, ti, windows, t - start - 1


def gradient_sums(model, ids, targets, row_target, row_alpha, row_weight, row_group, n_groups,
                  plan: Plan) -> torch.Tensor:
    """(G, L, C): per group, the sum over its rows of weight * dF/dx at alpha along the path.

    A group (a target, or a piece of a target's path) is a run of neighbouring rows.
    """
    C, L = model.wte.weight.shape[1], min(plan.settings["block_size"], len(ids))
    out = torch.zeros(n_groups, L, C, dtype=plan.alphas.dtype, device=ids.device)
    t_all = torch.as_tensor(targets, device=ids.device)
    for rows, ti, windows, reads in row_batches(ids, targets, row_target, L, plan.batch_size):
        g = gradients(model, windows, reads, ids[t_all[ti]], row_alpha[rows], plan)
        g = row_weight[rows].view(-1, 1, 1) * g  # (J, L, C)
        # Sum a group's rows in a fixed order (index_add_ would add them with atomics on a GPU,
        # in an order that changes from run to run).
        groups, counts = row_group[rows].unique_consecutive(return_counts=True)
        for j, part in zip(groups.tolist(), g.split(counts.tolist()), strict=True):
            out[j, :g.shape[1]] += part.sum(0)
    return out


def path_values(model, ids, targets, row_target, row_alpha, plan: Plan, row_mask=None) -> torch.Tensor:
    """(R,) F of each row's target at alpha along its path; row_mask (R, L): positions at baseline."""
    out = torch.zeros(len(row_target), dtype=plan.alphas.dtype, device=ids.device)
    t_all = torch.as_tensor(targets, device=ids.device)
    block = min(plan.settings["block_size"], len(ids))
    for rows, ti, windows, reads in row_batches(ids, targets, row_target, block, plan.batch_size):
        mask = None if row_mask is None else row_mask[rows, :windows.shape[1]]
        out[rows] = values(model, windows, reads, ids[t_all[ti]], row_alpha[rows], plan, mask)
    return out


def describe(positions) -> str:
    """A short description of a set of positions, such as '5..200' or '7'."""
    positions = list(positions)
    if not positions:
        return "none"
    lo, hi = min(positions), max(positions)
    return str(lo) if lo == hi else f"{lo}..{hi}"
