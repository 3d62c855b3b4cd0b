"""Which OpenBLAS kernels numpy's GEMMs use: chosen before numpy is first imported (standard library only).

NumPy's wheels carry an OpenBLAS built for many CPUs that picks its kernels when numpy is imported,
and picks the AVX-512 ones ("SkylakeX") on every CPU that has AVX-512. AMD's Zen 4 has AVX-512 but
executes it on 256-bit units, and there OpenBLAS's AVX2 kernels ("Haswell") were the faster ones.
Measured on this project's two-core Zen 4 VM, six paired runs of bench/train_step.py: the small
CNN's training step took 175-177 ms with them against 181-185 ms without; with batch norm, 191-202 ms
against 198-208 ms.

OpenBLAS reads the choice from $OPENBLAS_CORETYPE once, while numpy loads it, so `scratchnet` sets it
as its very first action, and only when numpy is not loaded yet (else it would have no effect). A
value you set yourself is kept; SCRATCHNET_BLAS_TUNING=0 leaves the environment alone. Import
scratchnet (or the problem scripts' package) before numpy to get it; child processes inherit it.
"""
from __future__ import annotations

import os
import sys

CPUINFO = "/proc/cpuinfo"


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
    """Set $OPENBLAS_CORETYPE from preferred_coretype() when that can still take effect; return what was set."""
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
