import math
import random

import pytest
import torch

from nanogpt.micrograd import (
    MLP,
    Layer,
    Neuron,
    Value,
    accuracy,
    make_moons,
    mse_loss,
    sgd_step,
    topological_order,
)

# The operations a random graph draws from: (name, arity, the Value version, the torch version,
# whether the operands are in the operation's domain). Reflected forms (2 - v) are separate entries,
# so that every operator method is exercised.
OPS = [
    ("add", 2, lambda a, b: a + b, lambda a, b: a + b, lambda a, b: True),
    ("sub", 2, lambda a, b: a - b, lambda a, b: a - b, lambda a, b: True),
    ("mul", 2, lambda a, b: a * b, lambda a, b: a * b, lambda a, b: True),
    ("div", 2, lambda a, b: a / b, lambda a, b: a / b, lambda a, b: abs(b) > 0.3),
    ("neg", 1, lambda a: -a, lambda a: -a, lambda a: True),
    ("square", 1, lambda a: a**2, lambda a: a**2, lambda a: abs(a) < 3),
    ("cube", 1, lambda a: a**3, lambda a: a**3, lambda a: abs(a) < 2),
    ("inverse", 1, lambda a: a**-1, lambda a: a**-1, lambda a: abs(a) > 0.3),
    ("sqrt", 1, lambda a: a**0.5, lambda a: a**0.5, lambda a: a > 0.1),
    ("exp", 1, lambda a: a.exp(), torch.exp, lambda a: a < 2),
    ("log", 1, lambda a: a.log(), torch.log, lambda a: a > 0.1),
    ("tanh", 1, lambda a: a.tanh(), torch.tanh, lambda a: True),
    ("relu", 1, lambda a: a.relu(), torch.relu, lambda a: abs(a) > 1e-6),
    ("radd", 1, lambda a: 2.5 + a, lambda a: 2.5 + a, lambda a: True),
    ("rsub", 1, lambda a: 2.5 - a, lambda a: 2.5 - a, lambda a: True),
    ("rmul", 1, lambda a: -1.5 * a, lambda a: -1.5 * a, lambda a: True),
    ("rdiv", 1, lambda a: 2.0 / a, lambda a: 2.0 / a, lambda a: abs(a) > 0.3),
]


def random_graph(seed, n_leaves=4, n_ops=60):
    """The same random expression graph built twice, from Values and from float64 tensors."""
    rng = random.Random(seed)
    leaf_values = [rng.uniform(-2, 2) for _ in range(n_leaves)]
    ours = [Value(v) for v in leaf_values]
    theirs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in leaf_values]
    uses = [0] * n_leaves
    names = set()
    while len(ours) < n_leaves + n_ops:
        name, arity, f_ours, f_theirs, ok = rng.choice(OPS)
        # Operands mostly from the last few nodes (a deep graph), sometimes from anywhere (reuse).
        idx = [rng.randrange(len(ours)) if rng.random() < 0.3 else rng.randrange(max(0, len(ours) - 6),
                                                                                  len(ours))
               for _ in range(arity)]
        if not ok(*(ours[i].data for i in idx)):
            continue
        out = f_ours(*(ours[i] for i in idx))
        if abs(out.data) > 50:  # keep the numbers moderate, so 1e-12 is a fair relative tolerance
            continue
        t = f_theirs(*(theirs[i] for i in idx))
        t.retain_grad()
        ours.append(out)
        theirs.append(t)
        uses.append(0)
        for i in idx:
            uses[i] += 1
        names.add(name)
    # The output sums every node, so that every node lies on a path to it.
    loss_ours = sum(ours[1:], ours[0])
    loss_theirs = sum(theirs[1:], theirs[0])
    return ours, theirs, loss_ours, loss_theirs, uses, names


def close(a, b, tol=1e-12):
    return abs(a - b) <= tol * max(1.0, abs(b))


@pytest.mark.parametrize("seed", range(8))
def test_random_graph_values_and_gradients_match_pytorch(seed):
    ours, theirs, loss_ours, loss_theirs, uses, names = random_graph(seed)
    loss_ours.backward()
    loss_theirs.backward()
    assert max(uses) >= 3, "the graph should reuse some node several times"
    for v, t in zip(ours, theirs, strict=True):
        assert close(v.data, t.item()), (v, t)
        assert close(v.grad, t.grad.item()), (v, t.grad)
    assert close(loss_ours.data, loss_theirs.item())


def test_random_graphs_together_use_every_operation():
    used = set().union(*(random_graph(seed)[-1] for seed in range(8)))
    assert used == {op[0] for op in OPS}


def test_a_node_used_twice_gets_both_contributions():
    x = Value(3.0)
    y = x * x + x  # dy/dx = 2x + 1
    y.backward()
    assert x.grad == 7.0


def test_reflected_operators_give_values_and_gradients():
    for f, value, grad in [(lambda v: 2 + v, 6.0, 1.0), (lambda v: 2 * v, 8.0, 2.0),
                           (lambda v: 2 - v, -2.0, -1.0), (lambda v: 2 / v, 0.5, -2 / 16)]:
        v = Value(4.0)
        out = f(v)
        out.backward()
        assert (out.data, v.grad) == (value, grad)


def test_backward_accumulates_into_leaves_like_pytorch():
    x = Value(1.5)
    y = (x * 2.0).tanh()
    y.backward()
    once = x.grad
    y.backward()  # interior nodes start afresh; the leaf adds a second copy, as torch's .grad does
    xt = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    yt = (xt * 2.0).tanh()
    yt.backward(retain_graph=True)
    yt.backward()
    assert close(x.grad, 2 * once) and close(x.grad, xt.grad.item())


def test_backward_can_start_from_a_leaf_and_from_any_interior_value():
    x = Value(2.0)
    x.backward()
    assert x.grad == 1.0
    a, b = Value(2.0), Value(5.0)
    c = a * b
    d = c + a
    c.backward()  # c is a scalar like every Value: its own graph is a and b
    assert (a.grad, b.grad, c.grad, d.grad) == (5.0, 2.0, 1.0, 0.0)


def test_long_chain_backward_needs_no_recursion():
    x = Value(1.0)
    total = sum((x * 1.0 for _ in range(5000)), Value(0.0))  # a chain 5000 additions deep
    total.backward()
    assert x.grad == 5000.0
    assert len(topological_order(total)) == 1 + 1 + 3 * 5000  # x, the start, and a leaf, * and + per term


def test_topological_order_lists_children_before_parents():
    ours, *_ = random_graph(0)
    order = topological_order(sum(ours[1:], ours[0]))
    position = {id(v): i for i, v in enumerate(order)}
    assert all(position[id(c)] < position[id(v)] for v in order for c in v.children)
    assert len(order) == len({id(v) for v in order})


def test_mlp_parameter_count():
    assert len(MLP(2, [16, 16, 1], random.Random(0)).parameters()) == 337
    assert len(Neuron(3, random.Random(0)).parameters()) == 4
    assert len(Layer(3, 4, random.Random(0)).parameters()) == 16
    assert len(MLP(3, [4, 4, 1], random.Random(0)).parameters()) == 41


def test_init_is_seeded_by_the_generator_passed_in():
    def weights(rng):
        return [p.data for p in MLP(2, [4, 1], rng).parameters()]

    assert weights(random.Random(7)) == weights(random.Random(7)) == weights(7)
    assert weights(random.Random(7)) != weights(random.Random(8))


def test_mlp_forward_and_gradients_match_pytorch():
    model = MLP(3, [4, 5, 1], random.Random(1), act="tanh", out_act="linear")
    xs = [[0.5, -1.0, 2.0], [1.0, 0.2, -0.3], [-0.7, 0.1, 0.9]]
    ys = [1.0, -1.0, 0.5]
    loss = mse_loss([model(x) for x in xs], ys)
    loss.backward()
    Ws = [torch.tensor([[w.data for w in n.w] for n in layer.neurons], dtype=torch.float64,
                       requires_grad=True) for layer in model.layers]
    bs = [torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64, requires_grad=True)
          for layer in model.layers]
    h = torch.tensor(xs, dtype=torch.float64)  # (3, 3)
    for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        h = h @ W.T + b  # (3, nout)
        h = torch.tanh(h) if i < len(Ws) - 1 else h
    loss_t = ((h[:, 0] - torch.tensor(ys, dtype=torch.float64)) ** 2).mean()
    loss_t.backward()
    assert close(loss.data, loss_t.item())
    for layer, W, b in zip(model.layers, Ws, bs, strict=True):
        for j, n in enumerate(layer.neurons):
            assert all(close(w.grad, W.grad[j, k].item()) for k, w in enumerate(n.w))
            assert close(n.b.grad, b.grad[j].item())


def test_relu_mlp_runs_and_zero_grad_clears_every_parameter():
    model = MLP(2, [3, 1], random.Random(0), act="relu")
    mse_loss([model([1.0, -2.0])], [1.0]).backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0 for p in model.parameters())


def test_sgd_step_zeroes_the_gradients_each_step():
    xs, ys = [[1.0, 2.0], [-1.0, 0.5]], [1.0, -1.0]
    a, b = MLP(2, [3, 1], random.Random(0)), MLP(2, [3, 1], random.Random(0))
    for _ in range(3):
        sgd_step(a, xs, ys, lr=0.1)
    for _ in range(3):  # the same steps written out, each from fresh gradients
        loss = mse_loss([b(x) for x in xs], ys)
        b.zero_grad()
        loss.backward()
        for p in b.parameters():
            p.data -= 0.1 * p.grad
    assert [p.data for p in a.parameters()] == [p.data for p in b.parameters()]


def test_make_moons_is_seeded_balanced_and_standardised():
    X, y = make_moons(100, 0.1, seed=0)
    X2, y2 = make_moons(100, 0.1, seed=0)
    assert X.shape == (100, 2) and y.shape == (100,)
    assert (X == X2).all() and (y == y2).all()
    assert (y == 1).sum() == 50 and (y == -1).sum() == 50
    assert abs(X.mean(0)).max() < 1e-12 and abs(X.std(0) - 1).max() < 1e-12
    assert not (make_moons(100, 0.1, seed=1)[0] == X).all()


def test_moons_reach_full_train_accuracy_in_the_lectures_steps():
    # The lecture's settings (lectures/solutions/00_micrograd.ipynb, section 9): 100 points, noise 0.1,
    # MLP(2, [8, 8, 1]) from seed 0, 100 steps of gradient descent at learning rate 0.5 on the MSE.
    X, y = make_moons(100, 0.1, seed=0)
    xs, ys = X.tolist(), y.tolist()
    model = MLP(2, [8, 8, 1], random.Random(0))
    assert accuracy(model, xs, ys) < 0.9
    losses = [sgd_step(model, xs, ys, lr=0.5).data for _ in range(100)]
    assert accuracy(model, xs, ys) == 1.0
    assert losses[-1] < 0.02 < losses[0]


def test_bad_uses_give_clear_errors():
    x = Value(2.0)
    with pytest.raises(TypeError, match="exponent must be a plain int or float"):
        x ** Value(2.0)
    with pytest.raises(TypeError, match="not str"):
        x + "1"
    with pytest.raises(ValueError, match="only for positive numbers"):
        Value(0.0).log()
    with pytest.raises(ValueError, match="only for positive numbers"):
        Value(-1.0).log()
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        1.0 / Value(0.0)
    with pytest.raises(ValueError, match="fractional power"):
        Value(-4.0) ** 0.5
    with pytest.raises(ValueError, match="takes 2 inputs, got 3"):
        Neuron(2, random.Random(0))([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="act must be"):
        MLP(2, [3, 1], random.Random(0), act="sigmoid")
    with pytest.raises(ValueError, match="layer sizes"):
        MLP(2, [], random.Random(0))
    with pytest.raises(ValueError, match="n >= 2"):
        make_moons(1, 0.1, seed=0)


def test_numbers_print_readably():
    v = Value(math.pi)
    assert repr(v) == "Value(data=3.14159, grad=0)"
