"""Stage 2: the MLP language model of Bengio et al. (2003), built from layers written from scratch.

    the last block_size characters -> Embedding: one n_embd vector each -> Flatten: concatenate
      -> n_layer x ( Linear [-> BatchNorm1d] -> Tanh ) -> Linear -> logits over the vocabulary

Every layer is a small nn.Module written out by hand (no nn.Linear, no nn.BatchNorm1d inside),
and each keeps its last output in `.out` so that the diagnostics can look at activations.

The `init` option replays makemore part 3, one fix at a time:
  "naive"        every weight and bias ~ N(0, 1): confident wrong logits, saturated tanh units
  "softmax_fix"  last layer x0.01 and bias 0: the first prediction is near uniform, loss ~ ln(V)
  "tanh_fix"     also hidden weights x0.2 and biases x0.01: fewer tanh units stuck at +-1
  "kaiming"      hidden weights x gain / sqrt(fan_in), gain 5/3 for tanh: the same fix, derived
`batchnorm=True` puts a BatchNorm1d after each hidden Linear (whose bias is then dropped: the
BatchNorm subtracts the mean, bias included, and adds its own learned bias back).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

INITS = ("naive", "softmax_fix", "tanh_fix", "kaiming")
TANH_GAIN = 5 / 3  # tanh shrinks its input's spread; this gain restores it (torch.nn.init.calculate_gain)


@dataclass
class MLPConfig:
    """The shape of an MLP language model and how its weights start."""

    vocab_size: int = 27
    block_size: int = 3  # characters of context
    n_embd: int = 10  # size of each character's embedding
    n_hidden: int = 200  # width of each hidden layer
    n_layer: int = 1  # number of hidden layers
    batchnorm: bool = False
    init: str = "kaiming"  # one of INITS
    # Running statistics average the last ~1/momentum batches: enough to smooth batches of 32,
    # few enough to follow the weights as they train and to settle within a short run.
    bn_momentum: float = 0.01
    # The id that fills a context shorter than block_size. Training contexts are always full, so
    # only a short prompt meets it. For names it is the boundary '.', which sorts first (id 0) and
    # is what context_examples pads each name with. Running text has no boundary: id 0 is its first
    # character in sorted order ('\n' in Tiny Shakespeare), so a short prompt reads as if a line
    # had just ended.
    pad_id: int = 0

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, not {self.init!r}")


# ----------------------------------------------------------------------------- layers


class Linear(nn.Module):
    """y = x @ W + b, with W stored (fan_in, fan_out) so that the code reads like the math."""

    def __init__(self, fan_in: int, fan_out: int, bias: bool = True, generator=None):
        super().__init__()
        # The layer's own default: unit-variance outputs for unit-variance inputs (MLP re-draws it).
        self.weight = nn.Parameter(torch.randn(fan_in, fan_out, generator=generator) / fan_in**0.5)
        self.bias = nn.Parameter(torch.zeros(fan_out)) if bias else None

    def forward(self, x):
        self.out = x @ self.weight  # (B, fan_out)
        if self.bias is not None:
            self.out = self.out + self.bias
        return self.out


class BatchNorm1d(nn.Module):
    """Normalize each feature over the batch, then scale by a learned gain and shift by a learned bias.

    Training uses this batch's mean and its biased variance (divide by N): the batch is normalized
    by its own statistics, exactly. The running variance stores the unbiased estimate (divide by
    N - 1), the better guess of the whole data's variance. Eval uses the running statistics, so a
    single example gets a deterministic output. torch.nn.BatchNorm1d makes the same two choices.
    `momentum` is the weight of the new batch in the running averages (torch's convention):
    makemore part 3's `0.999 * running + 0.001 * batch` is momentum=0.001.
    """

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.gain = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        # Buffers, not parameters: saved with the model, never touched by the optimizer.
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x):
        if self.training:
            n = x.shape[0]
            if n < 2:  # one example has no spread: its variance would be 0/0 in the running average
                raise ValueError("BatchNorm1d needs at least 2 examples per batch in training mode")
            mean = x.mean(0)  # (dim,)
            var = x.var(0, correction=0)  # (dim,)
            with torch.no_grad():  # .to(): under bfloat16 autocast the batch's statistics are bf16
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)  # (1-m) old + m new
                self.running_var.lerp_((var * n / (n - 1)).to(self.running_var.dtype), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean) / torch.sqrt(var + self.eps)  # (B, dim): mean 0, std 1 per feature
        self.out = self.gain * x_hat + self.bias
        return self.out


class Tanh(nn.Module):
    """The non-linearity, squashing each value into (-1, 1)."""

    def forward(self, x):
        self.out = torch.tanh(x)
        return self.out


class Embedding(nn.Module):
    """A table with one learned vector per character: ids (B, T) -> vectors (B, T, dim)."""

    def __init__(self, num: int, dim: int, generator=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num, dim, generator=generator))

    def forward(self, idx):
        self.out = self.weight[idx]  # (B, T, dim)
        return self.out


class Flatten(nn.Module):
    """Concatenate the context's vectors into one: (B, T, dim) -> (B, T * dim)."""

    def forward(self, x):
        self.out = x.view(x.shape[0], -1)
        return self.out


class Sequential(nn.Module):
    """Layers applied one after another."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        self.out = x
        return self.out


# ----------------------------------------------------------------------------- the model


class MLP(nn.Module):
    """Predict the next character from the previous block_size characters through tanh hidden layers."""

    def __init__(self, config: MLPConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = c = config
        g = generator
        layers = [Embedding(c.vocab_size, c.n_embd, generator=g), Flatten()]
        fan_in = c.block_size * c.n_embd
        for _ in range(c.n_layer):
            layers.append(Linear(fan_in, c.n_hidden, bias=not c.batchnorm, generator=g))
            if c.batchnorm:
                layers.append(BatchNorm1d(c.n_hidden, momentum=c.bn_momentum))
            layers.append(Tanh())
            fan_in = c.n_hidden
        layers.append(Linear(fan_in, c.vocab_size, generator=g))
        self.net = Sequential(layers)
        self.init_weights(c.init, g)

    @torch.no_grad()
    def init_weights(self, scheme: str, generator: torch.Generator | None = None):
        """Draw every weight again under one of INITS (the layers' own defaults are replaced)."""
        def randn(*shape):
            return torch.randn(*shape, generator=generator)

        embedding, *linears = [m for m in self.net.layers if isinstance(m, (Embedding, Linear))]
        *hidden, head = linears
        embedding.weight.copy_(randn(embedding.weight.shape))
        for lin in hidden:
            fan_in = lin.weight.shape[0]
            if scheme == "kaiming":  # Var(x @ W) = fan_in Var(W) E[x^2], so the output std is gain x input
                w_scale, b_scale = TANH_GAIN / fan_in**0.5, 0.01
            elif scheme == "tanh_fix":  # the lecture's hand-picked numbers (for fan_in 30)
                w_scale, b_scale = 0.2, 0.01
            else:  # naive and softmax_fix leave the hidden layers at N(0, 1)
                w_scale, b_scale = 1.0, 1.0
            lin.weight.copy_(randn(lin.weight.shape) * w_scale)
            if lin.bias is not None:
                lin.bias.copy_(randn(lin.bias.shape) * b_scale)
        # The output layer: small logits mean a near-uniform first guess instead of a confident wrong one.
        w_scale, b_scale = (1.0, 1.0) if scheme == "naive" else (0.01, 0.0)
        head.weight.copy_(randn(head.weight.shape) * w_scale)
        head.bias.copy_(randn(head.bias.shape) * b_scale)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """(B, T) ids -> (B, V) logits for the next character, and the cross-entropy given targets (B,)."""
        T = self.config.block_size
        if idx.shape[1] < T:  # a short context (a prompt): fill it on the left, see MLPConfig.pad_id
            idx = F.pad(idx, (T - idx.shape[1], 0), value=self.config.pad_id)
        logits = self.net(idx[:, -T:])  # (B, V); of a longer context only the last T characters count
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss
