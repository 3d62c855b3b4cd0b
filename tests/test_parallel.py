"""CPU threads (scratchnet.parallel): the scheduling contract, determinism, and every threaded kernel
against its single-threaded reference with the threaded path forced on small arrays. What the threads do
to the BLAS and to malloc, with and without scratchnet.cpu.tune(): tests/test_cpu_tuning.py."""
import threading
import time

import numpy as np
import pytest

from scratchnet import parallel
from scratchnet.backend import BackendError
from scratchnet.kernels import activation as act_k
from scratchnet.kernels import conv as conv_k
from scratchnet.kernels import norm as norm_k
from scratchnet.kernels import pool as pool_k
from scratchnet.kernels import winograd as winograd_k


@pytest.fixture
def threads(monkeypatch):
    """Force the threaded path everywhere: 3 workers (more than the cores, uneven splits), no size floor,
    tiny cache blocks and conv chunks. The thread count is restored afterwards."""
    saved = parallel.num_threads()
    parallel.set_num_threads(3)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(act_k, "CACHE_BLOCK_BYTES", 64)
    monkeypatch.setattr(conv_k, "CHUNK_BYTES", 2000)
    yield 3
    parallel.set_num_threads(saved)


@pytest.fixture(params=["im2col", "winograd"])
def conv_path(request, monkeypatch):
    """Run a conv test through both fast paths: im2col, and Winograd for every 3x3 stride-1 conv."""
    if request.param == "winograd":
        monkeypatch.setattr(winograd_k, "MIN_CHANNELS", 1)
        monkeypatch.setattr(winograd_k, "MAX_OVERHANG", 1e9)
    else:
        monkeypatch.setattr(conv_k, "WINOGRAD", False)
    return request.param


def test_for_each_chunk_runs_every_range_once_on_its_worker(threads):
    ranges = parallel.split(17, 7)
    assert ranges[0][0] == 0 and ranges[-1][1] == 17
    assert all(hi > lo for lo, hi in ranges) and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    seen, names, lock = [], set(), threading.Lock()

    def fn(lo, hi, worker):
        with lock:
            seen.append((lo, hi, worker))
            names.add(threading.current_thread().name)

    assert parallel.for_each_chunk(np, ranges, fn) == 3
    assert sorted((lo, hi) for lo, hi, _ in seen) == ranges
    for lo, hi, worker in seen:  # round-robin: range k goes to worker k mod T
        assert worker == ranges.index((lo, hi)) % 3
    assert all(name.startswith("scratchnet") for name in names)


def test_sum_chunks_adds_per_worker_running_sums_in_worker_order(threads):
    """3 workers, 7 ranges: worker k sums ranges k, k+3, ... in order; the total adds workers 0, 1, 2."""
    values = np.random.default_rng(3).standard_normal((17, 4)).astype(np.float32) * 1e4
    ranges = parallel.split(17, 7)
    got = parallel.sum_chunks(np, ranges, lambda lo, hi: values[lo:hi].sum(axis=0))
    per_worker = [None] * 3
    for k, (lo, hi) in enumerate(ranges):
        part = values[lo:hi].sum(axis=0)
        per_worker[k % 3] = part if per_worker[k % 3] is None else per_worker[k % 3] + part
    np.testing.assert_array_equal(got, per_worker[0] + per_worker[1] + per_worker[2])
    # float32 sums where the order shows: (1e8 - 1e8) + 1 = 1, but (1 - 1e8) + 1e8 = 0
    ordered = np.array([[1e8], [-1e8], [1.0]], dtype=np.float32)
    assert parallel.sum_chunks(np, parallel.split(3, 3), lambda lo, hi: ordered[lo:hi].sum(axis=0))[0] == 1.0


def test_for_each_chunk_in_order_when_single_threaded_or_nested(threads):
    calls = []
    parallel.set_num_threads(1)
    assert parallel.for_each_chunk(np, [(0, 1), (1, 2)], lambda lo, hi, w: calls.append((lo, w))) == 1
    assert calls == [(0, 0), (1, 0)]
    parallel.set_num_threads(3)
    inner = []

    def outer(lo, hi, worker):  # a kernel called from inside a worker must not wait on the busy pool
        inner.append(parallel.for_each_chunk(np, [(0, 1), (1, 2)], lambda a, b, w: None))

    parallel.for_each_chunk(np, parallel.split(6, 3), outer)
    assert inner == [1, 1, 1]


def test_for_each_chunk_reraises_a_worker_error(threads):
    def fn(lo, hi, worker):
        if lo == 2:
            raise ArithmeticError("boom in chunk 2")

    with pytest.raises(ArithmeticError, match="boom in chunk 2"):
        parallel.for_each_chunk(np, parallel.split(5, 5), fn)


def test_a_worker_error_reaches_the_caller_only_after_every_worker_stopped(threads):
    finished = []

    def fn(lo, hi, worker):
        if worker == 0:
            raise ArithmeticError("worker 0 failed")
        time.sleep(0.2)
        finished.append(worker)

    with pytest.raises(ArithmeticError):
        parallel.for_each_chunk(np, parallel.split(3, 3), fn)
    assert sorted(finished) == [1, 2]  # nobody is still writing once the caller sees the error


def test_kernels_called_from_concurrent_workers_do_not_share_buffers(threads, conv_path):
    """Nested calls run in order inside each worker, but the workers run at once: scratch buffers are
    per thread, so concurrent convs of the same shape must not overwrite each other's columns."""
    rng = np.random.default_rng(6)
    xs = [rng.standard_normal((4, 16, 16, 8)) for _ in range(24)]
    w = rng.standard_normal((3, 3, 8, 5))
    outs = {}

    def fn(lo, hi, worker):
        for i in range(lo, hi):
            outs[i] = conv_k.conv2d_forward(xs[i], w, None, 1, 1)[0]

    parallel.for_each_chunk(np, parallel.split(24, 24), fn)
    for i, x in enumerate(xs):
        ref = conv_k.conv2d_forward_reference(x, w, None, 1, 1)[0]
        np.testing.assert_allclose(outs[i], ref, rtol=1e-10, atol=1e-10)


def test_threaded_kernels_keep_float32_and_accept_empty_batches(threads, conv_path):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 8, 8, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 6)).astype(np.float32)
    out, cache = conv_k.conv2d_forward(x, w, np.zeros(6, np.float32), 1, 1)
    grads = conv_k.conv2d_backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert grads[1].flags.c_contiguous
    for fwd, bwd in ((act_k.relu_forward, act_k.relu_backward), (act_k.gelu_forward, act_k.gelu_backward)):
        y, c = fwd(x)
        assert y.dtype == np.float32 and bwd(np.ones_like(y), c).dtype == np.float32
    y, c = pool_k.max_pool2d_forward(x, 2, 2)
    assert y.dtype == np.float32 and pool_k.max_pool2d_backward(np.ones_like(y), c).dtype == np.float32
    stats = [np.zeros(4, np.float32), np.ones(4, np.float32)]
    y, c = norm_k.batchnorm_forward(x, np.ones(4, np.float32), np.zeros(4, np.float32), *stats, True)
    assert y.dtype == np.float32 and all(g.dtype == np.float32 for g in norm_k.batchnorm_backward(y, c))

    empty = np.zeros((0, 8, 8, 4), np.float32)
    out, cache = conv_k.conv2d_forward(empty, w, None, 1, 1)
    dx, dw, db = conv_k.conv2d_backward(out, cache)
    assert out.shape == (0, 8, 8, 6) and dx.shape == empty.shape and not dw.any() and not db.any()
    y, c = pool_k.max_pool2d_forward(empty, 2, 2)
    assert y.shape == (0, 4, 4, 4) and pool_k.max_pool2d_backward(y, c).shape == empty.shape
    y, c = norm_k.batchnorm_forward(empty, np.ones(4, np.float32), np.zeros(4, np.float32), *stats, False)
    assert y.shape == empty.shape and norm_k.batchnorm_backward(y, c)[0].shape == empty.shape
    assert not norm_k.channel_sum(np.zeros((0, 3))).any()


def test_sum_blocks_adds_in_block_order(threads):
    x = np.random.default_rng(0).standard_normal((1001, 7))
    total = parallel.sum_blocks(np, 1001, x[0].nbytes, lambda lo, hi: x[lo:hi].sum(axis=0))
    np.testing.assert_allclose(total, x.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm_k.channel_sum(x), x.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="positive integer"):
        parallel.set_num_threads(bad)


def test_bad_thread_count_in_environment_is_named(monkeypatch):
    monkeypatch.setenv("SCRATCHNET_NUM_THREADS", "two")
    with pytest.raises(BackendError, match="SCRATCHNET_NUM_THREADS.*'two'"):
        parallel._default_threads()
    monkeypatch.setenv("SCRATCHNET_NUM_THREADS", "3")
    assert parallel._default_threads() == 3


def test_threaded_conv_is_deterministic_and_equals_one_thread(threads, conv_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 9, 8, 5)).astype(np.float32)
    w = rng.standard_normal((3, 3, 5, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)

    def run():
        out, cache = conv_k.conv2d_forward(x, w, b, 1, 1)
        dout = np.cos(out)
        return (out, *conv_k.conv2d_backward(dout, cache))

    first, second = run(), run()
    for a, c in zip(first, second):  # same thread count: the same bits
        np.testing.assert_array_equal(a, c)
    parallel.set_num_threads(1)
    for a, c in zip(first, run()):  # float32 sums in another order; Winograd's are longer (36 tiles' worth)
        scale = np.abs(c).max() if conv_path == "winograd" else 1.0
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5 * scale)


def test_winograd_dw_from_kept_tiles_has_the_same_bits_as_rebuilt(threads, monkeypatch):
    """keep_for_dw (as the autograd layer asks when dW is needed): the Winograd forward keeps its transformed
    tiles V and dW reuses them instead of rebuilding them; same bits either way, every run, whatever order
    the threads finished in. Over KEEP_V_BYTES nothing is kept."""
    monkeypatch.setattr(winograd_k, "MIN_CHANNELS", 1)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 11, 9, 5)).astype(np.float32)
    w = rng.standard_normal((3, 3, 5, 6)).astype(np.float32)
    dout = rng.standard_normal((7, 11, 9, 6)).astype(np.float32)
    out, rebuilt = conv_k.conv2d_forward(x, w, None, 1, 1)
    assert rebuilt[4] is None
    expected = conv_k.conv2d_backward(dout, rebuilt)
    for _ in range(5):
        out_kept, kept = conv_k.conv2d_forward(x, w, None, 1, 1, keep_for_dw=True)
        assert isinstance(kept[4], dict) and len(kept[4]) > 3  # one V per chunk: several chunks, 3 threads
        np.testing.assert_array_equal(out_kept, out)
        for a, b in zip(conv_k.conv2d_backward(dout, kept), expected):
            np.testing.assert_array_equal(a, b)
    v_bytes = 36 * 7 * 3 * 3 * 5 * 4  # 36 tile positions x 7 images x 3x3 blocks x 5 channels, float32
    monkeypatch.setattr(winograd_k, "KEEP_V_BYTES", v_bytes - 1)
    assert conv_k.conv2d_forward(x, w, None, 1, 1, keep_for_dw=True)[1][4] is None
    monkeypatch.setattr(winograd_k, "KEEP_V_BYTES", v_bytes)
    assert conv_k.conv2d_forward(x, w, None, 1, 1, keep_for_dw=True)[1][4] is not None


@pytest.mark.parametrize("shape", [(5, 3, 4, 6), (1, 7)])
def test_threaded_activations_equal_reference(shape, threads):
    x = np.random.default_rng(2).standard_normal(shape) * 3
    x[0, 0] = 0.0
    dout = np.random.default_rng(3).standard_normal(shape)
    for src, g in ((x, dout), (x.T.copy().T, dout.T.copy().T)):  # contiguous, and non-contiguous (Fortran order)
        out, cache = act_k.relu_forward(src)
        ref, ref_cache = act_k.relu_forward_reference(src)
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(act_k.relu_backward(g, cache), act_k.relu_backward_reference(g, ref_cache))
        out, cache = act_k.gelu_forward(src)
        ref, ref_cache = act_k.gelu_forward_reference(src)
        np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(act_k.gelu_backward(g, cache), act_k.gelu_backward_reference(g, ref_cache),
                                   rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2), (2, 3)])
def test_threaded_max_pool_equals_reference(k, s, threads):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 2, (5, 7, 9, 3)).astype(np.float64)  # ties everywhere
    out, cache = pool_k.max_pool2d_forward(x, k, s)
    ref, ref_cache = pool_k.max_pool2d_forward_reference(x, k, s)
    np.testing.assert_array_equal(out, ref)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(pool_k.max_pool2d_backward(dout, cache),
                               pool_k.max_pool2d_backward_reference(dout, ref_cache), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("training", [True, False])
def test_threaded_batch_norm_equals_reference(training, threads):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 3, 7, 6)) * 0.5 + 40.0 * rng.standard_normal(6)
    g, b, dout = rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal(x.shape)
    fast_stats, ref_stats = [np.full(6, 0.3), np.full(6, 2.0)], [np.full(6, 0.3), np.full(6, 2.0)]
    out, cache = norm_k.batchnorm_forward(x, g, b, *fast_stats, training)
    ref, ref_cache = norm_k.batchnorm_forward_reference(x, g, b, *ref_stats, training)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
    for a, r in zip(fast_stats, ref_stats):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)
    for fast, slow in zip(norm_k.batchnorm_backward(dout, cache), norm_k.batchnorm_backward_reference(dout, ref_cache)):
        np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-9)


def _fake_cache_dir(root, entries):
    root.mkdir()
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return str(root)


def test_chunk_budget_follows_the_l2_cache(tmp_path):
    """The conv chunk budget: 3x the L2 cache read from sysfs (instruction and L1/L3 entries ignored),
    clamped to [1, 8] MB, and the 2 MB fallback where sysfs says nothing usable."""
    from scratchnet.kernels import workspace as ws
    entries = [(1, "Data", "48K"), (1, "Instruction", "64K"), (2, "Unified", "2048K"), (3, "Unified", "32768K")]
    assert ws.l2_cache_bytes(_fake_cache_dir(tmp_path / "intel", entries)) == 2 << 20
    assert ws.l2_cache_bytes(_fake_cache_dir(tmp_path / "mb", [(2, "Unified", "1M")])) == 1 << 20
    assert ws.l2_cache_bytes(str(tmp_path / "absent")) is None
    assert ws.l2_cache_bytes(_fake_cache_dir(tmp_path / "bad", [(2, "Unified", "lots")])) is None
    assert ws.chunk_budget(2 << 20) == 6 << 20
    assert ws.chunk_budget(1 << 20) == 3 << 20
    assert ws.chunk_budget(256 << 10) == ws.MIN_CHUNK_BYTES
    assert ws.chunk_budget(32 << 20) == ws.MAX_CHUNK_BYTES
    assert ws.chunk_budget(None) == ws.FALLBACK_CHUNK_BYTES == 2 << 20
