"""The checks of a run's settings: each impossible value is one line that names its flag.

    validate(cfg)    # a UserError for the first setting that cannot work
"""

from __future__ import annotations

import math
import re

from nanogpt.errors import UserError

CHOICES = {
    "stage": ("bigram", "mlp", "gpt"),
    "tokenizer": ("char", "gpt2"),
    "optimizer": ("adamw", "sgd", "muon"),
    "lr_schedule": ("cosine", "step", "constant", "wsd"),
    "activation": ("gelu", "relu2"),
    "position": ("learned", "rotary"),
    "dtype": ("auto", "float32", "float64", "bfloat16"),
    "compile": ("off", "on", "auto"),
}
AT_LEAST_ONE = ("block_size", "n_layer", "n_head", "n_embd", "n_hidden", "batch_size", "grad_accum",
                "max_iters", "eval_interval", "eval_iters", "log_interval", "diag_every")
NOT_NEGATIVE = ("min_lr", "warmup_iters", "weight_decay", "grad_clip", "max_minutes",
                "save_interval", "threads", "muon_weight_decay")


def validate(cfg) -> None:
    """Raise a one-line UserError for the first setting that cannot work."""
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise UserError(f"--{dashed(name)} must be one of {', '.join(allowed)}, "
                            f"not {getattr(cfg, name)!r}")
    for name in AT_LEAST_ONE:
        if getattr(cfg, name) < 1:
            raise UserError(f"--{dashed(name)} must be at least 1, not {getattr(cfg, name)}")
    for name in NOT_NEGATIVE:
        value = getattr(cfg, name)
        if not (value >= 0 and math.isfinite(value)):
            raise UserError(f"--{dashed(name)} must be a finite number >= 0, not {value}")
    for name in ("lr", "muon_lr"):
        if not (getattr(cfg, name) > 0 and math.isfinite(getattr(cfg, name))):
            raise UserError(f"--{dashed(name)} must be a positive number, not {getattr(cfg, name)}")
    if cfg.min_lr > cfg.lr:
        raise UserError(f"--min-lr ({cfg.min_lr}) must not exceed --lr ({cfg.lr})")
    if cfg.stage == "gpt" and cfg.n_embd % cfg.n_head != 0:
        raise UserError(f"--n-embd ({cfg.n_embd}) must be divisible by --n-head ({cfg.n_head})")
    if not 0 <= cfg.dropout < 1:
        raise UserError(f"--dropout must be in [0, 1), not {cfg.dropout}")
    if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        raise UserError(f"--beta1 and --beta2 must be in [0, 1), not {cfg.beta1}, {cfg.beta2}")
    if not 0 <= cfg.muon_momentum < 1:
        raise UserError(f"--muon-momentum must be in [0, 1), not {cfg.muon_momentum}")
    if cfg.optimizer == "muon" and cfg.stage != "gpt":
        raise UserError(f"--optimizer muon trains the matrices inside a GPT's blocks, not the "
                        f"{cfg.stage}'s weights (use adamw or sgd)")
    if not 0 < cfg.step_decay_at <= 1:
        raise UserError(f"--step-decay-at must be in (0, 1], not {cfg.step_decay_at}")
    if cfg.data == "names" and cfg.tokenizer != "char":
        raise UserError("the names dataset is read character by character: use --tokenizer char")
    if not 0 <= cfg.seed <= 2**63 - 1:  # torch's generators take a signed 64-bit seed
        raise UserError(f"--seed must be between 0 and 2^63 - 1, not {cfg.seed}")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        raise UserError(f"--device must be auto, cpu, cuda, cuda:N or mps, not {cfg.device!r}")
    if cfg.stage == "mlp" and cfg.batchnorm and cfg.batch_size < 2:
        raise UserError("BatchNorm needs at least 2 examples per batch: raise --batch-size or use "
                        "--no-batchnorm")
    if cfg.stage == "bigram" and cfg.tokenizer == "gpt2":
        raise UserError("the bigram's table is vocab_size^2 weights (2.5 billion with --tokenizer gpt2): "
                        "use --tokenizer char")


def dashed(name: str) -> str:
    """The flag spelling of a field name: max_iters -> max-iters."""
    return name.replace("_", "-")
