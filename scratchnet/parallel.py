"""CPU threads for the heavy kernels: split the batch between threads, the way oneDNN does.

Why: NumPy runs every copy and ufunc on one core; only its BLAS uses them all, splitting each GEMM on
its own. A conv layer is many medium GEMMs plus im2col copies, and it runs faster when each thread
takes whole chunks of images and does copy + GEMM itself with a single-threaded BLAS: the copies now use
every core, and dW's long sums split by images instead of over a tiny output matrix. NumPy releases
the GIL inside copies, ufuncs and BLAS calls, so plain Python threads run in parallel here.

Deterministic: chunk k always goes to worker k mod T, and the callers add per-worker partial sums in
worker order, so the same thread count gives the same bits on every run.
On a GPU (cupy arrays) everything runs in order on the calling thread: the GPU is the parallel part.

From the first threaded call until `set_num_threads(1)`, numpy's BLAS runs single-threaded in the whole
process (the BLAS libraries loaded by then; your own numpy work in that time too): scratchnet splits its
GEMMs itself, and a multi-threaded BLAS call anywhere (a linear layer, batch norm's sums) leaves
OpenBLAS's worker threads spin-waiting for more work for a while afterwards, fighting our threads for the
cores (measured: with batch norm's sums on a 2-thread BLAS, the batch-norm CNN's step took 1.5x as long).

Memory: numpy takes every array from malloc, and glibc hands big ones out as fresh mmap'd pages and
unmaps them on free, so each training step page-faults its activations in again (~6000 faults and ~30 ms
of kernel time per step of the small CNN at batch 128). On first use the CPU kernels tell glibc not to
mmap (M_MMAP_MAX = 0) and to trim the top of its heap only past 2 GB of free space (`mallopt`), so the
main thread's big arrays come from the heap and freed ones are reused (measured once the Winograd
kernels had landed, in separate processes taking turns, median of 20 steps (5 for airbench): the small
CNN's step 135-157 ms without it, 121-131 ms with it; the airbench-style step 4.2 s without, 3.3-3.5 s
with). The price: freed memory stays with the process (the peak of a run stays resident) instead of
going back to the system. Worker threads keep their temporaries small (blocks of a few MB), which their
own malloc arenas serve without faults. $SCRATCHNET_MALLOC_TUNING=0 leaves malloc alone.

The thread count is `len(os.sched_getaffinity(0))` (the cores this process may use), or
$SCRATCHNET_NUM_THREADS, or `set_num_threads(n)`; 1 turns the threads off.
"""
from __future__ import annotations

import ctypes
import os
import platform
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from .backend import BackendError, on_cpu

_num_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_blas_limit = None                # threadpoolctl's limiter holding the BLAS at 1 thread while ours run
_malloc_tuned = False            # set once glibc's allocator has been told to keep freed memory
_in_worker = threading.local()    # set inside pool threads: a nested call runs in order instead of deadlocking
_lock = threading.Lock()          # guards creating and replacing the pool


def _default_threads() -> int:
    env = os.environ.get("SCRATCHNET_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise BackendError(f"SCRATCHNET_NUM_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise BackendError(f"SCRATCHNET_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def num_threads() -> int:
    """How many threads the CPU kernels split their work over."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_threads()
    return _num_threads


def set_num_threads(n: int) -> None:
    """Use n threads in the CPU kernels (1 = run everything on the calling thread, BLAS as it was)."""
    global _num_threads, _pool, _blas_limit
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"set_num_threads: expected a positive integer, got {n!r}")
    with _lock:
        if _pool is not None and int(n) != _num_threads:
            _pool.shutdown(wait=True)
            _pool = None
        if _blas_limit is not None and int(n) == 1:
            _blas_limit.restore_original_limits()
            _blas_limit = None
        _num_threads = int(n)


def _start_threads():
    """The worker pool, created on first use, and the process-wide single-threaded BLAS (see above)."""
    global _pool, _blas_limit
    with _lock:
        if _blas_limit is None:
            from threadpoolctl import ThreadpoolController  # noqa: PLC0415 - only the threaded CPU path needs it
            _blas_limit = ThreadpoolController().select(user_api="blas").limit(limits=1)
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=num_threads(), thread_name_prefix="scratchnet",
                                       initializer=_mark_worker)
        return _pool


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc <malloc.h> mallopt parameters
KEEP_FREED_BYTES = 2 ** 31 - 1         # mallopt takes an int: keep up to 2 GB of freed heap memory


def _tune_malloc() -> None:
    """Once per process, on glibc: no mmap for big arrays, and keep freed memory (see the module docstring)."""
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    if os.environ.get("SCRATCHNET_MALLOC_TUNING", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(None)
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES)


def _mark_worker():
    _in_worker.active = True


def for_each_chunk(xp, ranges, fn) -> int:
    """Call fn(lo, hi, worker) once for every (lo, hi) in ranges; return how many workers ran.

    Worker k (0 <= k < T) handles ranges[k], ranges[k + T], ... in order, so fn may keep per-worker
    buffers and partial sums indexed by `worker`. On a GPU, with one thread, one range, or when called
    from inside a worker, every call runs in order on the calling thread with worker = 0.
    A worker's exception is re-raised in the caller.
    """
    threads = min(num_threads(), len(ranges))
    if on_cpu(xp):
        _tune_malloc()
    if threads <= 1 or not on_cpu(xp) or getattr(_in_worker, "active", False):
        for lo, hi in ranges:
            fn(lo, hi, 0)
        return 1
    pool = _start_threads()

    def work(k):
        for lo, hi in ranges[k::threads]:
            fn(lo, hi, k)

    futures = [pool.submit(work, k) for k in range(threads)]
    wait(futures)  # every worker has stopped writing before anything, even an error, reaches the caller
    for f in futures:
        f.result()  # re-raises the first worker's exception, in worker order
    return threads


def sum_chunks(xp, ranges, fn):
    """sum over ranges of fn(lo, hi), in parallel like for_each_chunk: each worker adds its own ranges'
    results into a running sum (in place: fn must return a fresh array), and the workers' sums are added
    in worker order, so the same thread count gives the same bits. For long reductions (a conv's dW over
    many chunks) this keeps one partial per worker instead of one per chunk."""
    partial = {}

    def run(lo, hi, worker):
        part = fn(lo, hi)
        if worker in partial:
            partial[worker] += part
        else:
            partial[worker] = part

    for_each_chunk(xp, ranges, run)
    total = partial[0]
    for worker in range(1, len(partial)):
        total += partial[worker]
    return total


def split(n: int, parts: int):
    """(lo, hi) ranges cutting range(n) into `parts` nearly equal pieces (none empty)."""
    parts = max(1, min(parts, n))
    bounds = [n * k // parts for k in range(parts + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(parts)]


# Element-wise kernels (ReLU, pooling, batch norm) split their leading axis into one block per thread.
# Below ~1 MB the hand-off costs more than it saves, so small arrays stay on the calling thread.
MIN_PARALLEL_BYTES = 1 << 20


def blocks(xp, n: int, bytes_per_item: int, max_block_bytes: int | None = None):
    """(lo, hi) blocks of range(n): for a big CPU array a multiple of the thread count of them, each at
    most max_block_bytes when given (so a chain of passes over one block stays in cache); else one block."""
    total = n * bytes_per_item
    if not on_cpu(xp) or total < MIN_PARALLEL_BYTES:
        return [(0, n)]
    threads = num_threads()
    rounds = 1 if max_block_bytes is None else -(-total // (threads * max_block_bytes))
    return split(n, threads * rounds)


def map_blocks(xp, n: int, bytes_per_item: int, fn, max_block_bytes: int | None = None) -> None:
    """fn(lo, hi) for every block of range(n), the blocks in parallel (fn writes its own slice of the output)."""
    for_each_chunk(xp, blocks(xp, n, bytes_per_item, max_block_bytes), lambda lo, hi, worker: fn(lo, hi))


def sum_blocks(xp, n: int, bytes_per_item: int, fn, max_block_bytes: int | None = None):
    """sum over the blocks of range(n) of fn(lo, hi): computed in parallel, added in block order."""
    ranges = blocks(xp, n, bytes_per_item, max_block_bytes)
    parts = {}

    def run(lo, hi, worker):
        parts[lo] = fn(lo, hi)

    for_each_chunk(xp, ranges, run)
    total = parts[ranges[0][0]]
    for lo, _ in ranges[1:]:
        total = total + parts[lo]
    return total
