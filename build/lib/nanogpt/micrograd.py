"""Stage 0: a scalar Value that remembers how it was made, backward() through it, and a tiny MLP.

Every Value holds one float. An operation on Values returns a new Value that keeps its inputs
(`children`) and the derivative of its output with respect to each input (`local`), evaluated at
the inputs' values. That is all backward() needs: the chain rule multiplies those local
derivatives along every path from the output back to a leaf, and adds up the paths.

    x, y = Value(2.0), Value(-3.0)
    z = (x * y + x).tanh()
    z.backward()          # x.grad = dz/dx, y.grad = dz/dy

(Karpathy's micrograd keeps a small backward function per node instead; keeping the numbers makes
each operation one line and the chain rule one loop, in backward().)

Every Value is a scalar, so backward() can start from any of them: the starting gradient,
d(out)/d(out), is the number 1. (PyTorch needs a scalar there too, or a given starting gradient.)
"""

from __future__ import annotations

import math
import numbers
import random

import numpy as np

# ----------------------------------------------------------------------------- the engine


class Value:
    """One float, the gradient of some output with respect to it, and how it was computed."""

    __slots__ = ("data", "grad", "children", "local", "op")  # no per-Value dict: a step makes ~20,000

    def __init__(self, data, children=(), local=(), op=""):
        self.data = float(data)
        self.grad = 0.0
        self.children = children  # the Values this one was computed from
        self.local = local  # d(self)/d(child) for each child, taken at the children's values
        self.op = op  # the operation's name, for drawing the graph

    def __repr__(self):
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    def __add__(self, other):
        other = _lift(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __mul__(self, other):
        other = _lift(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data), "*")

    def __pow__(self, k):
        if not isinstance(k, numbers.Real):
            raise TypeError(f"Value ** {type(k).__name__}: the exponent must be a plain int or float "
                            f"(for a Value exponent b write (b * a.log()).exp())")
        if self.data == 0 and k < 0:
            raise ZeroDivisionError(f"0 ** {k}: division by zero")
        if self.data < 0 and k != int(k):
            raise ValueError(f"({self.data}) ** {k}: a negative number to a fractional power is not real")
        return Value(self.data**k, (self,), (k * self.data ** (k - 1),), f"**{k:g}")

    def exp(self):
        """e ** self."""
        e = math.exp(self.data)
        return Value(e, (self,), (e,), "exp")

    def log(self):
        """The natural logarithm; self must be positive."""
        if self.data <= 0:
            raise ValueError(f"log({self.data}): log is defined only for positive numbers")
        return Value(math.log(self.data), (self,), (1.0 / self.data,), "log")

    def tanh(self):
        """The hyperbolic tangent, (e^2x - 1) / (e^2x + 1): a squashing into (-1, 1)."""
        t = math.tanh(self.data)
        return Value(t, (self,), (1.0 - t * t,), "tanh")

    def relu(self):
        """max(self, 0)."""
        # At exactly 0 the derivative is undefined; 0 is the usual choice (PyTorch's too).
        return Value(max(self.data, 0.0), (self,), (float(self.data > 0),), "relu")

    # Everything else is made of the above, so it needs no derivative of its own.
    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + -_lift(other)

    def __truediv__(self, other):
        return self * _lift(other) ** -1

    # The reflected operators make `2 * v` work as well as `v * 2`.
    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return -self + other

    def __rtruediv__(self, other):
        return self**-1 * other

    def backward(self):
        """Set every upstream Value's .grad to d(self)/d(that Value): the chain rule, output to leaves."""
        order = topological_order(self)
        for node in order:
            if node.children:  # interior nodes hold this pass's gradients only; leaves accumulate
                node.grad = 0.0
        self.grad += 1.0  # d(self)/d(self)
        # Reversed topological order: a node passes its gradient on only once every path through
        # it has delivered its share, i.e. after every node computed from it is done.
        for node in reversed(order):
            for child, d in zip(node.children, node.local, strict=True):
                # `+=`, not `=`: a Value used twice (x * x, or a weight shared by many sums) gets
                # one contribution per use, and the chain rule adds them.
                child.grad += d * node.grad


def _lift(x):
    """x as a Value: a number becomes a leaf; anything else is a mistake worth a clear message."""
    if isinstance(x, Value):
        return x
    if isinstance(x, numbers.Real):
        return Value(x)
    raise TypeError(f"a Value combines with Values, ints and floats, not {type(x).__name__}")


def topological_order(root):
    """Every Value that root was computed from, each listed after all the Values it was made from."""
    # A depth-first search that lists a node once all its children are listed. It keeps its own
    # stack of (node, children still to visit) instead of recursing, so a long chain (a sum of
    # thousands of terms) cannot exceed Python's recursion limit.
    order, seen, stack = [], {root}, [(root, iter(root.children))]
    while stack:
        node, children = stack[-1]
        for child in children:
            if child not in seen:
                seen.add(child)
                stack.append((child, iter(child.children)))
                break
        else:  # every child is listed: now the node can be
            stack.pop()
            order.append(node)
    return order


# ----------------------------------------------------------------------------- the network


def _rng(rng):
    """A random.Random as given, or one seeded with the given int."""
    return rng if isinstance(rng, random.Random) else random.Random(rng)


class Module:
    """Something with parameters: a Neuron, a Layer, an MLP."""

    def parameters(self):
        """The Values that training adjusts: every weight and bias."""
        return []

    def zero_grad(self):
        """Clear the gradients that backward() accumulates into the parameters (the leaves)."""
        for p in self.parameters():
            p.grad = 0.0


class Neuron(Module):
    """act(w . x + b): nin weights and a bias; act is "tanh", "relu" or "linear"."""

    def __init__(self, nin, rng, act="tanh"):
        if act not in ("tanh", "relu", "linear"):
            raise ValueError(f"act must be 'tanh', 'relu' or 'linear', not {act!r}")
        rng = _rng(rng)
        # Uniform in +-1/sqrt(nin): the spread of w . x does not grow with nin (about 0.6 of one
        # input's), so a tanh starts in its sloped middle, not in its flat tails.
        self.w = [Value(rng.uniform(-1, 1) / nin**0.5) for _ in range(nin)]
        self.b = Value(0.0)
        self.act = act

    def __call__(self, x):
        if len(x) != len(self.w):
            raise ValueError(f"this neuron takes {len(self.w)} inputs, got {len(x)}")
        s = sum((wi * xi for wi, xi in zip(self.w, x, strict=True)), self.b)
        return s if self.act == "linear" else getattr(s, self.act)()

    def parameters(self):
        return self.w + [self.b]


class Layer(Module):
    """nout neurons, each reading the same nin inputs."""

    def __init__(self, nin, nout, rng, act="tanh"):
        rng = _rng(rng)
        self.neurons = [Neuron(nin, rng, act) for _ in range(nout)]

    def __call__(self, x):
        return [n(x) for n in self.neurons]

    def parameters(self):
        return [p for n in self.neurons for p in n.parameters()]


class MLP(Module):
    """Layers of the sizes in nouts: the hidden ones apply act, the last out_act. One output: a Value."""

    def __init__(self, nin, nouts, rng, act="tanh", out_act="tanh"):
        if nin < 1 or not nouts or min(nouts) < 1:
            raise ValueError(f"an MLP needs nin >= 1 and layer sizes >= 1, got {nin} and {nouts}")
        rng = _rng(rng)
        sizes = [nin] + list(nouts)
        self.layers = [Layer(sizes[i], sizes[i + 1], rng, act if i < len(nouts) - 1 else out_act)
                       for i in range(len(nouts))]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x[0] if len(x) == 1 else x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]


def mse_loss(preds, targets):
    """The mean of (prediction - target)^2: a Value."""
    return sum((p - t) ** 2 for p, t in zip(preds, targets, strict=True)) / len(preds)


def sgd_step(model, xs, ys, lr):
    """One step of gradient descent on the MSE: forward, zero grads, backward, update; the loss before it."""
    loss = mse_loss([model(x) for x in xs], ys)
    model.zero_grad()
    loss.backward()
    for p in model.parameters():
        p.data -= lr * p.grad
    return loss


def accuracy(model, xs, ys):
    """The fraction of points whose output has the sign of their label (+1 or -1)."""
    return sum((model(x).data > 0) == (y > 0) for x, y in zip(xs, ys, strict=True)) / len(xs)


# ----------------------------------------------------------------------------- a toy problem


def make_moons(n, noise, seed):
    """Two interleaved half circles, n points: (X (n, 2) floats, y (n,) labels +1 and -1).

    Gaussian noise of standard deviation `noise` (the circles have radius 1) is added, then each
    coordinate is standardised to mean 0 and standard deviation 1: the scale the weights'
    initialisation assumes of its inputs, from which plain gradient descent needs fewer steps.
    """
    if n < 2:
        raise ValueError(f"make_moons needs n >= 2 points, got {n}")
    rng = np.random.default_rng(seed)
    n_top = n // 2
    t_top, t_bot = np.linspace(0, np.pi, n_top), np.linspace(0, np.pi, n - n_top)
    X = np.concatenate([np.stack([np.cos(t_top), np.sin(t_top)], 1),
                        np.stack([1 - np.cos(t_bot), 0.5 - np.sin(t_bot)], 1)])  # (n, 2)
    y = np.concatenate([np.ones(n_top), -np.ones(n - n_top)])  # (n,)
    X = X + noise * rng.standard_normal(X.shape)
    X = (X - X.mean(0)) / X.std(0)
    order = rng.permutation(n)
    return X[order], y[order]
