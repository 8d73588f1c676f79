"""Training settings: one flat dataclass, and a preset per stage.

A preset fills every field of `TrainConfig`; `preset(name, **overrides)` replaces some and checks
them (nanogpt.checks). Every field is also a command-line flag named like the field with dashes
(`max_iters` -> `--max-iters`, nanogpt.flags): `python -m nanogpt.train --help` lists them all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from nanogpt.checks import validate
from nanogpt.errors import UserError


def opt(default, help: str, bare=None):
    """A dataclass field that carries its own --help text; `bare`: the value of the flag given
    alone (`--compile` = `--compile on`), with `--no-FLAG` for the default."""
    return field(default=default, metadata={"help": help, "bare": bare})


@dataclass
class TrainConfig:
    """Everything one training run needs: what to train, on what, how, and where to write."""

    preset: str = opt("", "the preset these settings started from")
    # what: the model (n_layer: Transformer blocks for the GPT, hidden layers for the MLP)
    stage: str = opt("gpt", "model: bigram | mlp | gpt")
    block_size: int = opt(128, "context length (the MLP's fixed context)")
    n_embd: int = opt(128, "embedding width")
    n_layer: int = opt(4, "Transformer blocks (MLP: hidden layers)")
    # ... the GPT's own
    n_head: int = opt(4, "attention heads (GPT)")
    dropout: float = opt(0.0, "dropout probability (GPT)")
    activation: str = opt("gelu", "the feed-forward's non-linearity (GPT): gelu | relu2 (ReLU, squared)")
    position: str = opt("learned", "where positions enter (GPT): learned (a table added to the input) | "
                        "rotary (each head's queries and keys turned by position)")
    qk_norm: bool = opt(False, "RMS-normalise each head's queries and keys (GPT)")
    bias: bool = opt(False, "biases in Linear and LayerNorm layers (GPT)")
    tie_weights: bool = opt(False, "share the token embedding with the output head (GPT)")
    # ... the MLP's own
    n_hidden: int = opt(200, "hidden width (MLP)")
    batchnorm: bool = opt(False, "BatchNorm after each hidden Linear (MLP)")
    init: str = opt("kaiming", "weight init (MLP), see nanogpt.mlp")
    # on what: the data
    data: str = opt("shakespeare", "dataset: shakespeare | names | path to a UTF-8 text file")
    tokenizer: str = opt("char", "char | gpt2 (GPT-2 byte-pair encoding)")
    # how: optimisation
    optimizer: str = opt("adamw", "adamw (decay on 2-D+ weights only) | sgd | muon (Muon for the "
                         "matrices inside the GPT's blocks, AdamW for the rest; see nanogpt.optim)")
    # ... the learning rate's schedule
    lr: float = opt(1e-3, "peak learning rate")
    min_lr: float = opt(1e-4, "learning rate at the end of the cosine")
    lr_schedule: str = opt("cosine", "cosine (to min_lr) | step (lr/10 at step_decay_at) | constant | "
                           "wsd (warmup, stable, then a straight line to min_lr from step_decay_at)")
    warmup_iters: int = opt(100, "linear warmup steps")
    step_decay_at: float = opt(0.75, "fraction of max_iters where the step schedule divides lr by 10 "
                                "(wsd: where its decay begins)")
    # ... AdamW's and Muon's own
    beta1: float = opt(0.9, "AdamW beta1")
    beta2: float = opt(0.99, "AdamW beta2")
    weight_decay: float = opt(0.1, "weight decay (on 2-D+ parameters only)")
    muon_lr: float = opt(0.02, "--optimizer muon: Muon's peak learning rate (the blocks' matrices), "
                         "moved by the same warmup and schedule as --lr")
    muon_momentum: float = opt(0.95, "--optimizer muon: Muon's (Nesterov) momentum")
    muon_weight_decay: float = opt(0.0, "--optimizer muon: weight decay of Muon's matrices "
                                   "(decoupled, times Muon's lr)")
    # ... each step, and how many
    grad_clip: float = opt(1.0, "clip the gradient norm to this (0 = off)")
    batch_size: int = opt(32, "sequences (or examples) per micro-batch")
    grad_accum: int = opt(1, "micro-batches per step, over all processes together")
    max_iters: int = opt(2000, "optimizer steps (the schedule's length)")
    max_minutes: float = opt(
        0.0, "time budget in minutes (0 = off): max_iters is set from the step time measured over "
        "the first steps so that the run, evaluations included, ends within the budget")
    # measuring and saving
    eval_interval: int = opt(250, "evaluate (and save last.pt) every this many steps")
    eval_iters: int = opt(40, "fixed batches per split in each evaluation")
    log_interval: int = opt(10, "log the training loss (and move the progress bar) every this many steps")
    save_interval: int = opt(0, "also save last.pt every this many steps (0 = at evaluations only)")
    out_dir: str = opt("", "run folder (default runs/<preset>)")
    resume: bool = opt(False, "continue the run in out_dir from its last.pt")
    # where
    seed: int = opt(1337, "seed of every random draw")
    device: str = opt("auto", "auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps")
    dtype: str = opt("float32", "auto (bfloat16 autocast on CUDA, and on CPUs with the bfloat16 units "
                     "that nanogpt.precision.AUTO_BFLOAT16_CPU_UNITS names (AMX); else float32) | "
                     "float32 | float64 | bfloat16 (autocast: weights stay float32)")
    compile: str = opt("off", "torch.compile the model: off | on (eager, with a warning, where it "
                       "fails: no C++ compiler, a backend error) | auto (on where "
                       "nanogpt.device.AUTO_COMPILE says it pays and a compiler is found)", bare="on")
    threads: int = opt(0, "CPU threads (0 = all cores, shared between processes)")
    diag: bool = opt(False, "record activation/gradient/update statistics (nanogpt.diagnostics)")
    diag_every: int = opt(100, "record diagnostics every this many steps")

    def __post_init__(self):
        if isinstance(self.compile, bool):  # compile was a bool before "auto" (older checkpoints)
            self.compile = "on" if self.compile else "off"

    def to_dict(self) -> dict:
        """Plain python values, as stored in a checkpoint."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Back from `to_dict`; fields unknown to this version are dropped (see `unknown_keys`)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def unknown_keys(cls, d: dict) -> list[str]:
        """The keys of a saved config that this version has no field for (from_dict drops them)."""
        known = {f.name for f in fields(cls)}
        return sorted(k for k in d if k not in known)


# ----------------------------------------------------------------------------- presets

PRESETS: dict[str, TrainConfig] = {
    # Stage 1: a table of next-character logits, trained by gradient descent. One thread for the
    # bigram, the MLP and the smoke GPT: their matrices are too small to be worth splitting.
    "bigram": TrainConfig(
        stage="bigram", block_size=32, batch_size=32, optimizer="adamw", lr=3e-2, min_lr=3e-3,
        warmup_iters=0, weight_decay=0.0, grad_clip=0.0, max_iters=1500, eval_interval=500,
        eval_iters=50, log_interval=50, threads=1),
    # Stage 2: makemore part 3's recipe (SGD 0.1 -> 0.01 at 75%, batch 32, no clipping, no decay).
    "mlp": TrainConfig(
        stage="mlp", block_size=8, n_embd=24, n_hidden=256, n_layer=2, batchnorm=True,
        optimizer="sgd", lr=0.1, lr_schedule="step", step_decay_at=0.75, warmup_iters=0,
        weight_decay=0.0, grad_clip=0.0, batch_size=32, max_iters=60000, eval_interval=10000,
        eval_iters=50, log_interval=500, threads=1),
    # Stage 3 on a 2-core CPU: the best val loss that ten minutes buy. A short run wants a high
    # learning rate (at 250 steps of the fast shape: lr 2e-3 -> val 2.24, 3e-3 -> 2.18, 5e-3 -> 2.15)
    # and few, rare evaluations; max_iters comes from the budget. Muon for the blocks' matrices (AdamW
    # at lr for the rest) buys progress per step; ten minutes are about ten passes over the 1M
    # training characters and the model overfits (train 1.00, val 1.58), which weight decay on
    # Muon's matrices holds back (val 1.48) at no cost per step, where dropout 0.1 cost a quarter of
    # the steps for val 1.53. Rotary positions and a context of 256 (in batches of 16, the same
    # tokens per step) cost a tenth of the steps and, together, ended lower in all four runs (two
    # seeds on two days; rotary alone only on the first, the 256 context with a learned table not
    # at all): the model learns how far back a character is, and each prediction sees twice the
    # context on average. bfloat16 autocast where the CPU has AMX (dtype auto) buys half again as
    # many steps and ended lower in both seeds of the ladder run (mean -0.014), so it stays. The
    # cosine ends at 0, not at lr / 10: a Muon step is as long as its learning rate makes it,
    # however small the gradient (the update's singular values are all near 1), so the matrices
    # can only settle where that length goes to 0 (in float32, two seeds: val 1.4786 and 1.4610 ->
    # 1.4421 and 1.4259).
    # (README, "Training the GPT": bench/bench_train.py --equal-time has a row for each lever.)
    "gpt-cpu": TrainConfig(
        n_layer=4, n_head=4, n_embd=192, block_size=256, batch_size=16, dropout=0.0, bias=False,
        position="rotary", optimizer="muon", muon_weight_decay=0.3, dtype="auto", lr=3e-3, min_lr=0.0,
        warmup_iters=100, beta2=0.99, max_iters=1500, max_minutes=9.7, eval_interval=250, eval_iters=20,
        log_interval=10),
    # The same in about 100 seconds: too few steps to overfit, so no weight decay on Muon's
    # matrices; and float32, since at this width (128) and context (64) bfloat16 autocast took more
    # time per step than it saved (829 steps in 100 s against 967 in float32, on AMX).
    "gpt-cpu-fast": TrainConfig(
        n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=32, dropout=0.0, bias=False,
        optimizer="muon", dtype="float32", lr=5e-3, min_lr=5e-4, warmup_iters=50,
        beta2=0.99, max_iters=1000, max_minutes=1.6, eval_interval=250, eval_iters=20, log_interval=10),
    # The "baby GPT" of nanoGPT's shakespeare_char config, for a GPU.
    "gpt-gpu": TrainConfig(
        n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, dropout=0.2, bias=False,
        dtype="auto", lr=1e-3, min_lr=1e-4, warmup_iters=100, beta2=0.99, max_iters=5000, eval_interval=250,
        eval_iters=200, log_interval=10),
    # A tiny GPT that trains in seconds on a CPU: for tests and quick checks.
    "smoke": TrainConfig(
        n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=16, lr=3e-3, min_lr=3e-4,
        warmup_iters=10, max_iters=100, eval_interval=50, eval_iters=5, log_interval=10, threads=1),
}


PRESET_NOTES = {
    "bigram": "stage 1, the neural bigram on Shakespeare (seconds)",
    "mlp": "stage 2, makemore part 3's MLP with BatchNorm on Shakespeare (a couple of minutes)",
    "gpt-cpu": "stage 3 on a CPU: the best val loss in 9.7 minutes (10 with start-up and final eval)",
    "gpt-cpu-fast": "stage 3 on a CPU in about 100 seconds",
    "gpt-gpu": "stage 3 on a GPU: nanoGPT's baby GPT, 6 x 384, 5000 steps",
    "smoke": "a tiny GPT in seconds, for tests",
}


def default_preset() -> str:
    """gpt-gpu where CUDA is present, gpt-cpu everywhere else."""
    import torch

    return "gpt-gpu" if torch.cuda.is_available() else "gpt-cpu"


def default_checkpoint() -> str:
    """The checkpoint `make train` writes by default: runs/<default preset>/best.pt."""
    return f"runs/{default_preset()}/best.pt"


def preset(name: str, **overrides) -> TrainConfig:
    """A preset's settings with some fields replaced, checked; out_dir defaults to runs/<name>."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r} (presets: {', '.join(PRESETS)})")
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise UserError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    cfg = replace(PRESETS[name], preset=name, **overrides)
    if not cfg.out_dir:
        cfg.out_dir = f"runs/{name}"
    validate(cfg)
    return cfg
