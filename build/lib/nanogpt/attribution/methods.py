"""A lens: which earlier characters made the model write each character?

For a text and each of its characters c_t, the lens scores every earlier character c_s in the
model's window by how much it contributed to a target F_t: log p(c_t | c_<t) by default, or the
probability p, or the logit of c_t. Four methods, all on the token embeddings x_s:

    saliency               dF_t/dx_s                                  (how sensitive F_t is)
    gradient * input       x_s . dF_t/dx_s                            (a first-order estimate)
    integrated gradients   (x_s - b_s) . integral_0^1 dF_t/dx_s(b + a (x - b)) da
    occlusion              F_t(x) - F_t(x with x_s replaced by b_s)   (leave one character out)

Integrated gradients (Sundararajan et al., 2017) walks the embeddings of the whole window in a
straight line from a baseline b (the zero embedding by default) to the real ones, position
embeddings held fixed. Summed over the embedding dimensions, the scores add up to the change of
F along the walk, sum_s IG_s = F(x) - F(b) ("completeness"). The integral is a quadrature; what
it misses, delta = sum_s IG_s - (F(x) - F(b)), comes back with every target.

Two ways to integrate. `steps=N` alone is the fixed rule: N points (Gauss-Legendre by default)
for every target, the reference and the way to teach it. Otherwise (the default, or `tol=`
given) each target is integrated to a tolerance, |delta| <= max(tol * |dF|, abs_tol), by
halving only the pieces of its path that miss (integration.py): completeness measures
each piece's error exactly, one forward pass per new point. Each target's points used, and
which targets stopped at the cap `max_steps`, travel with the result.

A baseline to be wary of: with `interpolate_positions` and the zero baseline the walk starts at
an all-zero input, where every LayerNorm divides by about sqrt(eps). There F(alpha) has
structure at every scale of alpha down to 0, and delta comes out as large as dF itself. Start
that walk from the mean embedding (or a character) instead.

Speed. The textbook way runs one integrated-gradients computation per character
(`attribute_loop`, kept as the reference). `attribute` instead lines up every (alpha, target)
pair as one row of a batch (paths.py). Both do the same arithmetic; the batched path
saves what fewer, larger passes save (bench/bench_attribution.py).
"""

from __future__ import annotations

import torch

from nanogpt.attribution.integration import integrate
from nanogpt.attribution.paths import (
    FIXED_STEPS,
    Plan,
    check_inputs,
    eval_mode,
    gradient_sums,
    gradients,
    make_plan,
    path_values,
    scores_from_gradient,
    values,
)
from nanogpt.attribution.result import (
    Attribution,
)
from nanogpt.errors import UserError


def _result(tokens, targets, scores, f_x, f_b, plan: Plan, steps_used=None, capped=None) -> Attribution:
    as_numpy = lambda x: None if x is None else x.detach().cpu().numpy()  # noqa: E731
    if steps_used is None and plan.integration == "fixed":
        steps_used = torch.full((len(targets),), len(plan.alphas))
    return Attribution(tokens, targets, as_numpy(scores.double()), as_numpy(f_x.double()),
                       as_numpy(f_b.double()), dict(plan.settings), as_numpy(steps_used), as_numpy(capped))


def attribute_loop(model, ids, *, positions=None, tokens=None, **options) -> Attribution:
    """The reference: one integrated-gradients computation per target character (slow, plain)."""
    if options.get("tol") is not None:
        raise UserError("the per-character loop integrates with a fixed rule: give steps, not tol")
    ids, targets, tokens, block_size = check_inputs(model, ids, positions, tokens)
    if options.get("method", "ig") == "occlusion":
        raise UserError("the per-character loop runs gradient methods only, not occlusion")
    plan = make_plan(model, **{"steps": FIXED_STEPS, **options})
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


def attribute(model, ids, *, positions=None, tokens=None, **options) -> Attribution:
    """Attribute each target character of `ids` to its context, all targets in batched passes.

    positions: the targets t (default: every position from 1); tokens: how to show each id.
    options: method ("ig", "saliency", "grad-input" or "occlusion"), target ("logprob"),
    baseline ("zero", "mean" or a token id); for IG either steps=N alone (the fixed N-point rule)
    or a tolerance, tol (0.05), abs_tol (1e-3) and max_steps (1024 points per target), with
    steps then the points per piece (4) and pieces the first pieces (4, halving toward the
    baseline); rule ("gauss-legendre"), aggregate ("sum" or "norm"),
    interpolate_positions (False), batch_size (64 rows per pass; bounds memory, changes only
    rounding).
    """
    ids, targets, tokens, block_size = check_inputs(model, ids, positions, tokens)
    plan = make_plan(model, **options)
    T, K = len(targets), len(plan.alphas)
    every = torch.arange(T, device=ids.device)
    steps_used = capped = None
    with eval_mode(model):
        if plan.method == "occlusion":
            return occlusion(model, ids, targets, tokens, plan)
        if plan.integration == "adaptive":
            mean_grad, f_x, f_b, steps_used, capped = integrate(model, ids, targets, plan)
        else:
            # 1. the quadrature-weighted gradient along the path, per target: mean_grad (T, L, C).
            #    Rows go target by target, K alphas each; a target's rows are one group.
            row_target = every.repeat_interleave(K)
            mean_grad = gradient_sums(model, ids, targets, row_target, plan.alphas.repeat(T),
                                      plan.weights.repeat(T), row_target, T, plan)
            # 2. F at both ends of the path, for completeness: alpha 1 (F(x)) and 0 (F(baseline))
            ends = torch.tensor([1.0, 0.0], dtype=plan.alphas.dtype, device=ids.device).repeat(T)
            f_x, f_b = path_values(model, ids, targets, every.repeat_interleave(2), ends, plan).view(T, 2).T
        # 3. the scores: (x - baseline), x or 1, times the averaged gradient, summed over C
        scores = torch.zeros(T, len(ids), dtype=plan.alphas.dtype, device=ids.device)
        for i, t in enumerate(targets.tolist()):
            start = max(0, t - block_size)
            scores[i, start:t] = scores_from_gradient(model, ids[start:t], mean_grad[i, :t - start], plan)
    return _result(tokens, targets, scores, f_x, f_b, plan, steps_used, capped)


def occlusion(model, ids, targets, tokens, plan: Plan) -> Attribution:
    """Leave one character out: score_s = F(x) - F(x with x_s replaced by the baseline's embedding).

    One forward row per (target, context position), batched like the gradient methods' rows.
    """
    block = min(plan.settings["block_size"], len(ids))
    lengths = [t - max(0, t - block) for t in targets.tolist()]  # each target's window
    T, dtype, device = len(targets), plan.alphas.dtype, ids.device
    row_target = torch.repeat_interleave(torch.arange(T, device=device),
                                         torch.tensor(lengths, device=device))
    row_pos = torch.cat([torch.arange(L, device=device) for L in lengths])  # (R,) the position left out
    mask = row_pos[:, None] == torch.arange(block, device=device)  # (R, L)
    one = torch.ones(len(row_target), dtype=dtype, device=device)
    left_out = path_values(model, ids, targets, row_target, one, plan, row_mask=mask)  # (R,)
    ends = torch.tensor([1.0, 0.0], dtype=dtype, device=device).repeat(T)
    f_x, f_b = path_values(model, ids, targets, torch.arange(T, device=device).repeat_interleave(2),
                           ends, plan).view(T, 2).T
    scores = torch.zeros(T, len(ids), dtype=dtype, device=device)
    starts = torch.as_tensor(targets, device=device) - torch.tensor(lengths, device=device)
    scores[row_target, starts[row_target] + row_pos] = f_x[row_target] - left_out
    return _result(tokens, targets, scores, f_x, f_b, plan)


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


def compare_methods(model, ids, methods=("saliency", "grad-input", "ig"),
                    **options) -> dict[str, Attribution]:
    """Several methods (saliency, gradient * input and integrated gradients) on the same text."""
    return {m: attribute(model, ids, **{**options, "method": m}) for m in methods}
