"""A tiny Tiny-ImageNet in the distributed folder layout, for tests that must run its path offline:
``tiny-imagenet-200/wnids.txt`` (only the classes written), ``train/<wnid>/images/<wnid>_<i>.JPEG`` (with the
``<wnid>_boxes.txt`` the archive has beside them), ``val/images/val_<i>.JPEG`` and ``val/val_annotations.txt``
(file, class, box; tab-separated). Each class has its own colour and stripe direction plus noise, so that a few steps
can learn something; images are 64×64 RGB JPEGs, one of them grey-scale as a few real ones are."""
from __future__ import annotations

from pathlib import Path

import numpy as np

WNIDS = ("n01443537", "n01629819", "n01641577", "n01644900")  # real Tiny-ImageNet ids


def _image(rng, c: int):
    from PIL import Image

    rows, cols = np.mgrid[0:64, 0:64]
    colour = np.random.default_rng(c).integers(40, 216, 3)
    stripes = np.sin((rows if c % 2 else cols) * (1 + c) * np.pi / 32)[..., None] * 40
    pixels = np.clip(colour + stripes + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_tinyimagenet(root: str | Path, train_per_class: int = 4, val_per_class: int = 2, seed: int = 0) -> Path:
    """Write the set under ``root`` and return its folder (``root/tiny-imagenet-200``)."""
    folder = Path(root) / "tiny-imagenet-200"
    rng = np.random.default_rng(seed)
    (folder / "val" / "images").mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in WNIDS))
    annotations = []
    for c, wnid in enumerate(WNIDS):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True, exist_ok=True)
        for i in range(train_per_class):
            image = _image(rng, c)
            (image.convert("L") if c == 0 and i == 0 else image).save(images / f"{wnid}_{i}.JPEG", quality=90)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(val_per_class):
            name = f"val_{c * val_per_class + i}.JPEG"
            _image(rng, c).save(folder / "val" / "images" / name, quality=90)
            annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations))
    return folder
