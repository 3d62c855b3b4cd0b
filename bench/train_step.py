"""Training-step speed: scratchnet-numpy vs PyTorch CPU, measured in the same run on the same machine.

    python bench/train_step.py [--nets small small_bn airbench better] [--rounds 8] [--threads 2]

For each network: median milliseconds per training step (forward + backward + SGD update) of
scratchnet and of its PyTorch twin (same architecture and weights, NCHW, oneDNN), their ratio, a
per-op table of where scratchnet's time goes (forward and backward separately), a per-layer table of
both libraries' forward and backward milliseconds side by side (the two taking turns, median of 5
timed steps, 3 for the big-batch nets; `per_layer` in the JSON), and the FLOP/s the conv layers reach as a share of this
machine's numpy float32 GEMM speed (measured here too, with all cores), in all and per layer.
The two sides take turns (rounds of a few steps each), so machine-speed drift hits both alike; both use
--threads threads (torch's intra-op pool; scratchnet.parallel's CPU kernels).
Writes bench/results/train_step.json: [{net, batch, scratchnet_ms, torch_ms, ratio, conv_gemm_share, ...}].
`better` is P3 part 3's network at its training batch (512), against its PyTorch twin
(problems/p3/torch_reference.torch_twin: the same layers and weights, frozen whitening filters and batch-norm
scales as buffers, tanh GELU), the twin that `problems/p3_small_cnn.py --model better --backend torch` trains.
Like every row here, the step is plain cross-entropy SGD (no label smoothing or weight average), the same
on both sides. Peak memory is not measured (no mechanism here for either side).
Stride-1 3x3 convs run through Winograd F(4x4, 3x3) (scratchnet/kernels/winograd.py), which does 4x
fewer multiply-adds than direct convolution; `scratchnet_im2col_ms` times the same step with every conv on
im2col + GEMM (scratchnet.kernels.conv.WINOGRAD = False), in the same alternating rounds. FLOP/s figures
count direct convolution's FLOPs: `conv_gemm_share` is therefore an effective share and can pass 1.0 with
Winograd; `conv_gemm_share_im2col` (im2col, which does all those FLOPs) is the real share of GEMM speed.
Two PyTorch figures: `torch_ms` is timed in the same process as scratchnet, so it runs under the
glibc malloc setting that scratchnet.cpu.tune() switches on (freed memory is kept, big arrays are not
re-mmap'd each step), which speeds PyTorch up too; `torch_default_malloc_ms` is
PyTorch timed alone in a fresh process that never runs a scratchnet kernel, i.e. PyTorch as a user gets it.
`ratio` divides by the first (same conditions for both); `ratio_vs_torch_default_malloc` by the second.
Run it on a quiet machine: anything else on the two cores makes both numbers lie. Even so, single
steps on this project's VM range from 126 to 207 ms for a median of 136 (the batch-norm CNN, 40 steps in
a row), so each side gets 8 rounds of 3 timed steps by default (4 for the big-batch nets); with 4 rounds,
repeated runs of the batch-norm CNN gave ratios from 0.91 to 1.02.

    python bench/train_step.py --no-tune [--nets small small_bn]

runs everything without scratchnet.cpu.tune() (the process-wide single-threaded BLAS and glibc malloc
setting that the P3 scripts and this bench switch on by default; the OpenBLAS kernel choice is still made:
SCRATCHNET_BLAS_TUNING=0 skips it) and writes bench/results/train_step_untuned.json: run with and
without, back to back, to measure what the step loses without it (`tuned` in the JSON says which it was).

    python bench/train_step.py --backend cupy          (on a machine with an NVIDIA GPU and CuPy)

times scratchnet-cupy against PyTorch CUDA (cuDNN, benchmark mode) instead, and writes
bench/results/train_step_cupy.json. Every timed step is bracketed by a device synchronise (the GPU runs
asynchronously). `torch_ms` is PyTorch in strict float32, as scratchnet computes (TF32 off);
`torch_tf32_ms` is PyTorch with its default of TF32 convolutions; `speed_vs_torch` = torch_ms /
scratchnet_ms (the issue's target is >= 0.5); `conv_gemm_share` is against CuPy's float32 matmul;
`host_ms` is how long the Python side takes to issue one step (near scratchnet_ms: launch-bound).
`per_layer_synced` is the same per-layer table as on the CPU, with the device synchronised around every
op and layer so each kernel lands on its own layer: on a launch-bound step the layers add up to more
than the step itself, so read it for where the GPU's time goes, not for the step's total.
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

from scratchnet import cpu  # noqa: E402, I001 - standard library only: numpy is not loaded yet

cpu.choose_openblas_kernels()  # before numpy loads, which is when OpenBLAS reads it (scratchnet.cpu)

import scratchnet as sn  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from scratchnet import functional as F  # noqa: E402
from scratchnet import optim, parallel  # noqa: E402
from scratchnet import nn as snn  # noqa: E402
from scratchnet.kernels import conv as conv_kernels  # noqa: E402
from problems.common.cli import output_file, positive_int, seed_value, thread_count  # noqa: E402
from problems.p3 import models  # noqa: E402
from problems.p3.torch_reference import torch_twin  # noqa: E402
from bench.airbench import airbench_style  # noqa: E402

NETS = {"small": (lambda seed: models.small_cnn(False, seed=seed), 128),
        "small_bn": (lambda seed: models.small_cnn(True, seed=seed), 128),
        "airbench": (lambda seed: airbench_style(seed=seed), 1024),
        "better": (lambda seed: models.better_net(seed=seed), 512)}  # P3 part 3, at its recipe's batch


def bench_input(name, seed=0):
    """(net, batch, x, y) for a benchmark net: its fresh weights and a random batch, both from `seed`."""
    build, batch = NETS[name]
    rng = np.random.default_rng(seed)
    return (build(seed), batch, rng.standard_normal((batch, 32, 32, 3)).astype(np.float32),
            rng.integers(0, 10, batch))


RESULTS = Path(__file__).resolve().parent / "results"


def print_op_table(per_op, title, min_ms, digits):
    """The per-op milliseconds of one step, biggest first, leaving out ops under min_ms."""
    print(f"  {title:<28}{'ms/step':>9}")
    for k, v in per_op.items():
        if v >= min_ms:
            print(f"  {k:<28}{v:>9.{digits}f}")


def write_rows(out, rows, meta):
    """The results JSON: one object per net, each with the run's facts (meta) added."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([{**r, **meta} for r in rows], indent=2) + "\n")
    print(f"\nwrote {out}")


def openblas_kernels():
    """The kernel family numpy's OpenBLAS runs (e.g. 'Haswell', 'SkylakeX'), as threadpoolctl reports it."""
    from threadpoolctl import threadpool_info
    return next((i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"), None)


def matmul_gflops(n=2048, repeats=5):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / min(times) / 1e9


def conv_layers(net, batch, hw=32):
    """(layer, output size, FLOPs in one training step) of each conv layer: forward 2*N*Ho*Wo*k*k*Cin*Cout,
    backward dW the same (unless the weight is frozen, as the better net's whitening conv) and dx the same
    again (except the first layer, whose input needs no gradient)."""
    size, first = hw, True
    for layer in net.layers:
        if isinstance(layer, snn.Conv2d):
            size = (size + 2 * layer.padding - layer.kernel_size) // layer.stride + 1
            fwd = 2 * batch * size * size * layer.kernel_size ** 2 * layer.in_channels * layer.out_channels
            yield layer, size, fwd * (1 + isinstance(layer.weight, snn.Parameter) + (not first))
            first = False
        elif isinstance(layer, snn.MaxPool2d):
            size = (size - layer.kernel_size) // layer.stride + 1


def conv_flops(net, batch, hw=32):
    """FLOPs of all conv layers in one training step (conv_layers)."""
    return sum(flops for _, _, flops in conv_layers(net, batch, hw))


class OpTimer:
    """Wraps every Function's forward/backward to add up wall time per op class (on a GPU each call is
    synchronised on both sides, so that its kernels' time lands on it and not on a later op).

    With `net` (a Sequential) it also adds each op's time to the top-level layer it belongs to (layer_fwd,
    layer_bwd): while a layer's forward runs, every Function it creates is tagged with the layer's name, and
    the autograd engine's later backward call on that Function is booked to it. Functions created outside
    any layer (the loss) go to "loss"."""

    def __init__(self, sync=lambda: None, net=None):
        self.times = collections.defaultdict(float)
        self.layer_fwd, self.layer_bwd = collections.defaultdict(float), collections.defaultdict(float)
        self.saved = []
        self.sync = sync
        self.net, self.current = net, None

    def __enter__(self):
        for cls in sn.Function.__subclasses__():
            fwd, bwd = cls.forward, cls.backward
            self.saved.append((cls, fwd, bwd))
            cls.forward = self._wrap(fwd, cls.__name__ + " fwd", self.layer_fwd, tag=True)
            cls.backward = self._wrap(bwd, cls.__name__ + " bwd", self.layer_bwd, tag=False)
        if self.net is not None:
            for name, layer in self.net.named_children():
                layer.__dict__["forward"] = self._in_layer(layer.forward, name)  # shadows the class method
        return self

    def _in_layer(self, forward, name):
        def run(*a, **k):
            self.current = name
            try:
                return forward(*a, **k)
            finally:
                self.current = None
        return run

    def _wrap(self, fn, key, per_layer, tag):
        def timed(function, *a, **k):
            if tag:
                function.bench_layer = self.current or "loss"
            self.sync()
            t = time.perf_counter()
            out = fn(function, *a, **k)
            self.sync()
            elapsed = time.perf_counter() - t
            self.times[key] += elapsed
            per_layer[getattr(function, "bench_layer", "loss")] += elapsed
            return out
        return timed

    def __exit__(self, *exc):
        for cls, fwd, bwd in self.saved:
            cls.forward, cls.backward = fwd, bwd
        if self.net is not None:
            for _, layer in self.net.named_children():
                layer.__dict__.pop("forward", None)


def sgd_step_scratchnet(net, x, y):
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(net(sn.Tensor(x)), y)
        loss.backward()
        opt.step()

    return step


def im2col_only(step):
    """The step with every conv on im2col + GEMM (Winograd switched off while it runs)."""
    def run():
        saved, conv_kernels.WINOGRAD = conv_kernels.WINOGRAD, False
        try:
            step()
        finally:
            conv_kernels.WINOGRAD = saved
    return run


def sgd_step_torch(net, x, y, device="cpu", tf32=False):
    """PyTorch's training step on a twin of `net` (build it while net is still on the host); the twin is
    step.model. step(after_backward) calls after_backward() between loss.backward() and the update and returns
    what it returned (torch_layer_times reads the clock there; the timed steps pass nothing, so no sync)."""
    model = torch_twin(net).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)
    yt = torch.from_numpy(y).to(device)

    def step(after_backward=lambda: None):
        torch.backends.cudnn.allow_tf32 = tf32  # read per call: the strict and the TF32 runs take turns
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        mark = after_backward()
        opt.step()
        return mark

    step.model = model
    return step


def timed(step, sync=lambda: None):
    sync()
    t = time.perf_counter()
    step()
    sync()
    return time.perf_counter() - t


def median_ms(steps_by_name, rounds, warmup=1, per_round=3, sync=lambda: None):
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
            times[name] += [timed(step, sync) for _ in range(per_round)]
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def profile_ops(step, repeats=2, sync=lambda: None):
    """Milliseconds per step spent in each scratchnet op (forward and backward separately)."""
    with OpTimer(sync) as timer:
        for _ in range(repeats):
            step()
    return {k: v / repeats * 1000 for k, v in sorted(timer.times.items(), key=lambda kv: -kv[1])}


def torch_layer_times(model, step_fn, sync=lambda: None):
    """({layer index: forward s}, {layer index: backward s}) of one PyTorch step on an nn.Sequential twin.

    Forward: hooks before and after each layer. Backward: a hook on each layer's output fires when the
    gradient reaching that layer is ready, i.e. when its backward starts; it ends when the next such hook
    (the layer below) fires, or for the first layer when loss.backward() returns. On a GPU, `sync` waits
    for the device before each clock reading, so a layer's kernels land on that layer."""
    fwd, starts, handles, t0 = collections.defaultdict(float), {}, [], {}

    def now():
        sync()
        return time.perf_counter()

    def pre(i):
        return lambda m, inp: t0.__setitem__(i, now())

    def post(i):
        def hook(m, inp, out):
            fwd[i] += now() - t0[i]
            if out.requires_grad:
                out.register_hook(lambda g: starts.__setitem__(i, now()))
        return hook

    for i, m in enumerate(model):
        handles += [m.register_forward_pre_hook(pre(i)), m.register_forward_hook(post(i))]
    try:
        end = step_fn(after_backward=now)
    finally:
        for h in handles:
            h.remove()
    bwd = {}
    for i, start in starts.items():
        later = [t for t in starts.values() if t > start]  # the next layer down to start its backward
        bwd[i] = (min(later) if later else end) - start
    return fwd, bwd


def profile_layers(net, x, y, steps, twin=None, sync=lambda: None):
    """Per-layer table of one training step: scratchnet and (given `twin`, its PyTorch step from
    sgd_step_torch) PyTorch, the two taking turns (one untimed and one timed step each), median over
    `steps` timed steps of each layer's forward and backward ms (the ops' time, OpTimer); conv layers also
    get their FLOP/s (conv_layers' count). x and y live where the net does (numpy or cupy arrays); `sync`
    waits for the GPU(s) before each clock reading (per op and per layer: on a launch-bound GPU step the
    layers' times add up to more than the step)."""
    sn_step = sgd_step_scratchnet(net, x, y)
    names = [name for name, _ in net.named_children()]
    times = collections.defaultdict(list)  # (side, direction, layer name) -> seconds per timed step
    for _ in range(steps):
        sn_step()  # untimed first, as in median_ms: the other side's idle threads may still be spinning
        with OpTimer(sync, net=net) as timer:
            sn_step()
        for name in names:
            times["sn", "fwd", name].append(timer.layer_fwd[name])
            times["sn", "bwd", name].append(timer.layer_bwd[name])
        if twin is not None:
            twin()
            fwd, bwd = torch_layer_times(twin.model, twin, sync)
            for i, name in enumerate(names):
                times["torch", "fwd", name].append(fwd.get(i, 0.0))
                times["torch", "bwd", name].append(bwd.get(i, 0.0))

    def ms(*key):
        return round(statistics.median(times[key]) * 1000, 3)

    convs = {id(layer): (size, flops) for layer, size, flops in conv_layers(net, x.shape[0], x.shape[1])}
    rows = []
    for name, layer in zip(names, net.layers):
        row = {"layer": name, "op": type(layer).__name__,
               "scratchnet_fwd_ms": ms("sn", "fwd", name), "scratchnet_bwd_ms": ms("sn", "bwd", name)}
        if twin is not None:
            row["torch_fwd_ms"], row["torch_bwd_ms"] = ms("torch", "fwd", name), ms("torch", "bwd", name)
            both = row["torch_fwd_ms"] + row["torch_bwd_ms"]
            row["ratio"] = round((row["scratchnet_fwd_ms"] + row["scratchnet_bwd_ms"]) / both, 2) if both else None
        if id(layer) in convs:
            size, flops = convs[id(layer)]
            k = layer.kernel_size
            row["op"] = f"Conv2d {layer.in_channels}->{layer.out_channels} {k}x{k} on {size}x{size}"
            row["conv_gflops"] = round(flops / (row["scratchnet_fwd_ms"] + row["scratchnet_bwd_ms"]) / 1e6, 1)
        rows.append(row)
    return rows


def print_layer_table(rows, peak, digits=1):
    has_torch = "torch_fwd_ms" in rows[0]
    width = max(len(r["layer"]) for r in rows) + 2
    head = f"  {'layer':<{width}}{'op':<30}{'fwd ms':>8}{'bwd ms':>8}"
    head += f"{'torch fwd':>10}{'torch bwd':>10}{'ratio':>7}" if has_torch else ""
    print(head + "  conv GFLOP/s (share of GEMM)")
    for r in rows:
        line = f"  {r['layer']:<{width}}{r['op']:<30}{r['scratchnet_fwd_ms']:>8.{digits}f}"
        line += f"{r['scratchnet_bwd_ms']:>8.{digits}f}"
        if has_torch:
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
            line += f"{r['torch_fwd_ms']:>10.{digits}f}{r['torch_bwd_ms']:>10.{digits}f}{ratio:>7}"
        if "conv_gflops" in r:
            line += f"  {r['conv_gflops']:.0f} ({100 * r['conv_gflops'] / peak:.0f}%)"
        print(line)


def torch_alone_ms(name, steps, threads, seed):
    """PyTorch's step for `name` timed in a fresh process that never runs a scratchnet kernel."""
    run = subprocess.run([sys.executable, __file__, "--torch-alone", name, "--rounds", str(steps),
                          "--threads", str(threads), "--seed", str(seed)], capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])["torch_ms"]


def cupy_matmul_gflops(cp, n=4096, repeats=10):
    """CuPy's float32 GEMM speed (cuBLAS, no TF32), the yardstick for the GPU conv layers."""
    a = cp.random.default_rng(0).standard_normal((n, n), dtype=cp.float32)
    a @ a
    sync = sn.backend.synchronize
    times = []
    for _ in range(repeats):
        sync(cp)
        t = time.perf_counter()
        a @ a
        sync(cp)
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / min(times) / 1e9


def enqueue_ms(step, sync, repeats=10):
    """Median ms until step() returns on the host, from an idle GPU, without waiting for the GPU at the
    end. Close to the full step time: the host (Python, kernel launches) is the bottleneck; much less:
    the GPU is. (The loss's one label check reads from the GPU mid-step, so this includes the forward.)"""
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
        sync()
    return statistics.median(times) * 1000


def main_gpu(args):
    """scratchnet-cupy vs PyTorch CUDA, same nets, same weights, same data (see the module docstring)."""
    cp = sn.backend.array_module("cupy")
    if not torch.cuda.is_available():
        raise sn.backend.BackendError("PyTorch sees no CUDA GPU to compare against")
    torch.backends.cudnn.benchmark = True   # PyTorch at its fastest: cuDNN picks the best conv algorithm per shape
    torch.backends.cuda.matmul.allow_tf32 = False

    def sync():
        sn.backend.synchronize(cp)
        torch.cuda.synchronize()

    peak = cupy_matmul_gflops(cp)
    gpu = torch.cuda.get_device_name()
    print(f"{gpu}: CuPy float32 matmul (4096^3) {peak:.0f} GFLOP/s; cupy {cp.__version__}, torch {torch.__version__}; "
          f"host kernel {platform.release()}")
    rows = []
    for name in args.nets:
        net, batch, x, y = bench_input(name, args.seed)
        # the twins are built from the host weights, before the net moves to the GPU
        steps = {"torch": sgd_step_torch(net, x, y, "cuda", tf32=False),
                 "torch_tf32": sgd_step_torch(net, x, y, "cuda", tf32=True)}
        net.to("cupy")
        steps = {"scratchnet": sgd_step_scratchnet(net, cp.asarray(x), cp.asarray(y)), **steps}
        ms = median_ms(steps, args.rounds, warmup=3, per_round=10, sync=sync)
        sn_ms, torch_ms, tf32_ms = ms["scratchnet"], ms.get("torch"), ms.get("torch_tf32")
        host_ms = enqueue_ms(steps["scratchnet"], sync)
        per_op = profile_ops(steps["scratchnet"], repeats=3, sync=sync)
        per_layer = profile_layers(net, cp.asarray(x), cp.asarray(y), steps=5, twin=steps.get("torch"), sync=sync)
        conv_ms = sum(v for k, v in per_op.items() if k.startswith("Conv2d"))
        flops = conv_flops(net, batch)
        conv_gflops = flops / (conv_ms / 1000) / 1e9
        row = {"net": name, "batch": batch, "scratchnet_ms": round(sn_ms, 2),
               "torch_ms": None if torch_ms is None else round(torch_ms, 2),
               "ratio": None if torch_ms is None else round(sn_ms / torch_ms, 3),
               "speed_vs_torch": None if torch_ms is None else round(torch_ms / sn_ms, 3),
               "torch_tf32_ms": None if tf32_ms is None else round(tf32_ms, 2),
               "host_ms": round(host_ms, 2),
               "conv_gemm_share": round(conv_gflops / peak, 3), "conv_gflops": round(conv_gflops, 1),
               "conv_ms_synced": round(conv_ms, 2), "per_op_total_ms_synced": round(sum(per_op.values()), 2),
               "matmul_gflops": round(peak, 1), "per_op_ms_synced": {k: round(v, 3) for k, v in per_op.items()},
               "per_layer_synced": per_layer}
        rows.append(row)
        vs_torch = "no torch twin" if torch_ms is None else (
            f"torch {torch_ms:.2f} ms/step (TF32 convs {tf32_ms:.2f}), scratchnet runs at "
            f"{row['speed_vs_torch']:.2f}x torch's speed")
        print(f"\n{name} (batch {batch}): scratchnet-cupy {sn_ms:.2f} ms/step (Python returns after "
              f"{host_ms:.2f} ms), {vs_torch}; conv layers "
              f"{conv_gflops:.0f} GFLOP/s = {100 * row['conv_gemm_share']:.0f}% of CuPy GEMM (ops synced)")
        print_op_table(per_op, "op (synchronised)", min_ms=0.05, digits=2)
        print_layer_table(per_layer, peak, digits=3)
    meta = {"gpu": gpu, "cupy": cp.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "host_kernel": platform.release(),  # the sandbox: a host-bound step's time depends on it
            "timing": "median of synchronised steps timed in alternating rounds (3 warm-up + 10 timed per turn)",
            "torch_settings": "cudnn.benchmark on; torch_ms without TF32, torch_tf32_ms with TF32 convolutions"}
    write_rows(args.out or RESULTS / "train_step_cupy.json", rows, meta)


def main():
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    p.add_argument("--rounds", type=positive_int, default=8, help="turns per side and net, 3 timed steps each (median "
                   "reported); halved for the batch-512/1024 nets")
    p.add_argument("--threads", type=thread_count, default=2,
                   help="threads for both: torch's intra-op pool and scratchnet's CPU kernels (scratchnet.parallel)")
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="numpy: scratchnet vs PyTorch CPU; cupy: scratchnet-cupy vs PyTorch CUDA (GPU machines)")
    p.add_argument("--out", type=output_file, help="results JSON (default bench/results/train_step.json, "
                   "train_step_untuned.json with --no-tune, train_step_cupy.json with --backend cupy)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the nets' weights and the random batch (default 0)")
    p.add_argument("--no-tune", action="store_true", help="leave the process untuned: no scratchnet.cpu.tune() "
                   "(BLAS held at one thread only inside scratchnet's threaded calls, glibc's default malloc)")
    p.add_argument("--torch-alone", choices=list(NETS), help="internal: time only "
                   "PyTorch's step for this net, --rounds timed steps, and print it as JSON")
    args = p.parse_args()
    if args.backend == "cupy":
        try:
            return main_gpu(args)
        except sn.backend.BackendError as e:
            p.exit(2, f"bench: {e}\n")
    torch.set_num_threads(args.threads)
    if args.torch_alone:
        net, _, x, y = bench_input(args.torch_alone, args.seed)
        step = sgd_step_torch(net, x, y)
        step()
        print(json.dumps({"torch_ms": statistics.median(timed(step) for _ in range(args.rounds)) * 1000}))
        return
    parallel.set_num_threads(args.threads)
    peak = matmul_gflops()  # before tune(): the GEMM yardstick uses every core
    if not args.no_tune:
        cpu.tune()
    print(f"numpy float32 matmul (2048^3): {peak:.0f} GFLOP/s, OpenBLAS kernels {openblas_kernels()}; "
          f"threads: torch {torch.get_num_threads()}, "
          f"scratchnet {parallel.num_threads()}; process tuning (scratchnet.cpu.tune) "
          f"{'off' if args.no_tune else 'on'}; load average {os.getloadavg()[0]:.2f}")
    rows = []
    for name in args.nets:
        net, batch, x, y = bench_input(name, args.seed)
        rounds = max(1, args.rounds if batch <= 256 else args.rounds // 2)
        sn_step = sgd_step_scratchnet(net, x, y)
        im2col_step = im2col_only(sgd_step_scratchnet(bench_input(name, args.seed)[0], x, y))  # its own copy of the net
        steps = {"scratchnet": sn_step, "scratchnet_im2col": im2col_step, "torch": sgd_step_torch(net, x, y)}
        ms = median_ms(steps, rounds)
        sn_ms, im2col_ms, torch_ms = ms["scratchnet"], ms["scratchnet_im2col"], ms.get("torch")
        per_op = profile_ops(sn_step)
        per_layer = profile_layers(net, x, y, steps=5 if batch <= 256 else 3, twin=steps.get("torch"))
        conv_ms_im2col = sum(v for k, v in profile_ops(im2col_step).items() if k.startswith("Conv2d"))
        alone_ms = None if torch_ms is None else torch_alone_ms(name, 3 * rounds, args.threads, args.seed)
        conv_ms = sum(v for k, v in per_op.items() if k.startswith("Conv2d"))
        flops = conv_flops(net, batch)
        conv_gflops = flops / (conv_ms / 1000) / 1e9
        gflops_im2col = flops / (conv_ms_im2col / 1000) / 1e9
        row = {"net": name, "batch": batch, "scratchnet_ms": round(sn_ms, 1),
               "torch_ms": None if torch_ms is None else round(torch_ms, 1),
               "ratio": None if torch_ms is None else round(sn_ms / torch_ms, 3),
               "torch_default_malloc_ms": None if alone_ms is None else round(alone_ms, 1),
               "ratio_vs_torch_default_malloc": None if alone_ms is None else round(sn_ms / alone_ms, 3),
               "scratchnet_im2col_ms": round(im2col_ms, 1),
               "ratio_im2col": None if torch_ms is None else round(im2col_ms / torch_ms, 3),
               "conv_gemm_share": round(conv_gflops / peak, 3),
               "conv_gflops": round(conv_gflops, 1), "conv_ms": round(conv_ms, 1),
               "conv_gemm_share_im2col": round(gflops_im2col / peak, 3), "conv_ms_im2col": round(conv_ms_im2col, 1),
               "step_gflops": round(flops / (sn_ms / 1000) / 1e9, 1), "matmul_gflops": round(peak, 1),
               "per_op_ms": {k: round(v, 2) for k, v in per_op.items()}, "per_layer": per_layer}
        rows.append(row)
        vs_torch = "no torch twin" if torch_ms is None else (
            f"torch {torch_ms:.1f} ms/step, ratio {row['ratio']:.2f}x (torch alone with glibc's default malloc "
            f"{alone_ms:.1f} ms/step, ratio {row['ratio_vs_torch_default_malloc']:.2f}x)")
        print(f"\n{name} (batch {batch}): scratchnet {sn_ms:.1f} ms/step, {vs_torch}; conv layers "
              f"{conv_gflops:.0f} effective GFLOP/s = {100 * row['conv_gemm_share']:.0f}% of numpy GEMM")
        print(f"  all convs on im2col: {im2col_ms:.1f} ms/step"
              + ("" if torch_ms is None else f", ratio {row['ratio_im2col']:.2f}x")
              + f"; conv layers {gflops_im2col:.0f} GFLOP/s = {100 * row['conv_gemm_share_im2col']:.0f}% of numpy GEMM")
        print_op_table(per_op, "op", min_ms=0.5, digits=1)
        print_layer_table(per_layer, peak)
    meta = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "numpy": np.__version__, "torch": torch.__version__, "openblas_kernels": openblas_kernels(),
            "threads": args.threads, "seed": args.seed, "timing": "median of steps timed in alternating rounds",
            "tuned": not args.no_tune,
            "load_average_at_start": os.getloadavg()[0]}
    write_rows(args.out or RESULTS / ("train_step_untuned.json" if args.no_tune else "train_step.json"), rows, meta)


if __name__ == "__main__":
    main()
