"""The course's models by stage, and how a run's settings become one of them.

    model = build_model("gpt", {"vocab_size": 65, "n_layer": 4, ...})
"""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass

import torch

from nanogpt.bigram import BigramConfig, NeuralBigram
from nanogpt.errors import UserError
from nanogpt.gpt import GPT, GPTConfig
from nanogpt.mlp import MLP, MLPConfig

# Stage name -> (model class, config class): where `stage` in a checkpoint or a config leads.
STAGES = {
    "bigram": (NeuralBigram, BigramConfig),
    "mlp": (MLP, MLPConfig),
    "gpt": (GPT, GPTConfig),
}
# The TrainConfig fields that become each stage's model config (with vocab_size).
MODEL_FIELDS = {
    "bigram": (),
    "mlp": ("block_size", "n_embd", "n_hidden", "n_layer", "batchnorm", "init"),
    "gpt": ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "tie_weights", "activation",
            "position", "qk_norm"),
}


def model_config_of(cfg, vocab_size: int) -> dict:
    """The model config dict a run's settings ask for."""
    return {"vocab_size": vocab_size, **{name: getattr(cfg, name) for name in MODEL_FIELDS[cfg.stage]}}


def build_model(stage: str, model_config: dict) -> torch.nn.Module:
    """A fresh model of a stage from its config dict (only the fields its config class knows)."""
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    model_cls, config_cls = STAGES[stage]
    known = {f.name for f in fields(config_cls) if f.init}
    return model_cls(config_cls(**{k: v for k, v in model_config.items() if k in known}))


def unknown_model_keys(stage: str, model_config: dict) -> list[str]:
    """The keys of a saved model config that the stage's config class has no field for."""
    known = {f.name for f in fields(STAGES[stage][1]) if f.init}
    return sorted(k for k in model_config if k not in known)


def model_config_dict(model: torch.nn.Module) -> dict:
    """The model's config as a plain dict."""
    config = model.config
    return asdict(config) if is_dataclass(config) else dict(vars(config))
