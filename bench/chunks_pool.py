"""Conv chunk budget and the 2x2 max pool: old setting against new, per layer, in one run on one machine.

    python bench/chunks_pool.py [--repeats 5] [--threads 2] [--out FILE]

The better net's layer shapes at batch 1024, float32, milliseconds of forward and of backward, each
measured both ways, taking turns: per repeat each setting runs one untimed and one timed call, and a row
reports the median over --repeats repeats:
- every conv (stride-1 3x3 ones on Winograd, the others on im2col) with the chunk budget the kernels used
  before (workspace.FALLBACK_CHUNK_BYTES, 2 MB) and with this machine's (workspace.CHUNK_BYTES, from its L2
  cache); the backward computes dW and, past the input layer, dx, as in training;
- every max pool with the offset loop (pool.KNOCKOUT_2X2 = False) and with the knockout pair;
- the small net's ReLU and 2x2 max pool (batch 128, 22x22x64) as written and pool first (what
  nn.COMMUTE_RELU_MAXPOOL makes Sequential do): the pair's kernels, forward and backward.
Writes bench/results/chunks_pool_<cpu family>.json (bench/machine.py names the family) with the machine's
facts. Run it on a quiet machine, like bench/train_step.py.
"""
from __future__ import annotations

import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratchnet import cpu  # noqa: E402, I001 - standard library only: numpy is not loaded yet

cpu.choose_openblas_kernels()  # before numpy loads (scratchnet.cpu)

import numpy as np  # noqa: E402

from bench import machine  # noqa: E402
from bench.train_step import timed, write_results  # noqa: E402
from scratchnet import parallel  # noqa: E402
from scratchnet.kernels import activation, conv, pool, workspace  # noqa: E402

BATCH = 1024
# The better net's trained convs (input HWC, kernel, out channels, padding, dx needed: the first one's input
# gradient is needed while the whitening bias trains) and its pools.
CONVS = [((31, 31, 24), 3, 64, 1, True), ((15, 15, 64), 3, 64, 1, True),
         ((15, 15, 64), 3, 256, 1, True), ((7, 7, 256), 3, 256, 1, True), ((3, 3, 256), 3, 256, 1, True)]
POOLS = [(31, 31, 64), (15, 15, 256), (7, 7, 256)]
RELU_POOL = (128, 22, 22, 64)   # the small net's first ReLU and pool, at its batch


def median_ms(fn, repeats):
    fn()
    return statistics.median(timed(fn) for _ in range(repeats)) * 1000


def both_ways(settings, make_fns, repeats):
    """{setting name: (fwd ms, bwd ms)}: each setting applied in turn, repeat by repeat (a drift in the
    machine's speed then hits both); the median of each over the repeats."""
    times = {name: ([], []) for name in settings}
    for _ in range(repeats):
        for name, apply in settings.items():
            apply()
            forward, backward = make_fns()
            times[name][0].append(median_ms(forward, 1))
            times[name][1].append(median_ms(backward, 1))
    return {name: (round(statistics.median(f), 2), round(statistics.median(b), 2)) for name, (f, b) in times.items()}


def conv_row(hwc, k, f, padding, need_dx, repeats, rng):
    x = rng.standard_normal((BATCH,) + hwc, dtype=np.float32)
    w = rng.standard_normal((k, k, hwc[2], f), dtype=np.float32) * 0.05

    def make_fns():
        out, cache = conv.conv2d_forward(x, w, None, 1, padding, keep_for_dw=True)
        dout = np.ones_like(out)
        return (lambda: conv.conv2d_forward(x, w, None, 1, padding, keep_for_dw=True),
                lambda: conv.conv2d_backward(dout, cache, need_dx=need_dx, need_db=False))

    old, new = workspace.FALLBACK_CHUNK_BYTES, workspace.CHUNK_BYTES
    settings = {"old": lambda: setattr(conv, "CHUNK_BYTES", old), "new": lambda: setattr(conv, "CHUNK_BYTES", new)}
    try:
        res = both_ways(settings, make_fns, repeats)
    finally:
        conv.CHUNK_BYTES = new
    path = "winograd" if conv._winograd_ok(np, x, w, 1, padding) else "im2col"
    return {"layer": f"Conv2d {hwc[2]}->{f} {k}x{k} on {hwc[0]}x{hwc[1]}", "path": path, "dx": need_dx,
            "old_chunk_bytes": old, "new_chunk_bytes": new, **_summary(res)}


def pool_row(hwc, repeats, rng):
    x = rng.standard_normal((BATCH,) + hwc, dtype=np.float32)

    def make_fns():
        out, cache = pool.max_pool2d_forward(x, 2)
        dout = rng.standard_normal(out.shape, dtype=np.float32)
        return lambda: pool.max_pool2d_forward(x, 2), lambda: pool.max_pool2d_backward(dout, cache)

    settings = {"old": lambda: setattr(pool, "KNOCKOUT_2X2", False), "new": lambda: setattr(pool, "KNOCKOUT_2X2", True)}
    try:
        res = both_ways(settings, make_fns, repeats)
    finally:
        pool.KNOCKOUT_2X2 = True
    return {"layer": f"MaxPool2d 2x2 on {hwc[0]}x{hwc[1]}x{hwc[2]}", "old": "offset loop", "new": "knockout",
            **_summary(res)}


def relu_pool_row(shape, repeats, rng):
    """ReLU then 2x2 max pool ('old', as written) against the pool then ReLU ('new'): kernels only."""
    x = rng.standard_normal(shape, dtype=np.float32)
    dout = rng.standard_normal((shape[0], shape[1] // 2, shape[2] // 2, shape[3]), dtype=np.float32)
    order = {}

    def as_written():
        r, r_cache = activation.relu_forward(x)
        out, p_cache = pool.max_pool2d_forward(r, 2)
        return out, lambda: activation.relu_backward(pool.max_pool2d_backward(dout, p_cache), r_cache)

    def pool_first():
        p, p_cache = pool.max_pool2d_forward(x, 2)
        out, r_cache = activation.relu_forward(p)
        return out, lambda: pool.max_pool2d_backward(activation.relu_backward(dout, r_cache), p_cache)

    def make_fns():
        run = order["run"]
        backward = run()[1]
        return lambda: run(), backward

    settings = {"old": lambda: order.update(run=as_written), "new": lambda: order.update(run=pool_first)}
    res = both_ways(settings, make_fns, repeats)
    n, h, w, c = shape
    return {"layer": f"ReLU + MaxPool2d 2x2 on {h}x{w}x{c}, batch {n}", "old": "ReLU first (as written)",
            "new": "pool first", **_summary(res)}


def _summary(res):
    (of, ob), (nf, nb) = res["old"], res["new"]
    return {"old_fwd_ms": of, "old_bwd_ms": ob, "new_fwd_ms": nf, "new_bwd_ms": nb,
            "new_vs_old": round((nf + nb) / (of + ob), 3)}


def main(argv=None):
    args = machine.kernel_bench_arguments(__doc__, "chunks_pool", 5, argv)
    parallel.set_num_threads(args.threads)
    cpu.tune()
    info = machine.machine_info()
    rng = np.random.default_rng(0)
    print(f"{info['cpu']} ({info['cpu_family']}), {args.threads} threads, batch {BATCH}; ms fwd / bwd, old -> new; "
          f"chunk budget {workspace.FALLBACK_CHUNK_BYTES >> 20} MB -> {workspace.CHUNK_BYTES / (1 << 20):g} MB")
    rows = [conv_row(*spec, args.repeats, rng) for spec in CONVS] + [pool_row(s, args.repeats, rng) for s in POOLS]
    rows.append(relu_pool_row(RELU_POOL, args.repeats, rng))
    for r in rows:
        print(f"  {r['layer']:<34} {r['old_fwd_ms']:7.1f} / {r['old_bwd_ms']:7.1f}  ->  "
              f"{r['new_fwd_ms']:7.1f} / {r['new_bwd_ms']:7.1f}   new/old {r['new_vs_old']:.2f}")
    out = args.out or Path(__file__).resolve().parent / "results" / f"chunks_pool_{info['cpu_family']}.json"
    run = {"threads": args.threads, "repeats": args.repeats, "batch": BATCH, "tuned": True,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_results(out, info, run, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
