"""scratchnet.cpu_blas: the OpenBLAS kernel choice made before numpy loads (AVX2 kernels on AMD Zen 4)."""
import json
import os
import subprocess
import sys
from pathlib import Path

from scratchnet.cpu_blas import preferred_coretype


def cpuinfo(vendor="AuthenticAMD", family="25", flags="fpu sse avx2 fma avx512f avx512bw"):
    block = f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nflags\t\t: {flags}\n"
    return block + "\n" + block.replace(": 0", ": 1")


def test_zen4_gets_the_avx2_kernels_and_nothing_else_does():
    assert preferred_coretype(cpuinfo()) == "Haswell"                             # Zen 4
    assert preferred_coretype(cpuinfo(flags="fpu sse avx2 fma")) is None           # Zen 3: no AVX-512
    assert preferred_coretype(cpuinfo(family="26")) is None                        # Zen 5
    assert preferred_coretype(cpuinfo(vendor="GenuineIntel", family="6")) is None  # Intel
    assert preferred_coretype(cpuinfo(flags="avx512fx")) is None                   # whole flag names only
    assert preferred_coretype("") is None


def kernels_in_fresh_process(code_first, env_extra=None):
    """(OPENBLAS_CORETYPE, OpenBLAS's kernel family) in a fresh python that runs code_first, then loads numpy."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "SCRATCHNET_BLAS_TUNING")}
    env.update(env_extra or {})
    code = (f"{code_first}\nimport os, json, numpy\nfrom threadpoolctl import threadpool_info\n"
            "arch = [i.get('architecture') for i in threadpool_info() if i.get('internal_api') == 'openblas']\n"
            "print(json.dumps([os.environ.get('OPENBLAS_CORETYPE'), arch[0] if arch else None]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_choice_applies_only_before_numpy_and_respects_the_user():
    try:
        want = preferred_coretype(Path("/proc/cpuinfo").read_text())
    except OSError:
        want = None
    env_value, kernels = kernels_in_fresh_process("import scratchnet")
    assert env_value == want
    if want:
        assert kernels == want  # OpenBLAS took it (the point of setting it before numpy)
    assert kernels_in_fresh_process("import numpy, scratchnet")[0] is None          # too late: untouched
    assert kernels_in_fresh_process("import scratchnet", {"SCRATCHNET_BLAS_TUNING": "0"})[0] is None
    assert kernels_in_fresh_process("import scratchnet", {"OPENBLAS_CORETYPE": "Sandybridge"})[0] == "Sandybridge"
