"""Tiny CIFAR-10 / CIFAR-100 sets in torchvision's real on-disk format, for tests that must run the CIFAR path offline.

torchvision reads ``cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta`` and ``cifar-100-python/train,
test, meta``: pickled dicts of uint8 rows (3 × 32 × 32, channel-major) with their labels. It also checks every file
against the MD5 sums it ships (those of the real 170 MB archives), which files written here cannot match; so the
writer returns the sums of what it wrote, and :func:`use_checksums` swaps them into torchvision's dataset classes,
in this process (pytest's ``monkeypatch``) and, through a ``sitecustomize.py`` on ``PYTHONPATH``, in every Python
process started from it while the patch lasts (the kernels papermill starts for the lessons). Nothing in cropkit is
changed: its loader, its checksum check and its augmentation run exactly as they do on the real files.

The images are "random-ish": each class has its own mean colour and a coarse pattern, plus pixel noise, so a
network can learn something in a few steps, and the samples are shuffled so that any prefix (``limit``) holds
several classes.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np

SPECS = {  # name: (folder, train files, test files, meta file, meta key, label key, classes)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "label_names", "labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_label_names", "fine_labels", 100),
}
CLASSES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def _images(rng, labels: np.ndarray, classes: int) -> np.ndarray:
    """uint8 rows of 3 × 32 × 32 pixels: a per-class colour and stripe direction, plus noise."""
    colours = np.random.default_rng(classes).integers(40, 216, (classes, 3))
    rows, cols = np.mgrid[0:32, 0:32]
    out = np.empty((len(labels), 3, 32, 32), dtype=np.float64)
    for i, c in enumerate(labels):
        stripes = np.sin((rows if c % 2 else cols) * (1 + c % 5) * np.pi / 16) * 30
        out[i] = colours[c][:, None, None] + stripes + rng.normal(0, 25, (3, 32, 32))
    return np.clip(out, 0, 255).astype(np.uint8).reshape(len(labels), -1)


def write_cifar(root: str | Path, name: str = "cifar10", train_per_class: int = 24, test_per_class: int = 2,
                seed: int = 0) -> dict:
    """Write a tiny ``name`` set under ``root`` (as torchvision would extract it) and return the checksum
    attributes torchvision's class must have to accept it: ``{"train_list", "test_list", "meta"}``."""
    folder_name, train_files, test_files, meta_file, meta_key, label_key, classes = SPECS[name]
    folder = Path(root) / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def write(fname: str, content: dict) -> list[str]:
        (folder / fname).write_bytes(pickle.dumps(content))
        return [fname, hashlib.md5((folder / fname).read_bytes()).hexdigest()]

    lists = {}
    for attr, files, per_class in (("train_list", train_files, train_per_class),
                                   ("test_list", test_files, test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(classes), per_class))
        parts = np.array_split(labels, len(files))
        lists[attr] = [write(f, {"data": _images(rng, part, classes), label_key: part.tolist()})
                       for f, part in zip(files, parts)]
    meta_name, meta_md5 = write(meta_file, {meta_key: [f"class{i}" for i in range(classes)]})
    lists["meta"] = {"filename": meta_name, "key": meta_key, "md5": meta_md5}
    return lists


SITECUSTOMIZE = '''"""Written by tests/cifar_files.py: torchvision accepts the tiny CIFAR files of this test session."""
import torchvision.datasets

for _name, _attrs in {checksums!r}.items():
    for _attr, _value in _attrs.items():
        setattr(getattr(torchvision.datasets, _name), _attr, _value)
'''


def use_checksums(monkeypatch, checksums: dict[str, dict], hook_dir: str | Path) -> None:
    """Make torchvision accept the written files: ``checksums`` is ``{"cifar10": write_cifar(...), ...}``. Patches
    this process and, through ``hook_dir/sitecustomize.py`` prepended to ``PYTHONPATH``, its child processes."""
    import torchvision

    by_class = {CLASSES[name]: attrs for name, attrs in checksums.items()}
    for cls, attrs in by_class.items():
        for attr, value in attrs.items():
            monkeypatch.setattr(getattr(torchvision.datasets, cls), attr, value)
    hook_dir = Path(hook_dir)
    hook_dir.mkdir(parents=True, exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE.format(checksums=by_class))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(hook_dir), os.environ.get("PYTHONPATH")) if p))
