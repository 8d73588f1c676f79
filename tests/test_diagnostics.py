"""The diagnostics lens: what it measures, what it warns about, and what it writes."""

import ast
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nanogpt.diagnostics import health, record
from nanogpt.diagnostics import monitor as lens_monitor
from nanogpt.diagnostics import plots as P
from nanogpt.diagnostics.health import MAX_SATURATION, check_snapshot, check_training, median_update
from nanogpt.diagnostics.monitor import Monitor, snapshot
from nanogpt.diagnostics.record import History
from nanogpt.diagnostics.stats import histogram
from nanogpt.gpt import GPT, GPTConfig
from nanogpt.mlp import MLP, Linear, MLPConfig


def deep_mlp(init="kaiming", batchnorm=False, seed=0):
    """makemore part 3's deep net, smaller: 4 tanh layers of 48, in float64."""
    g = torch.Generator().manual_seed(seed)
    cfg = MLPConfig(vocab_size=27, block_size=3, n_embd=10, n_hidden=48, n_layer=4,
                    batchnorm=batchnorm, init=init)
    return MLP(cfg, generator=g).double()


def batch(n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 27, (n, 3), generator=g), torch.randint(0, 27, (n,), generator=g)


class Net(nn.Module):
    """A generic stand-in model: any nn.Sequential, with the course's forward(x, y) -> (logits, loss)."""

    def __init__(self, *layers):
        super().__init__()
        self.net = nn.Sequential(*layers).double()

    def forward(self, x, y=None):
        logits = self.net(x)
        return logits, None if y is None else F.cross_entropy(logits, y)


def saturations(snap):
    return [s.saturation for s in snap.layers.values() if s.kind == "tanh"]


def train_steps(model, monitor, lr, steps, seed=2, clip=0.0, params=None):
    """A plain SGD loop over `params` (default: all) that calls the monitor's five hooks where the
    engine does."""
    opt = torch.optim.SGD(model.parameters() if params is None else params, lr=lr)
    for step in range(steps):
        x, y = batch(32, seed + step)
        monitor.start_step(step)
        _, loss = model(x, y)
        loss.backward()
        monitor.after_backward(step)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip else math.inf)
        monitor.before_update(step)
        opt.step()
        model.zero_grad(set_to_none=True)
        monitor.after_update(step, loss=loss.item(), lr=lr, grad_norm=norm.item(),
                             clipped=bool(clip and norm.item() > clip))


# ----------------------------------------------------------------------------- what is measured


def test_saturation_rises_when_first_layer_weights_are_scaled_up_five_times():
    model = deep_mlp()
    x, y = batch()
    before = saturations(snapshot(model, x, y))
    first = next(m for m in model.modules() if isinstance(m, Linear))
    with torch.no_grad():
        first.weight *= 5
    after = saturations(snapshot(model, x, y))
    assert after[0] > before[0] + 0.2
    assert np.mean(after) > np.mean(before)


def test_kaiming_init_has_less_saturation_than_naive_init():
    x, y = batch()
    naive = saturations(snapshot(deep_mlp("naive"), x, y))
    kaiming = saturations(snapshot(deep_mlp("kaiming"), x, y))
    assert min(naive) > 0.5  # N(0, 1) weights: most units stuck at +-1
    assert max(kaiming) < min(naive) / 2
    assert np.mean(kaiming) < MAX_SATURATION * 2


def test_every_histogram_counts_every_element():
    model = deep_mlp()
    x, y = batch(50)
    snap = snapshot(model, x, y)
    for s in snap.layers.values():
        assert s.hist.counts.sum() == 50 * 48
        assert s.grad_hist.counts.sum() == 50 * 48
    params = dict(model.named_parameters())
    for w in snap.weights.values():
        assert w.hist.counts.sum() == params[w.name].numel()
    extreme = torch.tensor([-1e30, -math.inf, math.nan, 0.0, 1e30, math.inf, 3.0])
    hist = histogram(extreme, span=1.0)
    assert hist.counts.sum() == 7 and hist.counts[0] == 2 and hist.counts[-1] == 4
    assert len(hist.edges) == len(hist.counts) + 1 and hist.edges[0] == -math.inf


def test_update_ratio_matches_a_hand_computation_on_one_sgd_step():
    model = Net(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    monitor = Monitor(model, every=1, log=lambda _: None)
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.arange(8) % 3
    lr = 0.1
    monitor.start_step(0)
    model(x, y)[1].backward()
    monitor.after_backward(0)
    grads = [p.grad.clone() for p in (model.net[0].weight, model.net[2].weight)]
    monitor.before_update(0)
    torch.optim.SGD(model.parameters(), lr=lr).step()
    monitor.after_update(0, loss=1.0, lr=lr)
    after = [model.net[0].weight.detach().numpy(), model.net[2].weight.detach().numpy()]
    by_hand = [np.log10(np.std(lr * g.numpy()) / np.std(w)) for g, w in zip(grads, after, strict=True)]
    np.testing.assert_allclose(monitor.history.updates()[0], by_hand, rtol=1e-12)
    assert monitor.history.weight_names == ["net.0.weight", "net.2.weight"]


def test_grad_data_ratio_is_gradient_std_over_weight_std():
    model = Net(nn.Linear(6, 4))
    x, y = torch.randn(10, 6, dtype=torch.float64), torch.arange(10) % 4
    snap = snapshot(model, x, y)
    model(x, y)[1].backward()
    w = model.net[0].weight
    expected = w.grad.std(correction=0) / w.detach().std(correction=0)
    assert snap.weights["net.0.weight"].grad_data == pytest.approx(expected.item(), rel=1e-12)


def test_dead_units_follow_the_stated_rules():
    relu = Net(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    gelu = Net(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 2))
    for model in (relu, gelu):
        with torch.no_grad():
            model.net[0].bias[:3] = -100.0  # half the units never open
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.arange(20) % 2
    assert snapshot(relu, x, y).layers["net.1"].dead == pytest.approx(0.5)
    assert snapshot(gelu, x, y).layers["net.1"].dead == pytest.approx(0.5)


def test_gpt_tracks_attention_mlp_and_gelu_outputs_of_every_block():
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    model = GPT(cfg).double()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 11, (3, 8), generator=g), torch.randint(0, 11, (3, 8), generator=g)
    snap = snapshot(model, x, y)
    kinds = [(name, s.kind) for name, s in snap.layers.items()]
    assert kinds == [("blocks.0.attn", "attention"), ("blocks.0.mlp", "mlp"), ("blocks.0.mlp.gelu", "gelu"),
                     ("blocks.1.attn", "attention"), ("blocks.1.mlp", "mlp"), ("blocks.1.mlp.gelu", "gelu")]
    assert all(s.grad_std is not None and s.grad_std > 0 for s in snap.layers.values())
    assert snap.layers["blocks.0.mlp.gelu"].hist.counts.sum() == 3 * 8 * 32
    assert "head.weight" in snap.weights and "wte.weight" in snap.weights


def test_snapshot_leaves_no_hooks_gradients_or_changed_batchnorm_statistics():
    model = deep_mlp(batchnorm=True)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    snapshot(model, *batch())
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


def test_monitor_measures_early_steps_and_every_nth_then_removes_its_hooks():
    model = deep_mlp()
    monitor = Monitor(model, every=4, log=lambda _: None)
    train_steps(model, monitor, lr=0.1, steps=13)
    assert [s.step for s in monitor.history.snapshots] == [0, 1, 2, 4, 5, 8, 10, 12]
    assert len(monitor.history.steps) == 13 and monitor.history.updates().shape == (13, 6)
    assert all(not m._forward_hooks for m in model.modules())


def test_only_the_first_micro_batch_of_a_step_is_measured():
    model = Net(nn.Linear(3, 4), nn.Tanh())
    monitor = Monitor(model, every=1, log=lambda _: None)
    small, large = torch.zeros(5, 3, dtype=torch.float64), torch.full((5, 3), 9.0, dtype=torch.float64)
    monitor.start_step(0)
    model(small)[0].sum().backward()
    model(large)[0].sum().backward()
    monitor.after_backward(0)
    stats = monitor.history.snapshots[0].layers["net.1"]
    assert stats.mean == pytest.approx(torch.tanh(model.net[0].bias).mean().item())


def test_activation_gradients_are_measured_as_if_the_loss_were_not_divided_by_grad_accum():
    # the engine divides each micro-batch's loss by grad_accum before its backward
    k = 4  # a power of two: dividing and multiplying by it are exact, so the numbers match exactly
    x, y = batch()
    snaps = []
    for grad_accum in (1, k):
        model = deep_mlp()
        monitor = Monitor(model, every=1, log=lambda _: None, grad_accum=grad_accum)
        monitor.start_step(0)
        for _ in range(grad_accum):  # the same batch each time: .grad ends up that batch's gradient
            (model(x, y)[1] / grad_accum).backward()
        monitor.after_backward(0)
        snaps.append(monitor.history.snapshots[0])
    plain, accumulated = snaps
    assert list(accumulated.layers) == list(plain.layers) and plain.layers
    for name, s in plain.layers.items():
        a = accumulated.layers[name]
        assert (a.grad_mean, a.grad_std, a.grad_hist.span) == (s.grad_mean, s.grad_std, s.grad_hist.span)
        np.testing.assert_array_equal(a.grad_hist.counts, s.grad_hist.counts)
    for name, w in plain.weights.items():  # .grad is the mean over the micro-batches: left as it is
        assert accumulated.weights[name].grad_std == pytest.approx(w.grad_std, rel=1e-12)


def test_grad_accum_must_be_at_least_one():
    from nanogpt.errors import UserError

    with pytest.raises(UserError, match="at least 1"):
        Monitor(Net(nn.Linear(2, 2)), grad_accum=0)


def test_a_weight_that_took_no_step_has_no_update_ratio():
    # fine-tuning one layer: the optimizer holds only it, and log10(0) = -inf for every other weight
    # would make the median -inf and the health report cry "learning rate too low"
    model = deep_mlp()
    first = next(m for m in model.modules() if isinstance(m, Linear))
    monitor = Monitor(model, every=5, log=lambda _: None)
    train_steps(model, monitor, lr=0.1, steps=12, params=first.parameters())
    updates = monitor.history.updates()  # (12, 6)
    moved = monitor.history.weight_names.index("net.layers.2.weight")
    assert np.isfinite(updates[:, moved]).all()
    assert np.isnan(np.delete(updates, moved, axis=1)).all()
    assert median_update(monitor.history) == pytest.approx(np.median(updates[:, moved]))
    assert not [p for p in monitor.finish() if p.check == "update"]


def test_the_update_check_ignores_minus_inf_saved_by_older_runs():
    history = History(["a", "b", "c"], steps=list(range(10)), loss=[1.0] * 10, lr=[0.1] * 10,
                        grad_norm=[1.0] * 10, clipped=[False] * 10,
                        update_ratio=[np.array([-3.0, -np.inf, -np.inf])] * 10)
    assert median_update(history) == -3.0
    assert not [p for p in check_training(history) if p.check == "update"]


# ----------------------------------------------------------------------------- warnings


@pytest.mark.parametrize("lr, words", [(10.0, "too high"), (1e-6, "too low")])
def test_learning_rate_far_off_triggers_the_update_warning(lr, words):
    model = deep_mlp()
    messages = []
    monitor = Monitor(model, every=5, log=messages.append)
    train_steps(model, monitor, lr=lr, steps=12)
    problems = monitor.finish()
    assert any(p.check == "update" and words in p.message for p in problems)
    assert words in messages[-1]  # the printed report says it


def test_a_good_learning_rate_passes_the_update_check():
    model = deep_mlp()
    monitor = Monitor(model, every=5, log=lambda _: None)
    train_steps(model, monitor, lr=0.1, steps=12)
    assert -4 < median_update(monitor.history) < -2
    assert not [p for p in monitor.finish() if p.check in ("update", "nan")]


def test_saturated_tanh_is_warned_about_during_training():
    messages = []
    model = deep_mlp("naive")
    train_steps(model, Monitor(model, every=10, log=messages.append), lr=0.01, steps=2)
    assert any("warning at step 0" in m and "saturated" in m for m in messages)


def test_activation_std_collapsing_with_depth_is_reported():
    layers = []
    for _ in range(4):
        layers += [nn.Linear(16, 16), nn.Tanh()]
    model = Net(*layers, nn.Linear(16, 3))
    with torch.no_grad():
        for lin in model.net[:-1:2]:
            lin.weight *= 0.3  # each layer shrinks the signal
            lin.bias.zero_()
    x, y = torch.randn(32, 16, dtype=torch.float64), torch.arange(32) % 3
    assert [p.where for p in check_snapshot(snapshot(model, x, y)) if p.check == "depth"] == ["tanh"]


def test_a_head_scaled_down_at_init_stands_out_in_grad_data():
    # makemore part 3: the output layer, multiplied by 0.01 at init, learns far faster at first
    problems = check_snapshot(snapshot(deep_mlp(), *batch()))
    assert [p.where for p in problems if p.check == "grad_data"] == ["net.layers.10.weight"]


def test_nan_loss_and_constant_clipping_are_reported():
    model = deep_mlp()
    monitor = Monitor(model, every=1, log=lambda _: None)
    train_steps(model, monitor, lr=0.1, steps=3, clip=1e-6)
    monitor.after_update(3, loss=math.nan, lr=0.1, grad_norm=1.0, clipped=True)
    checks = {p.check for p in monitor.finish()}
    assert {"nan", "clipping"} <= checks


def test_clipping_is_worked_out_from_the_threshold_when_not_given():
    monitor = Monitor(Net(nn.Linear(2, 2)), every=1, log=lambda _: None)
    for step, norm in enumerate((0.5, 2.0)):
        monitor.after_update(step, loss=torch.tensor(1.0), lr=0.1, grad_norm=torch.tensor(norm),
                             grad_clip=1.0)
    monitor.after_update(2, loss=1.0, lr=0.1, grad_norm=None, grad_clip=1.0)  # norm not measured
    assert monitor.history.clipped == [False, True, False]
    assert monitor.history.grad_norm[:2] == [0.5, 2.0] and monitor.history.loss == [1.0] * 3


def test_every_must_be_at_least_one():
    from nanogpt.errors import UserError

    with pytest.raises(UserError, match="at least 1"):
        Monitor(Net(nn.Linear(2, 2)), every=0)


# ----------------------------------------------------------------------------- outputs


def test_finish_writes_data_report_and_plots_that_load_back(tmp_path):
    model = deep_mlp(batchnorm=True)
    monitor = Monitor(model, every=3, log=lambda _: None)
    train_steps(model, monitor, lr=0.1, steps=4)
    monitor.finish(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"diagnostics.npz", "health.txt", "update_ratios.png", "training.png",
            "activations_step0.png", "activation_grads_step3.png", "weight_grads_step3.png"} <= names
    assert "OK" in (tmp_path / "health.txt").read_text()
    loaded, saved = History.load(tmp_path), monitor.history
    assert loaded.steps == saved.steps and loaded.weight_names == saved.weight_names
    np.testing.assert_allclose(loaded.updates(), saved.updates())
    for a, b in zip(loaded.snapshots, saved.snapshots, strict=True):
        assert a.step == b.step and a.table() == b.table()
        name = next(iter(b.layers))
        np.testing.assert_array_equal(a.layers[name].grad_hist.counts, b.layers[name].grad_hist.counts)


def test_plots_return_figures_and_print_the_numbers_they_draw(capsys):
    model = deep_mlp()
    monitor = Monitor(model, every=1, log=lambda _: None)
    train_steps(model, monitor, lr=0.1, steps=2)
    snap = monitor.history.snapshots[-1]
    for plot in (P.plot_activations, P.plot_activation_grads, P.plot_weight_grads):
        assert plot(snap).axes
    assert P.plot_update_ratios(monitor).axes and P.plot_training(monitor.history).axes
    out = capsys.readouterr().out
    assert "saturated" in out and "grad:data" in out and "update:data over the last" in out


def test_legends_name_layers_in_the_readers_words():
    model = deep_mlp()
    monitor = Monitor(model, every=1, log=lambda _: None)
    train_steps(model, monitor, lr=0.1, steps=2)
    snap = monitor.history.snapshots[-1]
    for plot in (P.plot_activations, P.plot_weight_grads):
        labels = [line.get_label() for ax in plot(snap, verbose=False).axes for line in ax.get_lines()]
        assert labels and not any("net.layers" in label for label in labels), labels
    labels = [line.get_label() for line in P.plot_activations(snap, verbose=False).axes[0].get_lines()]
    assert labels[0].startswith("tanh layer 1: mean")
    assert P.reader_name("blocks.0.attn.proj.weight", None, 3) == "blocks.0.attn.proj"


def test_a_log_axis_reads_in_plain_numbers():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    norms = [2.0, 3.0, 25.0, 4.0, 2.5] * 2  # a spike: the axis spans 2 .. 25
    history = History(["a"], steps=list(range(10)), loss=[1.0] * 10, lr=[0.1] * 10, grad_norm=norms,
                      clipped=[False] * 10, update_ratio=[np.array([-3.0])] * 10)
    fig = P.plot_training(history, verbose=False)
    ax = fig.axes[2]
    FigureCanvasAgg(fig).draw()
    shown = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
    assert shown and not any("10^" in t or "times" in t or "×" in t for t in shown), shown


def test_the_attention_grid_has_a_colour_bar_and_labels_that_do_not_touch():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    line = "ROMEO:\nBut soft, what light"
    labels = [{"\n": "\\n", " ": "␣"}.get(c, c) for c in line]
    maps = [[torch.softmax(torch.randn(len(line), len(line)), -1) for _ in range(4)] for _ in range(2)]
    fig = P.plot_attention(maps, labels, [[f"layer {r}, head {h}" for h in range(4)] for r in range(2)])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    assert len(fig.axes) == 2 * 4 + 1  # eight panels and one colour bar
    for ax in fig.axes[:8]:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
        assert all(a.x1 <= b.x0 + 0.5 for a, b in zip(boxes, boxes[1:], strict=False)), "x labels overlap"
        boxes = [t.get_window_extent(renderer) for t in ax.get_yticklabels() if t.get_text()]
        assert all(b.y1 <= a.y0 + 0.5 for a, b in zip(boxes, boxes[1:], strict=False)), "y labels overlap"
    # each top row's x labels stay above the next row's titles
    top, below = fig.axes[0], fig.axes[4]
    lowest = min(t.get_window_extent(renderer).y0 for t in top.get_xticklabels())
    assert lowest > below.title.get_window_extent(renderer).y1


# ----------------------------------------------------------------------------- layout

LENS = ["stats", "record", "health", "plots", "monitor"]


def test_the_lens_modules_import_only_those_below_them():
    package = Path(lens_monitor.__file__).parent
    for i, module in enumerate(LENS):
        tree = ast.parse((package / f"{module}.py").read_text())
        imported = {node.module.removeprefix("nanogpt.diagnostics.") for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module}
        assert imported & set(LENS) <= set(LENS[:i]), module


def test_every_name_the_lectures_use_is_where_they_import_it_from():
    lectures = Path(__file__).parents[1] / "lectures"
    notebooks = [p for p in sorted(lectures.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
    code = "\n".join("".join(cell["source"]) for path in notebooks
                     for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code")
    modules = {"monitor": lens_monitor, "plots": P, "health": health, "record": record}
    used = set(re.findall(r"\b(monitor|plots|health|record)\.([A-Za-z_]\w*)", code))
    assert ("monitor", "snapshot") in used  # the lectures say monitor., plots., health., record.
    missing = [f"{alias}.{name}" for alias, name in sorted(used) if not hasattr(modules[alias], name)]
    assert not missing
