"""Generate text, then show which earlier characters each generated character came from.

    python -m nanogpt.attribution.cli                              # runs/gpt-cpu/best.pt, 200 characters
    python -m nanogpt.attribution.cli --prompt "ROMEO:" --max-new-tokens 80 --position 40
    python -m nanogpt.attribution.cli --text "To be, or not to be" --method saliency --html tobe.html
    python -m nanogpt.attribution.cli --tol 0.01                   # every target within 1% of its dF
    make attribute ARGS="--steps 64 --rule middle"           # the fixed 64-point rule instead
    python -m nanogpt.attribution.cli --faithfulness               # AOPC of four methods, sanity check

Prints the context of one generated character coloured by its scores (integrated gradients by
default), and one line per character with its strongest contributors; writes the interactive HTML
view beside the checkpoint (or into --out-dir).

Integration: by default each character's integral is refined until its scores add up to
F(x) - F(b) within --tol of it (or --abs-tol), only where the path needs it. `--steps N` alone
switches that off for the fixed N-point rule; with --tol given too, N is the points per piece.
A warning names the characters that stopped at --max-steps before the tolerance (or, with the
fixed rule, those that miss it by more than 5%).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from nanogpt import cli
from nanogpt.attribution.faithfulness import CURVE_STEPS, RANDOM_ORDERS, faithfulness
from nanogpt.attribution.methods import attribute_ids, baseline_option
from nanogpt.attribution.paths import (
    ABS_TOLERANCE,
    AGGREGATES,
    COMPLETENESS_TOLERANCE,
    FIXED_STEPS,
    MAX_STEPS,
    METHODS,
    RULES,
    SEGMENT_STEPS,
    TARGETS,
    integration,
    quadrature,
)
from nanogpt.attribution.result import check_save_path
from nanogpt.attribution.views import html_page, summary
from nanogpt.checkpoint import load_model, resolve
from nanogpt.config import default_checkpoint
from nanogpt.device import pick_device
from nanogpt.errors import UserError
from nanogpt.sample import generate, new_tokens, prompt_ids


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m nanogpt.attribution.cli`."""
    p = cli.parser("python -m nanogpt.attribution.cli", __doc__.splitlines()[0])
    cli.add_ckpt(p, default_checkpoint())
    p.add_argument("--text", default=None, help="attribute this text instead of generating")
    p.add_argument("--prompt", default="", help="text to continue (empty: start from a newline)")
    p.add_argument("--max-new-tokens", type=new_tokens, default=200, help="characters to generate")
    p.add_argument("--temperature", type=cli.positive_float, default=1.0, help="sampling temperature")
    cli.add_seed(p, help="seed of the sampling draws")
    p.add_argument("--method", default="ig", choices=METHODS,
                   help="integrated gradients, plain gradient, gradient * input, or occlusion "
                        "(each character replaced by the baseline, one at a time)")
    p.add_argument("--target", default="logprob", choices=TARGETS,
                   help="what to explain: log p(c_t | c_<t), p, or the logit of c_t")
    p.add_argument("--baseline", default="auto",
                   help="where the path starts: zero, mean (of the embedding table), one character, or "
                        "auto: zero where the model adds a position table, mean where its positions are "
                        "rotary (from zero, the path would only rescale the input, which LayerNorm ignores)")
    p.add_argument("--steps", type=cli.positive_int, default=None,
                   help=f"alone: the fixed rule, this many points for every character (for trapezoid: "
                        f"intervals); with --tol: points per piece of the path [default: {SEGMENT_STEPS} "
                        f"per piece, to --tol; {FIXED_STEPS} is the usual fixed rule]")
    p.add_argument("--tol", type=cli.positive_float, default=None,
                   help=f"integrate each character until |delta| <= max(TOL |dF|, --abs-tol) [default: "
                        f"{COMPLETENESS_TOLERANCE}; on unless --steps is given alone]")
    p.add_argument("--abs-tol", type=cli.non_negative_float, default=ABS_TOLERANCE,
                   help="the tolerance's floor, for characters whose dF is near zero")
    p.add_argument("--max-steps", type=cli.positive_int, default=MAX_STEPS,
                   help="the cap: points one character may use before it is named as missing --tol")
    p.add_argument("--rule", default="gauss-legendre", choices=RULES, help="quadrature rule")
    p.add_argument("--aggregate", default="sum", choices=AGGREGATES,
                   help="over embedding dimensions: signed sum (completeness holds) or L2 norm")
    p.add_argument("--interpolate-positions", action="store_true",
                   help="walk position embeddings too, from zero (pair with --baseline mean)")
    p.add_argument("--position", type=int, default=None,
                   help="attribute only the character at this position (default: every generated one)")
    p.add_argument("--batch-size", type=cli.positive_int, default=64,
                   help="(alpha, target) rows per pass: bounds memory, never changes the result")
    p.add_argument("--html", default=None,
                   help="where to write the HTML view [default: attribution.html in --out-dir, "
                        "else beside the checkpoint]")
    p.add_argument("--out-dir", default=None, help="folder for the HTML view")
    p.add_argument("--save", default=None, help="also save the result (.npz or .json)")
    p.add_argument("--top", type=cli.positive_int, default=3, help="contributors listed per character")
    p.add_argument("--faithfulness", action="store_true",
                   help="also measure all four methods: deletion and insertion AOPC against random "
                        "orders, and the model-randomization sanity check (slow: minutes)")
    p.add_argument("--curve-steps", type=cli.positive_int, default=CURVE_STEPS,
                   help="--faithfulness: characters removed (or put back) one at a time")
    p.add_argument("--random-orders", type=cli.positive_int, default=RANDOM_ORDERS,
                   help="--faithfulness: random orders averaged for the yardstick")
    p.add_argument("--no-color", action="store_true", help="numbers instead of 24-bit colour")
    cli.add_device(p)
    return p


def text_ids(model, tokenizer, args) -> tuple[list[int], int]:
    """The ids to attribute and the first target position: --text as given, or a fresh sample."""
    if args.text is not None:
        if not args.text:
            raise UserError("--text is empty: give some text, or leave it out to generate")
        return tokenizer.encode(args.text), 1
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, not {args.max_new_tokens}")
    prompt = prompt_ids(tokenizer, args.prompt)
    device = model.wte.weight.device
    generator = torch.Generator(device=device).manual_seed(args.seed)
    # keep=block_size: nanoGPT's crop, so that each character was drawn from exactly the window
    # of the last block_size characters that the attribution looks at.
    out = generate(model, torch.tensor([prompt], device=device), args.max_new_tokens,
                   temperature=args.temperature, generator=generator, keep=model.config.block_size)
    return out[0].tolist(), max(1, len(prompt))


def attribution_from_args(args):
    """Load, generate (or take --text), attribute; return the result, the HTML path and, with
    --faithfulness, the faithfulness report (else None)."""
    # a bad --steps, --tol or --save fails before the model loads
    steps = integration(args.method, args.steps, args.tol, args.abs_tol, args.max_steps)[1]
    quadrature(args.rule, 1 if steps is None else steps)
    if args.faithfulness and (args.curve_steps < 1 or args.random_orders < 1):
        raise UserError("--curve-steps and --random-orders must be at least 1")
    if args.save:
        check_save_path(args.save)
        cli.check_output_path(args.save, "--save")
    if args.out_dir and Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise UserError(f"--out-dir {args.out_dir} is a file; give a folder")
    html = Path(args.html or Path(args.out_dir or resolve(args.ckpt).parent) / "attribution.html")
    cli.check_output_path(html, "--html")  # before minutes of work, not after
    model, tokenizer, ckpt = load_model(args.ckpt, pick_device(args.device))
    if ckpt["stage"] != "gpt":
        raise UserError(f"attribution needs a GPT checkpoint, {args.ckpt} holds a {ckpt['stage']!r}")
    if args.baseline == "auto":
        args.baseline = "zero" if getattr(model, "wpe", None) is not None else "mean"
    ids, first = text_ids(model, tokenizer, args)
    positions = range(first, len(ids)) if args.position is None else [args.position]
    result = attribute_ids(model, tokenizer, ids, positions=positions, method=args.method,
                           baseline=args.baseline, **options(args))
    report = None
    if args.faithfulness:
        report = faithfulness(model, ids, positions=positions, tokens=result.tokens,
                              given={args.method: result}, most=args.curve_steps,
                              n_random=args.random_orders, seed=args.seed,
                              baseline=baseline_option(tokenizer, args.baseline), **options(args))
    # The page marks the prompt (none with --text: all of it was given) and shows the report too.
    prompt = 0 if args.text is not None else first
    html.write_text(html_page(result, prompt=prompt, faithfulness=report), encoding="utf-8")
    if args.save:
        result.save(args.save)
    return result, html, report


def options(args) -> dict:
    """The attribution options the flags give (besides method and baseline)."""
    return dict(target=args.target, steps=args.steps, tol=args.tol, abs_tol=args.abs_tol,
                max_steps=args.max_steps, rule=args.rule, aggregate=args.aggregate,
                interpolate_positions=args.interpolate_positions, batch_size=args.batch_size)


def main(argv=None) -> int:
    """The command line: `python -m nanogpt.attribution.cli --help`."""
    return cli.invoke(attribute_and_print, build_parser(), argv)


def attribute_and_print(args) -> None:
    """Attribute, print the text and each character's top contributors, write the page."""
    result, html, report = attribution_from_args(args)
    print(f"---------- {len(result.tokens)} characters ----------\n{result.text}\n----------")
    print(result.to_terminal(args.position, color=False if args.no_color else None, top=args.top))
    print(summary(result))
    if warning := result.completeness_warning():
        print(f"warning: {warning}", file=sys.stderr)
    if report is not None:
        print(f"\nfaithfulness over {len(result.targets)} characters (F = {args.target}; "
              f"{args.random_orders} random orders, seed {args.seed}):\n{report.table()}")
    print(f"wrote {html}" + (f" and {args.save}" if args.save else ""))


if __name__ == "__main__":
    sys.exit(main())
