"""Oxford-IIIT Pet in its official layout, read robustly: split files, class names, defective images.

Layout (as the official archive and torchvision's `OxfordIIITPet` store it)::

    <root>/images/<Breed>_<n>.jpg
    <root>/annotations/trainval.txt   lines "Abyssinian_100 1 1 1": name, class id 1-37, species, breed id
    <root>/annotations/test.txt

`<root>` is `<data root>/pets`, `<data root>/oxford-iiit-pet`, or the data root itself.
Class names come from the file names (the breed is the name without its trailing `_<n>`).

The real data has defects, and this module never crashes on them:
- files listed in a split file but absent on disk are excluded and counted per split and per breed;
- `.jpg` files that hold PNG or GIF data, or RGBA / palette / grayscale / CMYK / 16-bit pixels, are
  converted to 8-bit RGB (`open_rgb`), and counted;
- files that cannot be decoded (truncated, corrupt) raise `BadImage`, which callers turn into a counted
  skip with a warning.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from problems.common.cli import UserError
from problems.common.downloads import obtainable

SPLITS = ("trainval", "test")
ROOT_NAMES = ("pets", "oxford-iiit-pet")


class BadImage(Exception):
    """An image file that cannot be decoded (truncated, corrupt, not an image)."""


@dataclass
class PetsSplit:
    """One split's images that exist on disk: `paths[i]` has 0-based class `labels[i]`."""
    name: str
    names: list[str]
    paths: list[Path]
    labels: np.ndarray                          # (N,) int64, 0..n_classes-1
    missing: list[str] = field(default_factory=list)   # listed in the split file, absent on disk
    n_listed: int = 0

    def __len__(self):
        return len(self.paths)

    def subset(self, keep: np.ndarray) -> "PetsSplit":
        """The images where boolean `keep` is True (e.g. after dropping undecodable files)."""
        idx = np.flatnonzero(keep)
        return PetsSplit(self.name, [self.names[i] for i in idx], [self.paths[i] for i in idx],
                         self.labels[idx], list(self.missing), self.n_listed)


@dataclass
class PetsDataset:
    root: Path
    class_names: list[str]                      # index = class id - 1
    splits: dict[str, PetsSplit]
    unlisted: list[str]                         # image files present on disk but in no split file

    def missing_report(self) -> dict:
        """{split: {"missing": n, "listed": n, "present": n, "per_breed": {breed: n_missing}}}."""
        out = {}
        for s, sp in self.splits.items():
            per_breed = Counter(breed_of(n) for n in sp.missing)
            out[s] = {"listed": sp.n_listed, "present": len(sp), "missing": len(sp.missing),
                      "per_breed": {b: per_breed[b] for b in self.class_names if per_breed[b]}}
        return out


def breed_of(image_name: str) -> str:
    """'american_pit_bull_terrier_100' -> 'american_pit_bull_terrier' (drop the trailing _<n>)."""
    stem, sep, num = image_name.rpartition("_")
    if not sep or not num.isdigit():
        raise UserError(f"pets image name {image_name!r} does not end in _<number>; "
                        "expected names like 'Abyssinian_100'")
    return stem


def find_pets_root(data_root: Path) -> Path:
    """The folder holding `images/` and `annotations/` under the data root; UserError if none."""
    data_root = Path(data_root)
    candidates = [data_root / n for n in ROOT_NAMES] + [data_root]
    for c in candidates:
        if (c / "annotations" / "trainval.txt").is_file() and (c / "images").is_dir():
            return c
    raise UserError(f"{_missing(data_root)}; set --data-dir or $SCRATCHNET_DATA")


def _missing(data_root: Path) -> str:
    return (f"Oxford-IIIT Pet not found under {data_root}: expected {data_root}/pets/ (or oxford-iiit-pet/) "
            "with images/ and annotations/trainval.txt, test.txt")


def have_pets(data_root: Path) -> bool:
    try:
        find_pets_root(data_root)
        return True
    except UserError:
        return False


def pets_obtainable(data_root: Path, download: bool = True) -> str | None:
    """None if Oxford-IIIT Pet is under the data root or can be downloaded now; else why not (one line)."""
    return obtainable(have_pets(data_root), "pets", _missing(data_root), download)


def download_pets(data_root: Path) -> Path:
    """Fetch the official archive with torchvision's `OxfordIIITPet` into `<data root>/oxford-iiit-pet/`
    (needs the network); UserError with one line when that fails. Returns the pets folder."""
    try:
        from torchvision.datasets import OxfordIIITPet
        OxfordIIITPet(root=str(data_root), split="trainval", download=True)
    except Exception as e:  # URLError, HTTPError, socket errors, bad archive ...
        raise UserError(f"cannot download Oxford-IIIT Pet into {data_root} ({type(e).__name__}: {str(e)[:80]}); "
                        "put the official layout under <data root>/pets/ instead") from None
    return find_pets_root(data_root)


def parse_split_file(path: Path) -> list[tuple[str, int]]:
    """Lines 'name class_id species breed_id' -> [(name, class_id 1-based)]; '#' lines and blanks skipped."""
    entries = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"split file {path} is not UTF-8 text; expected lines 'Name_123 <class id> <species> "
                        "<breed id>'") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            name, class_id = parts[0], int(parts[1])
        except (IndexError, ValueError):
            raise UserError(f"{path}:{lineno}: bad line {line!r}; expected 'Name_123 <class id> "
                            "<species> <breed id>'") from None
        entries.append((name, class_id))
    return entries


def load_pets(data_root: Path, splits=SPLITS, warn: bool = True) -> PetsDataset:
    """Read the split files under `data_root`, keep listed images that exist, and report the rest.

    Class names are taken from the image names of all split files together, indexed by class id, so
    a breed missing from one split still gets its name. Missing files warn once per split.
    """
    root = find_pets_root(data_root)
    parsed = {}
    for s in splits:
        f = root / "annotations" / f"{s}.txt"
        if not f.is_file():
            raise UserError(f"split file {f} not found; expected annotations/{s}.txt in the official layout")
        parsed[s] = parse_split_file(f)

    names_by_id: dict[int, str] = {}
    for s, entries in parsed.items():
        for name, cid in entries:
            breed = breed_of(name)
            if names_by_id.setdefault(cid, breed) != breed:
                raise UserError(f"class id {cid} names two breeds ({names_by_id[cid]!r} and {breed!r}) "
                                f"in {root}/annotations; expected one breed per class id")
    ids = sorted(names_by_id)
    if ids != list(range(1, len(ids) + 1)):
        raise UserError(f"class ids in {root}/annotations are {ids[:3]}...{ids[-3:]}; expected 1..K without gaps")
    class_names = [names_by_id[i] for i in ids]

    images_dir = root / "images"
    on_disk = {p.stem: p for p in images_dir.iterdir() if p.suffix.lower() == ".jpg"}
    listed = set()
    out = {}
    for s, entries in parsed.items():
        names, paths, labels, missing = [], [], [], []
        for name, cid in entries:
            listed.add(name)
            p = on_disk.get(name)
            if p is None:
                missing.append(name)
                continue
            names.append(name)
            paths.append(p)
            labels.append(cid - 1)
        out[s] = PetsSplit(s, names, paths, np.asarray(labels, dtype=np.int64), missing, len(entries))
        if missing and warn:
            warnings.warn(f"pets {s}: {len(missing)} of {len(entries)} listed images are absent on disk "
                          f"and excluded ({len(set(map(breed_of, missing)))} breeds affected)", stacklevel=2)
    unlisted = sorted(n for n in on_disk if n not in listed)
    return PetsDataset(root, class_names, out, unlisted)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB. Transparent pixels are laid over mid-grey, not black, so a cut-out pet
    does not sit on an unnatural black background; 16-bit / float grayscale is rescaled to 0..255."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.round().astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")   # L, 1, P, CMYK, YCbCr, LAB, HSV


def open_rgb(path: Path) -> tuple[Image.Image, str | None]:
    """Decode `path` fully into an 8-bit RGB image.

    Returns (image, note): note is None for a plain RGB JPEG, else what was converted, e.g.
    'PNG-in-.jpg RGBA'. Raises BadImage for files that cannot be decoded (truncated or corrupt).
    """
    strict = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # weasyprint sets it True for the whole process on import
    try:
        with Image.open(path) as im:
            fmt, mode = im.format, im.mode
            im.seek(0)          # first frame of a GIF
            im.load()           # truncated JPEGs fail here, not at open()
            rgb = _to_rgb(im)
            if rgb is im:
                rgb = im.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImage(f"{Path(path).name}: {type(e).__name__}: {e}") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = strict
    notes = []
    if fmt != "JPEG" and Path(path).suffix.lower() in (".jpg", ".jpeg"):
        notes.append(f"{fmt}-in-.jpg")
    if mode != "RGB":
        notes.append(mode)
    return rgb, (" ".join(notes) or None)


@dataclass
class ImageReadLog:
    """Counts of conversions and skips made while reading images, for the results JSON."""
    converted: Counter = field(default_factory=Counter)     # note -> count
    converted_files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)        # "name: reason"

    def read(self, path: Path):
        """open_rgb(path) that records the outcome; returns None for an undecodable file (skipped_line
        reports them all at once)."""
        try:
            img, note = open_rgb(path)
        except BadImage as e:
            self.skipped.append(str(e))
            return None
        if note:
            self.converted[note] += 1
            self.converted_files.append(f"{Path(path).name}: {note}")
        return img

    def skipped_line(self, what: str, shown: int = 3) -> str | None:
        """One line naming the undecodable files (the first `shown` of them), or None when there were none."""
        if not self.skipped:
            return None
        names = [s.split(":", 1)[0] for s in self.skipped]
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return (f"warning: {what}: skipped {len(names)} undecodable image(s): {', '.join(names[:shown])}{more} "
                "(all listed in the results JSON)")

    def summary(self) -> dict:
        return {"converted": dict(self.converted), "converted_files": self.converted_files,
                "n_converted": sum(self.converted.values()), "skipped": self.skipped,
                "n_skipped": len(self.skipped)}
