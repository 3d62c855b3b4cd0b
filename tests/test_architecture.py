"""Architecture rules that keep the library honest: scratchnet never imports torch or the problems package,
and only scratchnet/backend.py names CuPy."""
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import scratchnet

ROOT = Path(scratchnet.__file__).parent


def test_importing_every_scratchnet_module_pulls_in_no_torch_and_no_problems():
    modules = [m.name for m in pkgutil.walk_packages([str(ROOT)], prefix="scratchnet.")]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'problems', 'cupy'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"scratchnet imported: {out}"
    assert len(modules) >= 12


def test_only_the_backend_module_imports_cupy():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.name == "backend.py":
            continue
        for line in path.read_text().splitlines():
            if re.match(r"\s*(import|from)\s+cupy", line):
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert offenders == []
