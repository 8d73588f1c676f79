from dataclasses import fields

import pytest
import torch

from nanogpt.checks import dashed
from nanogpt.config import PRESETS, TrainConfig, preset
from nanogpt.errors import UserError
from nanogpt.flags import build_parser, config_from_args
from nanogpt.train import main


def test_help_lists_every_option_with_its_default():
    text = build_parser().format_help()
    for f in fields(TrainConfig):
        if f.name != "preset":
            assert f"--{dashed(f.name)}" in text
    assert "--preset" in text and "(default: 0.1)" in text  # weight_decay's default is shown
    assert all(name in text for name in PRESETS)
    assert "--max-minutes" in text and "measured over the first steps" in text
    assert "--muon-lr" in text and "--compile [COMPILE]" in text and "--no-compile" in text


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "--n-embd" in capsys.readouterr().out


def test_every_preset_is_valid():
    assert set(PRESETS) == {"bigram", "mlp", "gpt-cpu", "gpt-cpu-fast", "gpt-gpu", "smoke"}
    for name in PRESETS:
        assert preset(name).out_dir == f"runs/{name}"


def test_command_line_overrides_the_preset():
    cfg = config_from_args(["--preset", "smoke", "--max-iters", "7", "--n-embd", "48", "--bias",
                            "--out-dir", "somewhere"])
    got = (cfg.preset, cfg.max_iters, cfg.n_embd, cfg.bias, cfg.out_dir)
    assert got == ("smoke", 7, 48, True, "somewhere")
    assert cfg.n_layer == PRESETS["smoke"].n_layer  # untouched fields keep the preset's value


def test_no_arguments_pick_the_preset_for_the_hardware():
    cfg = config_from_args([])
    assert cfg.preset == ("gpt-gpu" if torch.cuda.is_available() else "gpt-cpu")
    assert cfg.out_dir == f"runs/{cfg.preset}"


@pytest.mark.parametrize("argv, words", [
    (["--preset", "nope"], "unknown preset"),
    (["--n-embd", "100", "--n-head", "3"], "divisible"),
    (["--lr", "-0.1"], "--lr"),
    (["--block-size", "0"], "--block-size"),
    (["--max-iters", "0"], "--max-iters"),
    (["--dropout", "1.5"], "--dropout"),
    (["--optimizer", "adam"], "--optimizer"),
    (["--lr", "fast"], "invalid float"),
    (["--no-such-flag"], "unrecognized"),
    (["--data", "names", "--tokenizer", "gpt2"], "names"),
    (["--device", "cuda:x"], "--device"),
    (["--preset", "mlp", "--batch-size", "1"], "BatchNorm needs at least 2"),
    (["--preset", "bigram", "--tokenizer", "gpt2"], "2.5 billion"),
    (["--preset", "mlp", "--optimizer", "muon"], "--optimizer muon trains the matrices inside a GPT"),
    (["--muon-lr", "0"], "--muon-lr must be a positive number"),
    (["--muon-momentum", "1"], "--muon-momentum"),
    (["--muon-weight-decay", "-1"], "--muon-weight-decay"),
    (["--compile", "maybe"], "--compile must be one of off, on, auto"),
])
def test_invalid_values_give_one_line_errors(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err
    assert err.count("\n") == 1


def test_muon_flags_reach_the_config():
    cfg = config_from_args(["--preset", "smoke", "--optimizer", "muon", "--muon-lr", "0.05",
                            "--muon-momentum", "0.9", "--muon-weight-decay", "0.01"])
    assert (cfg.optimizer, cfg.muon_lr, cfg.muon_momentum, cfg.muon_weight_decay) == ("muon", 0.05, 0.9, 0.01)
    assert config_from_args(["--preset", "smoke"]).muon_lr == 0.02


@pytest.mark.parametrize("argv, mode", [([], "off"), (["--compile"], "on"), (["--compile", "auto"], "auto"),
                                        (["--compile", "on", "--no-compile"], "off")])
def test_compile_alone_means_on_and_takes_auto(argv, mode):
    assert config_from_args(["--preset", "smoke", *argv]).compile == mode


def test_a_saved_boolean_compile_reads_as_on_or_off():
    saved = preset("smoke").to_dict()
    assert TrainConfig.from_dict(saved | {"compile": True}).compile == "on"
    assert TrainConfig.from_dict(saved | {"compile": False}).compile == "off"
    assert preset("smoke", compile=True).compile == "on"  # and from code


def test_config_survives_a_round_trip_through_a_dict():
    cfg = preset("mlp", lr=0.05)
    assert TrainConfig.from_dict(cfg.to_dict() | {"field_from_the_future": 1}) == cfg


def test_unknown_setting_in_code_is_a_user_error():
    with pytest.raises(UserError, match="unknown setting"):
        preset("smoke", n_layers=3)
