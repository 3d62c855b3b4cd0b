"""Training-step speed and memory: scratchnet-numpy vs PyTorch CPU, measured in the same run on the same machine.

    python bench/train_step.py [--nets small small_bn airbench better] [--rounds 8] [--repeats 3] [--threads 2]

For each network: milliseconds per training step (forward + backward + SGD update) of scratchnet and of
its PyTorch twin (same architecture and weights, oneDNN), their ratio, a per-op table of where scratchnet's
time goes (forward and backward separately), a per-layer table of both libraries' forward and backward
milliseconds side by side (the two taking turns, median of 5 timed steps, 3 for the big-batch nets;
`per_layer` in the JSON), the FLOP/s the conv layers reach as a share of this machine's numpy float32 GEMM
speed (measured here too, with all cores), in all and per layer, and the memory each side's step adds.

PyTorch at its best, in either memory layout: its twin runs both in channels_last (`torch_channels_last_ms`:
model and input NHWC-strided, which oneDNN's convolutions take as they are; the input is the numpy batch
itself, permuted, no copy) and in contiguous NCHW (`torch_nchw_ms`: oneDNN reorders every conv's input and
output). `torch_ms` is the faster of the two and `torch_layout` names it, so `ratio` = scratchnet_ms /
torch_ms is always against PyTorch's faster layout on this machine. The per-layer table and the PyTorch
memory run below use that layout.

Timing: the sides (scratchnet, PyTorch channels_last, PyTorch NCHW) take turns in rounds, each turn one
untimed step (so that no side is timed while the other's idle worker threads still spin, or with its data
out of cache) and 3 timed ones, --rounds rounds (halved for batches over 256): drift in the machine's speed
then hits all sides alike. All use --threads threads (torch's intra-op pool; scratchnet.parallel's CPU
kernels). That whole alternating run is repeated --repeats times (default 3); each repeat gives each side's
median and its own ratio (against that repeat's faster layout), and the row reports the median over the
repeats of scratchnet_ms, of torch_ms, of each layout's ms and of the ratio (the median of the per-repeat
ratios), with the repeats themselves under `repeats`: one alternating run can still land in a slow spell of
a shared VM, three rarely all do. The per-op and per-layer profiles and the memory runs run once.

Peak memory: each side also runs alone in a fresh process (this file with the internal flag --alone SIDE
NET), which builds the net and batch, reads its resident memory (/proc/self/statm), runs one untimed and
3*rounds timed steps and reports `scratchnet_peak_step_mb` / `torch_peak_step_mb`: its peak resident memory
(ru_maxrss, whose high-water mark is reset after set-up where Linux allows) minus the resident memory before
the first step, i.e. what a training step adds at its peak (activations, gradients, workspaces, optimiser
state), in MB of 2^20 bytes. The scratchnet child applies scratchnet.cpu.tune() as this process does (not
with --no-tune); it also imports torch (this module does), but its baseline is read after the imports and
the set-up, so that cancels. The PyTorch child never runs a scratchnet kernel nor tunes malloc.
Their median step times are `scratchnet_alone_ms` and `torch_default_malloc_ms`.

Two PyTorch contexts: `torch_ms` is timed in the same process as scratchnet, so it runs under the glibc
malloc setting that scratchnet.cpu.tune() switches on (freed memory is kept, big arrays are not re-mmap'd
each step), which speeds PyTorch up too; `torch_default_malloc_ms` is PyTorch alone in its fresh process,
i.e. PyTorch as a user gets it. `ratio` divides by the first (same conditions for both);
`ratio_vs_torch_default_malloc` by the second.

`better` is P3 part 3's network at the airbench recipe's training batch (1024), against its PyTorch twin
(problems/p3/torch_reference.torch_twin: the same layers and weights, frozen whitening filters and batch-norm
scales as buffers, tanh GELU), the twin that `problems/p3_small_cnn.py --model better --backend torch` trains.
Like every row here, the step is plain cross-entropy SGD (no label smoothing or weight average), the same
on both sides.

Stride-1 3x3 convs run through Winograd F(4x4, 3x3) (scratchnet/kernels/winograd.py), which does 4x fewer
multiply-adds than direct convolution. FLOP/s figures count direct convolution's FLOPs, so
`conv_gemm_share` is an effective share and can pass 1.0 with Winograd. With --im2col a fourth side times
the same step with every conv on im2col + GEMM (scratchnet.kernels.conv.WINOGRAD = False) in the same
rounds, adding `scratchnet_im2col_ms`, `ratio_im2col` (both medians over the repeats), `conv_ms_im2col` and
`conv_gemm_share_im2col` (im2col does all those FLOPs: the real share of GEMM speed); it is off by
default because it costs a whole side's time.

Writes bench/results/train_step_<family>.json, <family> being bench.machine.cpu_family's short name for this
CPU ("intel-avx512", "amd-zen4", ...): step times and ratios compare only within a CPU family. The file:
{"machine": bench.machine.machine_info() (CPU model and family, vector extensions, cores, OpenBLAS kernels,
numpy/torch/Python versions, OS kernel), "run": {threads, seed, rounds, repeats, im2col, tuned, timing,
load_average_at_start, date}, "rows": [{net, batch, scratchnet_ms, torch_ms, ratio, torch_layout,
torch_channels_last_ms, torch_nchw_ms, ..., repeats, per_op_ms, per_layer}, ...]}.
Run it on a quiet machine: anything else on the cores makes every number lie.

    python bench/train_step.py --no-tune [--nets small small_bn]

runs everything without scratchnet.cpu.tune() (the process-wide single-threaded BLAS and glibc malloc
setting that the P3 scripts and this bench switch on by default; the OpenBLAS kernel choice is still made:
SCRATCHNET_BLAS_TUNING=0 skips it), its scratchnet memory run too, and writes
bench/results/train_step_<family>_untuned.json: run with and without, back to back, to measure what the
step loses without it (`tuned` in the JSON says which it was).

    python bench/train_step.py --backend cupy          (on a machine with an NVIDIA GPU and CuPy)

times scratchnet-cupy against PyTorch CUDA (cuDNN, benchmark mode, NCHW) instead, and writes
bench/results/train_step_cupy.json: a list of rows, each with the run's facts. Every timed step is bracketed
by a device synchronise (the GPU runs asynchronously). `torch_ms` is PyTorch in strict float32, as
scratchnet computes (TF32 off); `torch_tf32_ms` is PyTorch with its default of TF32 convolutions;
`speed_vs_torch` = torch_ms / scratchnet_ms (the issue's target is >= 0.5); `conv_gemm_share` is against
CuPy's float32 matmul; `host_ms` is how long the Python side takes to issue one step (near scratchnet_ms:
launch-bound). `per_layer_synced` is the same per-layer table as on the CPU, with the device synchronised
around every op and layer so each kernel lands on its own layer: on a launch-bound step the layers add up to
more than the step itself, so read it for where the GPU's time goes, not for the step's total.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import resource
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
from bench.machine import machine_info  # noqa: E402

NETS = {"small": (lambda seed: models.small_cnn(False, seed=seed), 128),
        "small_bn": (lambda seed: models.small_cnn(True, seed=seed), 128),
        "airbench": (lambda seed: airbench_style(seed=seed), 1024),
        "better": (lambda seed: models.better_net(seed=seed), 1024)}  # P3 part 3, at the airbench recipe's batch
TORCH_LAYOUTS = {"channels_last": True, "nchw": False}  # side name -> sgd_step_torch's channels_last
ALONE_SIDES = ("scratchnet", "torch")


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
    """The GPU results JSON: one object per net, each with the run's facts (meta) added."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([{**r, **meta} for r in rows], indent=2) + "\n")
    print(f"\nwrote {out}")


def write_results(out, machine, run, rows):
    """The CPU results JSON: the machine and the run's settings once, then one object per net."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "run": run, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")


def results_path(family, tuned):
    """The default CPU results file: one per CPU family (step times compare only within one)."""
    return RESULTS / f"train_step_{family}{'' if tuned else '_untuned'}.json"


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


def sgd_step_torch(net, x, y, device="cpu", tf32=False, channels_last=False):
    """PyTorch's training step on a twin of `net` (build it while net is still on the host); the twin is
    step.model, its input batch step.input. step(after_backward) calls after_backward() between
    loss.backward() and the update and returns what it returned (torch_layer_times reads the clock there; the
    timed steps pass nothing, so no sync). channels_last: model and input in PyTorch's channels_last format,
    the input being the NHWC batch itself seen as NCHW (no copy on the CPU); else contiguous NCHW."""
    model = torch_twin(net).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # NHWC memory: channels_last strides already
    xt = (xt if channels_last else xt.contiguous()).to(device)
    yt = torch.from_numpy(y).to(device)

    def step(after_backward=lambda: None):
        torch.backends.cudnn.allow_tf32 = tf32  # read per call: the strict and the TF32 runs take turns
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        mark = after_backward()
        opt.step()
        return mark

    step.model, step.input = model, xt
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
    sgd_step_torch) PyTorch, one row per layer or per fused group (a batch norm and its activation, which
    scratchnet runs as one op: both sides' rows are the sum over the group), the two taking turns (one
    untimed and one timed step each), median over `steps` timed steps of each layer's forward and backward ms (the ops' time, OpTimer); conv layers also
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

    def group_ms(side, direction, group):  # a fused group's layers run as one op: compare their sum
        return round(sum(ms(side, direction, names[i]) for i in group), 3)

    convs = {id(layer): (size, flops) for layer, size, flops in conv_layers(net, x.shape[0], x.shape[1])}
    rows = []
    for group in net.run_groups():
        layer = net.layers[group[0]]
        how = "" if len(group) == 1 else " (pool first)" if group[0] > group[1] else " (fused)"
        in_order = sorted(group)                      # the layers as written, whatever order they run in
        row = {"layer": "+".join(names[i] for i in in_order),
               "op": "+".join(type(net.layers[i]).__name__ for i in in_order) + how,
               "scratchnet_fwd_ms": group_ms("sn", "fwd", group), "scratchnet_bwd_ms": group_ms("sn", "bwd", group)}
        if twin is not None:
            row["torch_fwd_ms"], row["torch_bwd_ms"] = group_ms("torch", "fwd", group), group_ms("torch", "bwd", group)
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


def rss_mb():
    """This process's resident memory now, in MB (2^20 bytes); None where there is no /proc (not Linux)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return None


def reset_peak_rss():
    """Restart ru_maxrss's high-water mark from the resident memory now (Linux's clear_refs "5"): else a
    set-up transient above the step's own peak would make the step look smaller. False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb():
    """Peak resident memory of this process (since reset_peak_rss), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)


def step_alone(side, name, steps, threads, seed, tuned, layout):
    """The --alone child's work: one side's step for net `name`, set up as the bench's main process sets it
    up, timed over `steps` steps after an untimed one; what the step adds to resident memory at its peak."""
    if side == "scratchnet":
        parallel.set_num_threads(threads)
        if tuned:
            cpu.tune()  # before anything is allocated, as in the main process
    net, _, x, y = bench_input(name, seed)
    step = (sgd_step_scratchnet(net, x, y) if side == "scratchnet"
            else sgd_step_torch(net, x, y, channels_last=TORCH_LAYOUTS[layout]))
    before = rss_mb()
    reset_peak_rss()
    step()  # counts toward the peak (it allocates what later steps reuse), not toward the time
    ms = statistics.median(timed(step) for _ in range(steps)) * 1000
    return {"side": side, "net": name, "ms": ms, "rss_before_mb": before,
            "peak_step_mb": None if before is None else peak_rss_mb() - before}


def run_alone(side, name, steps, args, layout):
    """step_alone in a fresh process (this file with --alone): its result."""
    cmd = [sys.executable, __file__, "--alone", side, name, "--rounds", str(steps), "--threads", str(args.threads),
           "--seed", str(args.seed), "--torch-layout", layout] + (["--no-tune"] if args.no_tune else [])
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"bench child --alone {side} {name} failed:\n{run.stderr.strip()[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def summarise_repeats(runs):
    """Row fields from --repeats alternating runs (median_ms's {side: ms} each). Per repeat: PyTorch's faster
    layout in that run and scratchnet's ratio to it. Over the repeats: the median of each figure, the ratio
    being the median of the per-repeat ratios; torch_layout is the layout with the lower median."""
    per = []
    for ms in runs:
        best = min(ms[f"torch_{layout}"] for layout in TORCH_LAYOUTS)
        r = {"scratchnet_ms": ms["scratchnet"], "torch_ms": best, "ratio": ms["scratchnet"] / best,
             **{f"torch_{layout}_ms": ms[f"torch_{layout}"] for layout in TORCH_LAYOUTS}}
        if "scratchnet_im2col" in ms:
            r["scratchnet_im2col_ms"], r["ratio_im2col"] = ms["scratchnet_im2col"], ms["scratchnet_im2col"] / best
        per.append(r)
    med = {k: statistics.median(r[k] for r in per) for k in per[0]}

    def rounded(r, keys):
        return {k: round(r[k], 3 if k.startswith("ratio") else 1) for k in keys if k in r}

    layouts = [f"torch_{layout}_ms" for layout in TORCH_LAYOUTS]
    out = {**rounded(med, ["scratchnet_ms", "torch_ms", "ratio"]),
           "torch_layout": min(TORCH_LAYOUTS, key=lambda layout: med[f"torch_{layout}_ms"]),
           **rounded(med, layouts + ["scratchnet_im2col_ms", "ratio_im2col"])}
    out["repeats"] = [rounded(r, ["scratchnet_ms", *layouts, "ratio", "scratchnet_im2col_ms"]) for r in per]
    return out


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


def fmt_mb(mb):
    return "?" if mb is None else f"{mb:.0f} MB"


def main_cpu(args):
    """scratchnet-numpy vs PyTorch CPU, same nets, same weights, same data (see the module docstring)."""
    load = os.getloadavg()[0]  # before the bench's own work counts in it
    parallel.set_num_threads(args.threads)
    peak = matmul_gflops()  # before tune(): the GEMM yardstick uses every core
    if not args.no_tune:
        cpu.tune()
    machine = machine_info()
    print(f"{machine['cpu']} ({machine['cpu_family']}: {' '.join(machine['vector_extensions']) or 'no AVX2'}), "
          f"{machine['cores']} cores; numpy float32 matmul (2048^3): {peak:.0f} GFLOP/s, OpenBLAS kernels "
          f"{machine['openblas_kernels']}; threads: torch {torch.get_num_threads()}, scratchnet "
          f"{parallel.num_threads()}; process tuning (scratchnet.cpu.tune) {'off' if args.no_tune else 'on'}; "
          f"load average {load:.2f}")
    rows = []
    for name in args.nets:
        net, batch, x, y = bench_input(name, args.seed)
        rounds = max(1, args.rounds if batch <= 256 else args.rounds // 2)
        sn_step = sgd_step_scratchnet(net, x, y)
        steps = {"scratchnet": sn_step}
        if args.im2col:  # its own copy of the net, so that both scratchnet sides train the same weights
            steps["scratchnet_im2col"] = im2col_only(sgd_step_scratchnet(bench_input(name, args.seed)[0], x, y))
        steps.update({f"torch_{layout}": sgd_step_torch(net, x, y, channels_last=cl)  # built before any step
                      for layout, cl in TORCH_LAYOUTS.items()})
        timing = summarise_repeats([median_ms(steps, rounds) for _ in range(args.repeats)])
        sn_ms, torch_ms, layout = timing["scratchnet_ms"], timing["torch_ms"], timing["torch_layout"]
        per_op = profile_ops(sn_step)
        per_layer = profile_layers(net, x, y, steps=5 if batch <= 256 else 3, twin=steps[f"torch_{layout}"])
        alone = {side: run_alone(side, name, 3 * rounds, args, layout) for side in ALONE_SIDES}
        conv_ms = sum(v for k, v in per_op.items() if k.startswith("Conv2d"))
        flops = conv_flops(net, batch)
        conv_gflops = flops / (conv_ms / 1000) / 1e9
        repeats = timing.pop("repeats")
        row = {"net": name, "batch": batch, "rounds": rounds, **timing,
               "torch_default_malloc_ms": round(alone["torch"]["ms"], 1),
               "ratio_vs_torch_default_malloc": round(sn_ms / alone["torch"]["ms"], 3),
               "scratchnet_alone_ms": round(alone["scratchnet"]["ms"], 1)}
        for side in ALONE_SIDES:
            mb = alone[side]["peak_step_mb"]
            row[f"{side}_peak_step_mb"] = None if mb is None else round(mb, 1)
        row.update({"conv_gemm_share": round(conv_gflops / peak, 3), "conv_gflops": round(conv_gflops, 1),
                    "conv_ms": round(conv_ms, 1)})
        if args.im2col:
            conv_ms_im2col = sum(v for k, v in profile_ops(steps["scratchnet_im2col"]).items()
                                 if k.startswith("Conv2d"))
            gflops_im2col = flops / (conv_ms_im2col / 1000) / 1e9
            row.update({"conv_gemm_share_im2col": round(gflops_im2col / peak, 3),
                        "conv_ms_im2col": round(conv_ms_im2col, 1)})
        row.update({"step_gflops": round(flops / (sn_ms / 1000) / 1e9, 1), "matmul_gflops": round(peak, 1),
                    "repeats": repeats, "per_op_ms": {k: round(v, 2) for k, v in per_op.items()},
                    "per_layer": per_layer})
        rows.append(row)
        print(f"\n{name} (batch {batch}; medians of {args.repeats} x {rounds} rounds): scratchnet {sn_ms:.1f} "
              f"ms/step, torch {torch_ms:.1f} ms/step ({layout} faster: channels_last "
              f"{timing['torch_channels_last_ms']:.1f}, NCHW {timing['torch_nchw_ms']:.1f}), ratio "
              f"{timing['ratio']:.2f}x (runs: {' '.join(format(r['ratio'], '.2f') for r in repeats)})")
        print(f"  alone in a fresh process: scratchnet {row['scratchnet_alone_ms']:.1f} ms/step, its step adds "
              f"{fmt_mb(row['scratchnet_peak_step_mb'])} at peak; torch ({layout}, glibc's default malloc) "
              f"{row['torch_default_malloc_ms']:.1f} ms/step, ratio {row['ratio_vs_torch_default_malloc']:.2f}x, "
              f"its step adds {fmt_mb(row['torch_peak_step_mb'])}")
        print(f"  conv layers {conv_gflops:.0f} effective GFLOP/s = {100 * row['conv_gemm_share']:.0f}% of numpy GEMM")
        if args.im2col:
            print(f"  all convs on im2col: {timing['scratchnet_im2col_ms']:.1f} ms/step, ratio "
                  f"{timing['ratio_im2col']:.2f}x; conv layers {gflops_im2col:.0f} GFLOP/s = "
                  f"{100 * row['conv_gemm_share_im2col']:.0f}% of numpy GEMM")
        print_op_table(per_op, "op", min_ms=0.5, digits=1)
        print_layer_table(per_layer, peak)
    run = {"threads": args.threads, "seed": args.seed, "rounds": args.rounds, "repeats": args.repeats,
           "im2col": args.im2col, "tuned": not args.no_tune,
           "timing": "median over the repeats of each side's median step in alternating rounds "
                     "(1 untimed + 3 timed steps per turn)",
           "load_average_at_start": round(load, 2),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    write_results(args.out or results_path(machine["cpu_family"], not args.no_tune), machine, run, rows)


def main():
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    p.add_argument("--rounds", type=positive_int, default=8, help="turns per side and net, 3 timed steps each "
                   "(median reported); halved for the nets with a batch over 256 (default 8)")
    p.add_argument("--repeats", type=positive_int, default=3, help="whole alternating runs per net; the row reports "
                   "the median over them of each time and of the ratio (default 3; the numpy backend only)")
    p.add_argument("--threads", type=thread_count, default=2,
                   help="threads for both: torch's intra-op pool and scratchnet's CPU kernels (scratchnet.parallel)")
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="numpy: scratchnet vs PyTorch CPU; cupy: scratchnet-cupy vs PyTorch CUDA (GPU machines)")
    p.add_argument("--out", type=output_file, help="results JSON (default bench/results/train_step_<family>.json "
                   "for this CPU's family, train_step_<family>_untuned.json with --no-tune, "
                   "train_step_cupy.json with --backend cupy)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the nets' weights and the random batch (default 0)")
    p.add_argument("--no-tune", action="store_true", help="leave the process untuned: no scratchnet.cpu.tune() "
                   "(BLAS held at one thread only inside scratchnet's threaded calls, glibc's default malloc)")
    p.add_argument("--im2col", action="store_true", help="also time scratchnet with every conv on im2col + GEMM "
                   "(Winograd off) as one more side in the same rounds (CPU only; costs a side's time)")
    p.add_argument("--alone", nargs=2, metavar=("SIDE", "NET"), help="internal: in this process, time only SIDE's "
                   f"step ({' or '.join(ALONE_SIDES)}) for NET, --rounds timed steps, with the memory it adds at its "
                   "peak, and print it as JSON")
    p.add_argument("--torch-layout", choices=list(TORCH_LAYOUTS), default="channels_last",
                   help="internal: PyTorch's memory layout for --alone torch (default channels_last)")
    args = p.parse_args()
    if args.alone and (args.alone[0] not in ALONE_SIDES or args.alone[1] not in NETS):
        p.error(f"argument --alone: expected SIDE NET, SIDE one of {', '.join(ALONE_SIDES)} and NET one of "
                f"{', '.join(NETS)}; got {' '.join(args.alone)}")
    if args.backend == "cupy":
        try:
            return main_gpu(args)
        except sn.backend.BackendError as e:
            p.exit(2, f"bench: {e}\n")
    torch.set_num_threads(args.threads)
    if args.alone:
        print(json.dumps(step_alone(*args.alone, args.rounds, args.threads, args.seed, not args.no_tune,
                                    args.torch_layout)))
        return
    main_cpu(args)

if __name__ == "__main__":
    main()
