"""Command-line plumbing shared by every problem script: data root, output folder, seeds, clean errors.

Bad input must end a script with one clear line on stderr and exit status 2, never a traceback:
scripts raise `UserError("what was wrong; what was expected")` and wrap their entry point in `run_main`.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import shlex
import sys
from pathlib import Path

import numpy as np

DATA_ENV = "SCRATCHNET_DATA"


class UserError(Exception):
    """A problem with the user's input (missing file, bad flag value, missing dataset): exit 2, one line."""


REPO = Path(__file__).resolve().parents[2]


def data_root(arg: str | None) -> Path:
    """The data root: --data-dir if given, else $SCRATCHNET_DATA, else ./data."""
    root = arg or os.environ.get(DATA_ENV) or "data"
    return Path(root).expanduser()


def portable_path(path, data_dir: str | None = None) -> str:
    """`path` as results files and reports store it, free of this machine's folders: from the package on
    for a file inside an installed package, relative to the repository when inside it, 'DATA/...' inside the
    data root, as given when relative, else its name."""
    path = Path(path).expanduser()
    absolute = path.resolve()
    if "site-packages" in absolute.parts:   # a file shipped in a package: from the package's folder on
        parts = absolute.parts
        return "/".join(parts[len(parts) - parts[::-1].index("site-packages"):])
    for base, prefix in ((REPO, ""), (data_root(data_dir).resolve(), "DATA/")):
        try:
            rel = absolute.relative_to(base).as_posix()
        except ValueError:
            continue
        return prefix + rel if rel != "." else (prefix.rstrip("/") or ".")
    return path.as_posix() if not path.is_absolute() else path.name


def _path_arg(text: str, what: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected {what}, got an empty path")
    return Path(text).expanduser()


def _folder_or_unmade(path: Path) -> Path:
    """The nearest existing one of `path` and its ancestors; ArgumentTypeError if that is a file (then no
    folder can be at `path`). Checked while the arguments are parsed, so a bad path costs no work."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "" if probe == path else f", so folder {path} cannot be made"
        raise argparse.ArgumentTypeError(f"{probe} is a file{where}; expected a folder")
    return probe


def _writable_place(path: Path) -> None:
    """ArgumentTypeError unless folder `path` exists or can be made, and can be written."""
    probe = _folder_or_unmade(path)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {path}: {probe} is not writable")


def output_folder(text: str) -> Path:
    """argparse type: a folder for outputs that exists or can be made, and can be written."""
    path = _path_arg(text, "a folder")
    _writable_place(path)
    return path


def folder_path(text: str) -> Path:
    """argparse type: a folder that may exist (and be read-only) or not exist yet; not a file."""
    path = _path_arg(text, "a folder")
    _folder_or_unmade(path)
    return path


def output_file(text: str) -> Path:
    """argparse type: a file to write (its folder exists or can be made, and can be written)."""
    path = _path_arg(text, "a file path")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; expected a file path")
    _writable_place(path.parent)
    return path


SEED_MAX = 2 ** 32 - 1  # numpy's and torch's generators both take any seed in [0, 2^32)


def seed_value(text: str) -> int:
    """argparse type: a seed, a whole number in [0, 2^32)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number in [0, {SEED_MAX}], got {text!r}") from None
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a whole number in [0, {SEED_MAX}], got {v}")
    return v


def add_common_args(parser: argparse.ArgumentParser, problem: str, data: bool = True,
                    out_help: str = "results.json and figures") -> None:
    """Add --out (default results/<problem>/), --seed and, for scripts that read data, --data-dir."""
    parser.add_argument("--out", type=output_folder, default=Path("results") / problem,
                        help=f"output folder for {out_help} (default: results/{problem}/)")
    parser.add_argument("--seed", type=seed_value, default=0,
                        help=f"random seed in [0, {SEED_MAX}]; same seed, same numbers (default: 0)")
    if data:
        parser.add_argument("--data-dir", default=None,
                            help=f"data root (default: ${DATA_ENV}, else ./data)")


def seed_everything(seed: int) -> None:
    """Seed Python's and NumPy's global generators (torch seeds itself in problems that use it)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)


def portable_text(text: str, data_dir: str | None = None) -> str:
    """A message about the data root with the root written as DATA (for results files and reports)."""
    root = data_root(data_dir)
    for form in {str(root.resolve()), str(root)}:
        text = text.replace(f"{form}/", "DATA/").replace(form, "DATA")
    return text


def command_line() -> str:
    """The command line that started this process, for the results JSON; absolute paths in it are
    written as portable_path gives them (the repository's or the data root's files stay findable)."""
    args = sys.argv[1:]
    data_dir = next((v for f, v in zip(args, args[1:]) if f == "--data-dir"), None)
    data_dir = next((a.split("=", 1)[1] for a in args if a.startswith("--data-dir=")), data_dir)

    def portable(arg: str) -> str:
        flag, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        return flag + eq + portable_path(value, data_dir) if os.path.isabs(value) else arg
    argv = [portable_path(sys.argv[0])] + [portable(a) for a in args]
    return " ".join(shlex.quote(a) for a in argv)


def _whole_number(text: str, low: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {v}")
    return v


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _whole_number(text, 0)


MAX_THREADS = 256  # far above any core count here; torch's thread pool crashes on absurd counts (100,000)


def thread_count(text: str) -> int:
    """argparse type: a thread count, 1..MAX_THREADS."""
    v = positive_int(text)
    if v > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected a thread count from 1 to {MAX_THREADS}, got {v}")
    return v


def _number_arg(text: str, ok, expected: str) -> float:
    """A float parsed from `text` for which ok(v) holds, else ArgumentTypeError naming `expected`."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {v}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number_arg(text, lambda v: v > 0 and math.isfinite(v), "a finite number > 0")


def unit_interval(text: str) -> float:
    """argparse type: a number in [0, 1] (e.g. a momentum)."""
    return _number_arg(text, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def fraction_below_one(text: str) -> float:
    """argparse type: a number in [0, 1) (e.g. label smoothing)."""
    return _number_arg(text, lambda v: 0 <= v < 1, "a number in [0, 1)")


def run_main(main, argv=None) -> int:
    """Run `main(argv)`; turn UserError (and the scratchnet backend error) into one line + exit 2."""
    from scratchnet.backend import BackendError
    try:
        rc = main(argv)
    except (UserError, BackendError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system refused (a path turned unwritable, a full disk): one line too
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot read or write{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; checkpoints written so far are intact (rerun with --resume where offered)",
              file=sys.stderr)
        return 130
    return 0 if rc is None else rc
