"""The one training loop, for every stage, and its command line: `python -m nanogpt.train`.

    python -m nanogpt.train                        # gpt-cpu (gpt-gpu with CUDA) into runs/<preset>
    python -m nanogpt.train --preset mlp --max-iters 20000
    python -m nanogpt.train --resume               # continue runs/<preset>/last.pt exactly
    torchrun --nproc_per_node=2 -m nanogpt.train --preset smoke --grad-accum 2

One step: draw grad_accum micro-batches from the batch generator, average their gradients, clip,
update, move the learning rate along its schedule. Every eval_interval steps the model is scored
on FIXED batches of each split (drawn once, from their own generator, so that evaluating never
shifts the training batches) and last.pt / best.pt are written. Everything random lives in
the checkpoint, so a resumed run continues exactly where the killed one stopped.

Under torchrun every process draws the same global batch from the same generator and keeps its
own share of the micro-batches: N processes with grad_accum=N compute exactly the step that one
process computes with grad_accum=N (with dropout 0: each process draws its own dropout masks).
Only rank 0 writes files and prints; so a resumed multi-process run gives every process rank 0's
saved random state, and with dropout its masks after the resume differ from an unbroken run's.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from nanogpt import data as datalib
from nanogpt.checkpoint import (
    FORMAT,
    build_model,
    clean_state_dict,
    load_checkpoint,
    model_config_dict,
    pick_device,
    rng_state,
    save_checkpoint,
    set_rng_state,
    versions,
)
from nanogpt.config import PRESETS, TrainConfig, config_from_args, preset
from nanogpt.errors import UserError
from nanogpt.tokenizer import CharTokenizer, GPT2Tokenizer

# TrainConfig fields that become each stage's model config (with vocab_size).
MODEL_FIELDS = {
    "bigram": (),
    "mlp": ("block_size", "n_embd", "n_hidden", "n_layer", "batchnorm", "init"),
    "gpt": ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "tie_weights"),
}
# What may differ from the saved settings when a run is resumed: where and how it runs, not what.
RESUME_MAY_CHANGE = ("device", "compile", "threads", "diag", "diag_every", "resume", "out_dir")
# --max-minutes measures the step time over CALIBRATION_STEPS steps (enough to smooth out blips),
# after skipping the first CALIBRATION_SKIP, which pay for warm-up (allocator, caches, compilation).
CALIBRATION_SKIP, CALIBRATION_STEPS = 10, 50


# ----------------------------------------------------------------------------- where it runs


@dataclass
class Runtime:
    """The device, the precision, and this process's place among the processes."""

    device: str
    param_dtype: torch.dtype  # the weights' dtype (float64 for exactness checks)
    autocast: object  # a context manager: bfloat16 autocast on CUDA, else nothing
    rank: int = 0
    world: int = 1
    own_group: bool = False  # True when this run created the process group (and must end it)

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device and precision; join the process group when launched by torchrun."""
    device = pick_device(cfg.device)
    rank, world, own_group = 0, 1, False
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # launched by torchrun
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
            own_group = True
    if cfg.grad_accum % world:
        raise UserError(f"--grad-accum ({cfg.grad_accum}) must be a multiple of the number of "
                        f"processes ({world}): each process computes grad_accum/{world} micro-batches")
    device_type = device.split(":")[0]
    if device_type == "cpu":  # the cores are shared among the processes on this machine
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world))
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device_type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    autocast = nullcontext()
    if dtype == "bfloat16":  # weights stay float32; matmuls run in bfloat16
        autocast = torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    param_dtype = torch.float64 if dtype == "float64" else torch.float32
    return Runtime(device, param_dtype, autocast, rank, world, own_group)


# ----------------------------------------------------------------------------- data


class Batches:
    """A dataset cut for one stage: random training batches, fixed evaluation batches, full splits.

    Two forms: running text (GPT, bigram), where a batch is B windows of block_size tokens and
    the targets are the same windows shifted by one, (B, T) -> (B, T); and fixed-context examples
    (MLP, bigram on names), where a batch is B contexts and the one id after each, (B, T) -> (B,).
    """

    def __init__(self, cfg: TrainConfig):
        self.block_size, self.batch_size = cfg.block_size, cfg.batch_size
        text = datalib.load_text(cfg.data)
        examples = cfg.stage == "mlp" or (cfg.stage == "bigram" and cfg.data == "names")
        if cfg.data == "names" and examples:
            self._names(text, cfg)
        else:
            self.tokenizer = GPT2Tokenizer() if cfg.tokenizer == "gpt2" else CharTokenizer.from_text(text)
            ids = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
            train, val = datalib.split_text(ids)
            if examples:
                self.splits = {"train": datalib.text_examples(train, cfg.block_size),
                               "val": datalib.text_examples(val, cfg.block_size)}
            else:
                self.splits = {"train": train, "val": val}
        self.form = "examples" if examples else "text"
        self.unsqueeze = cfg.stage == "bigram" and examples  # the bigram wants targets (B, 1)

    def _names(self, text: str, cfg: TrainConfig):
        # makemore's convention: '.' marks both ends of a name; contexts of block_size ids
        words = text.split()
        self.tokenizer = CharTokenizer(["."] + sorted(set("".join(words))))
        block = 1 if cfg.stage == "bigram" else cfg.block_size
        train, val, _test = datalib.split_names(words)
        self.splits = {name: datalib.context_examples(w, self.tokenizer.stoi, block)
                       for name, w in (("train", train), ("val", val))}

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * (self.block_size if self.form == "text" else 1)

    def sizes(self) -> dict:
        """How many tokens (or examples) each split holds."""
        return {k: len(v) if self.form == "text" else len(v[0]) for k, v in self.splits.items()}

    def draw(self, split: str, generator: torch.Generator):
        """One random batch (x, y) of a split."""
        if self.form == "text":
            return datalib.get_batch(self.splits[split], self.block_size, self.batch_size, generator)
        x, y = datalib.sample_examples(*self.splits[split], self.batch_size, generator)
        return x, (y[:, None] if self.unsqueeze else y)

    def fixed(self, n: int, generator: torch.Generator) -> dict:
        """n batches per split, drawn once: every evaluation scores the same ones."""
        return {split: [self.draw(split, generator) for _ in range(n)] for split in self.splits}

    def full(self, split: str, rows: int = 4096):
        """The whole split in batches: every example, or the text cut into windows side by side."""
        if self.form == "text":
            ids, T = self.splits[split], self.block_size
            n = (len(ids) - 1) // T
            X, Y = ids[: n * T].view(n, T), ids[1 : n * T + 1].view(n, T)  # (n, T) each
            # about `rows` positions a batch, and at most 4M logits (GPT-2's vocabulary is large)
            rows = max(1, min(rows // T, 2**22 // (T * self.tokenizer.vocab_size)))
        else:
            X, Y = self.splits[split]
            Y = Y[:, None] if self.unsqueeze else Y
        for i in range(0, len(X), rows):
            yield X[i : i + rows], Y[i : i + rows]


# ----------------------------------------------------------------------------- optimisation


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device_type: str):
    """AdamW or SGD; weight decay only on matrices (2-D and up), never on biases or norms' gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr)
    fused = device_type == "cuda"  # one kernel for all parameters
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


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


# ----------------------------------------------------------------------------- the run


class Trainer:
    """One training run: setup, the loop, evaluations, checkpoints, and the end."""

    def __init__(self, cfg: TrainConfig, progress: bool = True):
        self.t0 = time.time()
        self.out = Path(cfg.out_dir)
        ckpt, ignored = None, []
        if cfg.resume:  # the saved settings win, except where the run happens
            ckpt = load_checkpoint(self.out / "last.pt")
            saved = TrainConfig.from_dict(ckpt["config"])
            for name in RESUME_MAY_CHANGE:
                setattr(saved, name, getattr(cfg, name))
            # Flags the user gave (values that differ from the preset's) but the saved run overrides.
            # Comparing with the preset keeps a plain --resume quiet: --max-minutes, for one,
            # rewrote the saved max_iters, which the user never typed.
            given = preset(cfg.preset) if cfg.preset in PRESETS else saved
            ignored = [f"{k}={getattr(cfg, k)!r} (saved {v!r})" for k, v in saved.to_dict().items()
                       if k != "preset" and getattr(cfg, k) != v and getattr(cfg, k) != getattr(given, k)]
            cfg = saved
        self.cfg = cfg
        self.rt = rt = setup_runtime(cfg)
        self.data = Batches(cfg)
        self.progress = progress and rt.master

        # the model: seeded, so that every process starts from the same weights
        torch.manual_seed(cfg.seed)
        settings = {name: getattr(cfg, name) for name in MODEL_FIELDS[cfg.stage]}
        self.model = build_model(cfg.stage, {"vocab_size": self.data.tokenizer.vocab_size, **settings})
        self.model.to(device=rt.device, dtype=rt.param_dtype)
        torch.manual_seed(cfg.seed + rt.rank)  # each process its own dropout masks
        self.optimizer = make_optimizer(self.model, cfg, rt.device_type)
        # Three handles on one set of weights: self.model is the plain module (saved, clipped,
        # watched by --diag); eval_model is it compiled under --compile; train_model wraps that in
        # DDP under torchrun, so that backward averages gradients over the processes. Evaluation
        # skips DDP: every process scores the same fixed batches, and no gradient flows.
        self.eval_model = torch.compile(self.model) if cfg.compile else self.model
        self.train_model = self.eval_model
        if rt.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [torch.device(rt.device).index] if rt.device_type == "cuda" else None
            self.train_model = DDP(self.eval_model, device_ids=ids)

        # randomness: training batches from one generator, the fixed evaluation batches from another
        self.batch_gen = torch.Generator().manual_seed(cfg.seed)
        self.eval_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.eval_batches = self.data.fixed(cfg.eval_iters, self.eval_gen)

        self.iter, self.best_val = 0, math.inf
        # False only while --max-minutes still has to turn measured step time into max_iters
        self.max_iters_final = cfg.max_minutes == 0
        self.eval_seconds = 0.0
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.iter, self.best_val = ckpt["iter"], ckpt["best_val_loss"]
            self.max_iters_final = self.max_iters_final or ckpt.get("budget_set", True)
            set_rng_state(ckpt["rng"], batch=self.batch_gen, eval=self.eval_gen)
        self.start_iter = self.iter
        self.monitor = self._monitor() if cfg.diag else None
        self.stop_requested = False
        self.pace = None  # (time, iter) from which --max-minutes measures the pace of the run
        if rt.master:
            self.out.mkdir(parents=True, exist_ok=True)
            self._open_metrics(resumed=ckpt is not None)
            self._describe(resumed=ckpt is not None)
            if ignored:
                self.say("note: a resumed run keeps the settings saved in last.pt; ignored: "
                         + ", ".join(ignored[:6]) + (" ..." if len(ignored) > 6 else ""))

    # --------------------------------------------------------------- telling what happens

    def say(self, msg: str):
        """Print on rank 0, above the progress bar, at once."""
        if self.rt.master:
            tqdm.write(msg, file=sys.stdout)
            sys.stdout.flush()

    def _describe(self, resumed: bool):
        cfg, rt = self.cfg, self.rt
        n_params = sum(p.numel() for p in self.model.parameters())
        sizes = self.data.sizes()
        unit = "tokens" if self.data.form == "text" else "examples"
        self.say(f"{cfg.stage} ({cfg.preset or 'custom'}): {n_params:,} parameters ({n_params / 1e6:.2f}M); "
                 f"vocab {self.data.tokenizer.vocab_size}; {cfg.data}: {sizes['train']:,} train / "
                 f"{sizes['val']:,} val {unit}")
        where = f"{rt.device}, {str(rt.param_dtype).removeprefix('torch.')}"
        if not isinstance(rt.autocast, nullcontext):
            where += " with bfloat16 autocast"
        if rt.device_type == "cpu":
            n_threads = torch.get_num_threads()
            where += f", {n_threads} thread" + ("s" if n_threads > 1 else "")
        if rt.world > 1:
            where += f", {rt.world} processes"
        self.say(f"device {where}; {cfg.max_iters} steps of {cfg.grad_accum} x "
                 f"{self.data.tokens_per_batch} {unit}" + (f" (budget {cfg.max_minutes} min)"
                                                          if not self.max_iters_final else ""))
        if resumed:
            self.say(f"resuming {self.out / 'last.pt'} at iter {self.iter}")

    def _open_metrics(self, resumed: bool):
        # On resume, drop what the killed run logged after its checkpoint: it is about to be redone.
        path = self.out / "metrics.jsonl"
        kept = []
        if resumed and path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by the kill
                    continue
                if record.get("iter", 0) <= self.iter:
                    kept.append(line + "\n")
        path.write_text("".join(kept))
        self.metrics = open(path, "a")

    def log(self, **record):
        """Append one record to metrics.jsonl (rank 0 only)."""
        if self.rt.master:
            self.metrics.write(json.dumps(record) + "\n")
            self.metrics.flush()

    def _monitor(self):
        try:
            from nanogpt.diagnostics import Monitor
        except ModuleNotFoundError:
            raise UserError("--diag needs nanogpt/diagnostics.py, which is missing") from None
        return Monitor(self.model, every=self.cfg.diag_every)

    # --------------------------------------------------------------- one step

    def local_micro_batches(self):
        """This process's share of the step's micro-batches, drawn in the same order everywhere."""
        per_rank = self.cfg.grad_accum // self.rt.world
        for i in range(self.cfg.grad_accum):
            x, y = self.data.draw("train", self.batch_gen)  # every process draws every batch ...
            if i // per_rank == self.rt.rank:  # ... and keeps only its own
                yield x.to(self.rt.device, non_blocking=True), y.to(self.rt.device, non_blocking=True)

    def step(self, it: int):
        """One optimizer step at iteration it. Returns (loss, grad_norm, lr): the mean loss of this
        process's micro-batches (a tensor), the gradient norm before clipping (None when nothing
        needed it) and the learning rate used."""
        cfg, monitor = self.cfg, self.monitor
        lr = lr_at(it, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if monitor:
            monitor.start_step(it)
        step_loss = self.accumulate_gradients()
        if monitor:
            monitor.after_backward(it)
        norm = self.clip_gradients(measure=monitor is not None or (it + 1) % cfg.log_interval == 0)
        if monitor:
            monitor.before_update(it)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if monitor:
            monitor.after_update(it, loss=step_loss.item(), lr=lr,
                                 grad_norm=None if norm is None else norm.item(),
                                 clipped=bool(cfg.grad_clip > 0 and norm.item() > cfg.grad_clip))
        return step_loss, norm, lr

    def accumulate_gradients(self) -> torch.Tensor:
        """Forward and backward over this process's micro-batches; .grad ends up holding the
        gradient of their mean loss (averaged over the processes too, under DDP). Returns that loss."""
        rt = self.rt
        per_rank = self.cfg.grad_accum // rt.world
        step_loss = torch.zeros((), device=rt.device, dtype=rt.param_dtype)
        for i, (x, y) in enumerate(self.local_micro_batches()):
            # DDP averages gradients across processes at the last micro-batch's backward only
            last = i == per_rank - 1
            sync = nullcontext() if last or rt.world == 1 else self.train_model.no_sync()
            with sync:
                with rt.autocast:
                    _, loss = self.train_model(x, y)
                    loss = loss / per_rank  # gradients of the mean over the micro-batches
                loss.backward()
            step_loss += loss.detach()
        return step_loss

    def clip_gradients(self, measure: bool):
        """Clip the gradient's norm to grad_clip; return the norm before clipping (a tensor), or
        None when there is no clipping and no one asked for the norm (it costs a pass over .grad)."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.grad_clip > 0:
            return torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        if measure:
            return torch.nn.utils.get_total_norm([p.grad for p in params])
        return None

    def global_mean(self, value: torch.Tensor) -> float:
        """A number averaged over all processes."""
        if self.rt.world > 1:
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.rt.world
        return value.item()

    # --------------------------------------------------------------- evaluation and saving

    def evaluate(self) -> dict:
        """Train and val loss on the fixed batches."""
        t = time.time()
        losses = {split: mean_loss(self.eval_model, b, self.rt) for split, b in self.eval_batches.items()}
        self.eval_seconds = time.time() - t
        return losses

    def checkpoint(self) -> dict:
        """Everything needed to continue this run exactly, in plain values and tensors."""
        return {
            "format": FORMAT,
            "model": clean_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
            "config": self.cfg.to_dict(),
            "model_config": model_config_dict(self.model),
            "stage": self.cfg.stage,
            "tokenizer": self.data.tokenizer.to_dict(),
            "iter": self.iter,
            "best_val_loss": self.best_val,
            "budget_set": self.max_iters_final,
            "rng": rng_state(batch=self.batch_gen, eval=self.eval_gen),
            "versions": versions(),
        }

    def save(self, *names: str) -> str:
        """Write last.pt and/or best.pt (rank 0 only); returns what was written, for the log line."""
        if self.rt.master:
            ckpt = self.checkpoint()
            for name in names:
                save_checkpoint(ckpt, self.out / name)
        return f"saved {' and '.join(names)} at iter {self.iter}"

    def check_finite(self, value: float, what: str):
        """Stop the run (writing nothing more) when a loss is NaN or infinite."""
        if not math.isfinite(value):
            kept = f"best.pt (val {self.best_val:.4f}) is kept" if math.isfinite(self.best_val) else \
                "this run wrote no best.pt"
            raise UserError(f"the {what} is {value} at iter {self.iter}: training diverged and "
                            f"stopped; {kept}; try a lower --lr or --grad-clip 1")

    def eval_and_save(self, refit_budget: bool = False) -> dict:
        """Evaluate, log, and write last.pt (and best.pt when val improved). refit_budget: refit
        --max-minutes' max_iters before saving, so that last.pt holds the schedule the run follows."""
        losses = self.evaluate()
        for split, value in losses.items():
            self.check_finite(value, f"{split} loss")
        improved = losses["val"] < self.best_val
        self.best_val = min(self.best_val, losses["val"])
        self.log(kind="eval", iter=self.iter, train_loss=losses["train"], val_loss=losses["val"],
                 time=round(time.time() - self.t0, 3))
        line = f"iter {self.iter}: train {losses['train']:.4f}, val {losses['val']:.4f}"
        if refit_budget and self.pace is not None and self.max_iters_final and self.iter > self.pace[1]:
            self.fit_budget((time.time() - self.pace[0]) / (self.iter - self.pace[1]), first=False)
        if self.iter > 0:  # an untrained model is not worth a file
            line += "; " + self.save(*(("last.pt", "best.pt") if improved else ("last.pt",)))
        self.say(line)
        return losses

    # --------------------------------------------------------------- the time budget

    def fit_budget(self, seconds_per_step: float, first: bool):
        """Fit max_iters to what is left of --max-minutes at `seconds_per_step` (evaluations included).

        Called once after timing CALIBRATION_STEPS steps, then again at every evaluation with the pace
        measured since, so that a wrong first guess (a busy moment, a slow first evaluation) is
        corrected while the run goes on. The cosine schedule follows: lr_at reads cfg.max_iters.
        """
        cfg = self.cfg
        left = cfg.max_minutes * 60 - (time.time() - self.t0)
        steps = torch.tensor(self.iter + max(1, int((left - self.final_seconds()) / seconds_per_step)),
                             device=self.rt.device)  # nccl broadcasts only tensors on the GPU
        if self.rt.world > 1:
            dist.broadcast(steps, src=0)  # rank 0's clock decides for all
        cfg.max_iters, self.max_iters_final = int(steps), True
        if first:
            self.say(f"time budget {cfg.max_minutes} min: {seconds_per_step:.3f} s/step with evaluations "
                     f"-> max_iters {cfg.max_iters} (refitted at every evaluation)")
        self.log(kind="budget", iter=self.iter, seconds_per_step=seconds_per_step, max_iters=cfg.max_iters)

    def final_seconds(self) -> float:
        """What the end of a run costs: the last evaluation, the full-split one, the files."""
        n_splits = len(self.eval_batches)
        per_token = self.eval_seconds / (n_splits * self.cfg.eval_iters * self.data.tokens_per_batch)
        sizes = self.data.sizes()
        full = sizes["val"] if self.data.form == "text" else sizes["train"] + sizes["val"]
        return self.eval_seconds + per_token * full + 2

    # --------------------------------------------------------------- the loop

    def _on_sigint(self, signum, frame):
        # Ctrl-C (SIGINT) and a polite kill (SIGTERM) both finish the step and save last.pt.
        if self.stop_requested:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.stop_requested = True

    def should_stop(self) -> bool:
        """Ctrl-C or SIGTERM seen by any process: finish the step, save, stop."""
        if self.rt.world == 1:
            return self.stop_requested
        # every process must leave the loop at the same step, or the others would wait forever
        # in their next all-reduce
        flag = torch.tensor(float(self.stop_requested), device=self.rt.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def run(self) -> dict:
        """Train to max_iters (or Ctrl-C); return the final losses and where the files are."""
        main_thread = threading.current_thread() is threading.main_thread()
        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self._on_sigint) for s in stops} if main_thread else {}
        try:
            return self._finish(interrupted=self._loop())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.rt.master:
                self.metrics.close()
            if self.rt.own_group:
                dist.destroy_process_group()

    def _loop(self) -> bool:
        """The steps; True when stopped by Ctrl-C."""
        cfg = self.cfg
        tokens_per_step = cfg.grad_accum * self.data.tokens_per_batch
        bar = tqdm(total=cfg.max_iters, initial=self.iter, disable=not self.progress, unit="step",
                   dynamic_ncols=True, file=sys.stderr)
        t_log, it_log, step_times = time.time(), self.iter, []
        while self.iter < cfg.max_iters:
            just_resumed = self.iter == self.start_iter > 0  # last.pt was written at this iter
            saved_now = False
            if self.iter % cfg.eval_interval == 0 and not just_resumed:
                self.eval_and_save(refit_budget=True)
                bar.total, saved_now = cfg.max_iters, self.iter > 0
            elif cfg.save_interval and self.iter % cfg.save_interval == 0 and self.iter > self.start_iter:
                self.check_finite(self.global_mean(self.last_loss), "training loss")
                self.say(self.save("last.pt"))
                saved_now = True
            # After the evaluation, not before: a run stopped at an eval step resumes past it.
            if self.should_stop():
                if not saved_now:
                    self.save("last.pt")
                self.say(f"interrupted at iter {self.iter}: saved last.pt; continue with --resume")
                bar.close()
                return True

            it = self.iter
            t_step = time.time()
            if not self.max_iters_final and it - self.start_iter == CALIBRATION_SKIP:
                self.pace = (t_step, it)
            loss, norm, lr = self.step(it)
            self.iter, self.last_loss = it + 1, loss
            if not self.max_iters_final and it - self.start_iter >= CALIBRATION_SKIP:
                step_times.append(self._elapsed_since(t_step))
                if len(step_times) == CALIBRATION_STEPS:
                    mean_step = sum(step_times) / len(step_times)
                    self.fit_budget(mean_step + self.eval_seconds / cfg.eval_interval, first=True)
                    bar.total = cfg.max_iters

            if it == 0:  # a sanity check: at init every token should be about equally likely (loss ~ ln V)
                self._check_init(loss.item())
            if self.iter % cfg.log_interval == 0:
                loss_f = self.global_mean(loss)
                self.check_finite(loss_f, "training loss")
                now = time.time()
                tok_s = (self.iter - it_log) * tokens_per_step / max(now - t_log, 1e-9)
                t_log, it_log = now, self.iter
                self.log(kind="train", iter=self.iter, loss=loss_f, lr=lr,
                         grad_norm=None if norm is None else norm.item(), tokens_per_s=round(tok_s, 1))
                bar.update(self.iter - bar.n)
                bar.set_postfix(loss=f"{loss_f:.4f}", tok_s=f"{tok_s:,.0f}", refresh=False)
        bar.update(self.iter - bar.n)
        bar.close()
        return False

    def _elapsed_since(self, t: float) -> float:
        if self.rt.device_type == "cuda":
            torch.cuda.synchronize()  # the GPU runs behind python: wait for it before reading the clock
        return time.time() - t

    def _check_init(self, loss: float):
        expected = math.log(self.data.tokenizer.vocab_size)
        if loss > expected + 0.3:
            self.say(f"warning: the loss at init ({loss:.3f}) is {loss - expected:.2f} above "
                     f"ln(vocab) = {expected:.3f}: the initial predictions are too confident "
                     "(check the output layer's init)")

    def _finish(self, interrupted: bool) -> dict:
        """The final evaluation (full splits where affordable), the loss curve, the result."""
        result = {"iters": self.iter, "out_dir": str(self.out), "interrupted": interrupted,
                  "best_val_loss": self.best_val, "train_loss": None, "val_loss": None}
        if not interrupted:
            losses = self.eval_and_save()
            if self.data.form == "examples":  # makemore's numbers: every example of each split
                losses = {split: mean_loss(self.eval_model, self.data.full(split), self.rt)
                          for split in ("train", "val")}
            else:  # the whole val split in windows side by side; train stays an estimate
                losses["val"] = mean_loss(self.eval_model, self.data.full("val"), self.rt)
            self.check_finite(losses["val"], "val loss")
            self.log(kind="final", iter=self.iter, train_loss=losses["train"], val_loss=losses["val"])
            result.update(train_loss=losses["train"], val_loss=losses["val"],
                          best_val_loss=self.best_val)
        result["seconds"] = time.time() - self.t0
        if self.monitor:
            self.monitor.finish(str(self.out))
        if self.rt.master and not interrupted:
            plot_losses(self.out / "metrics.jsonl", self.out / "loss.png")
            self.say(f"done: {self.iter} steps in {result['seconds'] / 60:.1f} min; final train "
                     f"{result['train_loss']:.4f}, val {result['val_loss']:.4f} (full split); "
                     f"files in {self.out}/")
        return result


def plot_losses(metrics_path, png_path):
    """The loss curve of a run from its metrics.jsonl, as a PNG (no display needed)."""
    from matplotlib.figure import Figure  # the object API: no backend, no global state

    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line]
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    ax.plot([r["iter"] for r in train], [r["loss"] for r in train], lw=0.6, alpha=0.5,
            label="train (each step's batch)")
    ax.plot([r["iter"] for r in evals], [r["train_loss"] for r in evals], "o-", label="train (fixed batches)")
    ax.plot([r["iter"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val (fixed batches)")
    if evals:
        ax.set_title(f"final val {evals[-1]['val_loss']:.4f} at iter {evals[-1]['iter']}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(png_path, dpi=100, bbox_inches="tight")


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train one run; returns train_loss, val_loss, best_val_loss, iters, seconds, out_dir."""
    return Trainer(cfg, progress).run()


def main(argv=None) -> int:
    """The command line: `python -m nanogpt.train --help`."""
    try:
        result = train(config_from_args(argv))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the loop started, or a second Ctrl-C: nothing to save
        print("interrupted", file=sys.stderr)
        return 130
    return 130 if result["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
