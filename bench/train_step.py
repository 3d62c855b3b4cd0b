"""Training-step speed: scratchnet-numpy vs PyTorch CPU, measured in the same run on the same machine.

    python bench/train_step.py [--nets small small_bn airbench better] [--rounds 4] [--threads 2]

For each network: median milliseconds per training step (forward + backward + SGD update) of
scratchnet and of its PyTorch twin (same architecture and weights, NCHW, oneDNN), their ratio, a
per-op table of where scratchnet's time goes (forward and backward separately), and the FLOP/s the conv
layers reach as a share of this machine's numpy float32 GEMM speed (measured here too, with all cores).
The two sides take turns (rounds of a few steps each), so machine-speed drift hits both alike; both use
--threads threads (torch's intra-op pool; scratchnet.parallel's CPU kernels).
Writes bench/results/train_step.json: [{net, batch, scratchnet_ms, torch_ms, ratio, conv_gemm_share, ...}].
`better` is P3 part 3's network at its training batch (512): it has no PyTorch twin, so its row has
scratchnet's time and per-op profile only (torch_ms and ratio are null).
Two PyTorch figures: `torch_ms` is timed in the same process as scratchnet, so it runs under the
glibc malloc setting that scratchnet's CPU kernels switch on (scratchnet/parallel.py: freed memory is
kept, big arrays are not re-mmap'd each step), which speeds PyTorch up too; `torch_default_malloc_ms` is
PyTorch timed alone in a fresh process that never runs a scratchnet kernel, i.e. PyTorch as a user gets it.
`ratio` divides by the first (same conditions for both); `ratio_vs_torch_default_malloc` by the second.
Run it on a quiet machine: anything else on the two cores makes both numbers lie.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import scratchnet as sn  # noqa: E402
from scratchnet import functional as F  # noqa: E402
from scratchnet import models, optim, parallel  # noqa: E402
from scratchnet import nn as snn  # noqa: E402
from problems.common.cli import positive_int  # noqa: E402
from problems.common.torch_reference import torch_twin  # noqa: E402

NETS = {"small": (lambda: models.small_cnn(False), 128),
        "small_bn": (lambda: models.small_cnn(True), 128),
        "airbench": (models.airbench_style, 1024),
        "better": (models.better_net, 512)}   # P3 part 3 (GELU, frozen-scale BN): profile only, no torch twin


def matmul_gflops(n=2048, repeats=5):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / min(times) / 1e9


def conv_flops(net, batch, hw=32):
    """FLOPs of all conv layers in one training step: forward 2*N*Ho*Wo*k*k*Cin*Cout, backward dW the
    same and dx the same again (except the first layer, whose input needs no gradient)."""
    total, size, first = 0, hw, True
    for layer in net.layers:
        if isinstance(layer, snn.Conv2d):
            size = (size + 2 * layer.padding - layer.kernel_size) // layer.stride + 1
            fwd = 2 * batch * size * size * layer.kernel_size ** 2 * layer.in_channels * layer.out_channels
            total += fwd * (2 if first else 3)
            first = False
        elif isinstance(layer, snn.MaxPool2d):
            size = (size - layer.kernel_size) // layer.stride + 1
    return total


class OpTimer:
    """Wraps every Function's forward/backward to add up wall time per op class."""

    def __init__(self):
        self.times = collections.defaultdict(float)
        self.saved = []

    def __enter__(self):
        for cls in sn.Function.__subclasses__():
            fwd, bwd = cls.forward, cls.backward
            self.saved.append((cls, fwd, bwd))
            cls.forward = self._wrap(fwd, cls.__name__ + " fwd")
            cls.backward = self._wrap(bwd, cls.__name__ + " bwd")
        return self

    def _wrap(self, fn, key):
        def timed(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            self.times[key] += time.perf_counter() - t
            return out
        return timed

    def __exit__(self, *exc):
        for cls, fwd, bwd in self.saved:
            cls.forward, cls.backward = fwd, bwd


def sgd_step_scratchnet(net, x, y):
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(net(sn.Tensor(x)), y)
        loss.backward()
        opt.step()

    return step


def sgd_step_torch(net, x, y):
    model = torch_twin(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    yt = torch.from_numpy(y)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()

    return step


def timed(step):
    t = time.perf_counter()
    step()
    return time.perf_counter() - t


def median_ms(steps_by_name, rounds, warmup=1, per_round=3):
    """Median wall time per step in milliseconds of each named step function.

    The sides take turns in rounds (a a a a, b b b b, a a a a, ...): this VM's speed drifts by tens of
    percent within minutes, and alternating makes both sides see the same drift. Each turn starts with
    `warmup` untimed steps, so that neither side is timed while the other's idle worker threads are still
    spinning (OpenMP's wait policy) or while its own data is out of cache; then `per_round` timed steps.
    """
    times = {name: [] for name in steps_by_name}
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            for _ in range(warmup):
                step()
            times[name] += [timed(step) for _ in range(per_round)]
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def profile_ops(step, repeats=2):
    """Milliseconds per step spent in each scratchnet op (forward and backward separately)."""
    with OpTimer() as timer:
        for _ in range(repeats):
            step()
    return {k: v / repeats * 1000 for k, v in sorted(timer.times.items(), key=lambda kv: -kv[1])}


def torch_alone_ms(name, steps, threads):
    """PyTorch's step for `name` timed in a fresh process that never runs a scratchnet kernel."""
    run = subprocess.run([sys.executable, __file__, "--torch-alone", name, "--rounds", str(steps),
                          "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])["torch_ms"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    p.add_argument("--rounds", type=positive_int, default=4, help="turns per side and net, 3 timed steps each (median "
                   "reported); halved for the batch-512/1024 nets")
    p.add_argument("--threads", type=positive_int, default=2,
                   help="threads for both: torch's intra-op pool and scratchnet's CPU kernels (scratchnet.parallel)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "train_step.json")
    p.add_argument("--torch-alone", choices=[n for n in NETS if n != "better"], help="internal: time only "
                   "PyTorch's step for this net, --rounds timed steps, and print it as JSON")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.torch_alone:
        build, batch = NETS[args.torch_alone]
        rng = np.random.default_rng(0)
        step = sgd_step_torch(build(), rng.standard_normal((batch, 32, 32, 3)).astype(np.float32),
                              rng.integers(0, 10, batch))
        step()
        print(json.dumps({"torch_ms": statistics.median(timed(step) for _ in range(args.rounds)) * 1000}))
        return
    parallel.set_num_threads(args.threads)
    peak = matmul_gflops()
    print(f"numpy float32 matmul (2048^3): {peak:.0f} GFLOP/s; threads: torch {torch.get_num_threads()}, "
          f"scratchnet {parallel.num_threads()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    rows = []
    for name in args.nets:
        build, batch = NETS[name]
        net = build()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, 32, 32, 3)).astype(np.float32)
        y = rng.integers(0, 10, batch)
        rounds = max(1, args.rounds if batch <= 256 else args.rounds // 2)
        sn_step = sgd_step_scratchnet(net, x, y)
        pair = {"scratchnet": sn_step}
        if name != "better":
            pair["torch"] = sgd_step_torch(net, x, y)
        ms = median_ms(pair, rounds)
        sn_ms, torch_ms = ms["scratchnet"], ms.get("torch")
        per_op = profile_ops(sn_step)
        alone_ms = None if torch_ms is None else torch_alone_ms(name, 3 * rounds, args.threads)
        conv_ms = sum(v for k, v in per_op.items() if k.startswith("Conv2d"))
        flops = conv_flops(net, batch)
        conv_gflops = flops / (conv_ms / 1000) / 1e9
        row = {"net": name, "batch": batch, "scratchnet_ms": round(sn_ms, 1),
               "torch_ms": None if torch_ms is None else round(torch_ms, 1),
               "ratio": None if torch_ms is None else round(sn_ms / torch_ms, 3),
               "torch_default_malloc_ms": None if alone_ms is None else round(alone_ms, 1),
               "ratio_vs_torch_default_malloc": None if alone_ms is None else round(sn_ms / alone_ms, 3),
               "conv_gemm_share": round(conv_gflops / peak, 3),
               "conv_gflops": round(conv_gflops, 1), "conv_ms": round(conv_ms, 1),
               "step_gflops": round(flops / (sn_ms / 1000) / 1e9, 1), "matmul_gflops": round(peak, 1),
               "per_op_ms": {k: round(v, 2) for k, v in per_op.items()}}
        rows.append(row)
        vs_torch = "no torch twin" if torch_ms is None else (
            f"torch {torch_ms:.1f} ms/step, ratio {row['ratio']:.2f}x (torch alone with glibc's default malloc "
            f"{alone_ms:.1f} ms/step, ratio {row['ratio_vs_torch_default_malloc']:.2f}x)")
        print(f"\n{name} (batch {batch}): scratchnet {sn_ms:.1f} ms/step, {vs_torch}; conv layers "
              f"{conv_gflops:.0f} GFLOP/s = {100 * row['conv_gemm_share']:.0f}% of numpy GEMM")
        print(f"  {'op':<28}{'ms/step':>9}")
        for k, v in per_op.items():
            if v >= 0.5:
                print(f"  {k:<28}{v:>9.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "numpy": np.__version__, "torch": torch.__version__,
            "threads": args.threads, "timing": "median of steps timed in alternating rounds",
            "load_average_at_start": os.getloadavg()[0]}
    args.out.write_text(json.dumps([{**r, **meta} for r in rows], indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
