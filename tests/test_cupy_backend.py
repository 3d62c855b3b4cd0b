"""The CuPy backend gives the same results as NumPy (runs only where CuPy and a CUDA GPU are present)."""
import numpy as np
import pytest

import scratchnet as sn
from scratchnet import functional as F
from scratchnet import models, optim

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not sn.backend.cupy_available(), reason="CuPy or a CUDA GPU is absent")]


def both(fn, arrays, grad=True):
    """Run fn on numpy and on cupy copies of the arrays (float64); return outputs and input gradients."""
    results = []
    for backend in ("numpy", "cupy"):
        ts = [sn.Tensor(sn.backend.to_backend(a, backend), requires_grad=grad) for a in arrays]
        out = fn(*ts)
        up = sn.backend.to_backend(np.linspace(-1, 1, out.size).reshape(out.shape), backend)
        out.backward(up)
        results.append((sn.backend.to_numpy(out.data), [sn.backend.to_numpy(t.grad) for t in ts]))
    return results


CASES = {
    "conv": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [(2, 9, 7, 3), (3, 3, 3, 5), (5,)]),
    "conv11": (lambda x, w: F.conv2d(x, w, None, 1, 0), [(1, 13, 12, 3), (11, 11, 3, 4)]),
    "maxpool": (lambda x: F.max_pool2d(x, 2), [(2, 6, 8, 3)]),
    "maxpool_overlap": (lambda x: F.max_pool2d(x, 3, 2), [(2, 7, 9, 3)]),
    "avgpool": (lambda x: F.avg_pool2d(x, 2), [(2, 6, 8, 3)]),
    "gap": (F.global_avg_pool2d, [(2, 5, 3, 4)]),
    "linear": (F.linear, [(4, 6), (6, 3), (3,)]),
    "ce": (lambda z: F.cross_entropy(z, sn.backend.get_array_module(z.data).asarray([1, 0, 2]), 0.1), [(3, 4)]),
    "relu_exp_log": (lambda x: F.log(F.exp(F.relu(x)) + 1.0), [(3, 5)]),
    "getitem_stack": (lambda x: F.stack([x[:, 0], x[:, 2]], axis=1), [(4, 3, 2)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_numpy(name):
    fn, shapes = CASES[name]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in shapes]
    (o1, g1), (o2, g2) = both(fn, arrays)
    np.testing.assert_allclose(o2, o1, rtol=1e-9, atol=1e-12)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def test_batch_norm_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5, 3, 6))
    outs = []
    for backend in ("numpy", "cupy"):
        with sn.backend.default_dtype_as(np.float64):
            bn = sn.nn.BatchNorm2d(6).to(backend)
        t = sn.Tensor(sn.backend.to_backend(x, backend), requires_grad=True)
        bn(t).sum().backward()
        outs.append((sn.backend.to_numpy(t.grad), sn.backend.to_numpy(bn.running_var)))
    np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(outs[1][1], outs[0][1], rtol=1e-12)


def test_training_steps_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    weights = []
    for backend in ("numpy", "cupy"):
        net = models.small_cnn(batch_norm=True, seed=0).to(backend)
        opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        xp = sn.backend.array_module(backend)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(net(sn.Tensor(xp.asarray(x))), xp.asarray(y)).backward()
            opt.step()
        weights.append(net.state_dict())
        assert net.backend == backend
    for k in weights[0]:
        np.testing.assert_allclose(weights[1][k], weights[0][k], rtol=2e-3, atol=2e-4, err_msg=k)
