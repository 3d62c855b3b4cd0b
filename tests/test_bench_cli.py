"""The benchmark scripts' bad input: one clear line, exit status 2, no traceback (nothing is timed here)."""
import subprocess
import sys

import pytest

import scratchnet as sn


def run(*cmd, cwd):
    return subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("args,needle", [
    (["bench/train_step.py", "--threads", "0"], "--threads"),
    (["bench/train_step.py", "--rounds", "-1"], "--rounds"),
    (["bench/train_step.py", "--backend", "tpu"], "--backend"),
    (["bench/gpu_kernels.py", "--steps", "0"], "--steps"),
    (["bench/gpu_kernels.py", "--nets", "resnet"], "--nets"),
    (["bench/gpu_kernels.py", "--out", "bench"], "--out"),       # a folder, not a file
    (["bench/train_step.py", "--out", "bench"], "--out"),
    (["bench/train_step.py", "--seed", "-1"], "--seed"),
    (["bench/train_step.py", "--repeats", "0"], "--repeats"),
    (["bench/train_step.py", "--alone", "gpu", "small"], "--alone"),     # SIDE is scratchnet or torch
    (["bench/train_step.py", "--alone", "torch", "resnet"], "--alone"),  # NET one of the bench's nets
    (["bench/train_step.py", "--alone", "torch"], "--alone"),            # both are needed
    (["bench/train_step.py", "--torch-layout", "nhwc"], "--torch-layout"),
    (["bench/p4_torchattacks.py", "--eps", "0.5"], "--eps"),
    (["bench/norm_act.py", "--repeats", "0"], "--repeats"),
    (["bench/norm_act.py", "--repeat", "3"], "--repeat"),               # no abbreviations
    (["bench/norm_act.py", "--out", "bench"], "--out"),
    (["bench/chunks_pool.py", "--repeats", "0"], "--repeats"),
    (["bench/chunks_pool.py", "--thread", "2"], "--thread"),            # no abbreviations
    (["bench/chunks_pool.py", "--out", "bench"], "--out"),
])
def test_bad_flags(repo_root, args, needle):
    r = run(sys.executable, *args, cwd=repo_root)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_gpu_benchmarks_without_a_gpu_say_so_in_one_line(repo_root):
    if sn.backend.cupy_available():
        pytest.skip("CuPy and a GPU are present")
    for args in (["bench/train_step.py", "--backend", "cupy"], ["bench/gpu_kernels.py"]):
        r = run(sys.executable, *args, cwd=repo_root)
        assert r.returncode == 2 and "cupy" in r.stderr.lower() and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_gpu_checks_script_needs_its_output_folder(repo_root):
    r = run("bash", "bench/gpu_checks.sh", cwd=repo_root)
    assert r.returncode == 2 and r.stderr.strip() == "usage: bench/gpu_checks.sh OUT_DIR"


def test_gpu_kernels_tee_keeps_what_it_prints(repo_root, capsys):
    """bench/gpu_kernels.py prints its tables and writes the same text to --out (through _Tee)."""
    import contextlib
    import io
    sys.path.insert(0, str(repo_root / "bench"))
    import gpu_kernels
    kept = io.StringIO()
    with contextlib.redirect_stdout(gpu_kernels._Tee(sys.stdout, kept)):
        print("kernels/step", 109)
    assert kept.getvalue() == "kernels/step 109\n" and capsys.readouterr().out == kept.getvalue()
