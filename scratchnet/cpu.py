"""Process-wide CPU tuning for a program that trains with scratchnet: opt-in, never done by importing it.

Importing scratchnet changes nothing outside it. Without this module, scratchnet's CPU threads hold
numpy's BLAS at one thread only for the duration of their own calls (scratchnet.parallel), and restore it.
A program whose main job is training with scratchnet's CPU kernels (a training script, a benchmark; not
a library, not a process that also runs scikit-learn or PyTorch in earnest) may make two calls:

    from scratchnet import cpu
    cpu.choose_openblas_kernels()   # first, before anything imports numpy
    import numpy as np
    ...
    cpu.tune()                      # before training

`choose_openblas_kernels()`: numpy's OpenBLAS picks its kernels once, when numpy is imported, and takes the
AVX-512 ones on every CPU that has AVX-512. AMD's Zen 4 executes AVX-512 on 256-bit units, and there the
AVX2 ("Haswell") kernels run the training step faster. This sets $OPENBLAS_CORETYPE accordingly (child
processes inherit it); it does nothing once numpy is loaded, when $OPENBLAS_CORETYPE is already set (yours
wins), or with SCRATCHNET_BLAS_TUNING=0. This module imports only the standard library, so that
`from scratchnet import cpu` loads no numpy.

`tune()`, for the rest of the process:
  - BLAS at one thread whenever scratchnet runs more than one (scratchnet.parallel's thread count;
    set_num_threads(1) lifts the cap, a later count above 1 sets it again). scratchnet splits its GEMMs
    between its own threads; a multi-threaded BLAS call anywhere else (a linear layer, a small sum) leaves
    OpenBLAS's worker threads spin-waiting for more work afterwards, taking cores from scratchnet's threads.
  - glibc's malloc keeps freed memory: no mmap for big blocks (M_MMAP_MAX = 0) and the top of the heap
    trimmed only past 2 GB free (M_TRIM_THRESHOLD). By default glibc maps every big array afresh and
    unmaps it on free, so each training step page-faults its activations in again; tuned, the freed
    arrays are reused. The price: the run's peak memory stays with the process. SCRATCHNET_MALLOC_TUNING=0
    leaves malloc alone; it is a no-op off glibc, and done once per process.
bench/train_step.py --no-tune measures the step without it.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys

CPUINFO = "/proc/cpuinfo"
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc <malloc.h> mallopt parameters
KEEP_FREED_BYTES = 2 ** 31 - 1         # mallopt takes an int: keep up to 2 GB of freed heap memory
_malloc_tuned = False


def preferred_coretype(cpuinfo: str) -> str | None:
    """'Haswell' for an AMD Zen 4 (family 25 with AVX-512), else None (OpenBLAS's own choice stands).

    cpuinfo: the text of /proc/cpuinfo (its first processor block is enough). Zen 3 is family 25 too
    but has no AVX-512, so OpenBLAS already picks AVX2 there; Zen 5 (family 26) has full-width AVX-512.
    """
    fields = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    is_zen4 = (fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25"
               and "avx512f" in fields.get("flags", "").split())
    return "Haswell" if is_zen4 else None


def choose_openblas_kernels() -> str | None:
    """Set $OPENBLAS_CORETYPE from preferred_coretype() when that can still take effect; return what was set.
    Call it before numpy is imported (see the module docstring)."""
    if ("numpy" in sys.modules or "OPENBLAS_CORETYPE" in os.environ
            or os.environ.get("SCRATCHNET_BLAS_TUNING", "1") == "0"):
        return None
    try:
        with open(CPUINFO) as f:
            coretype = preferred_coretype(f.read())
    except OSError:  # not Linux
        return None
    if coretype:
        os.environ["OPENBLAS_CORETYPE"] = coretype
    return coretype


def keep_freed_memory() -> bool:
    """The malloc half of tune(): tell glibc to keep freed memory; True if it was told (now or before)."""
    global _malloc_tuned
    if _malloc_tuned:
        return True
    if os.environ.get("SCRATCHNET_MALLOC_TUNING", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
    _malloc_tuned = True
    return True


def tune() -> None:
    """Tune the whole process for training with scratchnet's CPU kernels: the BLAS held at one thread
    while scratchnet's threads run, and glibc's malloc keeping freed memory (the module docstring says why
    and what it costs). For a program's entry point; call it once, before training."""
    from . import parallel  # noqa: PLC0415 - keeps this module free of numpy until tune() is called

    parallel.hold_blas_single_threaded()
    keep_freed_memory()
