"""Integrated gradients to a tolerance: refine only the targets, and the pieces of their paths, that miss.

Completeness gives an exact error measure for free. Over any piece [a, b] of the path, the
integrand summed over every context position and embedding dimension is dF/dalpha, so its
integral is F(b) - F(a), which one forward pass gives. A quadrature rule on the piece estimates
that integral from the same gradients that make the scores; the difference e = estimate -
(F(b) - F(a)) is the piece's error, and the target's delta is the sum of its pieces' errors.

So every target starts with a few pieces, halving toward the baseline ([0, 1/8], [1/8, 1/4],
[1/4, 1/2], [1/2, 1] by default), and the n-point rule on each (Gauss-Legendre, 4 points by
default). A target whose pieces' |e| add up to at most its budget, max(tol * |dF|, abs_tol),
is done: |delta| <= sum |e| <= budget. Otherwise the pieces with the largest |e| are halved,
as few as it takes for the rest to fit in 3/4 of the budget (the rest of it is for the new
pieces), and the rest are kept as they are. Each round runs the new
pieces of all targets that still miss as rows of the same batched passes the fixed rule uses:
one forward for the new midpoints, one forward and backward for the new quadrature points. A
target stops at the cap `max_steps` (points on its path): it is then marked `capped`, and the
scores are the best the cap allowed.
"""

from __future__ import annotations

import torch

from nanogpt.attribution.paths import Plan, gradient_sums, path_points, path_values, row_batches

KEEP_SHARE = 0.75  # a target that halves pieces keeps at most this share of its budget in the others


def integrate(model, ids, targets, plan: Plan):
    """Integrate each target's path to its tolerance.

    Returns the quadrature-weighted gradient mean_grad (T, L, C), F(x) (T,), F(baseline) (T,),
    the points each target used (T,) and whether it stopped at the cap (T,).
    """
    T, device, dtype = len(targets), ids.device, plan.alphas.dtype
    every = torch.arange(T, device=device)
    ends = torch.tensor([1.0, 0.0], dtype=dtype, device=device).repeat(T)  # F(x), F(baseline)
    f_x, f_b = path_values(model, ids, targets, every.repeat_interleave(2), ends, plan).view(T, 2).T
    budget = (plan.tol * (f_x - f_b).abs()).clamp(min=plan.abs_tol)  # (T,) the largest |delta| accepted
    factor = _factors(model, ids, targets, plan)  # (T, L, C): x - baseline
    mean_grad = torch.zeros_like(factor)
    kept_error = torch.zeros(T, dtype=dtype, device=device)  # sum of |e| of the pieces kept
    steps_used = torch.zeros(T, dtype=torch.long, device=device)
    capped = torch.zeros(T, dtype=torch.bool, device=device)
    # The live pieces, target by target: their target, their ends lo < hi, and F at both ends.
    piece_t, lo, hi, f_lo, f_hi = _first_pieces(model, ids, targets, plan, f_x, f_b)
    n = len(plan.alphas)
    while len(piece_t):
        S = len(piece_t)
        row_piece = torch.arange(S, device=device).repeat_interleave(n)  # n rows per piece
        width = hi - lo
        row_alpha = (lo[:, None] + width[:, None] * plan.alphas).reshape(-1)  # (S * n,) the rule, mapped
        row_weight = (width[:, None] * plan.weights).reshape(-1)
        sums = gradient_sums(model, ids, targets, piece_t[row_piece], row_alpha, row_weight, row_piece,
                             S, plan)  # (S, L, C)
        error = (factor[piece_t] * sums).sum((1, 2)) - (f_hi - f_lo)  # (S,) exact, from completeness
        steps_used += torch.bincount(piece_t, minlength=T) * n
        halve = _choose(piece_t, error.abs(), kept_error, budget, steps_used, n, plan.max_steps, capped)
        keep = ~halve
        _add_by_target(mean_grad, piece_t[keep], sums[keep])
        kept_error.index_add_(0, piece_t[keep], error[keep].abs())
        # Halve the chosen pieces: F at their midpoints, then two pieces each, in target order.
        piece_t, lo, hi, f_lo, f_hi = piece_t[halve], lo[halve], hi[halve], f_lo[halve], f_hi[halve]
        mid = (lo + hi) / 2
        f_mid = path_values(model, ids, targets, piece_t, mid, plan) if len(mid) else mid
        piece_t = piece_t.repeat_interleave(2)
        lo, hi = torch.stack([lo, mid], 1).view(-1), torch.stack([mid, hi], 1).view(-1)
        f_lo, f_hi = torch.stack([f_lo, f_mid], 1).view(-1), torch.stack([f_mid, f_hi], 1).view(-1)
    return mean_grad, f_x, f_b, steps_used, capped


def _first_pieces(model, ids, targets, plan: Plan, f_x, f_b):
    """Every target's first pieces, halving toward the baseline: [0, 1/8, 1/4, 1/2, 1] for 4.

    Near the zero baseline the token embeddings are small beside the position embeddings, and F
    changes fastest where they become comparable (at alpha ~ 0.05..0.3 in the course's GPT):
    the pieces that bisection would make there anyway, made from the start.
    """
    k, T, dtype = plan.pieces, len(targets), f_x.dtype
    edges = torch.tensor([0.0] + [0.5 ** (k - 1 - i) for i in range(k)], dtype=dtype, device=ids.device)
    piece_t = torch.arange(T, device=ids.device).repeat_interleave(k)
    lo, hi = edges[:-1].repeat(T), edges[1:].repeat(T)
    f_inner = f_x.new_zeros(T, 0)
    if k > 1:  # F at the inner edges, one forward row each
        rows = torch.arange(T, device=ids.device).repeat_interleave(k - 1)
        f_inner = path_values(model, ids, targets, rows, edges[1:-1].repeat(T), plan).view(T, k - 1)
    f_edges = torch.cat([f_b[:, None], f_inner, f_x[:, None]], dim=1)  # (T, k + 1)
    return piece_t, lo, hi, f_edges[:, :-1].reshape(-1), f_edges[:, 1:].reshape(-1)


def _choose(piece_t, abs_error, kept_error, budget, steps_used, n, max_steps, capped):
    """(S,) True for the pieces to halve; marks in `capped` the targets that miss and may not halve."""
    halve = torch.zeros(len(piece_t), dtype=torch.bool, device=piece_t.device)
    targets, counts = piece_t.unique_consecutive(return_counts=True)
    runs = torch.arange(len(piece_t), device=piece_t.device).split(counts.tolist())  # each target's pieces
    for i, pieces in zip(targets.tolist(), runs, strict=True):
        e = abs_error[pieces]
        if kept_error[i] + e.sum() <= budget[i]:
            continue  # done: |delta| <= sum |e| <= budget
        order = torch.argsort(e, descending=True, stable=True)
        left = kept_error[i] + e.sum() - e[order].cumsum(0)  # kept error after halving the k worst
        k = min(int((left > KEEP_SHARE * budget[i]).sum()) + 1, len(e))
        k = min(k, int(max_steps - steps_used[i]) // (2 * n))  # each halving costs 2n new points
        if k == 0:
            capped[i] = True
        halve[pieces[order[:k]]] = True
    return halve


def _add_by_target(total, piece_t, sums) -> None:
    """total[i] += the sum of the pieces of target i (pieces in target order: a fixed summation order)."""
    targets, counts = piece_t.unique_consecutive(return_counts=True)
    for i, part in zip(targets.tolist(), sums.split(counts.tolist()), strict=True):
        total[i] += part.sum(0)


def _factors(model, ids, targets, plan: Plan) -> torch.Tensor:
    """(T, L, C) x - baseline over each target's window (zero-padded gradients make padding harmless)."""
    L = min(plan.settings["block_size"], len(ids))
    out = torch.zeros(len(targets), L, model.wte.weight.shape[1], dtype=plan.alphas.dtype, device=ids.device)
    every = torch.arange(len(targets), device=ids.device)
    for rows, _, windows, _ in row_batches(ids, targets, every, L, plan.batch_size):
        one = torch.ones(len(windows), dtype=out.dtype, device=ids.device)
        real = path_points(model, windows, one, plan)[0].detach()
        out[rows, :windows.shape[1]] = real - plan.baseline
    return out
