"""Every scratchnet op: forward and gradients against PyTorch (float64) and finite differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import scratchnet as sn
from scratchnet import functional as F
from scratchnet import parallel
from scratchnet.kernels import conv as conv_k
from scratchnet.kernels import norm as norm_k
from scratchnet.kernels import pool as pool_k
from scratchnet.kernels import winograd as winograd_k

from gradcheck import (compare_with_torch, finite_difference_check, hwio_to_oihw, nchw_to_nhwc,
                       nhwc_to_nchw)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ------------------------------------------------------------------------------------ elementwise
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((5, 1), (1, 3)), ((1,), (2, 3))]


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_ops_with_broadcasting(op, shapes, rng):
    a = rng.standard_normal(shapes[0])
    b = rng.uniform(0.5, 2.0, shapes[1]) * rng.choice([-1, 1], shapes[1])  # keep |b| away from 0 for div
    sn_fn = {"add": F.add, "sub": F.sub, "mul": F.mul, "div": F.div}[op]
    t_fn = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[op]
    compare_with_torch(sn_fn, t_fn, [a, b], rng)
    finite_difference_check(sn_fn, [a, b], rng)


def test_operators_and_scalars(rng):
    a = rng.uniform(0.5, 2.0, (3, 5))
    fn = lambda x: (2.0 - x) * 3 + x / 4 - 1 / x + (-x) ** 2  # noqa: E731
    compare_with_torch(fn, fn, [a], rng)
    finite_difference_check(fn, [a], rng)


def test_pow_exp_log(rng):
    a = rng.uniform(0.5, 2.0, (4, 3))
    b = rng.uniform(-1.5, 1.5, (4, 3))
    compare_with_torch(F.pow, torch.pow, [a, b], rng)
    finite_difference_check(F.pow, [a, b], rng)
    compare_with_torch(lambda x: x ** 3, lambda x: x ** 3, [a], rng)
    finite_difference_check(lambda x: x ** 3, [a], rng)
    compare_with_torch(lambda x: 2.0 ** x, lambda x: 2.0 ** x, [b], rng)   # a number to a tensor power
    finite_difference_check(lambda x: 2.0 ** x, [b], rng)
    for sn_fn, t_fn in [(F.exp, torch.exp), (F.log, torch.log)]:
        compare_with_torch(sn_fn, t_fn, [a], rng)
        finite_difference_check(sn_fn, [a], rng)


@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((1, 7), (7, 1)), ((2, 3, 4), (4, 2)), ((5, 3), (3,)),
                                    ((3,), (3, 4)), ((4,), (4,)), ((2, 3, 4), (4,)), ((2, 3, 4), (2, 4, 5)),
                                    ((3,), (2, 3, 4)), ((2, 1, 3, 4), (5, 4, 2))])
def test_matmul(shapes, rng):
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    compare_with_torch(F.matmul, torch.matmul, [a, b], rng)
    finite_difference_check(F.matmul, [a, b], rng)


def test_reshape_transpose_flatten(rng):
    a = rng.standard_normal((2, 3, 5))
    compare_with_torch(lambda x: F.reshape(x, (5, 6)), lambda x: x.reshape(5, 6), [a], rng)
    compare_with_torch(lambda x: F.transpose(x, (2, 0, 1)), lambda x: x.permute(2, 0, 1), [a], rng)
    compare_with_torch(lambda x: x.T, lambda x: x.permute(2, 1, 0), [a], rng)
    compare_with_torch(F.flatten, lambda x: x.flatten(1), [a], rng)
    finite_difference_check(lambda x: F.transpose(x, (1, 2, 0)), [a], rng)
    finite_difference_check(lambda x: F.reshape(x, (5, 6)), [a], rng)
    with pytest.raises(np.exceptions.AxisError):   # out-of-range axes are numpy's error, not wrapped round
        F.transpose(sn.Tensor(a), (0, 1, 3))
    cube = rng.standard_normal((3, 3, 3))  # equal sides: a wrong inverse permutation keeps the shape
    for axes in [(-1, 0, 1), (2, -3, -2), (0, 2, 1)]:
        compare_with_torch(lambda x: F.transpose(x, axes), lambda x: x.permute(*axes), [cube], rng)
        finite_difference_check(lambda x: F.transpose(x, axes), [cube], rng)


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)])
def test_sum_mean(axis, keepdims, rng):
    a = rng.standard_normal((3, 4, 5))
    dims = axis if axis is not None else tuple(range(3))
    compare_with_torch(lambda x: F.sum(x, axis, keepdims), lambda x: x.sum(dim=dims, keepdim=keepdims), [a], rng)
    compare_with_torch(lambda x: F.mean(x, axis, keepdims), lambda x: x.mean(dim=dims, keepdim=keepdims), [a], rng)
    finite_difference_check(lambda x: F.mean(x, axis, keepdims), [a], rng)
    finite_difference_check(lambda x: F.sum(x, axis, keepdims), [a], rng)


def test_value_used_twice_accumulates(rng):
    a = rng.standard_normal((4, 3))
    fn = lambda x: x * x + x.exp() * x  # noqa: E731  x feeds four places
    compare_with_torch(fn, fn, [a], rng)


def test_getitem_and_stack(rng):
    a = rng.standard_normal((4, 5, 3))
    compare_with_torch(lambda x: x[:, 2, :], lambda x: x[:, 2, :], [a], rng)
    idx = np.array([0, 2, 2, 3])  # repeated index: gradients must add up
    compare_with_torch(lambda x: x[idx], lambda x: x[torch.tensor(idx)], [a], rng)
    compare_with_torch(lambda x, y: F.stack([x, y, x], axis=1), lambda x, y: torch.stack([x, y, x], 1),
                       [a, rng.standard_normal((4, 5, 3))], rng)
    finite_difference_check(lambda x: x[idx], [a], rng)
    finite_difference_check(lambda x, y: F.stack([x, y, x], axis=1), [a, rng.standard_normal((4, 5, 3))], rng)


def test_relu_away_from_zero(rng):
    a = rng.standard_normal((5, 7))
    a[np.abs(a) < 1e-2] = 0.5  # finite differences need |x| > h
    compare_with_torch(F.relu, torch.relu, [a], rng)
    finite_difference_check(F.relu, [a], rng)


def test_relu_gradient_at_zero_is_zero_like_torch(rng):
    a = np.array([[-1.0, 0.0, 2.0]])
    compare_with_torch(F.relu, torch.relu, [a], rng)


# ----------------------------------------------------------------------------------------- conv2d
# (kernel, stride, padding, H, W): kernel sizes 1/3/5/11, strides 1/2, padding 0/1/5, non-square images
CONV_CASES = [(1, 1, 0, 5, 7), (1, 2, 5, 5, 4), (3, 1, 1, 7, 9), (3, 2, 1, 8, 5), (3, 2, 0, 9, 6),
              (5, 1, 0, 9, 7), (5, 2, 1, 10, 9), (11, 1, 0, 13, 16), (11, 2, 5, 9, 12), (11, 1, 5, 6, 8)]


def torch_conv(stride, padding):
    def fn(x, w, b=None):
        return nchw_to_nhwc(TF.conv2d(nhwc_to_nchw(x), hwio_to_oihw(w), b, stride=stride, padding=padding))
    return fn


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("k,s,p,h,w", CONV_CASES)
def test_conv2d_against_torch(k, s, p, h, w, batch, rng):
    c_in, c_out = 5, 7
    x = rng.standard_normal((batch, h, w, c_in))
    wt = rng.standard_normal((k, k, c_in, c_out))
    b = rng.standard_normal(c_out)
    sn_fn = lambda x, w, b: F.conv2d(x, w, b, stride=s, padding=p)  # noqa: E731
    compare_with_torch(sn_fn, torch_conv(s, p), [x, wt, b], rng)


@pytest.mark.parametrize("k,s,p,h,w", CONV_CASES[::2])
def test_conv2d_finite_differences(k, s, p, h, w, rng):
    x = rng.standard_normal((2, h, w, 3))
    wt = rng.standard_normal((k, k, 3, 4))
    b = rng.standard_normal(4)
    finite_difference_check(lambda x, w, b: F.conv2d(x, w, b, stride=s, padding=p), [x, wt, b], rng)


def assert_fast_conv_equals_reference(x, wt, b, s, p, rng, tol, grad_atol=None):
    """conv2d_forward/backward (im2col or Winograd) against the offset-loop reference: output, dx, dW, db
    (gradients to `grad_atol`, default `tol`)."""
    out, cache = conv_k.conv2d_forward(x, wt, b, s, p)
    ref, ref_cache = conv_k.conv2d_forward_reference(x, wt, b, s, p)
    assert out.dtype == x.dtype
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    dout = rng.standard_normal(out.shape).astype(x.dtype)
    for fast, slow in zip(conv_k.conv2d_backward(dout, cache), conv_k.conv2d_backward_reference(dout, ref_cache)):
        assert fast.dtype == x.dtype
        np.testing.assert_allclose(fast, slow, rtol=tol, atol=tol if grad_atol is None else grad_atol)


@pytest.mark.parametrize("kh,kw,s,p,h,w", [(3, 5, 3, 1, 8, 11), (1, 3, 1, 0, 4, 5), (5, 2, 2, 2, 7, 6)])
def test_conv2d_non_square_kernels_and_stride_3(kh, kw, s, p, h, w, rng):
    """Kernels of unequal sides (the weight's shape sets them) and a stride of 3: PyTorch, finite
    differences, and the fast kernels against the reference loop."""
    x, wt, b = rng.standard_normal((2, h, w, 3)), rng.standard_normal((kh, kw, 3, 4)), rng.standard_normal(4)
    t_fn = lambda x, w, b: nchw_to_nhwc(TF.conv2d(nhwc_to_nchw(x), hwio_to_oihw(w), b, stride=s, padding=p))  # noqa: E731
    sn_fn = lambda x, w, b: F.conv2d(x, w, b, stride=s, padding=p)  # noqa: E731
    compare_with_torch(sn_fn, t_fn, [x, wt, b], rng)
    finite_difference_check(sn_fn, [x, wt, b], rng)
    assert_fast_conv_equals_reference(x, wt, b, s, p, rng, tol=1e-10)


def test_conv2d_without_bias_and_without_input_grad(rng):
    x = rng.standard_normal((2, 6, 7, 3))
    wt = rng.standard_normal((3, 3, 3, 4))
    sn_fn = lambda x, w: F.conv2d(x, w, None, stride=1, padding=1)  # noqa: E731
    _, grads, _ = compare_with_torch(sn_fn, torch_conv(1, 1), [x, wt], rng, grad_mask=[False, True])
    assert grads[0] is None  # the first layer's image gradient is never computed


@pytest.mark.parametrize("k,s,p,h,w", CONV_CASES)
def test_conv2d_fast_equals_reference(k, s, p, h, w, rng):
    x = rng.standard_normal((2, h, w, 4)).astype(np.float32)
    wt = rng.standard_normal((k, k, 4, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    assert_fast_conv_equals_reference(x, wt, b, s, p, rng, tol=1e-4)


@pytest.fixture(params=[1, 3], ids=["1thread", "3threads"])
def n_threads(request):
    """Run a test single-threaded and with 3 worker threads (more than CI's cores, uneven splits), whatever
    the machine's default, so the chunk-sharing and partial-sum code is tested on any runner."""
    saved = parallel.num_threads()
    parallel.set_num_threads(request.param)
    yield request.param
    parallel.set_num_threads(saved)


@pytest.mark.parametrize("k,s,p,h,w", CONV_CASES)
@pytest.mark.parametrize("chunk_bytes", [1, 3000])
def test_conv2d_chunked_equals_reference(k, s, p, h, w, chunk_bytes, rng, monkeypatch, n_threads):
    """The fast path works on chunks of images with reused buffers: force 1-image and uneven chunks,
    run twice (stale buffer contents would show up the second time) and compare in float64."""
    monkeypatch.setattr(conv_k, "CHUNK_BYTES", chunk_bytes)
    for trial in range(2):
        x = rng.standard_normal((5, h, w, 3))
        wt = rng.standard_normal((k, k, 3, 5))
        b = rng.standard_normal(5)
        assert_fast_conv_equals_reference(x, wt, b, s, p, rng, tol=1e-10)


# Winograd F(4x4, 3x3) (kernels/winograd.py): stride-1 3x3 convs; (H, W, padding) incl. padding 0 (valid),
# 2 (output larger than the input) and 3 (dx then crops dout), maps that are not multiples of 4, 1 and 3 images
WINOGRAD_CASES = [(7, 9, 1), (11, 11, 1), (5, 6, 0), (8, 5, 2), (9, 9, 3), (13, 4, 1), (3, 3, 1)]


@pytest.fixture
def winograd_everywhere(monkeypatch):
    """Send every 3x3 stride-1 conv through Winograd (any channel count, any overhang); count the calls,
    so that a test fails if the path it means to check was not taken."""
    calls = {"forward": 0, "weight_grad": 0}
    for name in calls:
        real = getattr(winograd_k, f"conv3x3_{name}")

        def spy(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)
        monkeypatch.setattr(winograd_k, f"conv3x3_{name}", spy)
    monkeypatch.setattr(winograd_k, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd_k, "MAX_OVERHANG", 1e9)
    return calls


def test_winograd_tile_formula_is_a_3x3_correlation(rng):
    d, g = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(winograd_k.tile_conv(d, g), direct, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("h,w,p", WINOGRAD_CASES)
def test_conv2d_winograd_against_torch(h, w, p, batch, rng, winograd_everywhere):
    x = rng.standard_normal((batch, h, w, 5))
    wt = rng.standard_normal((3, 3, 5, 7))
    b = rng.standard_normal(7)
    compare_with_torch(lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=p), torch_conv(1, p), [x, wt, b], rng)
    assert winograd_everywhere["forward"] >= 2 and winograd_everywhere["weight_grad"] >= 1  # fwd, dx; dW


@pytest.mark.parametrize("h,w,p", WINOGRAD_CASES[::2])
def test_conv2d_winograd_finite_differences(h, w, p, rng, winograd_everywhere):
    x, wt, b = rng.standard_normal((2, h, w, 3)), rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
    finite_difference_check(lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=p), [x, wt, b], rng)
    assert winograd_everywhere["forward"] > 0 and winograd_everywhere["weight_grad"] > 0


@pytest.mark.parametrize("h,w,p", WINOGRAD_CASES)
@pytest.mark.parametrize("chunk_bytes", [1, 3000, 2 << 20])
def test_conv2d_winograd_equals_reference(h, w, p, chunk_bytes, rng, monkeypatch, winograd_everywhere, n_threads):
    """Winograd against the offset-loop reference: float64 to 1e-10 (it is exact algebra), float32 to the
    ~1e-5 relative error its transforms cost; 1-image, uneven and whole-batch chunks, run twice (stale
    reused buffers would show up the second time)."""
    monkeypatch.setattr(conv_k, "CHUNK_BYTES", chunk_bytes)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4), (np.float64, 1e-10)):
        x = rng.standard_normal((5, h, w, 6)).astype(dtype)
        wt = rng.standard_normal((3, 3, 6, 4)).astype(dtype)
        b = rng.standard_normal(4).astype(dtype)
        assert_fast_conv_equals_reference(x, wt, b, 1, p, rng, tol, grad_atol=tol * 10)  # dW sums 5 images
    assert winograd_everywhere["forward"] == 6 and winograd_everywhere["weight_grad"] == 3


def test_winograd_is_chosen_only_where_it_pays():
    usable = winograd_k.usable
    assert usable((128, 11, 11, 64), (3, 3, 64, 128), 1, 1)        # P3's 3x3 layers
    assert usable((1024, 7, 7, 256), (3, 3, 256, 256), 1, 1)       # 7x7 maps: 64 block pixels for 49
    assert not usable((1024, 3, 3, 256), (3, 3, 256, 256), 1, 1)   # 3x3 maps: 16 for 9
    assert not usable((128, 32, 32, 3), (3, 3, 3, 64), 1, 1)       # 3 input channels
    assert not usable((128, 11, 11, 64), (3, 3, 64, 128), 2, 1)    # stride 2
    assert not usable((128, 32, 32, 3), (11, 11, 3, 64), 1, 0)     # not 3x3


def test_conv2d_shape_mismatch_names_both_shapes(rng):
    conv = sn.nn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match=r"\(2, 5, 5, 4\).*\(3, 3, 3, 8\)"):
        conv(sn.Tensor(np.zeros((2, 5, 5, 4), np.float32)))
    with pytest.raises(ValueError, match="channels"):
        F.conv2d(np.zeros((1, 5, 5, 2)), np.zeros((3, 3, 3, 4)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        F.conv2d(np.zeros((1, 4, 4, 3)), np.zeros((5, 5, 3, 4)))


# ---------------------------------------------------------------------------------------- pooling
def tie_free(rng, shape, gap=1e-2):
    """Distinct values at least `gap` apart, so a 1e-6 nudge never changes a window's maximum."""
    return rng.permutation(np.arange(np.prod(shape)) * gap).reshape(shape) - gap * np.prod(shape) / 2


POOL_CASES = [(2, 2, 6, 8), (2, 2, 7, 5), (3, 2, 7, 9), (3, 1, 5, 6), (2, 1, 4, 5), (3, 3, 3, 3), (2, 3, 8, 7)]
# (kernel, stride, H, W): tiling exactly, floor mode (odd sizes), overlapping windows, stride > kernel


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("k,s,h,w", POOL_CASES)
def test_max_pool(k, s, h, w, batch, rng):
    x = tie_free(rng, (batch, h, w, 3))
    t_fn = lambda x: nchw_to_nhwc(TF.max_pool2d(nhwc_to_nchw(x), k, s))  # noqa: E731
    sn_fn = lambda x: F.max_pool2d(x, k, s)  # noqa: E731
    compare_with_torch(sn_fn, t_fn, [x], rng)
    finite_difference_check(sn_fn, [x], rng)


@pytest.mark.parametrize("k,s,h,w", POOL_CASES)
def test_max_pool_ties_match_torch(k, s, h, w, rng):
    x = rng.integers(0, 2, (2, h, w, 3)).astype(np.float64)  # many equal values per window
    t_fn = lambda x: nchw_to_nhwc(TF.max_pool2d(nhwc_to_nchw(x), k, s))  # noqa: E731
    compare_with_torch(lambda x: F.max_pool2d(x, k, s), t_fn, [x], rng)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("k,s,h,w", POOL_CASES)
def test_avg_pool(k, s, h, w, batch, rng):
    x = rng.standard_normal((batch, h, w, 3))
    t_fn = lambda x: nchw_to_nhwc(TF.avg_pool2d(nhwc_to_nchw(x), k, s))  # noqa: E731
    compare_with_torch(lambda x: F.avg_pool2d(x, k, s), t_fn, [x], rng)
    finite_difference_check(lambda x: F.avg_pool2d(x, k, s), [x], rng)


@pytest.mark.parametrize("k,s,h,w", POOL_CASES)
def test_pool_fast_paths_equal_reference_loops(k, s, h, w, rng):
    """Max and average pooling (the reshape path where stride == kernel, the strided path otherwise) agree
    with a plain loop over the windows, forward and (average) backward."""
    x = rng.standard_normal((2, h, w, 3))
    out, cache = pool_k.max_pool2d_forward(x, k, s)
    avg, avg_cache = pool_k.avg_pool2d_forward(x, k, s)
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    ref, ref_avg = np.empty((2, ho, wo, 3)), np.empty((2, ho, wo, 3))
    dout = rng.standard_normal((2, ho, wo, 3))
    ref_dx = np.zeros_like(x)
    for i in range(ho):
        for j in range(wo):
            window = x[:, i * s:i * s + k, j * s:j * s + k]
            ref[:, i, j], ref_avg[:, i, j] = window.max(axis=(1, 2)), window.mean(axis=(1, 2))
            ref_dx[:, i * s:i * s + k, j * s:j * s + k] += dout[:, i, j][:, None, None, :] / (k * k)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_allclose(avg, ref_avg, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pool_k.avg_pool2d_backward(dout, avg_cache), ref_dx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,s,h,w", POOL_CASES)
@pytest.mark.parametrize("values", ["ties", "tie_free"])
def test_max_pool_fast_equals_reference(k, s, h, w, values, rng):
    """Offset-view max pool against the window-view + argmax reference: forward and the routed gradient,
    including windows full of equal values (first maximum in row-major order wins in both)."""
    shape = (2, h, w, 3)
    x = rng.integers(0, 2, shape).astype(np.float32) if values == "ties" else tie_free(rng, shape).astype(np.float32)
    out, cache = pool_k.max_pool2d_forward(x, k, s)
    ref, ref_cache = pool_k.max_pool2d_forward_reference(x, k, s)
    np.testing.assert_array_equal(out, ref)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx, dx_ref = pool_k.max_pool2d_backward(dout, cache), pool_k.max_pool2d_backward_reference(dout, ref_cache)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("knockout", [True, False])
def test_max_pool2x2_either_path_equals_reference(knockout, rng, monkeypatch):
    """pool.KNOCKOUT_2X2 picks the 2x2 path (the offset loop stays selectable): both agree with the reference."""
    monkeypatch.setattr(pool_k, "KNOCKOUT_2X2", knockout)
    x = rng.integers(0, 2, (2, 7, 6, 3)).astype(np.float64)
    out, cache = pool_k.max_pool2d_forward(x, 2, 2)
    assert (cache[0] == "2x2") == knockout
    ref, ref_cache = pool_k.max_pool2d_forward_reference(x, 2, 2)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(pool_k.max_pool2d_backward(dout, cache),
                                  pool_k.max_pool2d_backward_reference(dout, ref_cache))


@pytest.mark.parametrize("shape", [(1, 2, 2, 1), (1, 5, 7, 3), (3, 8, 6, 4), (2, 9, 4, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2x2_knockout_is_exact(shape, dtype, rng):
    """The 2x2/stride-2 knockout pair: the same output and the very same routed gradient values as the
    argmax reference (ties included), zeros past the last window, and a cache of booleans, not the input."""
    x = rng.integers(-1, 2, shape).astype(dtype)
    x[0, 0, 0, 0] = 5.0  # one clear winner beside the ties
    out, cache = pool_k.max_pool2d_forward(x, 2, 2)
    ref, ref_cache = pool_k.max_pool2d_forward_reference(x, 2, 2)
    np.testing.assert_array_equal(out, ref)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = pool_k.max_pool2d_backward(dout, cache)
    np.testing.assert_array_equal(dx, pool_k.max_pool2d_backward_reference(dout, ref_cache))
    assert dx.dtype == dtype
    assert cache[0] == "2x2" and all(a.dtype == bool for a in cache[2:]) and not any(a is x for a in cache)


@pytest.mark.parametrize("shape", [(1, 5, 7, 3), (4, 3, 3, 6)])
def test_global_avg_pool(shape, rng):
    x = rng.standard_normal(shape)
    compare_with_torch(F.global_avg_pool2d, lambda x: x.mean(dim=(1, 2)), [x], rng)
    finite_difference_check(F.global_avg_pool2d, [x], rng)


# ------------------------------------------------------------------------------------- batch norm
@pytest.mark.parametrize("shape", [(4, 5, 3, 7), (1, 3, 4, 5), (6, 5)])
def test_batch_norm_training_and_running_stats(shape, rng):
    x = rng.standard_normal(shape) * 3 + 1
    c = shape[-1]
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    rm0, rv0 = rng.standard_normal(c), rng.uniform(0.5, 2, c)

    def to_torch_layout(x):
        return nhwc_to_nchw(x) if x.dim() == 4 else x

    def from_torch_layout(x):
        return nchw_to_nhwc(x) if x.dim() == 4 else x

    def sn_fn(x, g, b, rm=None, rv=None):
        rm = rm0.copy() if rm is None else rm
        rv = rv0.copy() if rv is None else rv
        return F.batch_norm(x, g, b, rm, rv, training=True, momentum=0.1, eps=1e-5)

    def t_fn(x, g, b, rm=None, rv=None):
        rm = torch.tensor(rm0) if rm is None else rm
        rv = torch.tensor(rv0) if rv is None else rv
        return from_torch_layout(TF.batch_norm(to_torch_layout(x), rm, rv, g, b, True, 0.1, 1e-5))

    compare_with_torch(sn_fn, t_fn, [x, gamma, beta], rng)
    finite_difference_check(sn_fn, [x, gamma, beta], rng)
    # the running-statistics update (unbiased variance, momentum 0.1) against torch's, from one state
    rm_s, rv_s = rm0.copy(), rv0.copy()
    rm_t, rv_t = torch.tensor(rm0), torch.tensor(rv0)
    sn_fn(sn.Tensor(x), sn.Tensor(gamma), sn.Tensor(beta), rm_s, rv_s)
    t_fn(torch.tensor(x), torch.tensor(gamma), torch.tensor(beta), rm_t, rv_t)
    assert not np.allclose(rm_s, rm0)  # it did move
    np.testing.assert_allclose(rm_s, rm_t.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rv_s, rv_t.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_input_without_gradient(training, rng):
    """When the input needs no gradient (a frozen layer below, or the image), batch norm skips dx; gamma's
    and beta's gradients must still be PyTorch's."""
    x, gamma, beta = rng.standard_normal((3, 4, 5, 6)), rng.uniform(0.5, 2, 6), rng.standard_normal(6)
    mean, var = rng.standard_normal(6), rng.uniform(0.5, 2, 6)
    dout = rng.standard_normal(x.shape)
    tg, tb = sn.Tensor(gamma, requires_grad=True), sn.Tensor(beta, requires_grad=True)
    xin = sn.Tensor(x)   # requires_grad False
    F.batch_norm(xin, tg, tb, mean.copy(), var.copy(), training).backward(dout)
    assert xin.grad is None
    t_g, t_b = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    out = TF.batch_norm(nhwc_to_nchw(torch.tensor(x)), torch.tensor(mean), torch.tensor(var), t_g, t_b,
                        training=training, momentum=0.1, eps=1e-5)
    out.backward(nhwc_to_nchw(torch.tensor(dout)))
    np.testing.assert_allclose(tg.grad, t_g.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(tb.grad, t_b.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(4, 5, 3, 7), (1, 2, 3, 4)])
def test_batch_norm_eval_mode(shape, rng):
    x = rng.standard_normal(shape)
    c = shape[-1]
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    sn_fn = lambda x, g, b: F.batch_norm(x, g, b, rm.copy(), rv.copy(), training=False)  # noqa: E731
    t_fn = lambda x, g, b: nchw_to_nhwc(TF.batch_norm(  # noqa: E731
        nhwc_to_nchw(x), torch.tensor(rm), torch.tensor(rv), g, b, False, 0.1, 1e-5))
    compare_with_torch(sn_fn, t_fn, [x, gamma, beta], rng)
    finite_difference_check(sn_fn, [x, gamma, beta], rng)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_batch_norm_fast_equals_reference(training, dtype, tol, rng):
    """The fused kernels against the one-op-per-symbol reference, with a channel mean far from zero
    (the case a one-pass E[x^2] - E[x]^2 variance would get wrong in float32)."""
    x = (rng.standard_normal((3, 5, 7, 6)) * 0.5 + 40.0 * rng.standard_normal(6)).astype(dtype)
    g, b = rng.standard_normal(6).astype(dtype), rng.standard_normal(6).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    stats = [np.full(6, 0.3, dtype), np.full(6, 2.0, dtype)]
    fast_stats, ref_stats = [a.copy() for a in stats], [a.copy() for a in stats]
    out, cache = norm_k.batchnorm_forward(x, g, b, *fast_stats, training)
    ref, ref_cache = norm_k.batchnorm_forward_reference(x, g, b, *ref_stats, training)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    for a, r in zip(fast_stats, ref_stats):
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol)
    for fast, slow in zip(norm_k.batchnorm_backward(dout, cache), norm_k.batchnorm_backward_reference(dout, ref_cache)):
        assert fast.dtype == dtype
        np.testing.assert_allclose(fast, slow, rtol=tol, atol=tol * 10)


def test_batch_norm_module_matches_torch_over_steps(rng):
    """Module level: train mode for 3 batches (running stats), then eval mode, against torch.nn.BatchNorm2d."""
    with sn.backend.default_dtype_as(np.float64):
        bn = sn.nn.BatchNorm2d(5, momentum=0.2)
    tbn = torch.nn.BatchNorm2d(5, momentum=0.2).double()
    for _ in range(3):
        x = rng.standard_normal((3, 4, 6, 5)) * 2 + 0.5
        out = bn(sn.Tensor(x)).data
        tout = nchw_to_nhwc(tbn(nhwc_to_nchw(torch.tensor(x)))).detach().numpy()
        np.testing.assert_allclose(out, tout, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=1e-10)
    bn.eval(), tbn.eval()
    x = rng.standard_normal((2, 3, 3, 5))
    np.testing.assert_allclose(bn(sn.Tensor(x)).data,
                               nchw_to_nhwc(tbn(nhwc_to_nchw(torch.tensor(x)))).detach().numpy(), rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- linear and losses
@pytest.mark.parametrize("n", [1, 5])
def test_linear(n, rng):
    x, w, b = rng.standard_normal((n, 7)), rng.standard_normal((7, 3)), rng.standard_normal(3)
    compare_with_torch(F.linear, lambda x, w, b: x @ w + b, [x, w, b], rng)
    finite_difference_check(F.linear, [x, w, b], rng)
    compare_with_torch(F.linear, lambda x, w: x @ w, [x, w], rng)   # no bias (the better net's head)
    finite_difference_check(F.linear, [x, w], rng)


def test_linear_shape_mismatch():
    lin = sn.nn.Linear(4, 2)
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(4, 2\)"):
        lin(sn.Tensor(np.zeros((3, 5), np.float32)))


@pytest.mark.parametrize("shape,axis", [((4, 6), -1), ((4, 6), 0), ((1, 6), 1), ((3, 4, 5), 1)])
def test_log_softmax_and_softmax(shape, axis, rng):
    z = rng.standard_normal(shape) * 5
    sn_log, sn_soft = (lambda z: F.log_softmax(z, axis)), (lambda z: F.softmax(z, axis))  # noqa: E731
    compare_with_torch(sn_log, lambda z: torch.log_softmax(z, axis), [z], rng)
    compare_with_torch(sn_soft, lambda z: torch.softmax(z, axis), [z], rng)
    finite_difference_check(sn_log, [z], rng)
    finite_difference_check(sn_soft, [z], rng)


def test_log_softmax_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0]])
    out = F.log_softmax(sn.Tensor(z)).data
    assert np.all(np.isfinite(out)) and abs(out[0, 0]) < 1e-12


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("n", [1, 6])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy(smoothing, n, reduction, rng):
    z = rng.standard_normal((n, 10)) * 3
    y = rng.integers(0, 10, n)
    sn_fn = lambda z: F.cross_entropy(z, y, label_smoothing=smoothing, reduction=reduction)  # noqa: E731
    t_fn = lambda z: TF.cross_entropy(z, torch.tensor(y), label_smoothing=smoothing, reduction=reduction)  # noqa: E731
    compare_with_torch(sn_fn, t_fn, [z], rng)
    finite_difference_check(sn_fn, [z], rng)


def test_cross_entropy_bad_labels():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        F.cross_entropy(sn.Tensor(np.zeros((2, 3))), np.array([0, 3]))
    with pytest.raises(ValueError, match="labels must have shape"):
        F.cross_entropy(sn.Tensor(np.zeros((2, 3))), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="labels must be integers"):  # 1.5 would match no class at all
        F.cross_entropy(sn.Tensor(np.zeros((2, 3))), np.array([0.0, 1.5]))


@pytest.mark.parametrize("shape", [(4, 5), (1, 5)])
def test_dropout_with_fixed_mask(shape, rng):
    x = rng.standard_normal(shape)
    mask = rng.random(shape) > 0.3
    sn_fn = lambda x: F.dropout(x, p=0.3, mask=mask)  # noqa: E731
    t_fn = lambda x: x * torch.tensor(mask, dtype=torch.float64) / 0.7  # noqa: E731
    compare_with_torch(sn_fn, t_fn, [x], rng)
    finite_difference_check(sn_fn, [x], rng)


def test_dropout_statistics_and_eval_identity(rng):
    x = sn.Tensor(np.ones((200, 100), np.float32))
    out = F.dropout(x, p=0.25, rng=np.random.default_rng(0)).data
    assert abs((out == 0).mean() - 0.25) < 0.01
    np.testing.assert_allclose(out[out != 0], 1 / 0.75, rtol=1e-6)
    assert F.dropout(x, p=0.25, training=False) is x


def test_step_surrogates(rng):
    a = np.array([[-2.0, -1.0, -0.5, 0.0], [0.5, 1.0, 1.5, 2.0]])  # the STE window's edges +-1 included
    t = sn.Tensor(a, requires_grad=True)
    y = F.step(t, surrogate="ste")
    np.testing.assert_array_equal(y.data, [[0, 0, 0, 0], [1, 1, 1, 1]])  # exact threshold: step(0) = 0
    g = rng.standard_normal(a.shape)
    y.backward(g)
    np.testing.assert_array_equal(t.grad, g * [[0, 1, 1, 1], [1, 1, 0, 0]])
    beta = 4.0
    sig = lambda x: torch.sigmoid(beta * x)  # noqa: E731
    ta = torch.tensor(a, requires_grad=True)
    sig(ta).backward(torch.tensor(g))
    t2 = sn.Tensor(a, requires_grad=True)
    F.step(t2, surrogate="sigmoid", beta=beta).backward(g)
    np.testing.assert_allclose(t2.grad, ta.grad.numpy(), rtol=1e-12)
    t3 = sn.Tensor(a, requires_grad=True)
    F.step(t3).backward(g)   # no surrogate: the true gradient, zero
    np.testing.assert_array_equal(t3.grad, np.zeros_like(a))


@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (7,)])
def test_gelu_tanh_form(shape, rng):
    x = rng.standard_normal(shape) * 2
    compare_with_torch(F.gelu, lambda x: TF.gelu(x, approximate="tanh"), [x], rng)
    finite_difference_check(F.gelu, [x], rng)
