"""One run's state, and how it starts: fresh (a seeded model) or resumed (every state put back).

    run = start_run(cfg)      # settings (last.pt's on --resume), device, data, model, optimizer
    run.micro_batches()       # this process's share of a step's batches
    run.save("last.pt")       # everything needed to continue exactly

The training loop in nanogpt/train.py reads and moves `run.iter`, `run.best_val` and the rest.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nanogpt.batches import Batches
from nanogpt.checkpoint import (
    FORMAT,
    build_model,
    clean_state_dict,
    load_checkpoint,
    model_config_dict,
    rng_state,
    save_checkpoint,
    set_rng_state,
    versions,
)
from nanogpt.config import PRESETS, TrainConfig, preset
from nanogpt.optim import Optimizers, make_optimizer
from nanogpt.runlog import RunLog, prepare_folder
from nanogpt.runtime import Runtime, compile_model, setup_runtime

# TrainConfig fields that become each stage's model config (with vocab_size).
MODEL_FIELDS = {
    "bigram": (),
    "mlp": ("block_size", "n_embd", "n_hidden", "n_layer", "batchnorm", "init"),
    "gpt": ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "tie_weights"),
}
# What may differ from the saved settings when a run is resumed: where and how it runs, not what.
RESUME_MAY_CHANGE = ("device", "compile", "threads", "diag", "diag_every", "resume", "out_dir")


@dataclass
class Run:
    """One run's state: its settings, where it runs, its data, model, optimizer and progress.
    Entering it as a context (`with run:`) closes its files and process group on the way out."""

    cfg: TrainConfig
    rt: Runtime
    data: Batches
    model: torch.nn.Module  # the plain module: saved, clipped, watched by --diag
    eval_model: torch.nn.Module  # the same weights, compiled under --compile
    train_model: torch.nn.Module  # eval_model, wrapped in DDP under torchrun (gradients averaged)
    optimizer: torch.optim.Optimizer | Optimizers  # Optimizers: Muon and AdamW as one (nanogpt.optim)
    batch_gen: torch.Generator  # the training batches
    eval_gen: torch.Generator  # the fixed evaluation batches, drawn once
    eval_batches: dict
    log: RunLog
    out: Path
    t0: float
    iter: int = 0
    best_val: float = math.inf
    budget_set: bool = True  # False only while --max-minutes still has to set max_iters
    start_iter: int = 0
    resumed_at: int = -1  # the step a resumed run started at (its last.pt was written there)
    saved_at: int = -1
    eval_seconds: float = 0.0
    last_loss: torch.Tensor | None = None
    logged: tuple = field(default_factory=lambda: (time.time(), 0))  # (time, iter) of the last log

    @property
    def n_micro(self) -> int:
        """This process's micro-batches per step."""
        return self.cfg.grad_accum // self.rt.world

    @property
    def n_tokens_per_step(self) -> int:
        return self.cfg.grad_accum * self.data.tokens_per_batch

    def micro_batches(self):
        """This process's share of the step's micro-batches, drawn in the same order everywhere, each
        with the context its backward runs in (DDP syncs gradients at the last one only)."""
        for i in range(self.cfg.grad_accum):
            x, y = self.data.draw("train", self.batch_gen)  # every process draws every batch ...
            if i // self.n_micro == self.rt.rank:  # ... and keeps only its own
                last = i % self.n_micro == self.n_micro - 1
                sync = nullcontext() if last or self.rt.world == 1 else self.train_model.no_sync()
                yield x.to(self.rt.device, non_blocking=True), y.to(self.rt.device, non_blocking=True), sync

    def checkpoint(self) -> dict:
        """Everything needed to continue this run exactly, in plain values and tensors."""
        return {"format": FORMAT, "model": clean_state_dict(self.model),
                "optimizer": self.optimizer.state_dict(), "config": self.cfg.to_dict(),
                "model_config": model_config_dict(self.model),
                "stage": self.cfg.stage, "tokenizer": self.data.tokenizer.to_dict(), "iter": self.iter,
                "best_val_loss": self.best_val, "budget_set": self.budget_set,
                "rng": rng_state(batch=self.batch_gen, eval=self.eval_gen), "versions": versions()}

    def save(self, *names: str) -> str:
        """Write last.pt and/or best.pt (rank 0 only); returns what was written, for the log line."""
        if self.rt.master:
            ckpt = self.checkpoint()
            for name in names:
                save_checkpoint(ckpt, self.out / name)
        self.saved_at = self.iter
        return f"saved {' and '.join(names)} at iter {self.iter}"

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.log.close()
        self.rt.close()


def start_run(cfg: TrainConfig, progress: bool = True, make_model=None) -> Run:
    """Everything before the first step: the settings (last.pt's on --resume), the device, the data,
    a seeded model, the optimizer, the generators; on resume, every state put back."""
    t0 = time.time()
    ckpt, notes = None, []
    if cfg.resume:
        ckpt = load_checkpoint(Path(cfg.out_dir) / "last.pt")
        cfg, notes = resumed_config(cfg, ckpt["config"])
    rt = setup_runtime(cfg)
    out = Path(cfg.out_dir)
    log = RunLog(out, active=rt.master, progress=progress)
    moved = prepare_folder(out, fresh=ckpt is None) if rt.master else []
    data = Batches(cfg)

    torch.manual_seed(cfg.seed)  # every process starts from the same weights
    settings = {name: getattr(cfg, name) for name in MODEL_FIELDS[cfg.stage]}
    model_config = {"vocab_size": data.tokenizer.vocab_size, **settings}
    # make_model(model_config) -> a module: a lecture's own variant of the stage's model (its
    # checkpoints then load only through that same function, not through load_model)
    model = make_model(model_config) if make_model else build_model(cfg.stage, model_config)
    model.to(device=rt.device, dtype=rt.param_dtype)
    torch.manual_seed(cfg.seed + rt.rank)  # each process its own dropout masks
    optimizer = make_optimizer(model, cfg, rt.device_type)
    eval_model, compile_note = model, None
    if rt.compile:  # tried on a batch of its own: the training batches are not touched
        example = data.draw("train", torch.Generator().manual_seed(cfg.seed))
        eval_model, compile_note = compile_model(model, example, rt)
    train_model = eval_model
    if rt.world > 1:  # evaluation skips DDP: every process scores the same batches, no gradient flows
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [torch.device(rt.device).index] if rt.device_type == "cuda" else None
        train_model = DDP(eval_model, device_ids=ids)
    batch_gen = torch.Generator().manual_seed(cfg.seed)
    eval_gen = torch.Generator().manual_seed(cfg.seed + 1)
    run = Run(cfg, rt, data, model, eval_model, train_model, optimizer, batch_gen, eval_gen,
              data.fixed(cfg.eval_iters, eval_gen), log, out, t0, budget_set=cfg.max_minutes == 0)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        run.iter, run.best_val = ckpt["iter"], ckpt["best_val_loss"]
        run.budget_set = run.budget_set or ckpt.get("budget_set", True)
        set_rng_state(ckpt["rng"], batch=batch_gen, eval=eval_gen)
    run.start_iter = run.iter
    if ckpt is not None:  # its last.pt holds this very step
        run.resumed_at = run.saved_at = run.iter
    log.open(resumed_at=run.iter if ckpt is not None else None)
    describe(run, resumed=ckpt is not None)
    if moved:
        log.say(f"note: a fresh run: moved the earlier run's {', '.join(moved)} to {out / 'previous'}/ "
                "(--resume continues a run instead)")
    for note in notes + ([compile_note] if compile_note else []):
        log.say(note)
    log.start_bar(run.iter, cfg.max_iters)
    return run


def resumed_config(cfg: TrainConfig, saved_dict: dict) -> tuple[TrainConfig, list[str]]:
    """The saved settings, except where the run happens; and notes on what the user's flags could
    not change and on saved settings this version does not know."""
    saved, unknown = TrainConfig.from_dict(saved_dict), TrainConfig.unknown_keys(saved_dict)
    for name in RESUME_MAY_CHANGE:
        setattr(saved, name, getattr(cfg, name))
    # Flags the user gave (values that differ from the preset's) but the saved run overrides.
    # Comparing with the preset keeps a plain --resume quiet: --max-minutes, for one, rewrote the
    # saved max_iters, which the user never typed.
    given = preset(cfg.preset) if cfg.preset in PRESETS else saved
    ignored = [f"{k}={getattr(cfg, k)!r} (saved {v!r})" for k, v in saved.to_dict().items()
               if k != "preset" and getattr(cfg, k) != v and getattr(cfg, k) != getattr(given, k)]
    notes = []
    if ignored:
        notes.append("note: a resumed run keeps the settings saved in last.pt; ignored: "
                     + ", ".join(ignored[:6]) + (" ..." if len(ignored) > 6 else ""))
    if unknown:
        notes.append("note: last.pt holds settings this version does not know; ignored: "
                     + ", ".join(unknown))
    return saved, notes


def describe(run: Run, resumed: bool) -> None:
    """Two lines on what is about to be trained, and where."""
    cfg, rt, data = run.cfg, run.rt, run.data
    n_params = sum(p.numel() for p in run.model.parameters())
    sizes = data.sizes()
    unit = "tokens" if data.form == "text" else "examples"
    run.log.say(f"{cfg.stage} ({cfg.preset or 'custom'}): {n_params:,} parameters ({n_params / 1e6:.2f}M); "
                f"vocab {data.tokenizer.vocab_size}; {cfg.data}: {sizes['train']:,} train / "
                f"{sizes['val']:,} val {unit}")
    where = f"{rt.device}, {str(rt.param_dtype).removeprefix('torch.')}"
    if not isinstance(rt.autocast, nullcontext):
        where += " with bfloat16 autocast"
    if run.eval_model is not run.model:
        where += ", compiled"
    if rt.device_type == "cpu":
        n_threads = torch.get_num_threads()
        where += f", {n_threads} thread" + ("s" if n_threads > 1 else "")
    if rt.world > 1:
        where += f", {rt.world} processes"
    budget = f" (budget {cfg.max_minutes} min)" if not run.budget_set else ""
    run.log.say(f"device {where}; {cfg.max_iters} steps of {cfg.grad_accum} x {data.tokens_per_batch} {unit}"
                + budget)
    if resumed:
        run.log.say(f"resuming {run.out / 'last.pt'} at iter {run.iter}")


class _Unwatched:
    """The stand-in for a diagnostics Monitor when --diag is off: every hook does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def watch(run: Run):
    """A diagnostics Monitor on the model (--diag), else a stand-in that records nothing."""
    if not run.cfg.diag:
        return _Unwatched()
    from nanogpt.diagnostics.monitor import Monitor

    return Monitor(run.model, every=run.cfg.diag_every, grad_accum=run.n_micro)

