"""The one training loop, for every stage, and its command line: `python -m nanogpt.train`.

    python -m nanogpt.train                        # gpt-cpu (gpt-gpu with CUDA) into runs/<preset>
    python -m nanogpt.train --preset mlp --max-iters 20000
    python -m nanogpt.train --resume               # continue runs/<preset>/last.pt exactly
    torchrun --nproc_per_node=2 -m nanogpt.train --preset smoke --grad-accum 2

Read `train()` first (57 lines): it is the algorithm, top to bottom, and its state (the step `it`, the best
val loss, the step last saved) lives in its own variables. One step draws grad_accum micro-batches,
averages their gradients, clips, updates, and moves the learning rate along its schedule. Every
eval_interval steps the model is scored on FIXED batches of each split (drawn once, from their own
generator, so that evaluating never shifts the training batches) and last.pt / best.pt are written.
Everything random lives in the checkpoint, so a resumed run continues exactly where the killed one
stopped. `set_up()` does everything before the first step.

What the default run adds to the plain loop is each one named module, called from one line:
nanogpt.precision (bfloat16 autocast), nanogpt.optim (Muon beside AdamW), nanogpt.budget
(--max-minutes), nanogpt.interrupt (Ctrl-C), nanogpt.checkpoint (atomic saves, exact resume),
nanogpt.distributed (torchrun) and nanogpt.runlog (what a run prints and writes).

Why one file of some 430 lines rather than several: everything below `train()` is a short named
step it calls (set-up, evaluate-and-save, the learning rate, stop and finish, the command line), in
the order the loop meets them, so a reader follows one step from `make train` to `optimizer.step()`
without leaving this file and gpt.py; none of them is longer than a screen.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from nanogpt import cli
from nanogpt.budget import Fit, TimeBudget, end_seconds
from nanogpt.checkpoint import (
    first_detail,
    load_checkpoint,
    resumed_config,
    run_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from nanogpt.config import TrainConfig
from nanogpt.data import Batches
from nanogpt.device import compile_model, pick_compile, pick_device, use_device
from nanogpt.distributed import Processes, join_processes, my_micro_batches, wrap
from nanogpt.errors import UserError
from nanogpt.flags import build_parser, config_from_namespace
from nanogpt.interrupt import StopRequests
from nanogpt.models import build_model, model_config_of
from nanogpt.optim import make_optimizer, set_lr
from nanogpt.precision import autocast_for, pick_dtype, weights_dtype
from nanogpt.runfolder import RunFolder
from nanogpt.runlog import RunLog, plan_lines, plot_losses

# ----------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, progress: bool = True, make_model=None, quiet: bool = False) -> dict:
    """Train one run; returns train_loss, val_loss, best_val_loss, iters, seconds, out_dir and
    interrupted. make_model(model_config) may build a variant of the stage's model (the lectures'
    ablations); quiet: print nothing but warnings (a run started from a lecture)."""
    s = set_up(cfg, progress, make_model, quiet)  # settings (or last.pt's), device, data, model, optimizer
    cfg, log = s.cfg, s.log
    it, best_val = s.start_iter, s.best_val
    saved_at = it if s.resumed else -1  # the step whose state last.pt holds
    budget = TimeBudget(cfg.max_minutes, s.t0, it, fitted=s.budget_fitted)  # --max-minutes
    monitor = watch(s.model, cfg, s.procs, log)  # --diag: statistics of every layer; else nothing
    n_micro = cfg.grad_accum // s.procs.world  # this process's micro-batches per step
    eval_seconds, loss, logged = 0.0, None, (time.time(), it)
    with StopRequests() as stop, s:
        while it < cfg.max_iters:
            # every eval_interval steps: score the fixed batches, save last.pt (and best.pt)
            if it % cfg.eval_interval == 0 and it != saved_at:
                _, best_val, eval_seconds = evaluate_and_save(s, it, best_val, budget)  # refits the budget
                saved_at = it if it > 0 else saved_at  # (an untrained model is not saved)
            elif cfg.save_interval and it % cfg.save_interval == 0 and it != saved_at:  # --save-interval
                check_finite(s.procs.mean(loss), "training loss", it, s)
                log.say(save(s, it, best_val, budget.fitted, "last.pt"))
                saved_at = it
            if s.procs.any(stop.requested(), s.device):  # Ctrl-C: after the save, so a resume goes on
                return stop_here(s, it, best_val, budget.fitted, saved_at, monitor)

            t_step = time.time()
            lrs = set_lr(s.optimizer, lr_at(it, cfg))  # warmup, then the schedule
            monitor.start_step(it)
            # forward and backward over the micro-batches: .grad sums the gradients of their mean
            loss = torch.zeros((), device=s.device, dtype=weights_dtype(cfg.dtype))
            for x, y, sync in my_micro_batches(lambda: s.data.draw("train", s.batch_gen), cfg.grad_accum,
                                               s.procs, s.ddp_model, s.device):
                with sync:  # under torchrun: average the gradients over the processes at the last one
                    with s.autocast:
                        _, micro_loss = s.ddp_model(x, y)
                    (micro_loss / n_micro).backward()
                loss += micro_loss.detach() / n_micro
            monitor.after_backward(it)
            measure = cfg.diag or (it + 1) % cfg.log_interval == 0  # the norm is logged at these steps
            norm = clip_gradients(s.model, cfg.grad_clip, measure)
            monitor.before_update(it)
            s.optimizer.step()
            s.optimizer.zero_grad(set_to_none=True)
            monitor.after_update(it, loss=loss, lr=lrs["lr"], grad_norm=norm, grad_clip=cfg.grad_clip)
            it += 1

            if it == 1:
                check_init_loss(loss.item(), s.data.tokenizer.vocab_size, log)
            fit = budget.step_done(it - 1, clock(s.device) - t_step, end_cost(s, eval_seconds),
                                   eval_seconds / cfg.eval_interval)
            if fit:  # the calibration is done: the schedule's length, from the measured pace
                cfg.max_iters = adopt(s, fit, it, first=True)
            if it % cfg.log_interval == 0:
                logged = log_step(s, it, loss, lrs, norm, logged)
        return finish(s, it, best_val, budget.fitted, monitor)


def lr_at(it: int, cfg: TrainConfig) -> float:
    """The learning rate of step `it`: linear warmup, then cosine to min_lr, a step, constant, or
    warmup-stable-decay (flat at lr, then a straight line down to min_lr over the last stretch)."""
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "step":
        return cfg.lr if it < cfg.step_decay_at * cfg.max_iters else cfg.lr / 10
    if cfg.lr_schedule == "wsd":
        decay_start = cfg.step_decay_at * cfg.max_iters
        progress = min(1.0, max(0.0, (it - decay_start) / max(1.0, cfg.max_iters - decay_start)))
        return cfg.lr + progress * (cfg.min_lr - cfg.lr)
    progress = min(1.0, (it - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def clip_gradients(model: torch.nn.Module, max_norm: float, measure: bool):
    """Clip the gradient's norm to max_norm (0: no clipping); return the norm before clipping (a
    tensor), or None when nothing clips and no one asked for the norm (it costs a pass over .grad)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in params]) if measure else None


@torch.no_grad()
def mean_loss(model, batches, device: str, autocast=None) -> float:
    """The loss averaged over every target in `batches` (model in eval mode meanwhile)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        with autocast or nullcontext():
            _, loss = model(x.to(device), y.to(device))
        total += loss.item() * y.numel()
        count += y.numel()
    model.train(was_training)
    return total / count


# ----------------------------------------------------------------------------- before the first step


@dataclass
class Setup:
    """What the loop starts from: settings, where it runs, data, model, optimizer, generators.
    The loop's moving state (step, best val loss) is not here: it lives in train()."""

    cfg: TrainConfig
    device: str
    autocast: object  # bfloat16 autocast, or a context that does nothing (nanogpt.precision)
    procs: Processes  # this process among torchrun's (rank 0 of 1 without torchrun)
    data: Batches
    model: torch.nn.Module  # the plain module: saved, clipped, watched by --diag
    compiled: torch.nn.Module  # the same weights, compiled under --compile (else `model` itself)
    ddp_model: torch.nn.Module  # `compiled`, wrapped in DDP under torchrun (gradients averaged)
    optimizer: object  # a torch optimizer, or nanogpt.optim.Optimizers (Muon beside AdamW)
    batch_gen: torch.Generator  # the training batches
    eval_gen: torch.Generator  # the fixed evaluation batches, drawn once
    eval_batches: dict
    log: RunLog
    out: Path
    folder: RunFolder | None  # the locked run folder (rank 0; None for the other processes)
    t0: float
    start_iter: int = 0
    best_val: float = math.inf
    budget_fitted: bool = False
    resumed: bool = False

    def __enter__(self) -> Setup:
        return self

    def __exit__(self, *exc) -> None:
        self.log.close()
        if self.folder is not None:
            self.folder.release()
        self.procs.close()


def set_up(cfg: TrainConfig, progress: bool = True, make_model=None, quiet: bool = False) -> Setup:
    """Everything before the first step: the settings (last.pt's on --resume), the device, the run
    folder (locked), the data, a seeded model, the optimizer, the generators; on resume, every
    state put back. A fresh run moves an earlier run's files aside only once all of this worked."""
    t0 = time.time()
    ckpt, notes = None, []
    if cfg.resume:
        ckpt = load_checkpoint(Path(cfg.out_dir) / "last.pt")
        missing = {"config", "optimizer", "rng", "iter", "best_val_loss"} - ckpt.keys()
        if missing:
            raise UserError(f"{Path(cfg.out_dir) / 'last.pt'} cannot be resumed: it holds no "
                            f"{', '.join(sorted(missing))} (a model alone; start a fresh run)")
        cfg, notes = resumed_config(cfg, ckpt["config"])
    procs, device = join_processes(pick_device(cfg.device), cfg.grad_accum)  # torchrun, or one process
    use_device(device, cfg.threads, procs.world)
    kind = device.split(":")[0]  # cpu, cuda or mps
    dtype = pick_dtype(cfg.dtype, kind)
    autocast = autocast_for(dtype, kind)
    out = Path(cfg.out_dir)
    folder = RunFolder.claim(out) if procs.master else None  # one live run per folder
    try:
        s = build_setup(cfg, device, autocast, dtype, procs, out, folder, t0, progress, make_model, quiet)
    except BaseException:
        if folder is not None:
            folder.release()
        procs.close()
        raise
    if ckpt is not None:
        try:
            s.model.load_state_dict(ckpt["model"])
            s.optimizer.load_state_dict(ckpt["optimizer"])
            set_rng_state(ckpt["rng"], batch=s.batch_gen, eval=s.eval_gen)
        except (RuntimeError, KeyError, ValueError, TypeError) as e:  # the data changed, or the file
            s.__exit__()
            raise UserError(f"{out / 'last.pt'} does not fit this run (the data or its vocabulary changed, "
                            f"or the file is damaged): {first_detail(e)}") from None
        s.start_iter, s.best_val, s.resumed = ckpt["iter"], ckpt["best_val_loss"], True
        s.budget_fitted = ckpt.get("budget_set", True)
    moved = folder.archive_earlier() if folder is not None and ckpt is None else None
    s.log.open(resumed_at=s.start_iter if s.resumed else None)
    budget_open = cfg.max_minutes > 0 and not s.budget_fitted
    if budget_open and cfg.max_minutes * 60 < 10:
        s.log.say(f"warning: --max-minutes {cfg.max_minutes} is {cfg.max_minutes * 60:.2g} s, less than the "
                  "time budget's own calibration (60 steps): the run takes at least those")
    for line in plan_lines(cfg, s.data, s.model, device, dtype, s.compiled is not s.model, procs.world,
                           budget_open):
        s.log.say(line)
    if s.resumed:
        s.log.say(f"resuming {out / 'last.pt'} at iter {s.start_iter}")
    if moved:
        s.log.say(f"note: a fresh run: the earlier run's files are kept in {moved}/ "
                  "(--resume continues a run instead)")
    for note in notes:
        s.log.say(note)
    s.log.start_bar(s.start_iter, cfg.max_iters)
    return s


def build_setup(cfg, device, autocast, dtype, procs, out, folder, t0, progress, make_model, quiet) -> Setup:
    """The data, a seeded model on its device, the optimizer, the generators and the log."""
    log = RunLog(out, active=procs.master, progress=progress, quiet=quiet)
    data = Batches(cfg)
    torch.manual_seed(cfg.seed)  # every process starts from the same weights
    model_config = model_config_of(cfg, data.tokenizer.vocab_size)
    # make_model(model_config) -> a module: a lecture's own variant of the stage's model (its
    # checkpoints then load only through that same function, not through load_model)
    model = make_model(model_config) if make_model else build_model(cfg.stage, model_config)
    model.to(device=device, dtype=weights_dtype(dtype))
    torch.manual_seed(cfg.seed + procs.rank)  # each process its own dropout masks
    optimizer = make_optimizer(model, cfg, device.split(":")[0])
    compiled = model
    if pick_compile(cfg.compile, device.split(":")[0]):  # tried on a batch of its own
        example = data.draw("train", torch.Generator().manual_seed(cfg.seed))
        compiled, warning = compile_model(model, example, device, autocast)
        if warning:
            log.say(warning)
    batch_gen = torch.Generator().manual_seed(cfg.seed)
    eval_gen = torch.Generator().manual_seed(cfg.seed + 1)
    return Setup(cfg, device, autocast, procs, data, model, compiled, wrap(compiled, procs, device),
                 optimizer, batch_gen, eval_gen, data.fixed(cfg.eval_iters, eval_gen), log, out, folder, t0)


class NoMonitor:
    """The stand-in for a diagnostics Monitor when --diag is off: its five hooks do nothing."""

    def start_step(self, it): pass
    def after_backward(self, it): pass
    def before_update(self, it): pass
    def after_update(self, it, **numbers): pass
    def finish(self, out_dir): pass


def watch(model, cfg: TrainConfig, procs: Processes, log: RunLog):
    """A diagnostics Monitor on the model (--diag) that prints through the run's log, else a
    NoMonitor."""
    if not cfg.diag:
        return NoMonitor()
    from nanogpt.diagnostics.monitor import Monitor  # the lens imports the models, never the reverse

    return Monitor(model, every=cfg.diag_every, log=log.say, grad_accum=cfg.grad_accum // procs.world)


# ----------------------------------------------------------------------------- evaluating, saving, ending


def save(s: Setup, it: int, best_val: float, budget_fitted: bool, *names: str) -> str:
    """Write last.pt and/or best.pt (rank 0 only); returns what was written, for the log line."""
    if s.procs.master:
        ckpt = run_checkpoint(s.model, s.optimizer, s.cfg, s.data.tokenizer, it, best_val, budget_fitted,
                              batch=s.batch_gen, eval=s.eval_gen)
        for name in names:
            save_checkpoint(ckpt, s.out / name)
    return f"saved {' and '.join(names)} at iter {it}"


def evaluate_and_save(s: Setup, it: int, best_val: float, budget: TimeBudget | None):
    """Score the fixed batches, log, refit the time budget, and write last.pt (and best.pt when val
    improved); the refit comes first, so that last.pt holds the schedule the run follows.
    Returns the losses, the best val loss and the seconds the evaluation took."""
    t = time.time()
    losses = {split: mean_loss(s.compiled, b, s.device, s.autocast) for split, b in s.eval_batches.items()}
    eval_seconds = time.time() - t
    for split, value in losses.items():
        check_finite(value, f"{split} loss", it, s)
    improved = losses["val"] < best_val
    best_val = min(best_val, losses["val"])
    s.log.log(kind="eval", iter=it, train_loss=losses["train"], val_loss=losses["val"],
              time=round(time.time() - s.t0, 3))
    if budget is not None and (fit := budget.refit(it, end_cost(s, eval_seconds))):
        s.cfg.max_iters = adopt(s, fit, it, first=False)
    line = f"iter {it}: train {losses['train']:.4f}, val {losses['val']:.4f}"
    if it > 0:  # an untrained model is not worth a file
        line += "; " + save(s, it, best_val, budget is None or budget.fitted,
                            *(("last.pt", "best.pt") if improved else ("last.pt",)))
    s.log.say(line)
    return losses, best_val, eval_seconds


def end_cost(s: Setup, eval_seconds: float) -> float:
    """What the end of this run costs in seconds, for the time budget (nanogpt.budget)."""
    sizes = s.data.sizes()
    final = sizes["val"] if s.data.form == "text" else sizes["train"] + sizes["val"]
    return end_seconds(eval_seconds, len(s.eval_batches) * s.cfg.eval_iters * s.data.tokens_per_batch, final)


def adopt(s: Setup, fit: Fit, it: int, first: bool) -> int:
    """The budget's max_iters (rank 0's, on every process), logged; the first fit is said too."""
    max_iters = s.procs.from_rank0(fit.max_iters, s.device)
    if first:
        s.log.say(f"time budget {s.cfg.max_minutes} min: {fit.seconds_per_step:.3f} s/step with evaluations "
                  f"-> max_iters {max_iters} (refitted at every evaluation)")
    s.log.log(kind="budget", iter=it, seconds_per_step=fit.seconds_per_step, max_iters=max_iters)
    return max_iters


def check_finite(value: float, what: str, it: int, s: Setup) -> None:
    """Stop the run (writing nothing more) when a loss is NaN or infinite."""
    if not math.isfinite(value):
        best = s.out / "best.pt"
        kept = f"{best} is kept" if best.is_file() else "this run wrote no best.pt"
        raise UserError(f"the {what} is {value} at iter {it}: training diverged and stopped; {kept}; "
                        "try a lower --lr or --grad-clip 1")


def check_init_loss(loss: float, vocab_size: int, log: RunLog) -> None:
    """At init every token should be about equally likely: a loss well above ln(vocab) means the
    initial predictions are confidently wrong."""
    expected = math.log(vocab_size)
    if loss > expected + 0.3:
        log.say(f"warning: the loss at init ({loss:.3f}) is {loss - expected:.2f} above ln(vocab) = "
                f"{expected:.3f}: the initial predictions are too confident (check the output layer's init)")


def clock(device: str) -> float:
    """The time, once the device has finished what it was given (a GPU runs behind python)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.time()


def log_step(s: Setup, it: int, loss: torch.Tensor, lrs: dict, norm, logged: tuple) -> tuple:
    """The training loss (averaged over the processes), each lr, the gradient norm and the speed:
    logged, checked, and shown on the progress bar. Returns (time, it) of this log."""
    loss = s.procs.mean(loss)
    check_finite(loss, "training loss", it, s)
    now = time.time()
    tok_s = (it - logged[1]) * s.cfg.grad_accum * s.data.tokens_per_batch / max(now - logged[0], 1e-9)
    s.log.log(kind="train", iter=it, loss=loss, **lrs, tokens_per_s=round(tok_s, 1),
              grad_norm=None if norm is None else norm.item(), time=round(now - s.t0, 3))
    s.log.move_bar(it, s.cfg.max_iters, loss=f"{loss:.4f}", tok_s=f"{tok_s:,.0f}")
    return now, it


def result(s: Setup, it: int, best_val: float, interrupted: bool, losses: dict | None = None) -> dict:
    """What train() returns."""
    losses = losses or {"train": None, "val": None}
    return {"iters": it, "out_dir": str(s.out), "interrupted": interrupted, "best_val_loss": best_val,
            "train_loss": losses["train"], "val_loss": losses["val"], "seconds": time.time() - s.t0}


def stop_here(s: Setup, it: int, best_val: float, budget_fitted: bool, saved_at: int, monitor) -> dict:
    """Ctrl-C or SIGTERM: make sure last.pt holds this step, and say how to continue."""
    if saved_at != it:
        save(s, it, best_val, budget_fitted, "last.pt")
    s.log.say(f"interrupted at iter {it}: saved last.pt; continue with --resume")
    monitor.finish(str(s.out))
    return result(s, it, best_val, interrupted=True)


def finish(s: Setup, it: int, best_val: float, budget_fitted: bool, monitor) -> dict:
    """The final evaluation (on the full splits where affordable), the loss curve, the result."""
    s.log.move_bar(it, s.cfg.max_iters)
    losses, best_val, _ = evaluate_and_save(s, it, best_val, None)
    splits = ("train", "val") if s.data.form == "examples" else ("val",)  # makemore's: every example
    for split in splits:  # the text's val split: every window side by side; train stays an estimate
        losses[split] = mean_loss(s.compiled, s.data.full(split), s.device, s.autocast)
    check_finite(losses["val"], "val loss", it, s)
    s.log.log(kind="final", iter=it, train_loss=losses["train"], val_loss=losses["val"])
    monitor.finish(str(s.out))
    if s.procs.master:
        plot_losses(s.out / "metrics.jsonl", s.out / "loss.png")
    s.log.say(f"done: {it} steps in {(time.time() - s.t0) / 60:.1f} min; final train {losses['train']:.4f}, "
              f"val {losses['val']:.4f} (full split); files in {s.out}/")
    return result(s, it, best_val, interrupted=False, losses=losses)


def main(argv=None) -> int:
    """The command line: `python -m nanogpt.train --help`; exit status 130 when interrupted."""
    return cli.invoke(lambda args: 130 if train(config_from_namespace(args))["interrupted"] else 0,
                      build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
