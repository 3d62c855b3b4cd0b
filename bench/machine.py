"""What machine a benchmark ran on: the CPU's model and vector extensions, a short family name for per-family
results files, and the library versions that decide the speed.

Step times compare only within a CPU family: an AVX-512 Xeon, a Zen 4 (AVX-512 on 256-bit units) and an
AVX2-only CPU rank the same kernels differently, so bench/train_step.py keeps one results file per family
(cpu_family) and records machine_info() in it. Standard library only at import time (numpy, torch and
threadpoolctl load inside machine_info), so importing this changes no OpenBLAS kernel choice.
"""
from __future__ import annotations

import os
import platform
import re

CPUINFO = "/proc/cpuinfo"
VECTOR_EXTENSIONS = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                     "amx_tile")
VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "hygon", "CentaurHauls": "centaur"}
# family 25 is Zen 3 or Zen 4, told apart by AVX-512 (cpu_family); 23 also holds the older Zen and Zen+
AMD_ZEN = {23: "amd-zen2", 26: "amd-zen5"}


def _number(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def cpu_facts(cpuinfo: str) -> dict:
    """{vendor, model_name, family, model, vector_extensions} from the first processor block of /proc/cpuinfo
    text (every core of one machine reports the same); None (or no extensions) for what it lacks."""
    fields = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    return {"vendor": fields.get("vendor_id"), "model_name": fields.get("model name"),
            "family": _number(fields.get("cpu family")), "model": _number(fields.get("model")),
            "vector_extensions": [e for e in VECTOR_EXTENSIONS if e in flags]}


def cpu_family(facts: dict) -> str:
    """A short name for the CPU family whose step times compare ("intel-avx512", "amd-zen4", ...): it names
    the results file, so only lowercase letters, digits and dashes; "unknown" without a vendor."""
    vendor, family, ext = facts.get("vendor"), facts.get("family"), facts.get("vector_extensions", [])
    if not vendor:
        return "unknown"
    short = VENDORS.get(vendor) or re.sub(r"[^a-z0-9]", "", vendor.lower()) or "unknown"
    if short == "intel" and "avx512f" in ext:
        return "intel-avx512"
    if short == "intel" and "avx2" in ext:
        return "intel-avx2"
    if short == "amd" and family == 25:
        return "amd-zen4" if "avx512f" in ext else "amd-zen3"
    if short == "amd" and family in AMD_ZEN:
        return AMD_ZEN[family]
    return short if family is None else f"{short}-{family}"


def read_cpuinfo() -> str:
    """/proc/cpuinfo's text, or "" where there is none (not Linux)."""
    try:
        with open(CPUINFO) as f:
            return f.read()
    except OSError:
        return ""


def openblas_kernels():
    """The kernel family numpy's OpenBLAS runs (e.g. 'Haswell', 'SkylakeX'), as threadpoolctl reports it."""
    from threadpoolctl import threadpool_info  # noqa: PLC0415 - loads numpy's BLAS info only when asked
    return next((i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"), None)


def machine_info() -> dict:
    """The machine and software a run's numbers belong to, for the results JSON."""
    import numpy as np  # noqa: PLC0415 - see the module docstring
    import torch  # noqa: PLC0415

    from scratchnet.kernels import workspace  # noqa: PLC0415 - its chunk budget is read from this machine

    facts = cpu_facts(read_cpuinfo())
    return {"cpu": facts["model_name"] or platform.processor() or platform.machine(),
            "cpu_family": cpu_family(facts), "vendor": facts["vendor"], "family": facts["family"],
            "model": facts["model"], "vector_extensions": facts["vector_extensions"],
            "arch": platform.machine(), "cores": os.cpu_count(), "openblas_kernels": openblas_kernels(),
            "numpy": np.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "kernel": platform.release(), "l2_cache_bytes": workspace.l2_cache_bytes(),
            "conv_chunk_bytes": workspace.CHUNK_BYTES}


def kernel_bench_arguments(doc: str, name: str, repeats: int, argv=None):
    """The flags the per-kernel benches (norm_act.py, chunks_pool.py) share: --repeats, --threads, --out
    (default bench/results/<name>_<cpu family>.json, resolved by the caller once the family is known)."""
    import argparse  # noqa: PLC0415 - only the benches' command lines need it

    from problems.common.cli import output_file, positive_int, thread_count  # noqa: PLC0415

    p = argparse.ArgumentParser(allow_abbrev=False, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=positive_int, default=repeats,
                   help=f"timed calls per measurement (median; default {repeats})")
    p.add_argument("--threads", type=thread_count, default=2, help="threads for every library timed (default 2)")
    p.add_argument("--out", type=output_file, help=f"results JSON (default bench/results/{name}_<cpu family>.json)")
    return p.parse_args(argv)
