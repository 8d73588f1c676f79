"""Stage 2, by hand: the MLP of mlp.py (one hidden layer, BatchNorm), its gradients derived step by step.

    X (n, block_size) -> emb = C[X] -> embcat -> hprebn = embcat @ W1 (no bias: BatchNorm follows)
      -> BatchNorm (mean, diff, diff**2, variance over n, inverse std, raw) -> hpreact
      -> h = tanh(hpreact) -> logits = h @ W2 + b2 -> softmax, spelled out -> loss

The network is `mlp.MLP(MLPConfig(n_layer=1, batchnorm=True))` itself, with mlp's init:
`Params.of(model)` names its six tensors with the derivation's letters, a step on them is a step
of the model, and the model scores itself at the end (BatchNorm on the running statistics that
training kept). `forward` is its training-mode pass in the small steps a learner writes by hand,
keeping every intermediate for autograd to check; `backward_atomic` walks it back one step at a
time; `cross_entropy_backward` and `bn_backward` collapse the two longest stretches into one
expression each, for `backward_fused`. `train_manual` trains on these gradients (or autograd's).
Makemore part 4, the lecture's source, differs in three places where this file follows mlp.py:
it keeps a bias b1 before the BatchNorm (which cancels it), divides the batch variance by n - 1
(mlp.py and torch divide by n in training), and calibrates BatchNorm on the whole training set
after training instead of keeping running averages.
The file is over 400 lines because the two backward passes are written out one derivative per
line, each under the forward step it undoes (the lecture reads them that way); the rest is what
the lecture imports (checks, names data, the training loop) and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F

from nanogpt import cli
from nanogpt.data import context_examples, load_text, sample_examples, split_names
from nanogpt.errors import UserError
from nanogpt.mlp import MLP, BatchNorm1d, MLPConfig
from nanogpt.tokenizer import CharTokenizer

BN_EPS = 1e-5  # mlp.BatchNorm1d's eps, added to the variance before its inverse square root
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ----------------------------------------------------------------------------- parameters


@dataclass
class Params:
    """The six parameter tensors of a one-hidden-layer mlp.MLP with BatchNorm, by the derivation's names."""

    C: torch.Tensor  # (vocab_size, n_embd) the embedding table
    W1: torch.Tensor  # (block_size * n_embd, n_hidden) the hidden Linear's weight (it has no bias)
    bngain: torch.Tensor  # (n_hidden,)
    bnbias: torch.Tensor  # (n_hidden,)
    W2: torch.Tensor  # (n_hidden, vocab_size) the output Linear
    b2: torch.Tensor  # (vocab_size,)

    @classmethod
    def of(cls, model: MLP) -> Params:
        """The model's own tensors, shared (not copied): a step on them is a step of the model."""
        if model.config.n_layer != 1 or not model.config.batchnorm:
            raise ValueError("backprop derives the MLP with one hidden layer and BatchNorm, "
                             f"not {model.config}")
        emb, _flatten, lin1, bn, _tanh, lin2 = model.net.layers
        return cls(emb.weight, lin1.weight, bn.gain, bn.bias, lin2.weight, lin2.bias)

    def items(self) -> list[tuple[str, torch.Tensor]]:
        """(name, tensor) pairs in a fixed order."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def make_model(vocab_size: int = 27, block_size: int = 3, n_embd: int = 10,
               n_hidden: int = MLPConfig.n_hidden, *, generator: torch.Generator,
               dtype: torch.dtype = torch.float32) -> MLP:
    """The network this file differentiates: mlp.MLP, one hidden layer, BatchNorm, mlp's own init."""
    config = MLPConfig(vocab_size, block_size, n_embd, n_hidden, n_layer=1, batchnorm=True)
    return MLP(config, generator=generator).to(dtype)


def init_params(vocab_size: int = 27, block_size: int = 3, n_embd: int = 10,
                n_hidden: int = MLPConfig.n_hidden, *, generator: torch.Generator,
                dtype: torch.dtype = torch.float32, nudge: float = 0.1) -> Params:
    """mlp.MLP's initial parameters, each nudged by N(0, nudge**2) noise, to check gradients on.

    mlp's init has BatchNorm's gain at one and every bias at zero, where a wrong formula (a
    forgotten factor of the gain, a dropped term) can give the right answer by luck.
    """
    model = make_model(vocab_size, block_size, n_embd, n_hidden, generator=generator)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * nudge)
    return Params.of(model.to(dtype))


# ----------------------------------------------------------------------------- forward, in atoms


def forward(params: Params, X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The loss on a batch (BatchNorm in training mode), and every intermediate tensor by name."""
    p = params
    n = X.shape[0]
    emb = p.C[X]  # (n, block_size, n_embd)
    embcat = emb.view(n, -1)  # (n, block_size * n_embd)
    hprebn = embcat @ p.W1  # (n, n_hidden)
    # BatchNorm, with the batch's own statistics
    bnmeani = hprebn.sum(0, keepdim=True) / n  # (1, n_hidden)
    bndiff = hprebn - bnmeani  # (n, n_hidden)
    bndiff2 = bndiff**2
    bnvar = bndiff2.sum(0, keepdim=True) / n  # (1, n_hidden) over n: the batch normalised exactly
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
    # hpreact = bngain * bnraw + bnbias: gain and bias (n_hidden,) were broadcast down the batch
    dbngain = (a["bnraw"] * dhpreact).sum(0)
    dbnbias = dhpreact.sum(0)
    dbnraw = p.bngain * dhpreact
    # bnraw = bndiff * bnvar_inv: product rule, each factor's gradient is the other one times the output's
    dbnvar_inv = (a["bndiff"] * dbnraw).sum(0, keepdim=True)
    dbndiff = a["bnvar_inv"] * dbnraw  # first path into bndiff
    # bnvar_inv = (bnvar + eps) ** -0.5; d (v + eps)**-0.5 = -0.5 (v + eps)**-1.5
    dbnvar = -0.5 * (a["bnvar"] + BN_EPS) ** -1.5 * dbnvar_inv
    # bnvar = bndiff2.sum(0) / n: a sum spreads its gradient equally over its terms
    dbndiff2 = torch.ones_like(a["bndiff2"]) / n * dbnvar
    # bndiff2 = bndiff ** 2
    dbndiff = dbndiff + 2 * a["bndiff"] * dbndiff2  # second path into bndiff
    # bndiff = hprebn - bnmeani
    dbnmeani = -dbndiff.sum(0, keepdim=True)
    dhprebn = dbndiff.clone()  # first path into hprebn
    # bnmeani = hprebn.sum(0) / n
    dhprebn = dhprebn + torch.ones_like(a["hprebn"]) / n * dbnmeani  # second path into hprebn
    # hprebn = embcat @ W1
    dembcat = dhprebn @ p.W1.T  # (n, block_size * n_embd)
    dW1 = a["embcat"].T @ dhprebn
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
                embcat=dembcat, W1=dW1, emb=demb, C=dC)


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
    """dloss/dhprebn through the whole training-mode BatchNorm in one expression.

    Each input moves its own output directly, and every output through the batch mean and
    variance; the second and third terms take those shared paths back out. With r = dhpreact:
    dhprebn = gain * inv / n * (n r - sum(r) - raw sum(r raw)). The first term is the direct
    path; the second the path through the mean (which does not reach the variance, since the
    deviations from the mean sum to zero); the third the path through the variance (a variance
    divided by n - 1, as makemore part 4's, would put a factor n/(n-1) in front of it).
    """
    n = dhpreact.shape[0]
    return bngain * bnvar_inv / n * (
        n * dhpreact - dhpreact.sum(0, keepdim=True) - bnraw * (dhpreact * bnraw).sum(0, keepdim=True)
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
    return dict(C=dC, W1=a["embcat"].T @ dhprebn, bngain=(a["bnraw"] * dhpreact).sum(0),
                bnbias=dhpreact.sum(0), W2=a["h"].T @ dlogits, b2=dlogits.sum(0))


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
    """Train and validation examples of the names, as the engine cuts them ('.' = id 0 at both ends)."""
    words = load_text("names").split()
    tok = CharTokenizer(["."] + sorted(set("".join(words))))
    train, val, _ = split_names(words, seed=seed)
    return NamesExamples(*context_examples(train, tok.stoi, block_size),
                         *context_examples(val, tok.stoi, block_size), tok.vocab_size)


GRADIENTS = ("fused", "atomic", "autograd")
BACKWARDS = {"fused": backward_fused, "atomic": backward_atomic}  # ours; "autograd" is torch's


def gradients(params: Params, X, Y, source: str = "fused",
              running: BatchNorm1d | None = None) -> tuple[torch.Tensor, dict]:
    """The loss on a batch and each parameter's gradient, from our backward pass or autograd's;
    `running` (the model's BatchNorm1d) takes in the batch's statistics, as in its own forward."""
    if source == "autograd":
        loss, acts = forward(params, X, Y)
        names, tensors = zip(*params.items(), strict=True)
        grads = dict(zip(names, torch.autograd.grad(loss, tensors), strict=True))
    else:
        with torch.no_grad():  # our backward needs only the values: no graph to build
            loss, acts = forward(params, X, Y)
            grads = BACKWARDS[source](params, X, Y, acts)
    if running is not None:
        update_running_stats(running, acts)
    return loss.detach(), {name: grads[name] for name, _ in params.items()}


@torch.no_grad()
def update_running_stats(bn: BatchNorm1d, acts: dict) -> None:
    """What mlp.BatchNorm1d does in training: move its running mean and variance towards the batch's."""
    n = acts["hprebn"].shape[0]
    bn.running_mean.lerp_(acts["bnmeani"].view(-1), bn.momentum)
    bn.running_var.lerp_(acts["bnvar"].view(-1) * n / (n - 1), bn.momentum)  # stored unbiased


@torch.no_grad()
def sgd_step(params: Params, grads: dict, lr: float) -> None:
    """Move every parameter a step against its gradient."""
    for name, p in params.items():
        p.add_(grads[name], alpha=-lr)


@dataclass
class TrainResult:
    """A trained model and how its training went."""

    model: MLP  # in eval mode: its BatchNorm uses the running statistics
    params: Params  # the model's tensors
    losses: list[float]  # the minibatch loss at every step
    grad_diffs: list[tuple[int, float]] = field(default_factory=list)  # (step, max |ours - autograd|)
    train_loss: float = float("nan")  # on the whole split, scored by the model itself
    val_loss: float = float("nan")


def train_manual(data: NamesExamples, steps: int = 200_000, *, seed: int = 42, n_embd: int = 10,
                 n_hidden: int = MLPConfig.n_hidden, batch_size: int = 32, lr: float = 0.1,
                 lr_decay_at: int | None = None, dtype: torch.dtype = torch.float32,
                 gradients_from: str = "fused", compare_every: int = 0,
                 tolerance: float | None = None, log_every: int = 0) -> TrainResult:
    """Train the MLP with SGD on gradients from our backward pass (or autograd's, to compare).

    The learning rate drops tenfold at `lr_decay_at` (default: half way). With `compare_every`
    N > 0, every N steps autograd also differentiates the batch and training stops with an
    AssertionError if any gradient differs from ours by more than `tolerance` (default 1e-9 in
    float64, 1e-5 in float32).
    """
    if steps < 1 or batch_size < 2:  # BatchNorm's running variance divides by batch_size - 1
        raise UserError(f"need steps >= 1 and batch_size >= 2, got {steps} and {batch_size}")
    if gradients_from not in GRADIENTS:
        raise UserError(f"gradients_from must be one of {', '.join(GRADIENTS)}, got {gradients_from!r}")
    lr_decay_at = steps // 2 if lr_decay_at is None else lr_decay_at
    tolerance = tolerance if tolerance is not None else (1e-9 if dtype == torch.float64 else 1e-5)
    g = torch.Generator().manual_seed(seed)
    model = make_model(data.vocab_size, data.Xtr.shape[1], n_embd, n_hidden, generator=g, dtype=dtype)
    params, bn = Params.of(model), model.net.layers[3]
    result = TrainResult(model, params, [])
    for step in range(steps):
        Xb, Yb = sample_examples(data.Xtr, data.Ytr, batch_size, g)
        loss, grads = gradients(params, Xb, Yb, gradients_from, running=bn)
        if compare_every and step % compare_every == 0 and gradients_from != "autograd":
            _, reference = gradients(params, Xb, Yb, "autograd")
            diff = max((grads[k] - reference[k]).abs().max().item() for k in grads)
            result.grad_diffs.append((step, diff))
            assert diff <= tolerance, f"step {step}: gradients differ from autograd's by {diff:.3g}"
        sgd_step(params, grads, lr if step < lr_decay_at else lr / 10)
        result.losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"{step:7d}/{steps:7d}: {loss.item():.4f}")
    with torch.no_grad():
        model.eval()
        result.train_loss = model(data.Xtr, data.Ytr)[1].item()
        result.val_loss = model(data.Xval, data.Yval)[1].item()
    return result


# ----------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    """Train the names MLP on hand-written gradients (or autograd's) and print its train/val loss."""
    ap = cli.parser("python -m nanogpt.backprop", main.__doc__)
    ap.add_argument("--steps", type=cli.positive_int, default=200_000, help="SGD steps")
    cli.add_seed(ap, 42, "seed of the initial weights and batches")
    ap.add_argument("--n-hidden", type=cli.positive_int, default=MLPConfig.n_hidden, help="hidden units")
    ap.add_argument("--batch-size", type=int, default=32, help="examples per step (at least 2)")
    ap.add_argument("--lr", type=cli.positive_float, default=0.1,
                    help="learning rate, tenfold lower after half")
    ap.add_argument("--dtype", choices=list(DTYPES), default="float32", help="parameter precision")
    ap.add_argument("--autograd", action="store_true", help="take gradients from autograd instead")
    ap.add_argument("--atomic", action="store_true", help="use the step-by-step backward, not the fused")
    ap.add_argument("--compare-every", type=int, default=0, metavar="N",
                    help="check our gradients against autograd's every N steps (0: never)")
    ap.add_argument("--log-every", type=cli.positive_int, default=10_000,
                    help="print the batch loss every N steps")
    return cli.invoke(_train_and_report, ap, argv)


def _train_and_report(args) -> None:
    source = "autograd" if args.autograd else "atomic" if args.atomic else "fused"
    if args.compare_every < 0:
        raise UserError(f"--compare-every must be >= 0, got {args.compare_every}")
    result = train_manual(names_examples(), args.steps, seed=args.seed, n_hidden=args.n_hidden,
                          batch_size=args.batch_size, lr=args.lr, dtype=DTYPES[args.dtype],
                          gradients_from=source, compare_every=args.compare_every,
                          log_every=args.log_every)
    if result.grad_diffs:
        print(f"largest gradient difference from autograd over {len(result.grad_diffs)} checks: "
              f"{max(d for _, d in result.grad_diffs):.3g}")
    print(f"gradients: {source}  train loss {result.train_loss:.4f}  val loss {result.val_loss:.4f}")


if __name__ == "__main__":
    raise SystemExit(main())
