"""A recurrent network of hard-threshold (step) units, e.g. the 3-unit cell that adds binary numbers.

    h_t = step(U x_t + W h_{t-1} + b_h)      x_t (I,), h_t (H,)
    y_t = step(v . h_t + b_y)                step(a) = 1 if a > 0 else 0

run over a batch of sequences x (batch, time, I). The forward pass is exact (0/1 values, no
approximation). step() has zero gradient almost everywhere, so to *train* the same cell the backward
pass may use a surrogate (straight-through or a steep sigmoid's slope; see functional.Step).
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from .autograd import Tensor
from .backend import default_dtype, get_array_module
from .nn import Module, Parameter


def _has_bool(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return True
    return isinstance(value, (list, tuple)) and any(_has_bool(v) for v in value)


class HardThresholdRNN(Module):
    """Parameters U (H, I), W (H, H), b_h (H,), v (H,), b_y (scalar, shape ()), h0 (H,).

    surrogate: None (exact, no useful gradient), 'ste' or 'sigmoid' (with slope `beta`) for training.
    """

    def __init__(self, n_in: int = 2, n_hidden: int = 3, rng=None, surrogate=None, beta: float = 1.0,
                 train_h0: bool = False, dtype=None):
        dtype = dtype or default_dtype()
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.n_in, self.n_hidden = n_in, n_hidden
        self.surrogate, self.beta = surrogate, beta
        self.U = Parameter(rng.standard_normal((n_hidden, n_in)).astype(dtype))
        self.W = Parameter(rng.standard_normal((n_hidden, n_hidden)).astype(dtype))
        self.b_h = Parameter(rng.standard_normal(n_hidden).astype(dtype))
        self.v = Parameter(rng.standard_normal(n_hidden).astype(dtype))
        self.b_y = Parameter(np.asarray(rng.standard_normal(), dtype=dtype))
        h0 = np.zeros(n_hidden, dtype=dtype)
        self.h0 = Parameter(h0) if train_h0 else Tensor(h0)

    @classmethod
    def from_weights(cls, weights: dict, dtype=np.float64, n_in: int | None = None, n_hidden: int | None = None):
        """Build from a dict with U, W, b_h, v, b_y, h_0 (plain lists/numbers, as in weights/rnn_adder.json).

        Every entry must be finite numbers of the right shape (U (H, I) sets H and I; n_in / n_hidden, when
        given, pin them); anything else is a ValueError naming the entry."""
        expected_keys = ("U", "W", "b_h", "v", "b_y", "h_0")
        if not isinstance(weights, dict):
            raise ValueError(f"RNN weights: expected a mapping with keys {list(expected_keys)}")
        missing = [k for k in expected_keys if k not in weights]
        if missing:
            raise ValueError(f"RNN weights: key '{missing[0]}' is missing; expected keys {sorted(expected_keys)}")

        def numbers(key):
            value = weights[key]
            try:
                kind = np.asarray(value).dtype.kind
            except ValueError:  # ragged lists
                kind = "O"
            if kind not in "iuf" or _has_bool(value):  # not strings, not JSON true/false, not ragged
                raise ValueError(f"RNN weights: '{key}' is not numbers ({str(value)[:40]})")
            arr = np.asarray(value, dtype=dtype)
            if not np.isfinite(arr).all():
                raise ValueError(f"RNN weights: '{key}' must hold finite numbers, got {str(value)[:40]}")
            return arr

        U = numbers("U")
        if U.ndim != 2 or 0 in U.shape:
            raise ValueError(f"RNN weights: 'U' has shape {U.shape}, expected (hidden units, inputs)")
        h, i = U.shape
        if (n_in is not None and i != n_in) or (n_hidden is not None and h != n_hidden):
            raise ValueError(f"RNN weights: 'U' has shape {U.shape}, expected ({n_hidden or h}, {n_in or i}): "
                             f"{n_hidden or h} hidden units, {n_in or i} inputs")
        net = cls(n_in=i, n_hidden=h, dtype=dtype)
        expected = {"U": U.shape, "W": (h, h), "b_h": (h,), "v": (h,), "b_y": (), "h_0": (h,)}
        for key, shape in expected.items():
            arr = numbers(key)
            if arr.shape != shape:
                raise ValueError(f"RNN weights: '{key}' has shape {arr.shape}, expected {shape}")
            target = "h0" if key == "h_0" else key
            getattr(net, target).data = arr
        return net

    def weights(self) -> dict:
        """The parameters as plain Python lists/floats (JSON-ready)."""
        from .backend import to_numpy
        return {"U": to_numpy(self.U.data).tolist(), "W": to_numpy(self.W.data).tolist(),
                "b_h": to_numpy(self.b_h.data).tolist(), "v": to_numpy(self.v.data).tolist(),
                "b_y": float(self.b_y.data), "h_0": to_numpy(self.h0.data).tolist()}

    def cell(self, x_t, h_prev):
        """One step: (B, I), (B, H) -> h_t (B, H) and y_t (B,)."""
        a = F.matmul(x_t, F.transpose(self.U)) + F.matmul(h_prev, F.transpose(self.W)) + self.b_h
        h = F.step(a, self.surrogate, self.beta)
        # v . h as a broadcast product + sum: F.matmul's backward does not handle a 1-D operand
        y = F.step(F.sum(h * self.v, axis=1) + self.b_y, self.surrogate, self.beta)
        return h, y

    def forward(self, x):
        """x (B, T, I) of 0/1 values -> (y (B, T), h (B, T, H))."""
        x = x if isinstance(x, Tensor) else Tensor(x, dtype=self.U.dtype)
        if x.ndim != 3 or x.shape[2] != self.n_in:
            raise ValueError(f"HardThresholdRNN: input must be (batch, time, {self.n_in}), got shape {tuple(x.shape)}")
        b = x.shape[0]
        xp = get_array_module(x.data)
        h = self.h0 + Tensor(xp.zeros((b, self.n_hidden), dtype=self.U.dtype))  # broadcast h0 over the batch
        hs, ys = [], []
        for t in range(x.shape[1]):
            h, y = self.cell(x[:, t, :], h)
            hs.append(h)
            ys.append(y)
        return F.stack(ys, axis=1), F.stack(hs, axis=1)

    def run_array(self, x):
        """The exact forward pass on plain arrays, no graph: x (B, T, I) -> (y (B, T), h (B, T, H)) arrays.

        Same math as forward(), written as sums over the few inputs/units (I, H are tiny, where a general
        matmul is slow), so exhaustive checks over ~1M sequences take seconds.
        """
        xp = get_array_module(self.U.data)
        U, W, b_h, v, b_y = (p.data for p in (self.U, self.W, self.b_h, self.v, self.b_y))
        x = xp.asarray(x, dtype=U.dtype)
        if x.ndim != 3 or x.shape[2] != self.n_in:
            raise ValueError(f"HardThresholdRNN: input must be (batch, time, {self.n_in}), got shape {x.shape}")
        b, steps = x.shape[:2]
        # the inputs' share of every step at once, as (T, H, B): each step then works on contiguous rows.
        # The sums keep forward()'s order (b_h, then the inputs, then the units), so the bits match it.
        a_in = xp.broadcast_to(b_h, (b, steps, self.n_hidden)).copy()
        for i in range(self.n_in):
            a_in += x[:, :, i:i + 1] * U[:, i]
        a_in = xp.ascontiguousarray(a_in.transpose(1, 2, 0))
        hs = xp.empty((steps, self.n_hidden, b), dtype=U.dtype)
        h = xp.broadcast_to(self.h0.data[:, None], (self.n_hidden, b))
        for t in range(steps):
            a = a_in[t]
            for j in range(self.n_hidden):
                a += W[:, j:j + 1] * h[j]
            h = hs[t]
            xp.greater(a, 0, out=h, casting="unsafe")
        hs = hs.transpose(2, 0, 1)
        y = ((hs * v).sum(axis=2) + b_y > 0).astype(U.dtype)
        return y, hs
