"""Helpers for the gradient-check suite: run an op in scratchnet and in PyTorch (float64) on the same
inputs and upstream gradient, and estimate gradients by central finite differences.

Tolerances: against PyTorch, rtol 1e-6 with a 1e-9 absolute floor (both are exact float64 arithmetic,
differing only in summation order). Against finite differences, rtol 1e-5 and atol 1e-7: central
differences with h = 1e-6 carry O(h^2) truncation and ~1e-16 * |f| / h rounding error.
"""
from __future__ import annotations

import numpy as np
import torch

import scratchnet as sn

TORCH_TOL = dict(rtol=1e-6, atol=1e-9)
FD_TOL = dict(rtol=1e-5, atol=1e-7)


def nhwc_to_nchw(t):
    return t.permute(0, 3, 1, 2)


def nchw_to_nhwc(t):
    return t.permute(0, 2, 3, 1)


def hwio_to_oihw(t):
    return t.permute(3, 2, 0, 1)


def scratchnet_run(fn, arrays, upstream, grad_mask=None):
    """out, [grad per input] of fn(*Tensors) with upstream gradient `upstream` (float64)."""
    grad_mask = grad_mask or [True] * len(arrays)
    tensors = [sn.Tensor(a.copy(), requires_grad=m) for a, m in zip(arrays, grad_mask)]
    out = fn(*tensors)
    out.backward(upstream.copy())
    return out.data, [t.grad for t in tensors]


def torch_run(fn, arrays, upstream, grad_mask=None):
    grad_mask = grad_mask or [True] * len(arrays)
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=m) for a, m in zip(arrays, grad_mask)]
    out = fn(*tensors)
    out.backward(torch.tensor(upstream))
    return out.detach().numpy(), [None if t.grad is None else t.grad.numpy() for t in tensors]


def compare_with_torch(sn_fn, torch_fn, arrays, rng, grad_mask=None):
    """Assert forward outputs and all input gradients agree with PyTorch in float64; returns the outputs."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    with sn.backend.default_dtype_as(np.float64):
        probe = sn_fn(*[sn.Tensor(a) for a in arrays])
        upstream = rng.standard_normal(probe.shape)
        out_s, grads_s = scratchnet_run(sn_fn, arrays, upstream, grad_mask)
    out_t, grads_t = torch_run(torch_fn, arrays, upstream, grad_mask)
    np.testing.assert_allclose(out_s, out_t, **TORCH_TOL, err_msg="forward differs from PyTorch")
    for i, (gs, gt) in enumerate(zip(grads_s, grads_t)):
        if gt is None:
            continue
        assert gs is not None, f"input {i}: scratchnet gave no gradient"
        np.testing.assert_allclose(gs, gt, **TORCH_TOL, err_msg=f"gradient of input {i} differs from PyTorch")
    return out_s, grads_s, upstream


def finite_difference_check(sn_fn, arrays, rng, n_samples=12, h=1e-6, which=None):
    """Compare analytic gradients of f = sum(sn_fn(*inputs) * R) with central differences at sampled entries."""
    arrays = [np.asarray(a, dtype=np.float64).copy() for a in arrays]
    which = range(len(arrays)) if which is None else which
    with sn.backend.default_dtype_as(np.float64):
        probe = sn_fn(*[sn.Tensor(a) for a in arrays])
        upstream = rng.standard_normal(probe.shape)
        _, grads = scratchnet_run(sn_fn, arrays, upstream)

        def f():
            with sn.no_grad():
                return float((sn_fn(*[sn.Tensor(a) for a in arrays]).data * upstream).sum())

        for i in which:
            flat = arrays[i].reshape(-1)
            picks = rng.choice(flat.size, size=min(n_samples, flat.size), replace=False)
            for j in picks:
                saved = flat[j]
                flat[j] = saved + h
                f_plus = f()
                flat[j] = saved - h
                f_minus = f()
                flat[j] = saved
                numeric = (f_plus - f_minus) / (2 * h)
                analytic = grads[i].reshape(-1)[j]
                np.testing.assert_allclose(analytic, numeric, **FD_TOL,
                                           err_msg=f"input {i}, flat index {j}: analytic vs finite difference")
