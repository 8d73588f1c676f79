"""The one training loop, for every stage, and its command line: `python -m nanogpt.train`.

    python -m nanogpt.train                        # gpt-cpu (gpt-gpu with CUDA) into runs/<preset>
    python -m nanogpt.train --preset mlp --max-iters 20000
    python -m nanogpt.train --resume               # continue runs/<preset>/last.pt exactly
    torchrun --nproc_per_node=2 -m nanogpt.train --preset smoke --grad-accum 2

Read `train()` first: it is the algorithm, top to bottom. One step draws grad_accum micro-batches,
averages their gradients, clips, updates, and moves the learning rate along its schedule. Every
eval_interval steps the model is scored on FIXED batches of each split (drawn once, from their own
generator, so that evaluating never shifts the training batches) and last.pt / best.pt are
written. Everything random lives in the checkpoint, so a resumed run continues exactly where the
killed one stopped. The rest are named helpers: `start_run` below (settings, model, optimizer),
nanogpt.runtime (device, precision, processes, Ctrl-C), nanogpt.budget (--max-minutes),
nanogpt.batches (the data) and nanogpt.runlog (what a run prints and writes).

Under torchrun every process draws the same global batch from the same generator and keeps its
own share of the micro-batches: N processes with grad_accum=N compute exactly the step that one
process computes with grad_accum=N (with dropout 0: each process draws its own dropout masks).
Only rank 0 writes files and prints; so a resumed multi-process run gives every process rank 0's
saved random state, and with dropout its masks after the resume differ from an unbroken run's.
"""

from __future__ import annotations

import math
import time

import torch

from nanogpt import cli
from nanogpt.budget import TimeBudget
from nanogpt.config import TrainConfig, build_parser, config_from_namespace
from nanogpt.errors import UserError
from nanogpt.run import Run, start_run, watch
from nanogpt.runlog import plot_losses
from nanogpt.runtime import Runtime, StopRequests

# ----------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, progress: bool = True, make_model=None) -> dict:
    """Train one run; returns train_loss, val_loss, best_val_loss, iters, seconds, out_dir.
    make_model(model_config) may build a variant of the stage's model (the lectures' ablations)."""
    run = start_run(cfg, progress, make_model)  # settings (or last.pt's), device, data, model, optimizer
    cfg, rt = run.cfg, run.rt
    monitor = watch(run)  # --diag: activation/gradient/update statistics; else hooks that do nothing
    budget = TimeBudget(run)  # --max-minutes: max_iters from the measured pace
    with StopRequests(rt) as stop, run:
        while run.iter < cfg.max_iters:
            it = run.iter
            # every eval_interval steps: score the fixed batches, save last.pt (and best.pt)
            if it % cfg.eval_interval == 0 and it != run.resumed_at:  # a resumed run saved this one
                evaluate_and_save(run, budget)
            elif cfg.save_interval and it % cfg.save_interval == 0 and it > run.start_iter:  # --save-interval
                check_finite(run, rt.mean(run.last_loss), "training loss")
                run.log.say(run.save("last.pt"))
            if stop.requested():  # after the evaluation: a run stopped here resumes past it
                return stop_here(run, monitor)

            t_step = time.time()
            lr = lr_at(it, cfg)  # warmup, then the schedule
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            monitor.start_step(it)
            # forward and backward over the micro-batches: .grad sums the gradients of their mean
            loss = torch.zeros((), device=rt.device, dtype=rt.param_dtype)
            for x, y, sync in run.micro_batches():
                with sync:  # under DDP: average the gradients over the processes at the last one
                    with rt.autocast:
                        _, micro_loss = run.train_model(x, y)
                    (micro_loss / run.n_micro).backward()
                loss += micro_loss.detach() / run.n_micro
            monitor.after_backward(it)
            norm = clip_gradients(run.model, cfg.grad_clip,
                                  measure=cfg.diag or (it + 1) % cfg.log_interval == 0)
            monitor.before_update(it)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
            monitor.after_update(it, loss=loss, lr=lr, grad_norm=norm, grad_clip=cfg.grad_clip)
            run.iter, run.last_loss = it + 1, loss

            if it == 0:
                check_init_loss(run, loss.item())
            budget.step_done(it, rt.clock() - t_step)
            if run.iter % cfg.log_interval == 0:
                log_step(run, loss, lr, norm)
        return finish(run, monitor)


def lr_at(it: int, cfg: TrainConfig) -> float:
    """The learning rate of step `it`: linear warmup, then cosine to min_lr, a step, or constant."""
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "step":
        return cfg.lr if it < cfg.step_decay_at * cfg.max_iters else cfg.lr / 10
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
def mean_loss(model, batches, rt: Runtime) -> float:
    """The loss averaged over every target in `batches` (model in eval mode meanwhile)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        with rt.autocast:
            _, loss = model(x.to(rt.device), y.to(rt.device))
        total += loss.item() * y.numel()
        count += y.numel()
    model.train(was_training)
    return total / count


# ----------------------------------------------------------------------------- evaluating, saving, ending


def evaluate_and_save(run: Run, budget: TimeBudget | None = None) -> dict:
    """Score the fixed batches, log, and write last.pt (and best.pt when val improved); before the
    save, refit the time budget, so that last.pt holds the schedule the run follows."""
    t = time.time()
    losses = {split: mean_loss(run.eval_model, b, run.rt) for split, b in run.eval_batches.items()}
    run.eval_seconds = time.time() - t
    for split, value in losses.items():
        check_finite(run, value, f"{split} loss")
    improved = losses["val"] < run.best_val
    run.best_val = min(run.best_val, losses["val"])
    run.log.log(kind="eval", iter=run.iter, train_loss=losses["train"], val_loss=losses["val"],
                time=round(time.time() - run.t0, 3))
    if budget is not None:
        budget.refit()
    line = f"iter {run.iter}: train {losses['train']:.4f}, val {losses['val']:.4f}"
    if run.iter > 0:  # an untrained model is not worth a file
        line += "; " + run.save(*(("last.pt", "best.pt") if improved else ("last.pt",)))
    run.log.say(line)
    return losses


def check_finite(run: Run, value: float, what: str) -> None:
    """Stop the run (writing nothing more) when a loss is NaN or infinite."""
    if not math.isfinite(value):
        kept = f"best.pt (val {run.best_val:.4f}) is kept" if math.isfinite(run.best_val) else \
            "this run wrote no best.pt"
        raise UserError(f"the {what} is {value} at iter {run.iter}: training diverged and "
                        f"stopped; {kept}; try a lower --lr or --grad-clip 1")


def check_init_loss(run: Run, loss: float) -> None:
    """At init every token should be about equally likely: a loss well above ln(vocab) means the
    initial predictions are confidently wrong."""
    expected = math.log(run.data.tokenizer.vocab_size)
    if loss > expected + 0.3:
        run.log.say(f"warning: the loss at init ({loss:.3f}) is {loss - expected:.2f} above "
                    f"ln(vocab) = {expected:.3f}: the initial predictions are too confident "
                    "(check the output layer's init)")


def log_step(run: Run, loss: torch.Tensor, lr: float, norm) -> None:
    """The training loss (averaged over the processes), lr, gradient norm and speed: logged,
    checked, and shown on the progress bar."""
    loss = run.rt.mean(loss)
    check_finite(run, loss, "training loss")
    now = time.time()
    tokens = (run.iter - run.logged[1]) * run.n_tokens_per_step
    tok_s = tokens / max(now - run.logged[0], 1e-9)
    run.logged = (now, run.iter)
    run.log.log(kind="train", iter=run.iter, loss=loss, lr=lr, tokens_per_s=round(tok_s, 1),
                grad_norm=None if norm is None else norm.item(), time=round(now - run.t0, 3))
    run.log.move_bar(run.iter, run.cfg.max_iters, loss=f"{loss:.4f}", tok_s=f"{tok_s:,.0f}")


def stop_here(run: Run, monitor) -> dict:
    """Ctrl-C or SIGTERM: make sure last.pt holds this step, and say how to continue."""
    if run.saved_at != run.iter:
        run.save("last.pt")
    run.log.say(f"interrupted at iter {run.iter}: saved last.pt; continue with --resume")
    monitor.finish(str(run.out))
    return {"iters": run.iter, "out_dir": str(run.out), "interrupted": True, "best_val_loss": run.best_val,
            "train_loss": None, "val_loss": None, "seconds": time.time() - run.t0}


def finish(run: Run, monitor) -> dict:
    """The final evaluation (on the full splits where affordable), the loss curve, the result."""
    run.log.move_bar(run.iter, run.cfg.max_iters)
    losses = evaluate_and_save(run)
    if run.data.form == "examples":  # makemore's numbers: every example of each split
        losses = {s: mean_loss(run.eval_model, run.data.full(s), run.rt) for s in ("train", "val")}
    else:  # the whole val split in windows side by side; train stays an estimate
        losses["val"] = mean_loss(run.eval_model, run.data.full("val"), run.rt)
    check_finite(run, losses["val"], "val loss")
    run.log.log(kind="final", iter=run.iter, train_loss=losses["train"], val_loss=losses["val"])
    seconds = time.time() - run.t0
    monitor.finish(str(run.out))
    if run.rt.master:
        plot_losses(run.out / "metrics.jsonl", run.out / "loss.png")
    run.log.say(f"done: {run.iter} steps in {seconds / 60:.1f} min; final train {losses['train']:.4f}, "
                f"val {losses['val']:.4f} (full split); files in {run.out}/")
    return {"iters": run.iter, "out_dir": str(run.out), "interrupted": False, "best_val_loss": run.best_val,
            "train_loss": losses["train"], "val_loss": losses["val"], "seconds": seconds}


def main(argv=None) -> int:
    """The command line: `python -m nanogpt.train --help`; exit status 130 when interrupted."""
    return cli.invoke(lambda args: 130 if train(config_from_namespace(args))["interrupted"] else 0,
                   build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
