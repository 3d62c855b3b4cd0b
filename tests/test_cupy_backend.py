"""The CuPy backend gives the same results as NumPy (runs only where CuPy and a CUDA GPU are present)."""
import numpy as np
import pytest

import scratchnet as sn
from scratchnet import functional as F
from problems.p3 import models
from scratchnet import optim

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
    # the fused batch norm + activation: on the GPU the two layers' kernels chained, on the CPU one pass each way
    "bn_relu": (lambda x, g, b: F.batch_norm_act(x, g, b, *_stats(x, 4), True, 0.1, 1e-5, "relu"),
                [(3, 5, 4, 4), (4,), (4,)]),
    "bn_gelu": (lambda x, g, b: F.batch_norm_act(x, g, b, *_stats(x, 4), True, 0.1, 1e-5, "gelu"),
                [(3, 5, 4, 4), (4,), (4,)]),
}


def _stats(x, c):
    """Fresh running statistics (mean 0, variance 1) on x's backend."""
    xp = sn.backend.get_array_module(x.data)
    return xp.zeros(c), xp.ones(c)


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_numpy(name):
    fn, shapes = CASES[name]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in shapes]
    (o1, g1), (o2, g2) = both(fn, arrays)
    np.testing.assert_allclose(o2, o1, rtol=1e-9, atol=1e-12)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def bn_case(backend, training, dtype=np.float64):
    """Batch norm forward + backward with random parameters, statistics and upstream gradient; every
    result as a host array: out, dx, dgamma, dbeta, running mean and variance."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5, 3, 6)) * 2 + 0.5
    up = rng.standard_normal(x.shape)
    with sn.backend.default_dtype_as(dtype):
        bn = sn.nn.BatchNorm2d(6, momentum=0.3)
    bn.weight.data[...] = rng.uniform(0.5, 1.5, 6)
    bn.bias.data[...] = rng.standard_normal(6)
    bn.running_mean[...] = rng.standard_normal(6)
    bn.running_var[...] = rng.uniform(0.5, 2.0, 6)
    bn.to(backend)
    bn.train(training)
    xp = sn.backend.array_module(backend)
    t = sn.Tensor(xp.asarray(x.astype(dtype)), requires_grad=True)
    out = bn(t)
    out.backward(xp.asarray(up.astype(dtype)))
    host = sn.backend.to_numpy
    return [host(a) for a in (out.data, t.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var)]


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_numpy(training):
    """The GPU's fused batch-norm kernels against the NumPy path: outputs, all gradients, running stats."""
    names = ("out", "dx", "dgamma", "dbeta", "running_mean", "running_var")
    for name, a, b in zip(names, bn_case("numpy", training), bn_case("cupy", training)):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=name)


def sgd_steps(backend, build, x, y, steps, label_smoothing=0.0, ema_decay=None, **sgd):
    """`steps` Nesterov SGD steps of build() on `backend` on one batch: (its state_dict, the EMA's or None)."""
    net = build().to(backend)
    assert net.backend == backend
    xp = sn.backend.array_module(backend)
    opt = optim.SGD(net.parameters(), momentum=0.9, nesterov=True, **sgd)
    ema = None if ema_decay is None else optim.EMA(net.parameters(), ema_decay)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(sn.Tensor(xp.asarray(x))), xp.asarray(y), label_smoothing=label_smoothing).backward()
        opt.step()
        if ema is not None:
            ema.update(ema_decay)
    return net.state_dict(), None if ema is None else ema.state_dict()


def assert_states_match(got, want):
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-3, atol=2e-4, err_msg=k)


def test_training_steps_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    (want, _), (got, _) = (sgd_steps(backend, lambda: models.small_cnn(batch_norm=True, seed=0), x, y, 3, lr=0.05)
                           for backend in ("numpy", "cupy"))
    assert_states_match(got, want)


# --- the fast kernels, the P3 part 3 net, optimisers, data pipeline and the P3 script on the GPU ---------

def test_activation_kernels_match_numpy():
    from scratchnet.kernels import activation as act
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 7, 4)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    cp = sn.backend.cupy()
    for fwd, bwd in ((act.relu_forward, act.relu_backward), (act.gelu_forward, act.gelu_backward)):
        out_np, cache_np = fwd(x)
        out_cp, cache_cp = fwd(cp.asarray(x))
        assert isinstance(out_cp, cp.ndarray) and out_cp.dtype == np.float32
        np.testing.assert_allclose(cp.asnumpy(out_cp), out_np, rtol=1e-6, atol=1e-6, err_msg=fwd.__name__)
        dx_cp = bwd(cp.asarray(g), cache_cp)
        np.testing.assert_allclose(cp.asnumpy(dx_cp), bwd(g, cache_np), rtol=1e-5, atol=1e-6,
                                   err_msg=bwd.__name__)


def test_gelu_matches_numpy():
    (o1, g1), (o2, g2) = both(F.gelu, [np.random.default_rng(4).standard_normal((2, 3, 5, 4))])
    np.testing.assert_allclose(o2, o1, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g2[0], g1[0], rtol=1e-9, atol=1e-12)


def test_better_net_training_steps_match_numpy():
    """P3 part 3's net (fixed whitening conv, GELU, frozen-scale BN, 3x3 max pool head), 2 SGD steps + EMA."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 6)
    want, got = (sgd_steps(backend, lambda: models.better_net(seed=0), x, y, 2, label_smoothing=0.2,
                           ema_decay=0.9, lr=0.1, weight_decay=5e-4) for backend in ("numpy", "cupy"))
    for got_state, want_state in zip(got, want):  # weights, then the EMA's
        assert_states_match(got_state, want_state)


def test_adam_and_optimizer_state_round_trip():
    cp = sn.backend.cupy()
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 3, 5)
    weights = []
    for backend in ("numpy", "cupy"):
        xp = sn.backend.array_module(backend)
        lin = sn.nn.Linear(4, 3, rng=np.random.default_rng(0)).to(backend)
        opt = optim.Adam(lin.parameters(), lr=0.01)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(lin(sn.Tensor(xp.asarray(x))), xp.asarray(y)).backward()
            opt.step()
        state = opt.state_dict()
        assert all(not isinstance(v, cp.ndarray) for v in state.values())  # host arrays: savable with np.savez
        opt.load_state_dict(state)
        weights.append(lin.state_dict())
    for k in weights[0]:
        np.testing.assert_allclose(weights[1][k], weights[0][k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_augmentation_on_gpu_equals_host():
    """Crops and flips take their randomness from the host generator: same seed, same pixels on both."""
    from scratchnet.data import augment
    cp = sn.backend.cupy()
    x = np.random.default_rng(8).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    for fn in (lambda a, r: augment.augment_batch(a, r, padding=4),
               lambda a, r: augment.random_crop(a, 2, r, mode="reflect"),
               lambda a, r: augment.alternating_flip(a, np.arange(7), 1, 7)):
        host = fn(x, np.random.default_rng(9))
        gpu = fn(cp.asarray(x), np.random.default_rng(9))
        assert isinstance(gpu, cp.ndarray)
        np.testing.assert_array_equal(cp.asnumpy(gpu), host)
    mean, std = augment.channel_stats(cp.asarray(x))
    np.testing.assert_allclose(mean, augment.channel_stats(x)[0], rtol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(augment.normalize(cp.asarray(x), mean, std)),
                               augment.normalize(x, mean, std), rtol=1e-6, atol=1e-6)


def test_p3_script_trains_and_evaluates_on_cupy(repo_root, tmp_path):
    """problems/p3_small_cnn.py --backend cupy end to end on a tiny generated CIFAR: results, figures and
    weights; --eval-only of those weights gives the same accuracy; the losses follow the numpy run's."""
    import json
    import subprocess
    import sys

    from cifar_helpers import make_pickles

    make_pickles(tmp_path / "data", n_per_batch=32, n_test=40)  # 160 training images, 40 test images

    def run(out, *extra, backend="cupy"):
        r = subprocess.run([sys.executable, "problems/p3_small_cnn.py", "--backend", backend, "--model",
                            "small_bn", "--batch-size", "32", "--data-dir", str(tmp_path / "data"), "--out",
                            str(tmp_path / out), "--no-progress", *extra],
                           capture_output=True, text=True, cwd=repo_root, timeout=600)
        assert r.returncode == 0, r.stderr
        return tmp_path / out

    full = run("gpu", "--epochs", "2")
    res = json.loads((full / "results.json").read_text())
    assert res["backend"] == "cupy" and len(res["train_loss"]) == 2
    assert (full / "filters.png").is_file() and (full / "loss.png").is_file()
    host = json.loads((run("host", "--epochs", "2", backend="numpy") / "results.json").read_text())
    np.testing.assert_allclose(res["train_loss"], host["train_loss"], rtol=2e-3)
    ev = run("eval", "--eval-only", "--weights", str(full / "weights.npz"))
    assert abs(json.loads((ev / "results.json").read_text())["final_test_accuracy"]
               - res["final_test_accuracy"]) < 1e-9


def test_resume_on_cupy_gives_the_same_weights(tmp_path):
    """Interrupted after epoch 1 and resumed from the checkpoint = uninterrupted, bit for bit, on the GPU."""
    from cifar_helpers import make_pickles
    from scratchnet.data import load_cifar10
    from problems.p3.recipe import EMA_WARMUP, Recipe
    from scratchnet.train import ScratchnetLearner, TrainConfig
    from train_helpers import assert_resume_is_exact

    make_pickles(tmp_path / "data", n_per_batch=32, n_test=20)
    data = load_cifar10(tmp_path / "data", progress=False, use_cache=False)
    recipe = Recipe(TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=3, ema_decay=0.9), flip_mode="alternating")
    cfg = recipe.train
    assert_resume_is_exact(
        lambda: ScratchnetLearner(models.small_cnn(batch_norm=True, seed=3), cfg, backend="cupy",
                                  ema_warmup=EMA_WARMUP), data, cfg, tmp_path,
        augment=recipe.augment(len(data.train_y)), settings=recipe.own_settings())


def test_gpu_arrays_save_load_and_mix_with_host_labels(tmp_path):
    import json

    from scratchnet.io import save_npz, write_json
    cp = sn.backend.cupy()
    save_npz(tmp_path / "w.npz", {"a": cp.arange(3.0)})
    np.testing.assert_array_equal(np.load(tmp_path / "w.npz")["a"], [0.0, 1.0, 2.0])
    write_json(tmp_path / "r.json", {"acc": cp.float32(0.5) + cp.zeros(()), "v": cp.ones(2)})
    assert json.loads((tmp_path / "r.json").read_text()) == {"acc": 0.5, "v": [1.0, 1.0]}
    logits = sn.Tensor(cp.asarray(np.random.default_rng(0).standard_normal((4, 3))), requires_grad=True)
    F.cross_entropy(logits, np.array([0, 2, 1, 1])).backward()  # host labels, GPU logits
    assert isinstance(logits.grad, cp.ndarray)


def test_cupy_arrays_made_before_any_scratchnet_call_are_recognised(repo_root):
    import subprocess
    import sys
    code = ("import cupy, scratchnet as sn\n"
            "assert sn.backend.get_array_module(cupy.ones(2)) is cupy\n"
            "x = cupy.ones((1, 5, 5, 2), dtype=cupy.float32)\n"
            "out, _ = sn.kernels.conv.conv2d_forward(x, cupy.ones((3, 3, 2, 4), dtype=cupy.float32), None, 1, 1)\n"
            "assert isinstance(out, cupy.ndarray) and float(out[0, 2, 2, 0]) == 18.0\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root, timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("nesterov,wd", [(False, 0.0), (True, 5e-4), (False, 1e-2)])
def test_fused_sgd_kernel_matches_numpy(nesterov, wd):
    """SGD with momentum is one fused kernel on the GPU; three steps (the first starts the buffer)."""
    rng = np.random.default_rng(10)
    p0 = rng.standard_normal((4, 5))
    grads = [rng.standard_normal((4, 5)) for _ in range(3)]
    finals = []
    for backend in ("numpy", "cupy"):
        p = sn.Tensor(sn.backend.to_backend(p0.copy(), backend), requires_grad=True)
        opt = optim.SGD([p], lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=wd)
        for g in grads:
            p.grad = sn.backend.to_backend(g, backend)
            opt.step()
        finals.append((sn.backend.to_numpy(p.data), opt.state_dict()["0.momentum"]))
    np.testing.assert_allclose(finals[1][0], finals[0][0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(finals[1][1], finals[0][1], rtol=1e-12, atol=1e-14)


def test_batch_norm_with_mixed_dtypes_takes_the_generic_path():
    """The fused GPU kernels need one dtype; a float64 input to float32 batch norm still works (upcast)."""
    cp = sn.backend.cupy()
    x = np.random.default_rng(11).standard_normal((2, 3, 3, 4))
    bn = sn.nn.BatchNorm2d(4).to("cupy")  # float32 parameters
    t = sn.Tensor(cp.asarray(x), requires_grad=True)
    bn(t).sum().backward()
    ref = sn.nn.BatchNorm2d(4)
    tr = sn.Tensor(x, requires_grad=True)
    ref(tr).sum().backward()
    np.testing.assert_allclose(cp.asnumpy(t.grad), tr.grad, atol=1e-6)


def test_fused_kernels_fall_back_on_mixed_dtypes():
    """A float64 gradient reaching float32 parameters or activations takes the generic path (the fused
    kernels have one dtype), as on the CPU, where NumPy upcasts."""
    cp = sn.backend.cupy()
    from scratchnet.kernels import activation as act
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    g = np.linspace(1, 2, 12).reshape(3, 4)  # float64
    for fwd, bwd in ((act.relu_forward, act.relu_backward), (act.gelu_forward, act.gelu_backward)):
        want = bwd(g, fwd(x)[1])
        got = bwd(cp.asarray(g), fwd(cp.asarray(x))[1])
        # rtol as in test_activation_kernels_match_numpy: the float32 forward's t differs by an ulp (FMA)
        np.testing.assert_allclose(cp.asnumpy(got), want, rtol=1e-5, atol=1e-6, err_msg=bwd.__name__)
    finals = []
    for backend in ("numpy", "cupy"):
        p = sn.Tensor(sn.backend.to_backend(x.copy(), backend), requires_grad=True)
        opt = optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
        p.grad = sn.backend.to_backend(g, backend)
        opt.step()
        finals.append(sn.backend.to_numpy(p.data))
    np.testing.assert_allclose(finals[1], finals[0], rtol=1e-6)


@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_sgd_without_momentum_and_conv_without_kept_columns(wd):
    """The generic GPU paths beside the fused ones: plain SGD, and a conv whose weight is frozen (no
    columns kept, dx by the transposed convolution)."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 6, 6, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    results = []
    for backend in ("numpy", "cupy"):
        xp = sn.backend.array_module(backend)
        xt = sn.Tensor(xp.asarray(x), requires_grad=True)
        wt = sn.Tensor(xp.asarray(w), requires_grad=False)
        F.conv2d(xt, wt, None, 1, 1).sum().backward()
        p = sn.Tensor(xp.asarray(w.copy()), requires_grad=True)
        p.grad = xp.asarray(x[0, :3, :3, :, None] * np.ones(4))
        optim.SGD([p], lr=0.1, momentum=0.0, weight_decay=wd).step()
        results.append((sn.backend.to_numpy(xt.grad), sn.backend.to_numpy(p.data)))
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
