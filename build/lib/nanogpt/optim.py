"""The optimizers of a run: AdamW or SGD alone, or Muon for the GPT's hidden matrices with AdamW
for the rest, stepped together as if they were one.

    optimizer = make_optimizer(model, cfg, "cpu")   # what --optimizer asks for
    set_lr(optimizer, lr)                           # the schedule's lr, on every group
    optimizer.step(); optimizer.zero_grad(set_to_none=True)

Muon (Jordan et al., 2024; `torch.optim.Muon`) orthogonalises each weight matrix's momentum
(Newton-Schulz iterations) before the step, so that a step moves every direction of the matrix
about equally. It is made for the matrices inside the Transformer blocks (attention qkv and
proj, feed-forward fc and proj); the embeddings, the head and every 1-D gain or bias stay with
AdamW, as in the modded-nanoGPT speedruns. Muon's learning rate lives on another scale than
AdamW's (--muon-lr 0.02 against --lr 3e-3): the loop computes one lr on AdamW's scale, and
`set_lr` gives each Muon group that lr times its `lr_scale` = muon_lr / lr, so both follow the same
schedule and each group's "lr" is the lr it steps with.
"""

from __future__ import annotations

import torch


def make_optimizer(model: torch.nn.Module, cfg, device_type: str):
    """AdamW, SGD, or Muon + AdamW; weight decay only on matrices, never on biases or norms' gains."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.optimizer == "muon":
        hidden = [p for n, p in named if is_hidden_matrix(n, p)]
        # lr_scale: where Muon's lr sits against the schedule's (AdamW's) lr; set_lr applies it
        muon = torch.optim.Muon([{"params": hidden, "lr_scale": cfg.muon_lr / cfg.lr}], lr=cfg.muon_lr,
                                momentum=cfg.muon_momentum, weight_decay=cfg.muon_weight_decay)
        rest = [p for n, p in named if not is_hidden_matrix(n, p)]
        return Optimizers(muon=muon, adamw=adamw(rest, cfg, device_type))
    params = [p for _, p in named]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(decay_groups(params, cfg.weight_decay), lr=cfg.lr)
    return adamw(params, cfg, device_type)


def set_lr(optimizer, lr: float) -> dict[str, float]:
    """Give every group the schedule's lr (times its lr_scale, for Muon's); returns the lrs set,
    by name ("lr", and "muon_lr" when Muon is there), for the log."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    muon = [g["lr"] for g in optimizer.param_groups if "lr_scale" in g]
    return {"lr": lr, **({"muon_lr": muon[0]} if muon else {})}


def is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    """A weight matrix inside a Transformer block (blocks.N.attn.qkv.weight, ...): Muon's to train.
    The embeddings and the head are matrices too, but they map tokens in and out, not features to
    features, and stay with AdamW."""
    return name.startswith("blocks.") and p.dim() == 2


def decay_groups(params: list, weight_decay: float) -> list[dict]:
    """Two groups: the matrices (2-D and up) decayed, the rest (biases, gains) not."""
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def adamw(params: list, cfg, device_type: str) -> torch.optim.AdamW:
    """AdamW over `params`, decay on the matrices only."""
    fused = device_type == "cuda"  # one kernel for all parameters
    return torch.optim.AdamW(decay_groups(params, cfg.weight_decay), lr=cfg.lr,
                             betas=(cfg.beta1, cfg.beta2), fused=fused)


class Optimizers:
    """Several optimizers that look like one to the training loop: their param_groups side by
    side, one step, one zero_grad, one state_dict. A group with an "lr_scale" steps with its lr
    times that scale (the lr the loop set is put back after the step, so it reads as set)."""

    def __init__(self, **optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        """One state dict per optimizer, by name (plain tensors and numbers: weights_only loads it)."""
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])
