"""CPU threads for the heavy kernels: split the batch between threads, the way oneDNN does.

Why: NumPy runs every copy and ufunc on one core; only its BLAS uses them all, splitting each GEMM on
its own. A conv layer is many medium GEMMs plus im2col copies, and it runs faster when each thread
takes whole chunks of images and does copy + GEMM itself with a single-threaded BLAS: the copies now use
every core, and dW's long sums split by images instead of over a tiny output matrix. NumPy releases
the GIL inside copies, ufuncs and BLAS calls, so plain Python threads run in parallel here.

Deterministic: chunk k always goes to worker k mod T, and the callers add per-worker partial sums in
worker order, so the same thread count gives the same bits on every run.
On a GPU (cupy arrays) everything runs in order on the calling thread: the GPU is the parallel part.

While the workers run, the BLAS is held at one thread (a threadpoolctl limit, restored when the call
returns; nothing to do when it runs one thread already): the workers are the parallel part then.
Outside these calls the BLAS is left as it was; scratchnet.cpu.tune() makes the cap process-wide.

The thread count is `len(os.sched_getaffinity(0))` (the cores this process may use), or
$SCRATCHNET_NUM_THREADS, or `set_num_threads(n)`; 1 turns the threads off.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from .backend import BackendError, on_cpu

_num_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_blas = None                      # threadpoolctl's controller of the BLAS libraries, made when first needed
_hold_blas = False                # cpu.tune() asked for the BLAS at one thread process-wide while ours run
_process_blas_limit = None        # the threadpoolctl limiter holding it there (while the thread count is > 1)
_in_worker = threading.local()    # set inside pool threads: a nested call runs in order instead of deadlocking
_lock = threading.Lock()          # guards creating and replacing the pool and the process-wide limit


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
    global _num_threads, _pool
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"set_num_threads: expected a positive integer, got {n!r}")
    with _lock:
        if _pool is not None and int(n) != _num_threads:
            _pool.shutdown(wait=True)
            _pool = None
        _num_threads = int(n)
        _apply_process_blas_limit()


def _blas_controller():
    global _blas
    if _blas is None:
        first_import = "threadpoolctl" not in sys.modules and "KMP_DUPLICATE_LIB_OK" not in os.environ
        from threadpoolctl import ThreadpoolController  # noqa: PLC0415 - only the threaded CPU path needs it
        if first_import:  # threadpoolctl sets this when imported; scratchnet leaves the environment as it was
            os.environ.pop("KMP_DUPLICATE_LIB_OK", None)
        _blas = ThreadpoolController().select(user_api="blas")
    return _blas


def blas_single_threaded():
    """A context manager holding every BLAS at one thread while it lasts, restored afterwards; a no-op
    (and nearly free) when they run one thread already, e.g. after scratchnet.cpu.tune()."""
    blas = _blas_controller()
    if all((lib.num_threads or 1) <= 1 for lib in blas.lib_controllers):
        return contextlib.nullcontext()
    return blas.limit(limits=1)


def hold_blas_single_threaded() -> None:
    """From now on, process-wide: every BLAS at one thread whenever the thread count is above 1 (lifted
    while it is 1). scratchnet.cpu.tune() calls this; its module docstring says why."""
    global _hold_blas
    with _lock:
        _hold_blas = True
        _apply_process_blas_limit()


def _apply_process_blas_limit():
    """Set or lift the process-wide limit to match _hold_blas and the thread count (under _lock)."""
    global _process_blas_limit
    want = _hold_blas and num_threads() > 1
    if want and _process_blas_limit is None:
        _process_blas_limit = _blas_controller().limit(limits=1)
    elif not want and _process_blas_limit is not None:
        _process_blas_limit.restore_original_limits()
        _process_blas_limit = None


def _start_threads():
    """The worker pool, created on first use."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=num_threads(), thread_name_prefix="scratchnet",
                                       initializer=_mark_worker)
        return _pool


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
    if threads <= 1 or not on_cpu(xp) or getattr(_in_worker, "active", False):
        for lo, hi in ranges:
            fn(lo, hi, 0)
        return 1
    pool = _start_threads()

    def work(k):
        for lo, hi in ranges[k::threads]:
            fn(lo, hi, k)

    with blas_single_threaded():
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
