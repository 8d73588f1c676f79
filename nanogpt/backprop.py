"""Stage 2, by hand: the MLP with BatchNorm, and its gradients derived one step at a time.

    X (n, block_size) -> emb = C[X] -> embcat -> hprebn = embcat @ W1 + b1
      -> BatchNorm (mean, diff, diff**2, Bessel-corrected var, inverse std, raw) -> hpreact
      -> h = tanh(hpreact) -> logits = h @ W2 + b2 -> softmax, spelled out -> loss

`forward` writes that chain as the small steps a learner would write by hand and keeps every
intermediate, so that autograd's gradient of each can be set beside ours. `backward_atomic`
walks the chain backwards one step at a time; `cross_entropy_backward` and `bn_backward` do
the two longest stretches in one expression each; `backward_fused` uses them to train.
`train_manual` trains on names with these gradients only (no `.backward()` anywhere), or with
autograd's, through the same loop, to compare. This file imports nothing from the engine.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F

from nanogpt.data import context_examples, load_text, sample_examples, split_names
from nanogpt.errors import UserError
from nanogpt.tokenizer import CharTokenizer

BN_EPS = 1e-5  # added to the variance before its inverse square root
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ----------------------------------------------------------------------------- parameters


@dataclass
class Params:
    """The MLP's seven parameter tensors, every one a leaf that autograd can also differentiate."""

    C: torch.Tensor  # (vocab_size, n_embd) the embedding table
    W1: torch.Tensor  # (block_size * n_embd, n_hidden)
    b1: torch.Tensor  # (n_hidden,) useless in front of BatchNorm, kept so its gradient is checked
    bngain: torch.Tensor  # (1, n_hidden)
    bnbias: torch.Tensor  # (1, n_hidden)
    W2: torch.Tensor  # (n_hidden, vocab_size)
    b2: torch.Tensor  # (vocab_size,)

    def items(self) -> list[tuple[str, torch.Tensor]]:
        """(name, tensor) pairs in a fixed order."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def init_params(vocab_size: int = 27, block_size: int = 3, n_embd: int = 10, n_hidden: int = 64, *,
                generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Params:
    """Random parameters, none of them zero or one, so that a wrong gradient formula cannot hide.

    A zero bias or a gain of exactly one would make some wrong formulas (a dropped term, a
    missing factor) give the right answer by luck; small random values expose them.
    """
    fan_in = block_size * n_embd

    def randn(*shape):
        return torch.randn(shape, generator=generator, dtype=dtype)

    params = Params(
        C=randn(vocab_size, n_embd),
        W1=randn(fan_in, n_hidden) * (5 / 3) / fan_in**0.5,  # Kaiming init for tanh
        b1=randn(n_hidden) * 0.1,
        bngain=1.0 + randn(1, n_hidden) * 0.1,
        bnbias=randn(1, n_hidden) * 0.1,
        W2=randn(n_hidden, vocab_size) * 0.1,  # small: the first losses are near log(vocab_size)
        b2=randn(vocab_size) * 0.1,
    )
    for _, p in params.items():
        p.requires_grad_(True)
    return params


# ----------------------------------------------------------------------------- forward, in atoms


def forward(params: Params, X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The loss on a batch, and every intermediate tensor by name (in the order computed)."""
    p = params
    n = X.shape[0]
    emb = p.C[X]  # (n, block_size, n_embd)
    embcat = emb.view(n, -1)  # (n, block_size * n_embd)
    hprebn = embcat @ p.W1 + p.b1  # (n, n_hidden)
    # BatchNorm, with the batch's own statistics
    bnmeani = hprebn.sum(0, keepdim=True) / n  # (1, n_hidden)
    bndiff = hprebn - bnmeani  # (n, n_hidden)
    bndiff2 = bndiff**2
    # Bessel: divide by n-1, as lecture 4 does. mlp.BatchNorm1d and torch divide by n when training;
    # with /n here, the n/(n-1) in bn_backward would become 1.
    bnvar = bndiff2.sum(0, keepdim=True) / (n - 1)  # (1, n_hidden)
    bnvar_inv = (bnvar + BN_EPS) ** -0.5
    bnraw = bndiff * bnvar_inv  # (n, n_hidden) zero mean, unit variance
    hpreact = p.bngain * bnraw + p.bnbias
    h = torch.tanh(hpreact)
    logits = h @ p.W2 + p.b2  # (n, vocab_size)
    # cross-entropy, spelled out as softmax then the log of the right class
    logit_maxes = logits.max(1, keepdim=True).values  # (n, 1)
    norm_logits = logits - logit_maxes  # subtract the max so that exp cannot overflow
    counts = norm_logits.exp()
    counts_sum = counts.sum(1, keepdim=True)  # (n, 1)
    counts_sum_inv = counts_sum**-1  # written as a power to have its own gradient
    probs = counts * counts_sum_inv  # (n, vocab_size)
    logprobs = probs.log()
    loss = -logprobs[torch.arange(n), Y].mean()
    acts = dict(emb=emb, embcat=embcat, hprebn=hprebn, bnmeani=bnmeani, bndiff=bndiff,
                bndiff2=bndiff2, bnvar=bnvar, bnvar_inv=bnvar_inv, bnraw=bnraw, hpreact=hpreact,
                h=h, logits=logits, logit_maxes=logit_maxes, norm_logits=norm_logits,
                counts=counts, counts_sum=counts_sum, counts_sum_inv=counts_sum_inv,
                probs=probs, logprobs=logprobs)
    return loss, acts


# ----------------------------------------------------------------------------- backward, in atoms


def backward_atomic(params: Params, X: torch.Tensor, Y: torch.Tensor, acts: dict) -> dict:
    """The gradient of the loss with respect to every intermediate and parameter, one step at a time.

    Two rules do most of the work. A tensor broadcast in the forward pass (a column, a row)
    was used once per row or column, so its gradient is a sum over that dimension. A tensor
    used on two paths gets the sum of the two gradients.
    """
    p, a = params, acts
    n, vocab_size = a["logits"].shape
    # loss = -mean_i logprobs[i, Y_i]: only the picked entries matter, each with weight -1/n
    dlogprobs = torch.zeros_like(a["logprobs"])
    dlogprobs[torch.arange(n), Y] = -1.0 / n
    # logprobs = log(probs); d log x = 1/x
    dprobs = dlogprobs / a["probs"]
    # probs = counts * counts_sum_inv: counts_sum_inv (n, 1) was broadcast across the row
    dcounts_sum_inv = (a["counts"] * dprobs).sum(1, keepdim=True)
    dcounts = a["counts_sum_inv"] * dprobs  # first path into counts
    # counts_sum_inv = counts_sum ** -1; d x**-1 = -x**-2
    dcounts_sum = -a["counts_sum"] ** -2 * dcounts_sum_inv
    # counts_sum = counts.sum(1): every count in the row receives the whole gradient
    dcounts = dcounts + dcounts_sum  # second path into counts, (n, 1) broadcast to (n, vocab)
    # counts = exp(norm_logits): exp is its own derivative
    dnorm_logits = a["counts"] * dcounts
    # norm_logits = logits - logit_maxes: logit_maxes (n, 1) was broadcast across the row
    dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)  # ~0: the max cannot change the softmax
    dlogits = dnorm_logits.clone()  # first path into logits
    # logit_maxes = logits.max(1): only the largest entry of each row gets the gradient
    dlogits = dlogits + F.one_hot(a["logits"].max(1).indices, vocab_size) * dlogit_maxes
    # logits = h @ W2 + b2: each factor's gradient is the output's times the other factor,
    # transposed; the only arrangement whose shapes fit
    dh = dlogits @ p.W2.T  # (n, n_hidden)
    dW2 = a["h"].T @ dlogits  # (n_hidden, vocab_size)
    db2 = dlogits.sum(0)  # b2 was broadcast down the batch
    # h = tanh(hpreact): tanh' = 1 - tanh**2, read off the output
    dhpreact = (1.0 - a["h"] ** 2) * dh
    # hpreact = bngain * bnraw + bnbias: gain and bias (1, n_hidden) were broadcast down the batch
    dbngain = (a["bnraw"] * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dbnraw = p.bngain * dhpreact
    # bnraw = bndiff * bnvar_inv: product rule, each factor's gradient is the other one times the output's
    dbnvar_inv = (a["bndiff"] * dbnraw).sum(0, keepdim=True)
    dbndiff = a["bnvar_inv"] * dbnraw  # first path into bndiff
    # bnvar_inv = (bnvar + eps) ** -0.5; d (v + eps)**-0.5 = -0.5 (v + eps)**-1.5
    dbnvar = -0.5 * (a["bnvar"] + BN_EPS) ** -1.5 * dbnvar_inv
    # bnvar = bndiff2.sum(0) / (n - 1): a sum spreads its gradient equally over its terms
    dbndiff2 = torch.ones_like(a["bndiff2"]) / (n - 1) * dbnvar
    # bndiff2 = bndiff ** 2
    dbndiff = dbndiff + 2 * a["bndiff"] * dbndiff2  # second path into bndiff
    # bndiff = hprebn - bnmeani
    dbnmeani = -dbndiff.sum(0, keepdim=True)
    dhprebn = dbndiff.clone()  # first path into hprebn
    # bnmeani = hprebn.sum(0) / n
    dhprebn = dhprebn + torch.ones_like(a["hprebn"]) / n * dbnmeani  # second path into hprebn
    # hprebn = embcat @ W1 + b1
    dembcat = dhprebn @ p.W1.T  # (n, block_size * n_embd)
    dW1 = a["embcat"].T @ dhprebn
    db1 = dhprebn.sum(0)
    # embcat = emb.view(n, -1): a view moves no numbers, so neither does its gradient
    demb = dembcat.view(a["emb"].shape)  # (n, block_size, n_embd)
    # emb = C[X]: a row of C picked k times in the batch adds up k gradients (scatter-add)
    dC = torch.zeros_like(p.C)
    dC.index_add_(0, X.view(-1), demb.view(-1, p.C.shape[1]))
    return dict(logprobs=dlogprobs, probs=dprobs, counts_sum_inv=dcounts_sum_inv,
                counts_sum=dcounts_sum, counts=dcounts, norm_logits=dnorm_logits,
                logit_maxes=dlogit_maxes, logits=dlogits, h=dh, W2=dW2, b2=db2, hpreact=dhpreact,
                bngain=dbngain, bnbias=dbnbias, bnraw=dbnraw, bnvar_inv=dbnvar_inv, bnvar=dbnvar,
                bndiff2=dbndiff2, bndiff=dbndiff, bnmeani=dbnmeani, hprebn=dhprebn,
                embcat=dembcat, W1=dW1, b1=db1, emb=demb, C=dC)


# ----------------------------------------------------------------------------- backward, fused


def cross_entropy_backward(logits: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """dloss/dlogits of the mean cross-entropy in one expression: (softmax - onehot) / n.

    loss_i = -logit[i, y_i] + log sum_j exp(logit[i, j]), so dloss_i/dlogit[i, j] = softmax[i, j]
    - [j = y_i]; /n because the loss is a mean. Each row sums to zero: the right logit is pulled
    up by 1 - p, every other one down by its own p.
    """
    n, vocab_size = logits.shape
    return (F.softmax(logits, 1) - F.one_hot(Y, vocab_size)) / n


def bn_backward(dhpreact, bnraw, bngain, bnvar_inv) -> torch.Tensor:
    """dloss/dhprebn through the whole BatchNorm (Bessel-corrected variance) in one expression.

    Each input moves its own output directly, and every output through the batch mean and
    variance; the second and third terms take those shared paths back out. With r = dhpreact:
    dhprebn = gain * inv / n * (n r - sum(r) - n/(n-1) raw sum(r raw)). The first term is the
    direct path; the second the path through the mean (which does not reach the variance, since
    the deviations from the mean sum to zero); the third the path through the variance, whose
    n/(n-1) is Bessel's (it would be 1 with a variance divided by n).
    """
    n = dhpreact.shape[0]
    return bngain * bnvar_inv / n * (
        n * dhpreact
        - dhpreact.sum(0, keepdim=True)
        - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0, keepdim=True)
    )


def backward_fused(params: Params, X: torch.Tensor, Y: torch.Tensor, acts: dict) -> dict:
    """The parameters' gradients, with cross-entropy and BatchNorm each done in one expression."""
    p, a = params, acts
    dlogits = cross_entropy_backward(a["logits"], Y)  # (n, vocab_size)
    dh = dlogits @ p.W2.T
    dhpreact = (1.0 - a["h"] ** 2) * dh  # (n, n_hidden)
    dhprebn = bn_backward(dhpreact, a["bnraw"], p.bngain, a["bnvar_inv"])
    demb = (dhprebn @ p.W1.T).view(a["emb"].shape)  # (n, block_size, n_embd)
    dC = torch.zeros_like(p.C).index_add_(0, X.view(-1), demb.view(-1, p.C.shape[1]))
    return dict(C=dC, W1=a["embcat"].T @ dhprebn, b1=dhprebn.sum(0),
                bngain=(a["bnraw"] * dhpreact).sum(0, keepdim=True),
                bnbias=dhpreact.sum(0, keepdim=True), W2=a["h"].T @ dlogits, b2=dlogits.sum(0))


# ----------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class Comparison:
    """How one hand-derived gradient compares with autograd's."""

    name: str
    exact: bool  # every element bit-for-bit equal
    approximate: bool  # torch.allclose with its default tolerances
    maxdiff: float  # the largest absolute difference

    def __str__(self) -> str:
        return (f"{self.name:15s} | exact: {self.exact!s:5} | approximate: {self.approximate!s:5} "
                f"| maxdiff: {self.maxdiff:.3g}")


def cmp(name: str, manual: torch.Tensor, reference: torch.Tensor, verbose: bool = True) -> Comparison:
    """Compare a manual gradient with autograd's (`reference`, or the tensor whose .grad holds it)."""
    if reference.requires_grad:  # a tensor of the graph: its gradient is in .grad
        if not (reference.is_leaf or reference.retains_grad) or reference.grad is None:
            raise ValueError(f"{name}: the reference has no .grad; call .retain_grad() before .backward()")
        reference = reference.grad
    if manual.shape != reference.shape:  # broadcasting would otherwise hide a wrong shape
        raise ValueError(f"{name}: manual gradient has shape {tuple(manual.shape)}, "
                         f"autograd's has {tuple(reference.shape)}")
    manual, reference = manual.detach(), reference.detach()
    result = Comparison(name, bool(torch.equal(manual, reference)),
                        bool(torch.allclose(manual, reference)),
                        (manual - reference).abs().max().item())
    if verbose:
        print(result)
    return result


# ----------------------------------------------------------------------------- training


@dataclass
class NamesExamples:
    """Fixed-context examples from names.txt: makemore's 80/10/10 split, seed 42."""

    Xtr: torch.Tensor  # (N, block_size) ids
    Ytr: torch.Tensor  # (N,) the next id
    Xval: torch.Tensor
    Yval: torch.Tensor
    vocab_size: int


def names_examples(block_size: int = 3, seed: int = 42) -> NamesExamples:
    """Train and validation examples from the names dataset ('.' marks a name's start and end)."""
    words = load_text("names").splitlines()
    tok = CharTokenizer.from_text("." + "".join(words))  # '.' sorts first: id 0, as in makemore
    train, val, _ = split_names(words, seed=seed)
    Xtr, Ytr = context_examples(train, tok.stoi, block_size)
    Xval, Yval = context_examples(val, tok.stoi, block_size)
    return NamesExamples(Xtr, Ytr, Xval, Yval, tok.vocab_size)


GRADIENTS = ("fused", "atomic", "autograd")
BACKWARDS = {"fused": backward_fused, "atomic": backward_atomic}  # ours; "autograd" is torch's


def gradients(params: Params, X, Y, source: str = "fused") -> tuple[torch.Tensor, dict]:
    """The loss on a batch and each parameter's gradient, from our backward pass or autograd's."""
    if source == "autograd":
        loss, _ = forward(params, X, Y)
        names, tensors = zip(*params.items(), strict=True)
        return loss.detach(), dict(zip(names, torch.autograd.grad(loss, tensors), strict=True))
    with torch.no_grad():  # our backward needs only the values: no graph to build
        loss, acts = forward(params, X, Y)
        backward = BACKWARDS[source]
        grads = backward(params, X, Y, acts)
    return loss, {name: grads[name] for name, _ in params.items()}


@torch.no_grad()
def sgd_step(params: Params, grads: dict, lr: float) -> None:
    """Move every parameter a step against its gradient."""
    for name, p in params.items():
        p.add_(grads[name], alpha=-lr)


@torch.no_grad()
def calibrate_batchnorm(params: Params, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm's mean and (Bessel-corrected) variance over a whole set, to use at evaluation."""
    hprebn = params.C[X].view(X.shape[0], -1) @ params.W1 + params.b1  # (N, n_hidden)
    return hprebn.mean(0, keepdim=True), hprebn.var(0, keepdim=True, correction=1)


@torch.no_grad()
def evaluate(params: Params, X, Y, bn_mean, bn_var) -> float:
    """Mean cross-entropy on a set, BatchNorm using fixed statistics instead of the batch's."""
    p = params
    hprebn = p.C[X].view(X.shape[0], -1) @ p.W1 + p.b1
    h = torch.tanh(p.bngain * (hprebn - bn_mean) * (bn_var + BN_EPS) ** -0.5 + p.bnbias)
    return F.cross_entropy(h @ p.W2 + p.b2, Y).item()


@dataclass
class TrainResult:
    """A trained model and how its training went."""

    params: Params
    losses: list[float]  # the minibatch loss at every step
    grad_diffs: list[tuple[int, float]] = field(default_factory=list)  # (step, max |ours - autograd|)
    train_loss: float = float("nan")  # on the whole split, BatchNorm calibrated on the train split
    val_loss: float = float("nan")


def train_manual(data: NamesExamples, steps: int = 200_000, *, seed: int = 42, n_embd: int = 10,
                 n_hidden: int = 64, batch_size: int = 32, lr: float = 0.1,
                 lr_decay_at: int | None = None, dtype: torch.dtype = torch.float32,
                 gradients_from: str = "fused", compare_every: int = 0,
                 tolerance: float | None = None, log_every: int = 0) -> TrainResult:
    """Train the MLP with SGD on gradients from our backward pass (or autograd's, to compare).

    The learning rate drops tenfold at `lr_decay_at` (default: half way). With `compare_every`
    N > 0, every N steps autograd also differentiates the batch and training stops with an
    AssertionError if any gradient differs from ours by more than `tolerance` (default 1e-9 in
    float64, 1e-5 in float32).
    """
    if steps < 1 or batch_size < 2:  # BatchNorm's variance divides by batch_size - 1
        raise UserError(f"need steps >= 1 and batch_size >= 2, got {steps} and {batch_size}")
    if gradients_from not in GRADIENTS:
        raise UserError(f"gradients_from must be one of {', '.join(GRADIENTS)}, got {gradients_from!r}")
    lr_decay_at = steps // 2 if lr_decay_at is None else lr_decay_at
    tolerance = tolerance if tolerance is not None else (1e-9 if dtype == torch.float64 else 1e-5)
    g = torch.Generator().manual_seed(seed)
    params = init_params(data.vocab_size, data.Xtr.shape[1], n_embd, n_hidden, generator=g, dtype=dtype)
    result = TrainResult(params, [])
    for step in range(steps):
        Xb, Yb = sample_examples(data.Xtr, data.Ytr, batch_size, g)
        loss, grads = gradients(params, Xb, Yb, gradients_from)
        if compare_every and step % compare_every == 0 and gradients_from != "autograd":
            _, reference = gradients(params, Xb, Yb, "autograd")
            diff = max((grads[k] - reference[k]).abs().max().item() for k in grads)
            result.grad_diffs.append((step, diff))
            assert diff <= tolerance, f"step {step}: gradients differ from autograd's by {diff:.3g}"
        sgd_step(params, grads, lr if step < lr_decay_at else lr / 10)
        result.losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"{step:7d}/{steps:7d}: {loss.item():.4f}")
    bn_mean, bn_var = calibrate_batchnorm(params, data.Xtr)
    result.train_loss = evaluate(params, data.Xtr, data.Ytr, bn_mean, bn_var)
    result.val_loss = evaluate(params, data.Xval, data.Yval, bn_mean, bn_var)
    return result


# ----------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    """Train on names with hand-written gradients (or autograd's) and print the train/val loss."""
    ap = argparse.ArgumentParser(prog="python -m nanogpt.backprop", description=main.__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--steps", type=int, default=200_000, help="SGD steps")
    ap.add_argument("--seed", type=int, default=42, help="seed of the initial weights and batches")
    ap.add_argument("--n-hidden", type=int, default=64, help="hidden units")
    ap.add_argument("--batch-size", type=int, default=32, help="examples per step (at least 2)")
    ap.add_argument("--lr", type=float, default=0.1, help="learning rate, tenfold lower after half")
    ap.add_argument("--dtype", choices=list(DTYPES), default="float32", help="parameter precision")
    ap.add_argument("--autograd", action="store_true", help="take gradients from autograd instead")
    ap.add_argument("--atomic", action="store_true", help="use the step-by-step backward, not the fused")
    ap.add_argument("--compare-every", type=int, default=0, metavar="N",
                    help="check our gradients against autograd's every N steps (0: never)")
    ap.add_argument("--log-every", type=int, default=10_000, help="print the batch loss every N steps")
    args = ap.parse_args(argv)
    source = "autograd" if args.autograd else "atomic" if args.atomic else "fused"
    try:
        if args.compare_every < 0:
            raise UserError(f"--compare-every must be >= 0, got {args.compare_every}")
        result = train_manual(names_examples(), args.steps, seed=args.seed, n_hidden=args.n_hidden,
                              batch_size=args.batch_size, lr=args.lr, dtype=DTYPES[args.dtype],
                              gradients_from=source, compare_every=args.compare_every,
                              log_every=args.log_every)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result.grad_diffs:
        print(f"largest gradient difference from autograd over {len(result.grad_diffs)} checks: "
              f"{max(d for _, d in result.grad_diffs):.3g}")
    print(f"gradients: {source}  train loss {result.train_loss:.4f}  val loss {result.val_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
