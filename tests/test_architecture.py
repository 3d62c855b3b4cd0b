"""Architecture rules that keep the library honest: scratchnet never imports torch or the problems package,
only scratchnet/backend.py names CuPy, and the kernels import one another without cycles or private names."""
import ast
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def module_name(path: Path) -> str:
    parts = ("scratchnet",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def scratchnet_imports(path: Path):
    """(line, imported module, name or None, private use) for every scratchnet import in the file, inside
    functions too: `from M import name` gives (M, name); `import M` or `from P import M` where M is a module
    gives (M, None), and then each `M._private` attribute read in the file counts as importing `_private`."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    found, module_aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if source.split(".")[0] != "scratchnet":
                continue
            for alias in node.names:
                if (ROOT.parent / source.replace(".", "/") / f"{alias.name}.py").exists():  # a submodule
                    found.append((node.lineno, f"{source}.{alias.name}", None))
                    module_aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                else:
                    found.append((node.lineno, source, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "scratchnet":
                    found.append((node.lineno, alias.name, None))
                    if alias.asname:
                        module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append((node.lineno, module_aliases[node.value.id], node.attr))
    return found


def test_kernel_modules_import_no_private_names_across_modules():
    """A private name (_underscore) stays in its module: anything two kernels share is public (workspace,
    reductions), so a reader sees a kernel's dependencies in its imports."""
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        here = module_name(path)
        for line, source, name in scratchnet_imports(path):
            kernels_involved = "scratchnet.kernels" in (here.rpartition(".")[0], source.rpartition(".")[0])
            if kernels_involved and name and name.startswith("_") and source != here:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {name} from {source}")
    assert offenders == [], "private names imported across modules:\n" + "\n".join(offenders)


def test_kernel_modules_import_each_other_without_a_cycle():
    kernels = {module_name(p): p for p in (ROOT / "kernels").glob("*.py") if p.name != "__init__.py"}
    assert {"scratchnet.kernels.conv", "scratchnet.kernels.winograd"} <= set(kernels)
    graph = {m: sorted({source for _, source, _ in scratchnet_imports(p) if source in kernels and source != m})
             for m, p in kernels.items()}
    assert graph["scratchnet.kernels.conv"]  # the parser sees the kernels' imports of one another

    def cycle_from(module, path):
        if module in path:
            return path[path.index(module):] + [module]
        for target in graph[module]:
            found = cycle_from(target, path + [module])
            if found:
                return found
        return None

    cycles = [c for c in (cycle_from(m, []) for m in sorted(graph)) if c]
    assert cycles == [], "import cycle: " + " -> ".join(cycles[0])


def test_the_architecture_checks_catch_what_they_guard_against(tmp_path, monkeypatch):
    """The two checks above, run on a copy of the kernels where winograd reaches into conv the old way
    (`from . import conv as _conv` and `_conv._scratch(...)`) and conv imports winograd back."""
    fake = tmp_path / "scratchnet"
    (fake / "kernels").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "kernels" / "__init__.py").write_text("")
    (fake / "kernels" / "conv.py").write_text("from . import winograd\n")
    (fake / "kernels" / "winograd.py").write_text("from . import conv as _conv\n\ndef f():\n    return _conv._scratch()\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    with pytest.raises(AssertionError, match="_scratch from scratchnet.kernels.conv"):
        test_kernel_modules_import_no_private_names_across_modules()
    (fake / "kernels" / "workspace.py").write_text("")
    (fake / "kernels" / "winograd.py").write_text("from . import conv\nfrom .workspace import scratch\n")
    with pytest.raises(AssertionError, match="import cycle: scratchnet.kernels.conv -> scratchnet.kernels.winograd"):
        test_kernel_modules_import_each_other_without_a_cycle()
