"""Is an attribution faithful to the model? Deletion and insertion curves, AOPC, a sanity check.

Deletion: take each target's context characters in the order a method ranks them (highest score
first) and replace the first k by the baseline's embedding, k = 0, 1, ..., K; F should fall
fast if the method found what F rests on. Insertion: start from the all-baseline window and put
the first k back; F should rise fast. A random order is the yardstick: the area between the
method's curve and the random order's, averaged over the K + 1 points and the targets, is the
method's AOPC gap (Samek et al. 2017, "area over the perturbation curve"), positive when the
method beats chance. Each point of each curve is one forward row per target, run in the lens's
batched passes.

The model-randomization check (Adebayo et al. 2018, "Sanity checks for saliency maps"): the
scores on a copy of the model with every weight re-drawn from its initialisation must differ
from the trained model's. Reported as the Spearman rank correlation of each target's scores,
trained against randomized, averaged over the targets (1: the method ignores the weights).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from nanogpt.attribution.methods import attribute
from nanogpt.attribution.paths import METHODS, check_inputs, eval_mode, make_plan, path_values
from nanogpt.attribution.result import Attribution

CURVE_STEPS = 16  # K: characters removed (or put back), one at a time
RANDOM_ORDERS = 2  # random orders per target averaged for the yardstick (over all targets)
# Saliency as the gradient's norm: its signed sum over the embedding dimensions is zero in a GPT,
# whose every path from an embedding starts at a LayerNorm (it removes the mean over C).
OWN_OPTIONS = {"saliency": {"aggregate": "norm"}}


@dataclass
class Faithfulness:
    """Deletion and insertion curves per method (and random), and the sanity check's correlations."""

    ks: np.ndarray  # (K + 1,) characters removed or put back
    deletion: dict[str, np.ndarray]  # method -> (K + 1,) mean over targets of F(x) - F(top k removed)
    insertion: dict[str, np.ndarray]  # method -> (K + 1,) mean of F(top k put back) - F(baseline)
    sanity: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> correlations
    results: dict[str, Attribution] = field(default_factory=dict)  # the attributions measured

    def aopc(self, method: str) -> tuple[float, float]:
        """(deletion, insertion) AOPC of a method minus the random order's: above 0 beats chance."""
        return (float(self.deletion[method].mean() - self.deletion["random"].mean()),
                float(self.insertion[method].mean() - self.insertion["random"].mean()))

    def table(self) -> str:
        """Markdown: AOPC per method and for random, and the randomization check's correlations."""
        K = int(self.ks[-1])
        lines = ["| method | deletion AOPC | - random | insertion AOPC | - random | Spearman vs "
                 "randomized model | same, of \\|scores\\| |", "|---|---|---|---|---|---|---|"]
        for m in self.deletion:
            gap = self.aopc(m)
            s = self.sanity.get(m, {})
            rho = {key: f"{s[key]:+.2f}" if key in s else "-" for key in ("spearman", "spearman_abs")}
            lines.append(f"| {m} | {self.deletion[m].mean():+.3f} | {gap[0]:+.3f} | "
                         f"{self.insertion[m].mean():+.3f} | {gap[1]:+.3f} | {rho['spearman']} | "
                         f"{rho['spearman_abs']} |")
        lines.append(f"\nAOPC: the mean over k = 0..{K} characters and over the targets of the fall "
                     f"of F when the top k are removed (deletion) or its rise when only they are "
                     f"put back (insertion); - random: the same less a random order's.")
        return "\n".join(lines)


def rank_orders(result: Attribution, block_size: int) -> list[np.ndarray]:
    """Per target, its window's positions (0 = the window's first) from the highest score down."""
    orders = []
    for i, t in enumerate(result.targets.tolist()):
        start = max(0, t - block_size)
        orders.append(np.argsort(-result.scores[i, start:t], kind="stable"))  # ties: older first
    return orders


def random_orders(targets, block_size: int, n: int, seed: int) -> list[list[np.ndarray]]:
    """n random orders of each target's window, drawn from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    lengths = [t - max(0, t - block_size) for t in targets.tolist()]
    return [[torch.randperm(L, generator=g).numpy() for L in lengths] for _ in range(n)]


def perturbation_curves(model, ids, orders: dict[str, list], *, positions=None, most=CURVE_STEPS,
                        **options) -> tuple[np.ndarray, dict, dict]:
    """Deletion and insertion curves (K + 1,) for each named set of orders (one order per target).

    orders: name -> [order per target] or, for an average, [[order per target], ...]; options:
    baseline, target, interpolate_positions, batch_size as for `attribute`.
    """
    ids, targets, _, block_size = check_inputs(model, ids, positions, None)
    plan = make_plan(model, method="saliency", **options)  # forward rows only: no path to walk
    L, T, device = min(block_size, len(ids)), len(targets), ids.device
    sets = {name: o if isinstance(o[0], list) else [o] for name, o in orders.items()}
    flat = [(name, j) for name, os in sets.items() for j in range(len(os))]
    ks = np.arange(most + 1)
    # Rows target by target (windows of similar length batch together): every (order, k, curve).
    masks = []
    for i in range(T):
        for name, j in flat:
            ranked = np.asarray(sets[name][j][i])
            rank_of = np.full(L, np.iinfo(np.int64).max)  # positions past the window: never masked
            rank_of[ranked] = np.arange(len(ranked))
            top = rank_of[None, :] < ks[1:, None]  # (K, L): the k best of the window
            inside = rank_of[None, :] < len(ranked)
            masks.append(np.stack([top, inside & ~top], axis=1))  # (K, 2, L): deletion, insertion
    mask = torch.as_tensor(np.stack(masks).reshape(-1, L), device=device)  # (T * orders * K * 2, L)
    rt = torch.arange(T, device=device).repeat_interleave(len(flat) * most * 2)
    with eval_mode(model):
        one = torch.ones(len(rt), dtype=plan.alphas.dtype, device=device)
        f = path_values(model, ids, targets, rt, one, plan, row_mask=mask)
        ends = torch.tensor([1.0, 0.0], dtype=plan.alphas.dtype, device=device).repeat(T)
        f_x, f_b = path_values(model, ids, targets, torch.arange(T, device=device).repeat_interleave(2),
                               ends, plan).view(T, 2).T
    f = f.view(T, len(flat), most, 2).cpu().double().numpy()
    f_x, f_b = f_x.cpu().double().numpy(), f_b.cpu().double().numpy()
    deletion, insertion = {}, {}
    for name in sets:
        cols = [c for c, (n, _) in enumerate(flat) if n == name]
        fall = f_x[:, None, None] - f[:, cols][..., 0]  # (T, draws, K)
        rise = f[:, cols][..., 1] - f_b[:, None, None]
        deletion[name] = np.concatenate([[0.0], fall.mean((0, 1))])
        insertion[name] = np.concatenate([[0.0], rise.mean((0, 1))])
    return ks, deletion, insertion


def reinitialized(model, seed: int = 0):
    """A copy of the model with every weight re-drawn as at initialisation (from `seed`)."""
    fresh = copy.deepcopy(model)
    device = next(model.parameters()).device
    fresh.cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in fresh.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        if hasattr(fresh, "_init_weights"):  # the model's own scheme (GPT: N(0, 0.02))
            fresh.apply(fresh._init_weights)
    return fresh.to(device)


def spearman(a, b) -> float:
    """Spearman's rank correlation of two vectors (ties share their mean rank); nan if one is constant."""
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts + 1) / 2)[inverse]  # 0-based ranks, a tie's shared by its mean


def rank_agreement(a: Attribution, b: Attribution, block_size: int) -> dict[str, float]:
    """Mean over targets (windows of 3 or more) of the Spearman correlation of a's and b's scores."""
    rho, rho_abs = [], []
    for i, t in enumerate(a.targets.tolist()):
        start = max(0, t - block_size)
        if t - start >= 3:
            x, y = a.scores[i, start:t], b.scores[i, start:t]
            rho.append(spearman(x, y))
            rho_abs.append(spearman(np.abs(x), np.abs(y)))
    return dict(spearman=float(np.nanmean(rho)), spearman_abs=float(np.nanmean(rho_abs)))


def faithfulness(model, ids, *, positions=None, tokens=None, methods=METHODS, given=None,
                 most=CURVE_STEPS, n_random=RANDOM_ORDERS, seed=0, sanity=True, **options) -> Faithfulness:
    """Attribute with each method, then measure it: deletion, insertion, AOPC, randomization check.

    options go to `attribute` (baseline, target, steps or tol, ...), the same for every method
    except saliency, measured as the gradient's norm (OWN_OPTIONS);
    given: results already computed with them, by method name, used instead of computing again.
    """
    given, results = given or {}, {}
    for m in methods:
        mine = {**options, "method": m, **OWN_OPTIONS.get(m, {})}
        same = m in given and all(given[m].settings.get(k) == v for k, v in OWN_OPTIONS.get(m, {}).items())
        results[m] = given[m] if same else attribute(model, ids, positions=positions, tokens=tokens, **mine)
    first = next(iter(results.values()))
    block = model.config.block_size
    orders = {m: rank_orders(r, block) for m, r in results.items()}
    orders["random"] = random_orders(first.targets, block, n_random, seed)
    keep = {k: v for k, v in options.items() if k in ("baseline", "target", "interpolate_positions",
                                                     "batch_size")}
    ks, deletion, insertion = perturbation_curves(model, ids, orders, positions=first.targets.tolist(),
                                                  most=most, **keep)
    checks = {}
    if sanity:
        shuffled = reinitialized(model, seed)
        for m, r in results.items():
            again = attribute(shuffled, ids, positions=positions, tokens=tokens,
                              **{**options, "method": m, **OWN_OPTIONS.get(m, {})})
            checks[m] = rank_agreement(r, again, block)
    return Faithfulness(ks, deletion, insertion, checks, results)
