"""Batch norm + activation: scratchnet's fused op against the unfused pair and against PyTorch, on one machine.

    python bench/norm_act.py [--repeats 7] [--threads 2] [--out FILE]

For the better net's batch-norm shapes at batch 1024 (after block 1's and block 2's pooling), float32,
training mode, milliseconds of forward and of backward (median of --repeats calls after one untimed):
scratchnet's fused op (scratchnet/kernels/norm_act.py), the same two layers unfused (kernels/norm.py then
kernels/activation.py), and PyTorch's BatchNorm2d then ReLU / tanh-GELU in channels_last (PyTorch times
forward, and forward + backward, since its backward cannot run alone). Writes
bench/results/norm_act_<cpu family>.json (bench/machine.py names the family) with the machine's facts.
Run it on a quiet machine, like bench/train_step.py.
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
import torch  # noqa: E402

from bench import machine  # noqa: E402
from bench.train_step import timed, write_results  # noqa: E402
from scratchnet import parallel  # noqa: E402
from scratchnet.kernels import activation, norm, norm_act  # noqa: E402

SHAPES = [(1024, 15, 15, 64), (1024, 7, 7, 256)]
UNFUSED = {"relu": (activation.relu_forward, activation.relu_backward),
           "gelu": (activation.gelu_forward, activation.gelu_backward)}
TORCH_ACT = {"relu": torch.nn.ReLU, "gelu": lambda: torch.nn.GELU(approximate="tanh")}


def median_ms(fn, repeats):
    """Median ms of `repeats` calls after an untimed one (train_step's clock)."""
    fn()
    return round(statistics.median(timed(fn) for _ in range(repeats)) * 1000, 2)


def measure(shape, act, repeats):
    """One row: forward and backward ms of the fused op, the unfused pair and PyTorch for one shape."""
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32)
    c = shape[-1]
    gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    stats = (np.zeros(c, np.float32), np.ones(c, np.float32))
    fwd, bwd = UNFUSED[act]

    def unfused_forward():
        z, bn_cache = norm.batchnorm_forward(x, gamma, beta, *stats, True)
        return fwd(z)[1], bn_cache

    act_cache, bn_cache = unfused_forward()
    _, fused_cache = norm_act.batchnorm_act_forward(x, gamma, beta, *stats, True, activation=act)
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(c), TORCH_ACT[act]()).to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_()  # channels_last strides, no copy
    dt = torch.from_numpy(dout).permute(0, 3, 1, 2)

    def torch_both():
        model(xt).backward(dt)

    row = {"shape_nhwc": list(shape), "activation": act,
           "fused_fwd_ms": median_ms(lambda: norm_act.batchnorm_act_forward(x, gamma, beta, *stats, True,
                                                                            activation=act), repeats),
           "fused_bwd_ms": median_ms(lambda: norm_act.batchnorm_act_backward(dout, fused_cache), repeats),
           "unfused_fwd_ms": median_ms(unfused_forward, repeats),
           "unfused_bwd_ms": median_ms(lambda: norm.batchnorm_backward(bwd(dout, act_cache), bn_cache), repeats),
           "torch_fwd_ms": median_ms(lambda: model(xt), repeats),
           "torch_fwd_bwd_ms": median_ms(torch_both, repeats)}
    fused, unfused = row["fused_fwd_ms"] + row["fused_bwd_ms"], row["unfused_fwd_ms"] + row["unfused_bwd_ms"]
    row["fused_vs_unfused"] = round(fused / unfused, 3)
    row["fused_vs_torch"] = round(fused / row["torch_fwd_bwd_ms"], 3)
    return row


def main(argv=None):
    args = machine.kernel_bench_arguments(__doc__, "norm_act", 7, argv)
    torch.set_num_threads(args.threads)
    parallel.set_num_threads(args.threads)
    cpu.tune()
    info = machine.machine_info()
    rows = []
    print(f"{info['cpu']} ({info['cpu_family']}), {args.threads} threads; ms, fwd / bwd")
    for shape in SHAPES:
        for act in ("relu", "gelu"):
            r = measure(shape, act, args.repeats)
            rows.append(r)
            print(f"  {str(tuple(shape)):<20} bn+{act:<5} fused {r['fused_fwd_ms']:7.1f} / {r['fused_bwd_ms']:7.1f}"
                  f"   unfused {r['unfused_fwd_ms']:7.1f} / {r['unfused_bwd_ms']:7.1f}"
                  f"   torch fwd {r['torch_fwd_ms']:6.1f}, fwd+bwd {r['torch_fwd_bwd_ms']:6.1f}"
                  f"   fused/unfused {r['fused_vs_unfused']:.2f}  fused/torch {r['fused_vs_torch']:.2f}")
    out = args.out or Path(__file__).resolve().parent / "results" / f"norm_act_{info['cpu_family']}.json"
    run = {"threads": args.threads, "repeats": args.repeats, "tuned": True,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_results(out, info, run, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
