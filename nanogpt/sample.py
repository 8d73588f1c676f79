"""The one sampling loop: from any stage's model, one character (token) at a time.

    context -> model -> logits of the next token -> temperature, top-k, top-p -> draw -> append

The model only ever sees a window of at most `block_size` tokens. nanoGPT crops the context to
its last `block_size` tokens at every step; that is the idea to keep in mind. Here the window
slides in jumps instead (see `context_window`), so that a GPT can reuse its KV cache: the cached
and uncached paths compute exactly the same windows, so `use_cache` changes the speed, not the
logits (up to float rounding: the same text, but for a near-tie; exactly the same in float64).
`keep=block_size` gives nanoGPT's crop at every step.

    python -m nanogpt.sample                                   # from runs/gpt-cpu/best.pt
    python -m nanogpt.sample --prompt "ROMEO:" --temperature 0.8 --top-k 20 --num-samples 3
    python -m nanogpt.sample --ckpt runs/mlp --greedy --no-cache
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from nanogpt import cli
from nanogpt.checkpoint import load_model, resolve
from nanogpt.config import default_checkpoint
from nanogpt.device import pick_device
from nanogpt.errors import UserError

SAMPLERS = ("multinomial", "gumbel")


# ----------------------------------------------------------------------------- the window


def context_window(length: int, block_size: int, keep: int) -> int:
    """Where the model's context starts when the sequence holds `length` tokens.

    Up to `block_size` tokens the model sees them all. After that the window does not slide by
    one each step (as nanoGPT's crop does): it restarts from the last `keep` tokens, grows by
    one token a step back up to `block_size`, then restarts again. Why: a GPT's position
    embeddings are absolute, so when the window slides by one every token changes position and
    every cached key and value is stale. Restarting from `keep` tokens costs one forward pass
    over them (the prefill), which pays for the next `block_size - keep` cheap cached steps.
    The model always sees between `keep` and `block_size` tokens, all of them trained-for
    context lengths. keep = block_size is nanoGPT's crop exactly (a rebuild at every step).
    """
    if length <= block_size:
        return 0
    cycle = block_size - keep + 1  # window lengths keep, keep + 1, ..., block_size, then again
    width = keep + (length - block_size - 1) % cycle
    return length - width


class NextTokenLogits:
    """Next-token logits for a sequence that grows by one token per call; caches keys for a GPT.

    Models with `new_cache()` (the GPT) run each new token alone against the cache, and rebuild
    the cache in one prefill when the window restarts. Other stages (bigram, MLP) run on the
    whole window each call: they are cheap, and their windows are nanoGPT's crop (keep =
    block_size), since the MLP is trained on exactly block_size characters of context.
    """

    def __init__(self, model, keep: int | None = None, use_cache: bool = True):
        self.model = model
        self.block_size = model.config.block_size
        cached = hasattr(model, "new_cache")
        if keep is None:
            keep = max(1, self.block_size // 2) if cached else self.block_size
        if not 1 <= keep <= self.block_size:
            raise UserError(f"keep must be between 1 and block_size ({self.block_size}), not {keep}")
        self.keep = keep
        self.use_cache = use_cache and cached
        self.cache = None
        self.start = 0  # where the cached window starts in the sequence

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> logits (B, vocab) for the token after idx[:, -1]."""
        T = idx.shape[1]
        start = context_window(T, self.block_size, self.keep)
        if not self.use_cache:
            logits, _ = self.model(idx[:, start:])
        elif self.cache is not None and start == self.start and self.cache.length == T - 1 - start:
            logits, _ = self.model(idx[:, -1:], cache=self.cache)  # one new token, (B, 1, V)
        else:  # first call, or the window restarted: every position moved, so prefill afresh
            self.cache, self.start = self.model.new_cache(), start
            logits, _ = self.model(idx[:, start:], cache=self.cache)
        return logits[:, -1, :] if logits.dim() == 3 else logits  # the MLP gives (B, V) already


# ----------------------------------------------------------------------------- shaping the logits


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by the temperature: below 1 sharpens the distribution, above 1 flattens it."""
    # Shift first (softmax does not care): the top logit becomes 0, so that a tiny temperature
    # gives -inf for the others, never inf - inf = NaN.
    return (logits - logits.amax(dim=-1, keepdim=True)) / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (and any tied with the k-th); the rest become -inf."""
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches p
    (and any tied with the last one kept); the rest become -inf."""
    if p >= 1:
        return logits  # everything: float rounding in the cumsum must not drop the tail
    sorted_logits = torch.sort(logits, dim=-1, descending=True).values
    probs = F.softmax(sorted_logits, dim=-1)
    before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
    keep = before < p  # the set has not reached p without this token; before[..., 0] is 0: the top stays
    cutoff = sorted_logits.masked_fill(~keep, float("inf")).amin(dim=-1, keepdim=True)  # (B, 1)
    return logits.masked_fill(logits < cutoff, float("-inf"))


# ----------------------------------------------------------------------------- drawing


def gumbel_noise(shape, generator=None, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Standard Gumbel noise -log(-log(U)), U uniform on (0, 1), drawn from `generator`."""
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    u = u.clamp_min(torch.finfo(dtype).tiny)  # rand can return exactly 0
    return -torch.log(-torch.log(u))


def sample_multinomial(logits: torch.Tensor, generator=None) -> torch.Tensor:
    """Draw one token per row from softmax(logits): (B, V) -> (B, 1)."""
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)


def sample_gumbel(logits: torch.Tensor, generator=None) -> torch.Tensor:
    """The Gumbel-max trick: argmax(logits + Gumbel noise) is a draw from softmax(logits)."""
    # at least float32: bfloat16 would cut off the noise's tail and bias the draws
    noise = gumbel_noise(logits.shape, generator, torch.promote_types(logits.dtype, torch.float32),
                         logits.device)
    return torch.argmax(logits + noise, dim=-1, keepdim=True)  # (B, 1)


DRAWS = {"multinomial": sample_multinomial, "gumbel": sample_gumbel}  # one per name in SAMPLERS


def gumbel_softmax(logits, tau: float, hard: bool = False, generator=None, noise=None):
    """softmax((logits + g) / tau): a differentiable relaxation of the Gumbel-max draw.

    As tau -> 0 it tends to the one-hot vector of the Gumbel-max choice. `hard=True` returns
    that one-hot vector in the forward pass with the soft gradients in the backward pass (the
    straight-through trick). `noise` fixes g; by default it is drawn from `generator`.
    """
    if noise is None:
        noise = gumbel_noise(logits.shape, generator, logits.dtype, logits.device)
    soft = F.softmax((logits + noise) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
    return one_hot - soft.detach() + soft  # value: one_hot; gradient: that of soft


def next_token(logits, *, temperature=1.0, top_k=None, top_p=None, greedy=False,
               sampler="multinomial", generator=None) -> torch.Tensor:
    """Choose the next token of each row from its logits: (B, V) -> (B, 1)."""
    if greedy:
        return torch.argmax(logits, dim=-1, keepdim=True)
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    draw = DRAWS[sampler]
    return draw(logits, generator)


def check_options(temperature, top_k, top_p, sampler, max_new_tokens) -> None:
    """Raise a one-line UserError for a sampling setting that cannot work."""
    if not temperature > 0:
        raise UserError(f"--temperature must be > 0 (use --greedy for argmax), not {temperature}")
    if top_k is not None and top_k < 1:
        raise UserError(f"--top-k must be at least 1, not {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], not {top_p}")
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}, not {sampler!r}")
    if max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must be >= 0, not {max_new_tokens}")


@torch.no_grad()
def generate(model, idx, max_new_tokens, *, temperature=1.0, top_k=None, top_p=None, greedy=False,
             sampler="multinomial", generator=None, use_cache=True, keep=None, on_token=None) -> torch.Tensor:
    """Extend each row of idx (B, T) by max_new_tokens tokens: returns (B, T + max_new_tokens).

    Works for every stage. A context longer than block_size is cropped to its last block_size
    tokens (the whole of it is returned); from there the window follows `context_window` with
    `keep` (default block_size // 2 for a GPT, so that its KV cache pays off). keep=block_size
    is nanoGPT's generate exactly: crop to the last block_size tokens at every step. Either
    way the model never sees more than block_size tokens, and `use_cache` changes only the
    speed. Every random draw comes from `generator` (torch's global one when None). Dropout is
    off while sampling. on_token(next_ids), if given, sees each step's new tokens (B, 1) at once.
    """
    check_options(temperature, top_k, top_p, sampler, max_new_tokens)
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ValueError(f"idx must be (B, T) with T >= 1, got shape {tuple(idx.shape)}")
    block_size = model.config.block_size
    dropped, idx = idx[:, :-block_size], idx[:, -block_size:]  # the model never sees `dropped`
    next_logits = NextTokenLogits(model, keep=keep, use_cache=use_cache)
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            logits = next_logits(idx)  # (B, V)
            nxt = next_token(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                             greedy=greedy, sampler=sampler, generator=generator)  # (B, 1)
            idx = torch.cat([idx, nxt], dim=1)
            if on_token is not None:
                on_token(nxt)
    finally:
        model.train(was_training)
    return torch.cat([dropped, idx], dim=1)


# ----------------------------------------------------------------------------- command line


MAX_NEW_TOKENS = 1_000_000  # about the length of Tiny Shakespeare: more is a typo, not a wish


def new_tokens(text: str) -> int:
    """An argparse type: how many tokens to generate, 0 .. MAX_NEW_TOKENS."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= MAX_NEW_TOKENS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_NEW_TOKENS:,}, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m nanogpt.sample`."""
    p = cli.parser("python -m nanogpt.sample",
                   "Generate text from a checkpoint of any stage (bigram, mlp, gpt).")
    cli.add_ckpt(p, default_checkpoint())
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default="", help="text to continue (empty: start from a newline)")
    prompt.add_argument("--prompt-file", default=None, help="read the prompt from this UTF-8 file")
    p.add_argument("--num-samples", type=cli.positive_int, default=3,
                   help="samples, generated together as one batch")
    p.add_argument("--max-new-tokens", type=new_tokens, default=500, help="tokens to generate per sample")
    p.add_argument("--temperature", type=cli.positive_float, default=1.0, help="< 1 sharpens, > 1 flattens")
    p.add_argument("--top-k", type=cli.positive_int, default=None,
                   help="draw from the k most likely tokens only")
    p.add_argument("--top-p", type=float, default=None,
                   help="draw from the smallest set of tokens whose probability reaches p (nucleus)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token (argmax)")
    p.add_argument("--sampler", default="multinomial", choices=SAMPLERS,
                   help="multinomial on the softmax, or the Gumbel-max trick (same distribution)")
    p.add_argument("--keep", type=cli.positive_int, default=None,
                   help="past block_size, restart the window from the last KEEP tokens "
                        "[GPT: block_size // 2; block_size = nanoGPT's crop every step]")
    cli.add_seed(p)
    cli.add_device(p)
    p.add_argument("--no-cache", action="store_true",
                   help="rerun the whole window every step (same text up to float rounding, slower)")
    return p


def read_prompt(args) -> str:
    """The prompt text, from --prompt or --prompt-file."""
    if args.prompt_file is None:
        return args.prompt
    try:
        return Path(args.prompt_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read --prompt-file {args.prompt_file}: {e}") from None


def prompt_ids(tokenizer, text: str) -> list[int]:
    """The prompt's token ids; an empty prompt starts from a newline (else from id 0, the boundary)."""
    if text:
        return tokenizer.encode(text)  # unknown characters: a UserError that lists them
    try:
        return tokenizer.encode("\n")
    except UserError:  # no newline in the vocabulary (names): id 0 is the boundary, '.'
        return [0]


def samples_from_args(args, on_token=None) -> tuple[list[str], dict, bool]:
    """Load the checkpoint and generate: the samples as text, the checkpoint, and whether Ctrl-C
    stopped the generation early (the text generated until then is kept). on_token(text_per_row)
    sees each step's new tokens as text."""
    check_options(args.temperature, args.top_k, args.top_p, args.sampler, args.max_new_tokens)
    text = read_prompt(args)
    device = pick_device(args.device)
    model, tokenizer, ckpt = load_model(args.ckpt, device)
    ids = prompt_ids(tokenizer, text)
    block_size = model.config.block_size
    if len(ids) > block_size:
        print(f"note: the prompt has {len(ids)} tokens; the model sees only its last {block_size} "
              f"(block_size)", file=sys.stderr)
    idx = torch.tensor([ids] * args.num_samples, dtype=torch.long, device=device)  # (B, T)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    new = []  # each step's tokens (B, 1): kept as they come, so that Ctrl-C loses none of them

    def keep(nxt):
        new.append(nxt)
        if on_token is not None:
            on_token([tokenizer.decode(row.tolist()) for row in nxt])

    interrupted = False
    try:
        generate(model, idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                 top_p=args.top_p, greedy=args.greedy, sampler=args.sampler, generator=generator,
                 use_cache=not args.no_cache, keep=args.keep, on_token=keep)
    except KeyboardInterrupt:
        interrupted = True
    out = torch.cat([idx, *new], dim=1)
    start = 0 if text else len(ids)  # do not print the newline that stood in for an empty prompt
    return [tokenizer.decode(row[start:].tolist()) for row in out], ckpt, interrupted


def main(argv=None) -> int:
    """The command line: `python -m nanogpt.sample --help`; 130 when Ctrl-C stopped it early."""
    return cli.invoke(print_samples, build_parser(), argv)


def print_samples(args) -> int:
    """Generate and print: one sample as it is written, several under header lines when done;
    then which checkpoint wrote them."""
    stream = args.num_samples == 1
    if stream:
        print("---------- sample 1 of 1 ----------")
        print(read_prompt(args), end="", flush=True)
    samples, ckpt, interrupted = samples_from_args(
        args, on_token=(lambda texts: print(texts[0], end="", flush=True)) if stream else None)
    if stream:
        print()
    else:
        for i, sample in enumerate(samples, 1):
            print(f"---------- sample {i} of {len(samples)} ----------")
            print(sample)
    val = ckpt.get("best_val_loss")
    val = f", val loss {val:.4f}" if isinstance(val, float) and math.isfinite(val) else ""
    print(f"(from {resolve(args.ckpt)}: {ckpt['stage']}, iter {ckpt.get('iter', '?')}{val})")
    if interrupted:
        print("interrupted: the text above is what was generated before Ctrl-C", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
