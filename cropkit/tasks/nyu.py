"""NYU Depth v2, the labeled set (Silberman et al. 2012): the paper's depth-estimation data (Rachwan et al. 2022,
§4.4, with Laina et al.'s FCRN, `cropkit.tasks.fcrn`). 1449 indoor RGB frames of 640×480 with a depth map each (metres).

    <data root>/nyu_depth_v2/nyu_depth_v2_labeled.mat   the labeled set (2.8 GB), MATLAB v7.3, i.e. an HDF5 file
    <data root>/nyu_depth_v2/splits.mat                 optional: the official split (MATLAB v5)

The file is read with h5py. MATLAB stores arrays column-major, so h5py sees every dimension reversed: ``images``,
480×640×3×1449 (H×W×C×N) in MATLAB, reads as (N, 3, 640, 480) = (N, C, W, H), and ``depths``, 480×640×1449, as
(N, 640, 480); both are transposed here to (N, C, H, W) and (N, 1, H, W). Frames are read in chunks and resized
bilinearly (with antialiasing) to Laina et al.'s 228×304 (``SIZE``; the same 4:3 aspect as 480×640), so the
whole file is never in memory at once.

**The split.** ``splits.mat`` (Silberman et al.'s, also used by Eigen et al. 2014 and Laina et al.) holds the 1-based
indices ``trainNdxs`` (795 frames) and ``testNdxs`` (654 frames), which keep the scenes apart. Without it the first
795 frames train and the last 654 test — a contiguous cut with the official sizes, chosen so that no test frame sits
between two training frames of the same recording; it is *not* the official split, and a warning says so and where
to get the file. (For a file of another length, the same fraction, 795/1449, trains.)

Inputs are standardised per channel with the training frames' statistics; targets stay in metres, so the RMSE
(`cropkit.tasks.task.REGRESSION`) is in metres as in the paper's figure. No augmentation (Laina et al. scale, rotate,
crop, flip and colour-jitter). Nothing is downloaded: a missing file raises a one-line ``FileNotFoundError``.
"""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from torch.nn import functional as F

from cropkit.tasks.loaders import tensor_loaders

FOLDER = "nyu_depth_v2"
FILE, SPLITS = "nyu_depth_v2_labeled.mat", "splits.mat"
URL = "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
SPLITS_URL = "http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat"
SIZE = (228, 304)          # H, W: Laina et al.'s input
OFFICIAL = (795, 654)      # train, test frames of the official split
CHUNK = 64                 # frames read and resized at a time


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def read_frames(path: Path, size=SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """All frames of the labeled file: images (N, 3, H, W) float in [0, 1] and depths (N, 1, H, W) in metres, at
    ``size``."""
    import h5py

    with h5py.File(path, "r") as f:
        if "images" not in f or "depths" not in f:
            raise ValueError(f"{path} has no 'images' and 'depths' datasets (it holds {sorted(f)}); is it NYU Depth "
                             f"v2's labeled set {FILE}?")
        images, depths = f["images"], f["depths"]                  # (N, 3, W, H) uint8, (N, W, H) float
        if images.ndim != 4 or images.shape[1] != 3 or depths.shape != (images.shape[0], *images.shape[2:]):
            raise ValueError(f"{path}: images {images.shape} and depths {depths.shape} are not the labeled set's "
                             f"(N, 3, 640, 480) and (N, 640, 480) (MATLAB's H×W×3×N and H×W×N, read reversed)")
        x, y = [], []
        for start in range(0, images.shape[0], CHUNK):
            rgb = torch.from_numpy(images[start:start + CHUNK]).transpose(2, 3).float() / 255    # (n, 3, H, W)
            depth = torch.from_numpy(depths[start:start + CHUNK]).transpose(1, 2)[:, None].float()  # (n, 1, H, W)
            x.append(_resize(rgb, size))
            y.append(_resize(depth, size))
    return torch.cat(x), torch.cat(y)


def split(folder: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, test indices): ``splits.mat``'s, else the first 795/1449 of the frames and the rest."""
    if (folder / SPLITS).is_file():
        from scipy.io import loadmat

        ndx = loadmat(folder / SPLITS)
        train, test = (torch.as_tensor(ndx[k].reshape(-1).astype("int64")) - 1 for k in ("trainNdxs", "testNdxs"))
        if min(train.min(), test.min()) < 0 or max(train.max(), test.max()) >= n:
            raise ValueError(f"{folder / SPLITS} indexes frames 1 … {int(max(train.max(), test.max())) + 1}, but "
                             f"{folder / FILE} has {n}")
        return train, test
    cut = round(n * OFFICIAL[0] / sum(OFFICIAL))
    warnings.warn(f"nyudepth: no {SPLITS} in {folder}: training on the first {cut} frames and testing on the last "
                  f"{n - cut}, not the official scene split; get it from {SPLITS_URL}", stacklevel=3)
    return torch.arange(cut), torch.arange(cut, n)


@functools.lru_cache(maxsize=1)
def tensors(root: str, size: tuple[int, int] = SIZE) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test) at ``size``, inputs standardised with the training frames' channel
    statistics, depths in metres (cached in memory: treat as read-only)."""
    folder = Path(root) / FOLDER
    if not (folder / FILE).is_file():
        raise FileNotFoundError(
            f"nyudepth: {folder / FILE} not found; download {URL} (2.8 GB) and {SPLITS_URL} (the official split) "
            f"into {folder}/ (nothing is downloaded for you)")
    images, depths = read_frames(folder / FILE, size)
    train, test = split(folder, len(images))
    mean = images[train].mean((0, 2, 3), keepdim=True)
    std = images[train].std((0, 2, 3), keepdim=True).clamp_min(1e-6)
    images = (images - mean) / std
    return images[train], depths[train], images[test], depths[test]


def loader(batch_size, seed, limit, *, root, loading, **_):
    """`cropkit.tasks.data`'s loader for ``nyudepth``: the first ``limit`` training frames (None: all), the test set
    whole."""

    x_train, y_train, x_test, y_test = tensors(str(root), SIZE)
    return (tensor_loaders(x_train[:limit], y_train[:limit], x_test, y_test, batch_size, seed, **loading),
            (3, *SIZE), 1)
