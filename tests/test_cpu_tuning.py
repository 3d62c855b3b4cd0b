"""Process tuning is opt-in (scratchnet.cpu): importing scratchnet and running its threaded kernels leaves the
environment, the BLAS thread counts and glibc's malloc as they were; cpu.choose_openblas_kernels() (before
numpy) and cpu.tune() change them when a program asks. Each check runs in a fresh interpreter."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scratchnet.cpu import KEEP_FREED_BYTES, M_MMAP_MAX, M_TRIM_THRESHOLD, preferred_coretype

REPO = Path(__file__).resolve().parents[1]
GLIBC = sys.platform.startswith("linux")


def run_fresh(code, env_extra=None, drop=("OPENBLAS_CORETYPE", "SCRATCHNET_BLAS_TUNING", "SCRATCHNET_MALLOC_TUNING",
                                         "SCRATCHNET_NUM_THREADS")):
    """Run code in a fresh python (BLAS at 2 threads, so that a limit shows); its last stdout line as JSON."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update({"OPENBLAS_NUM_THREADS": "2", "PYTHONPATH": str(REPO), **(env_extra or {})})
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# Installed first in the fresh interpreter: every mallopt call made through ctypes is recorded (and still made).
MALLOPT_SPY = textwrap.dedent("""
    import ctypes
    MALLOPT_CALLS = []
    class SpyCDLL(ctypes.CDLL):
        def __getattr__(self, name):
            func = self[name]
            if name == "mallopt":
                real = func
                def func(*args):
                    MALLOPT_CALLS.append(list(args))
                    return real(*args)
            setattr(self, name, func)
            return func
    ctypes.CDLL = SpyCDLL
    ctypes.cdll = ctypes.LibraryLoader(SpyCDLL)
""")

# Imports scratchnet, optionally tunes, then trains one step of a conv + batch norm with 2 scratchnet threads.
THREADED_STEP = MALLOPT_SPY + textwrap.dedent("""
    import json, os, sys, threading
    env_before = dict(os.environ)
    def blas():  # observed through threadpoolctl; without OBSERVE_BLAS, scratchnet is the first to import it
        from threadpoolctl import threadpool_info
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    if OBSERVE_BLAS:
        import numpy
        blas_before = blas()
        env_before = dict(os.environ)  # threadpoolctl's import sets KMP_DUPLICATE_LIB_OK: the test's doing
    def mmapped_blocks():  # glibc's count of blocks it mmap'd for malloc (0 new ones once tuned)
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "mallinfo2"):
            return None
        class Info(ctypes.Structure):
            _fields_ = [(f, ctypes.c_size_t) for f in ("arena ordblks smblks hblks hblkhd usmblks fsmblks "
                                                      "uordblks fordblks keepcost").split()]
        libc.mallinfo2.restype = Info
        return libc.mallinfo2().hblks
    import scratchnet  # before numpy (without OBSERVE_BLAS), where it could still choose OpenBLAS's kernels
    import numpy as np
    from scratchnet import Tensor, functional as F, parallel
    parallel.set_num_threads(2)
    if TUNE:
        scratchnet.cpu.tune()
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((32, 32, 32, 3)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((5, 5, 3, 16)).astype(np.float32) * 0.1, requires_grad=True)
    gamma, beta = Tensor(np.ones(16, np.float32), requires_grad=True), Tensor(np.zeros(16, np.float32), requires_grad=True)
    h = F.batch_norm(F.conv2d(x, w, None, stride=1, padding=0), gamma, beta, np.zeros(16, np.float32),
                     np.ones(16, np.float32), training=True)
    (h * h).mean().backward()
    env_after = dict(os.environ)
    during = []
    if OBSERVE_BLAS:
        parallel.for_each_chunk(np, parallel.split(4, 4), lambda lo, hi, worker: during.append(blas()))
    blocks = mmapped_blocks()
    big = np.ones(64 << 20, np.uint8)  # glibc mmaps a block this big, unless tuned not to
    new_mmapped = None if blocks is None else mmapped_blocks() - blocks
    print(json.dumps({"env_same": env_after == env_before,
                      "env_changes": sorted(set(env_after.items()) ^ set(env_before.items())),
                      "blas_before": blas_before if OBSERVE_BLAS else None,
                      "blas_after": blas() if OBSERVE_BLAS else None, "blas_during": during,
                      "threaded": any(t.name.startswith("scratchnet") for t in threading.enumerate()),
                      "grads": bool(np.isfinite(w.grad).all() and np.isfinite(x.grad).all()),
                      "mallopt": MALLOPT_CALLS, "new_mmapped": new_mmapped}))
""")


@pytest.mark.parametrize("observe_blas", [False, True], ids=["environment", "blas"])
def test_importing_scratchnet_and_running_threaded_kernels_changes_nothing_outside_it(observe_blas):
    """The environment (with nothing imported first), the BLAS thread counts (read through threadpoolctl,
    imported first for that) and glibc's malloc settings are as they were before `import scratchnet`."""
    got = run_fresh(f"TUNE = False\nOBSERVE_BLAS = {observe_blas}\n" + THREADED_STEP)
    assert got["threaded"] and got["grads"]  # the threaded path ran, forward and backward
    assert got["env_same"], got["env_changes"]
    if observe_blas:
        assert got["blas_after"] == got["blas_before"]
        assert got["blas_during"] and all(n == 1 for counts in got["blas_during"] for n in counts)  # scoped
    assert got["mallopt"] == []
    if GLIBC and got["new_mmapped"] is not None:
        assert got["new_mmapped"] >= 1  # glibc's default: a big block is mmap'd


def test_tune_caps_the_blas_process_wide_and_keeps_freed_memory():
    got = run_fresh("TUNE = True\nOBSERVE_BLAS = True\n" + THREADED_STEP)
    assert got["threaded"] and got["grads"]
    assert got["env_same"], got["env_changes"]
    assert got["blas_after"] and all(n == 1 for n in got["blas_after"])
    if GLIBC:
        assert got["mallopt"] == [[M_MMAP_MAX, 0], [M_TRIM_THRESHOLD, KEEP_FREED_BYTES]]
        if got["new_mmapped"] is not None:
            assert got["new_mmapped"] == 0


@pytest.mark.skipif(not GLIBC, reason="mallopt tuning is glibc-only")
def test_malloc_opt_out_and_tune_called_twice():
    got = run_fresh("TUNE = True\nOBSERVE_BLAS = True\n" + THREADED_STEP, {"SCRATCHNET_MALLOC_TUNING": "0"})
    assert got["mallopt"] == [] and all(n == 1 for n in got["blas_after"])
    got = run_fresh(MALLOPT_SPY + textwrap.dedent("""
        import json
        from scratchnet import cpu
        cpu.tune(); cpu.tune()
        print(json.dumps(MALLOPT_CALLS))
    """))
    assert len(got) == 2  # once per process


def test_the_blas_cap_follows_the_thread_count_only_after_tune():
    """Without tune(): limited only while a threaded call runs. With it: held at 1 while the thread count is
    above 1, lifted by set_num_threads(1) (BLAS as it was) and set again by a count above 1."""
    got = run_fresh("""
        import json
        import numpy as np
        from threadpoolctl import threadpool_info
        from scratchnet import cpu, parallel
        def blas():
            return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        seen = {"before": blas()}
        parallel.set_num_threads(3)
        during = []
        parallel.for_each_chunk(np, parallel.split(4, 4), lambda lo, hi, w: during.append(blas()))
        seen.update(during=during[0], after_call=blas())
        cpu.tune()
        seen["tuned"] = blas()
        parallel.set_num_threads(1)
        seen["tuned_one_thread"] = blas()
        parallel.set_num_threads(2)
        seen["tuned_two_threads"] = blas()
        print(json.dumps(seen))
    """)
    before = got["before"]
    if not before or max(before) <= 1:
        pytest.skip("the BLAS runs one thread here anyway: nothing to observe")
    ones = [1] * len(before)
    assert got["during"] == ones and got["after_call"] == before
    assert got["tuned"] == ones and got["tuned_one_thread"] == before and got["tuned_two_threads"] == ones


FAULTS_SCRIPT = """
    import resource, sys
    from scratchnet import cpu
    import numpy as np
    from scratchnet.kernels import conv
    if sys.argv[1] == "tune":
        cpu.tune()
    x = np.ones((64, 32, 32, 3), np.float32); w = np.ones((11, 11, 3, 64), np.float32)
    def step():
        out, cache = conv.conv2d_forward(x, w, None)
        return out + 1.0  # a fresh 8 MB array, freed at once, as activations are in a training step
    step(); step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt tuning is glibc-only")
def test_malloc_tuning_stops_page_faults_on_reused_activation_memory():
    """With tune(), a repeated step reuses freed memory (few page faults); without it, or with
    SCRATCHNET_MALLOC_TUNING=0, glibc maps and unmaps the big arrays every time (thousands)."""
    def faults(mode, setting="1"):
        env = {**os.environ, "SCRATCHNET_MALLOC_TUNING": setting, "PYTHONPATH": str(REPO)}
        run = subprocess.run([sys.executable, "-c", textwrap.dedent(FAULTS_SCRIPT), mode], env=env,
                             capture_output=True, text=True, check=True, cwd=REPO)
        return int(run.stdout.strip())

    tuned, untuned, opted_out = faults("tune"), faults("plain"), faults("tune", "0")
    assert untuned > 2000, untuned
    assert opted_out > 2000, opted_out
    assert tuned < untuned / 10, (tuned, untuned)


# ---- the OpenBLAS kernel choice (AVX2 kernels on AMD Zen 4), made before numpy loads -----------------------

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
    """(OPENBLAS_CORETYPE, OpenBLAS's kernel family, numpy loaded by code_first) in a fresh python that runs
    code_first, then loads numpy."""
    code = (f"import sys\n{code_first}\nearly = 'numpy' in sys.modules\n"
            "import os, json, numpy\nfrom threadpoolctl import threadpool_info\n"
            "arch = [i.get('architecture') for i in threadpool_info() if i.get('internal_api') == 'openblas']\n"
            "print(json.dumps([os.environ.get('OPENBLAS_CORETYPE'), arch[0] if arch else None, early]))")
    return run_fresh(code, env_extra)


CHOOSE = "from scratchnet import cpu\ncpu.choose_openblas_kernels()"


def test_kernel_choice_applies_only_when_asked_before_numpy_and_respects_the_user():
    try:
        want = preferred_coretype(Path("/proc/cpuinfo").read_text())
    except OSError:
        want = None
    default_kernels = kernels_in_fresh_process("")[1]
    assert kernels_in_fresh_process("import scratchnet") == [None, default_kernels, False]  # import: nothing
    env_value, kernels, early = kernels_in_fresh_process(CHOOSE)
    assert env_value == want and not early  # `from scratchnet import cpu` loads no numpy
    if want:
        assert kernels == want  # OpenBLAS took it (the point of setting it before numpy)
    assert kernels_in_fresh_process("import numpy\n" + CHOOSE)[0] is None           # too late: untouched
    assert kernels_in_fresh_process(CHOOSE, {"SCRATCHNET_BLAS_TUNING": "0"})[0] is None
    assert kernels_in_fresh_process(CHOOSE, {"OPENBLAS_CORETYPE": "Sandybridge"})[0] == "Sandybridge"
