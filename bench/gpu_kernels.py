"""Where scratchnet-cupy's training step spends GPU time, kernel by kernel (GPU machines only).

    python bench/gpu_kernels.py [--nets small small_bn airbench better] [--steps 10] [--seed 0] [--out FILE]

PyTorch's profiler (CUPTI) sees every CUDA kernel in the process, CuPy's included. For each net it
prints: kernel launches per step, GPU busy time per step (the kernels' summed durations) against the
step's wall time (a step whose GPU is busy for much less than its wall time is held up by the host:
Python and kernel launches), and the kernels that take the most GPU time. It also times the ways of
summing an (M, C) matrix over its rows on the GPU (batch norm's and the bias gradient's reductions).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import scratchnet as sn  # noqa: E402
from problems.common.cli import output_file, positive_int, seed_value  # noqa: E402
from scratchnet.io import write_text  # noqa: E402
from train_step import NETS, RESULTS, bench_input, sgd_step_scratchnet  # noqa: E402 - the same nets, data, step


def gpu_ms(cp, fn, repeats=20):
    """Median GPU milliseconds of fn() by CUDA events (after a warm-up call)."""
    fn()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def row_sums(cp):
    """Ways to sum (M, C) over M, timed at the small CNN's and the airbench net's shapes."""
    print("\nrow sums of an (M, C) float32 matrix, GPU ms (median of 20):")
    print(f"  {'M x C':>14}{'ones @ X':>10}{'X.sum(0)':>10}{'ones16 @ X':>12}{'einsum dot':>12}{'(X*X)@1':>10}")
    for m, c in ((128 * 22 * 22, 64), (128 * 11 * 11, 128), (1024 * 16 * 16, 256), (1024 * 8 * 8, 256)):
        x = cp.random.default_rng(0).standard_normal((m, c), dtype=cp.float32)
        ones, ones16 = cp.ones(m, dtype=cp.float32), cp.ones((16, m), dtype=cp.float32)
        t = [gpu_ms(cp, lambda: ones @ x), gpu_ms(cp, lambda: x.sum(axis=0)), gpu_ms(cp, lambda: ones16 @ x),
             gpu_ms(cp, lambda: cp.einsum("mc,mc->c", x, x)), gpu_ms(cp, lambda: ones @ (x * x))]
        print(f"  {f'{m} x {c}':>14}" + "".join(f"{v:>{w}.3f}" for v, w in zip(t, (10, 10, 12, 12, 10))))


def gpu_step(cp, name, seed=0):
    """(step, batch): bench/train_step.py's training step of the net, on the GPU."""
    net, batch, x, y = bench_input(name, seed)
    return sgd_step_scratchnet(net.to("cupy"), cp.asarray(x), cp.asarray(y)), batch


def kernel_table(cp, name, steps, seed=0):
    step, batch = gpu_step(cp, name, seed)
    for _ in range(3):
        step()
    sn.backend.synchronize(cp)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sn.backend.synchronize(cp)
    wall = (time.perf_counter() - t) / steps * 1000
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        sn.backend.synchronize(cp)
    total, count = collections.defaultdict(float), collections.Counter()
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            key = ev.name[:60]
            total[key] += ev.time_range.elapsed_us() / 1000 / steps   # ms per step
            count[key] += 1
    launches = sum(count.values()) / steps
    busy = sum(total.values())
    print(f"\n{name} (batch {batch}): {wall:.2f} ms/step wall, GPU busy {busy:.2f} ms/step, "
          f"{launches:.0f} kernels/step")
    for key, ms in sorted(total.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {ms:8.3f} ms  {count[key] / steps:5.1f}x  {key}")


def host_profile(cp, name, steps, top=30, seed=0):
    """cProfile of the host side of `steps` training steps: where the Python time goes."""
    import cProfile
    import pstats
    step, _ = gpu_step(cp, name, seed)
    for _ in range(3):
        step()
    sn.backend.synchronize(cp)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step()
    sn.backend.synchronize(cp)
    prof.disable()
    print(f"\nhost profile of {name}, {steps} steps (tottime = time in the function itself):")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main():
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    p.add_argument("--steps", type=positive_int, default=10, help="training steps timed and profiled per net")
    p.add_argument("--host-profile", nargs="*", choices=list(NETS), default=[],
                   help="also cProfile the host side of these nets' steps")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the nets' weights and the random batch (default 0)")
    p.add_argument("--out", type=output_file, default=RESULTS / "gpu_kernels.txt",
                   help="text file that also gets the printed tables (default bench/results/gpu_kernels.txt)")
    args = p.parse_args()
    try:
        cp = sn.backend.array_module("cupy")
    except sn.backend.BackendError as e:
        p.exit(2, f"gpu_kernels: {e}\n")
    printed = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, printed)):  # on the screen as it runs, and kept
        row_sums(cp)
        for name in args.nets:
            kernel_table(cp, name, args.steps, args.seed)
        for name in args.host_profile:
            host_profile(cp, name, args.steps, seed=args.seed)
    write_text(args.out, printed.getvalue())
    print(f"wrote {args.out}")


class _Tee(io.TextIOBase):
    """A text stream that writes to several others (the terminal and the file's buffer)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self):
        for s in self.streams:
            s.flush()


if __name__ == "__main__":
    main()
