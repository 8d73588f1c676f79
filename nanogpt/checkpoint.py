"""Save and load training runs: atomic writes, plain contents, every random state.

A checkpoint is a dict of plain python values and tensors only, so that
`torch.load(path, weights_only=True)` reads it without running any pickled code:

    model, optimizer       state dicts (the model's never carries torch.compile's `_orig_mod.`)
    config, model_config   the TrainConfig and the model's own config, as dicts
    stage, tokenizer       which model class, and the tokenizer's `to_dict()`
    iter, best_val_loss    steps done so far, best validation loss seen
    rng                    every random state: torch, cuda, numpy, python, and the run's generators
    versions, format       library versions, and the layout's version number
"""

from __future__ import annotations

import errno
import os
import platform
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from nanogpt.config import PRESETS, TrainConfig, preset
from nanogpt.errors import UserError
from nanogpt.interrupt import signals_deferred
from nanogpt.models import build_model, model_config_dict, unknown_model_keys
from nanogpt.tokenizer import tokenizer_from_dict

FORMAT = 1
# What may differ from the saved settings when a run is resumed: where and how it runs, not what.
RESUME_MAY_CHANGE = ("device", "compile", "threads", "diag", "diag_every", "resume", "out_dir")


def clean_state_dict(model: torch.nn.Module) -> dict:
    """The model's weights without the `_orig_mod.` prefix that torch.compile adds."""
    model = getattr(model, "_orig_mod", model)
    prefix = "_orig_mod."
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in model.state_dict().items()}


def run_checkpoint(model, optimizer, cfg: TrainConfig, tokenizer, it: int, best_val: float,
                   budget_fitted: bool, **generators: torch.Generator) -> dict:
    """Everything needed to continue a run exactly at step `it`, in plain values and tensors."""
    return {"format": FORMAT, "model": clean_state_dict(model), "optimizer": optimizer.state_dict(),
            "config": cfg.to_dict(), "model_config": model_config_dict(model), "stage": cfg.stage,
            "tokenizer": tokenizer.to_dict(), "iter": it, "best_val_loss": best_val,
            "budget_set": budget_fitted, "rng": rng_state(**generators), "versions": versions()}


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
    if saved.preset and cfg.preset and saved.preset != cfg.preset:
        notes.append(f"note: last.pt is a run of the {saved.preset} preset: its saved settings are used, "
                     f"not {cfg.preset}'s")
    if ignored:
        notes.append("note: a resumed run keeps the settings saved in last.pt; ignored: "
                     + ", ".join(ignored[:6]) + (" ..." if len(ignored) > 6 else ""))
    if unknown:
        notes.append("note: last.pt holds settings this version does not know; ignored: "
                     + ", ".join(unknown))
    return saved, notes


# ----------------------------------------------------------------------------- random states


def rng_state(**generators: torch.Generator) -> dict:
    """Every random state that training touches, as tensors, lists and numbers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "generators": {name: g.get_state() for name, g in generators.items()},
    }


def set_rng_state(state: dict, **generators: torch.Generator) -> None:
    """Put back the states saved by `rng_state` (the named generators too)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    for name, g in generators.items():
        g.set_state(state["generators"][name])


def versions() -> dict:
    """The versions that made a checkpoint, for the curious reader of an old file."""
    return {"torch": str(torch.__version__), "numpy": str(np.__version__),
            "python": platform.python_version()}


# ----------------------------------------------------------------------------- files


def save_checkpoint(ckpt: dict, path) -> None:
    """Write a checkpoint atomically: into a temporary file in the same folder, then rename.

    A reader (or a run killed mid-write) sees either the old file or the whole new one; a Ctrl-C
    that lands inside the write waits for it to finish. A full disk is a one-line UserError, and
    the old file stays.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with signals_deferred():
            with os.fdopen(fd, "wb") as f:
                torch.save(ckpt, f)
            os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as "unexpected pos"
        if getattr(e, "errno", None) == errno.ENOSPC or "unexpected pos" in str(e) \
                or "No space left" in str(e):
            raise UserError(f"disk full: could not write {path} (the previous {path.name}, if any, "
                            "is kept); free some space and continue with --resume") from None
        if isinstance(e, OSError):
            raise UserError(f"could not write {path} ({e.strerror or e})") from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resolve(path) -> Path:
    """A checkpoint file; a run folder stands for its best.pt (else its last.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
    return path


def first_detail(e: Exception, word: str = "") -> str:
    """One line of a many-line exception message: the first holding `word`, else the first after a
    heading that ends with ':' (load_state_dict's "Error(s) in loading ...:"), else the first."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or ["no detail"]
    if word:
        return next((line for line in lines if word in line.lower()), lines[0])
    return lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]


def load_checkpoint(path) -> dict:
    """Read a checkpoint safely (weights_only); a missing or broken file is a UserError.

    Everything loads on the CPU (the random number generators' states must stay there); the
    caller moves the model where it runs.
    """
    path = resolve(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: run `make train` first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a checkpoint, or holding more than plain values
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__}: "
                        f"{first_detail(e, 'error')})") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{path} is not a nanogpt checkpoint (not a dict)")
    missing = {"model", "stage", "model_config", "tokenizer"} - ckpt.keys()
    if missing:
        raise UserError(f"{path} is not a nanogpt checkpoint (missing {', '.join(sorted(missing))})")
    kinds = {"format": int, "model": dict, "model_config": dict, "tokenizer": dict, "stage": str,
             "config": dict, "optimizer": dict, "rng": dict, "iter": int}
    wrong = [k for k, kind in kinds.items() if k in ckpt and not isinstance(ckpt[k], kind)]
    if wrong:
        raise UserError(f"{path} is damaged: its {', '.join(wrong)} "
                        f"{'is' if len(wrong) == 1 else 'are'} not what a checkpoint holds")
    if ckpt.get("format", FORMAT) > FORMAT:
        raise UserError(f"{path} has format {ckpt['format']}; this code reads formats up to {FORMAT}: "
                        "update the course's code")
    return ckpt


def load_model(path, device="cpu"):
    """The trained model (in eval mode), its tokenizer and the whole checkpoint dict."""
    ckpt = load_checkpoint(path)  # on the CPU, then the model alone moves (MPS has no float64)
    try:
        model = build_model(ckpt["stage"], ckpt["model_config"])
        tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    except (TypeError, KeyError, AttributeError, ValueError) as e:  # edited or damaged settings
        raise UserError(f"{resolve(path)} is damaged: its model settings or tokenizer cannot be "
                        f"read ({type(e).__name__}: {first_detail(e)})") from None
    unknown = unknown_model_keys(ckpt["stage"], ckpt["model_config"])
    if unknown:
        print(f"note: {resolve(path)} has model settings this version does not know; ignored: "
              + ", ".join(unknown), file=sys.stderr)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"{resolve(path)}: its weights do not fit its model_config "
                        f"({first_detail(e)})") from None
    model.to(device).eval()
    return model, tokenizer, ckpt
