"""Generated Oxford-IIIT Pet mini datasets for the P2 tests, with every defect the real archive has."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(seed, size=(40, 32)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def make_mini_pets(root, layout="pets"):
    """A 3-breed Pets folder with every real defect: PNG-in-.jpg, RGBA PNG, grayscale, CMYK, GIF,
    a truncated JPEG, a listed-but-missing file and an unlisted extra file. Returns the pets folder."""
    pets = root / layout
    (pets / "images").mkdir(parents=True)
    (pets / "annotations").mkdir()
    img = pets / "images"
    breeds = [("Abyssinian", 1, 1), ("Bengal", 2, 1), ("basset_hound", 3, 2)]
    trainval, test = [], []
    for b, (breed, cid, species) in enumerate(breeds):
        for n in range(1, 7):
            name = f"{breed}_{n}"
            Image.fromarray(photo(100 * b + n)).save(img / f"{name}.jpg", "JPEG", quality=90)
            (trainval if n <= 4 else test).append(f"{name} {cid} {species} {cid}")
    # defects, all with the .jpg suffix as in the real archive
    Image.fromarray(photo(1)).save(img / "Abyssinian_1.jpg", "PNG")                       # PNG-in-jpg (RGB)
    rgba = np.dstack([photo(2), np.full((32, 40), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(img / "Abyssinian_2.jpg", "PNG")                    # RGBA PNG
    Image.fromarray(photo(3)[..., 0], "L").save(img / "Bengal_1.jpg", "JPEG")             # grayscale
    Image.fromarray(photo(4)).convert("CMYK").save(img / "Bengal_2.jpg", "JPEG")           # CMYK JPEG
    Image.fromarray(photo(5)).convert("P").save(img / "basset_hound_1.jpg", "GIF")         # GIF-in-jpg
    buf = io.BytesIO()
    Image.fromarray(photo(6, (200, 160))).save(buf, "JPEG", quality=95)
    (img / "basset_hound_5.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])   # truncated
    (img / "basset_hound_6.jpg").unlink()                                                  # listed, missing
    Image.fromarray(photo(7)).save(img / "Bengal_99.jpg", "JPEG")                         # in no split
    (pets / "annotations" / "trainval.txt").write_text("\n".join(trainval) + "\n")
    (pets / "annotations" / "test.txt").write_text("# comment line\n" + "\n".join(test) + "\n\n")
    return pets
