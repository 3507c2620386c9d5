"""Tiny-ImageNet (Le & Yang 2015; the paper's fourth image table, ResNet18, Rachwan et al. 2022): 200 ImageNet
classes, 64×64 RGB, 500 training and 50 validation images per class, read from the folder layout it is distributed in:

    <data root>/tiny-imagenet-200/wnids.txt                      one class id (WordNet id) per line
    <data root>/tiny-imagenet-200/train/<wnid>/images/*.JPEG     the training images of class <wnid>
    <data root>/tiny-imagenet-200/val/images/*.JPEG              the validation images ...
    <data root>/tiny-imagenet-200/val/val_annotations.txt        ... and their classes: file <TAB> wnid <TAB> box

The labelled validation set is the test set (the distributed ``test/`` folder has no labels). Classes are the ids of
``wnids.txt``, sorted (label i = the i-th id in sorted order, as torchvision's ``ImageFolder`` numbers them). Nothing is
downloaded: a missing set raises a one-line ``FileNotFoundError`` that says where to put it and where to get it.

Augmentation as for CIFAR (`cropkit.tasks.data`): a random 64×64 crop of the image padded by 8 pixels (the fraction of
CIFAR's 4 of 32), a random horizontal flip, and normalisation with the ImageNet channel statistics (Tiny-ImageNet is
drawn from ImageNet); test images are only normalised. The EarlyCroP reference code instead upsampled Tiny-ImageNet
to 224×224 (``RandomResizedCrop(224)``; test: resize 256, centre crop 224) and read ``val/`` as class folders, a
layout the distributed archive does not have; the kit keeps the native 64×64, which the zoo's CIFAR-form ResNet18
(3×3 stem, global pooling) takes as it is.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from cropkit.tasks.loaders import loader_pair

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
SIZE = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's channel statistics


class Images(Dataset):
    """(image path, label) pairs, decoded and transformed on access."""

    def __init__(self, samples: list[tuple[Path, int]], transform):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), label  # a few images are grey-scale: RGB for all


def _missing(root: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"tinyimagenet: {what} under {root / FOLDER}; download {URL} (240 MB) on a machine with internet and unzip it "
        f"into {root}/ so that {root / FOLDER}/wnids.txt exists (nothing is downloaded for you)")


def samples(root: str | Path) -> tuple[list, list, list[str]]:
    """(train samples, test samples, class ids) of the set under ``root``: samples are (path, label) pairs."""
    root = Path(root)
    folder = root / FOLDER
    if not (folder / "wnids.txt").is_file():
        raise _missing(root, "no wnids.txt")
    wnids = sorted({line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip()})
    label = {w: i for i, w in enumerate(wnids)}
    train = [(p, label[w]) for w in wnids for p in sorted((folder / "train" / w / "images").glob("*.JPEG"))]
    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise _missing(root, "no val/val_annotations.txt")
    test = []
    for line in annotations.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1] in label:
            test.append((folder / "val" / "images" / fields[0], label[fields[1]]))
    if not train:
        raise _missing(root, "no training images (train/<wnid>/images/*.JPEG)")
    if not test:
        raise _missing(root, "no validation image of a listed class (val/val_annotations.txt)")
    return train, test, wnids


def transforms() -> tuple:
    """(training transform, test transform)."""
    from torchvision import transforms as T

    normalise = T.Normalize(MEAN, STD)
    train = T.Compose([T.RandomCrop(SIZE, padding=8), T.RandomHorizontalFlip(), T.ToTensor(), normalise])
    return train, T.Compose([T.ToTensor(), normalise])


def loader(batch_size, seed, limit, *, root, loading, **_):
    """`cropkit.tasks.data`'s loader for ``tinyimagenet``: the first ``limit`` training images (in class order, then
    file order) when given; the test set whole."""

    train, test, wnids = samples(root)
    train_tf, test_tf = transforms()
    if limit is not None:  # a prefix in class order would hold one class: take every k-th image instead
        train = train[:: max(1, len(train) // limit)][:limit]
    return (loader_pair(Images(train, train_tf), Images(test, test_tf), batch_size, seed, **loading),
            (3, SIZE, SIZE), len(wnids))
