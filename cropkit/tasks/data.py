"""Datasets as DataLoaders with fixed, seeded splits.

| name        | source                                              | input shape |
|-------------|-----------------------------------------------------|-------------|
| digits      | scikit-learn's bundled 8×8 digits (1797), 80/20     | (1, 8, 8)   |
| mnist1d     | PyPI ``mnist1d``, generated locally (4000 + 1000)   | (1, 40)     |
| mnist1d-large | the same generator, 20 000 samples (16000 + 4000) | (1, 40)     |
| cifar10/100 | torchvision, stored under ``root``                  | (3, 32, 32) |
| synthetic   | random tensors of any shape, for timing only        | as asked    |
| depth       | rendered scenes → per-pixel depth (regression), `cropkit.tasks.domains` | (3, 32, 32) |
| pydoc       | Python's own help texts, next-word prediction (language), `cropkit.tasks.domains` | (T,) tokens |
| cartpole    | CartPole-v1 (`acrobot`, `lunarlander`: Acrobot-v1, LunarLander-v3): episodes, control | (4,) (6,) (8,) |
| tinyimagenet | Tiny-ImageNet's distributed folders under ``root`` (`cropkit.tasks.tinyimagenet`) | (3, 64, 64) |
| nyudepth    | NYU Depth v2's labeled .mat under ``root`` → depth (regression, `cropkit.tasks.nyu`) | (3, 228, 304) |
| ptb         | the word-level Penn Treebank files under ``root`` (language, `cropkit.tasks.ptb`) | (80,) tokens |

Every dataset carries its task (`cropkit.tasks.task`: the loss and the metric): classification unless the loader says
otherwise. A loader may return a ready :class:`Data` (with its task and, when the training set is no Dataset, a
``scoring_batches`` hook); the others return their loaders and shapes and `load` builds the ``Data``.

**Feeding a GPU.** ``num_workers`` worker processes load (and augment) batches beside the training process, and
``pin_memory`` page-locks them so that the trainer's ``.to(device, non_blocking=True)`` copies asynchronously.
The defaults (0 workers, no pinning) suit the small CPU datasets; workers persist across epochs and are seeded
from the loader's seeded generator, so a run repeats. With random augmentation (CIFAR) the workers draw their own
random streams: the batches, hence the results, differ between worker counts (``num_workers`` is in the cache key).
The order of the samples never depends on the workers (the sampler runs in the training process).

The train/test split of ``digits`` is fixed (split seed 0) whatever ``seed`` is, so runs with different seeds
are evaluated on the same test set; ``seed`` drives the shuffling of the training loader.
Nothing is ever substituted: a CIFAR set that cannot be found or downloaded raises an error that says how to
get it, a CIFAR file that fails its checksum or a foreign ``mnist1d.npz`` raises an error that names the file.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cropkit.paths import data_root
from cropkit.tasks import control, domains, nyu, ptb, tinyimagenet
from cropkit.tasks.loaders import loader_pair, tensor_loaders
from cropkit.tasks.task import CLASSIFICATION, LANGUAGE, REGRESSION, Data, Task

SPLIT_SEED = 0  # fixed: the test set does not move with the run's seed

# per-channel statistics for CIFAR normalisation (the usual values)
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def take(loader, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` batches of a loader, as a list (scoring batches)."""
    if n < 1:
        raise ValueError(f"take needs n >= 1 batches; got {n}")
    batches = list(itertools.islice(iter(loader), n))
    if not batches:
        raise ValueError("the loader yielded no batches")
    return batches


def _standardise(x_train: torch.Tensor, x_test: torch.Tensor):
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, (x_test - mean) / std


def _subset(x, y, n):
    return (x, y) if n is None else (x[:n], y[:n])


def _digits(batch_size, seed, limit, *, loading, **_):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)  # (1797, 1, 8, 8)
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_train = int(0.8 * len(x))
    train, test = order[:n_train], order[n_train:]
    x_train, x_test = _standardise(x[train], x[test])
    x_train, y_train = _subset(x_train, y[train], limit)
    return tensor_loaders(x_train, y_train, x_test, y[test], batch_size, seed, **loading), (1, 8, 8), 10


# Samples generated for each MNIST-1D variant (80 % train, 20 % test, mnist1d's own fixed split). "mnist1d" is the
# canonical set of the mnist1d paper; "mnist1d-large" is the same generator with more samples, so that a small
# network is still learning when the EarlyCroP detector fires (the lessons' cpu setting, issue 11).
MNIST1D_SIZES = {"mnist1d": 5000, "mnist1d-large": 20000}


def _mnist1d_shapes(num_samples: int) -> dict[str, tuple[int, ...]]:
    """The arrays mnist1d's generator makes for ``num_samples`` samples (its own 80/20 train/test split)."""
    train = int(num_samples * 0.8)
    return {"x": (train, 40), "y": (train,), "x_test": (num_samples - train, 40), "y_test": (num_samples - train,)}


def _read_mnist1d(cache: Path, num_samples: int) -> dict:
    """The arrays of a cached MNIST-1D file, checked: the four arrays of MNIST-1D's shapes and types, or a
    ``ValueError`` naming the file and how to fix it (a foreign or damaged file is never trained on)."""
    shapes = _mnist1d_shapes(num_samples)
    fix = f"delete {cache} and it will be generated again"
    try:
        with np.load(cache, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as err:  # zipfile.BadZipFile, pickled objects, truncated data ...
        raise ValueError(f"{cache} is not a readable MNIST-1D cache ({type(err).__name__}: {err}); {fix}") from None
    if set(arrays) != set(shapes):
        raise ValueError(f"{cache} holds the arrays {sorted(arrays)}, not MNIST-1D's {sorted(shapes)}; {fix}")
    for key, shape in shapes.items():
        a = arrays[key]
        kind = np.integer if key.startswith("y") else np.floating
        if a.shape != shape or not np.issubdtype(a.dtype, kind):
            raise ValueError(f"{cache}: {key!r} has shape {a.shape} and dtype {a.dtype}; MNIST-1D's is {shape}, "
                             f"{kind.__name__}; {fix}")
        if kind is np.integer and (a.min() < 0 or a.max() > 9):
            raise ValueError(f"{cache}: labels {key!r} run from {a.min()} to {a.max()}, not 0..9; {fix}")
        if kind is np.floating and not np.isfinite(a).all():
            raise ValueError(f"{cache}: {key!r} contains values that are not finite numbers; {fix}")
    return arrays


def _mnist1d_arrays(root, num_samples: int = 5000) -> dict:
    """MNIST-1D arrays, generated locally (never downloaded) with mnist1d's default arguments (seed 42) and
    ``num_samples`` samples; cached in ``root/mnist1d.npz`` (the canonical 5000) or ``root/mnist1d-<n>.npz``."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 100:
        raise ValueError(f"num_samples must be an integer >= 100; got {num_samples!r}")
    cache = Path(root) / ("mnist1d.npz" if num_samples == 5000 else f"mnist1d-{num_samples}.npz")
    if cache.exists():
        return _read_mnist1d(cache, num_samples)
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()  # mnist1d's defaults (seed 42): the dataset of the mnist1d paper
    args.num_samples = num_samples
    d = {k: np.asarray(d_k) for k, d_k in make_dataset(args).items() if k in ("x", "y", "x_test", "y_test")}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **d)
    except OSError:
        pass  # a read-only root only costs the regeneration next time
    return d


def _mnist1d(batch_size, seed, limit, *, name, root, loading, **_):
    d = _mnist1d_arrays(root, MNIST1D_SIZES[name])
    x_train = torch.tensor(d["x"], dtype=torch.float32).unsqueeze(1)  # (4000, 1, 40) for "mnist1d"
    x_test = torch.tensor(d["x_test"], dtype=torch.float32).unsqueeze(1)  # (1000, 1, 40)
    x_train, x_test = _standardise(x_train, x_test)
    x_train, y_train = _subset(x_train, torch.tensor(d["y"], dtype=torch.long), limit)
    y_test = torch.tensor(d["y_test"], dtype=torch.long)
    return tensor_loaders(x_train, y_train, x_test, y_test, batch_size, seed, **loading), (1, 40), 10


def _check_cifar_files(cls, folder: Path, name: str) -> None:
    """Files of the CIFAR set that are present but fail torchvision's MD5 checksum: a ``ValueError`` naming them
    (a damaged set is not a missing one, and downloading again over it is not the fix to suggest first)."""
    from torchvision.datasets.utils import check_integrity

    files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    corrupt = [f for f, md5 in files if (folder / f).exists() and not check_integrity(str(folder / f), md5)]
    if corrupt:
        raise ValueError(f"{name}: {', '.join(str(folder / f) for f in corrupt)} failed the MD5 checksum (damaged "
                         f"or not the original file). Delete {folder} and load {name!r} again to download it "
                         f"afresh, or extract {cls.filename} into {folder.parent}/ again.")


def _cifar(batch_size, seed, limit, *, name, root, download, loading, **_):
    import torchvision
    from torchvision import transforms

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    mean, std = CIFAR_STATS[name]
    normalise = transforms.Normalize(mean, std)
    train_tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), normalise])
    test_tf = transforms.Compose([transforms.ToTensor(), normalise])
    folder = Path(root) / cls.base_folder
    _check_cifar_files(cls, folder, name)
    try:
        train = cls(root, train=True, transform=train_tf, download=download)
        test = cls(root, train=False, transform=test_tf, download=False)
    except Exception as err:  # RuntimeError "not found or corrupted", URLError, socket errors ...
        raise FileNotFoundError(
            f"{name} is not available under {folder} and could not be downloaded ({type(err).__name__}: {err}). "
            f"On a machine with internet, run "
            f"`python -c \"import cropkit; cropkit.data.load('{name}', root='{root}')\"` "
            f"once, or download {cls.url} , extract it into {root}/ so that {folder}/ exists, and try again. "
            f"For an offline run use data='digits' or data='mnist1d' explicitly.") from err
    if limit is not None:
        train = torch.utils.data.Subset(train, range(min(limit, len(train))))
    return loader_pair(train, test, batch_size, seed, **loading), (3, 32, 32), len(test.classes)


def _synthetic(batch_size, seed, limit, *, shape, num_classes, size, loading, **_):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size, *shape, generator=g)
    y = torch.randint(0, num_classes, (size,), generator=g)
    test = max(1, size // 4)
    return (tensor_loaders(x[:limit], y[:limit], x[:test], y[:test], batch_size, seed, **loading), tuple(shape),
            num_classes)


def _domain(tensors: Callable) -> Callable:
    """A loader over `cropkit.tasks.domains`' tensors (depth, pydoc), built like every other dataset's."""
    def load(batch_size, seed, limit, *, loading, **_):
        (x_train, y_train, x_test, y_test), shape, outputs = tensors(limit)
        return tensor_loaders(x_train, y_train, x_test, y_test, batch_size, seed, **loading), shape, outputs
    return load


def _control(batch_size, seed, limit, *, name, **_):
    """CartPole-v1 / Acrobot-v1 (`cropkit.tasks.control`): ``batch_size`` episodes per epoch, ``limit`` caps their
    steps."""

    return control.load_control(name, batch_size=batch_size, seed=seed, limit=limit)


# The inputs and classes of the image sets torchvision's classifiers take, known before loading: a structured method
# traces its model at this shape when the run is asked for (`cropkit.experiments.runs`); a test checks them.
IMAGE_SHAPES = {"digits": ((1, 8, 8), 10), "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100),
                "tinyimagenet": ((3, 64, 64), 200)}

LOADERS = {"digits": _digits, "mnist1d": _mnist1d, "mnist1d-large": _mnist1d, "cifar10": _cifar, "cifar100": _cifar,
           "synthetic": _synthetic, "depth": _domain(domains.depth_tensors), "pydoc": _domain(domains.pydoc_tensors),
           "cartpole": _control, "acrobot": _control, "lunarlander": _control,
           "tinyimagenet": tinyimagenet.loader, "ptb": ptb.loader, "nyudepth": nyu.loader}


def load(name: str, root: str | Path | None = None, batch_size: int = 128, seed: int = 0, *, limit: int | None = None,
         download: bool = True, shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10,
         size: int = 512, num_workers: int = 0, pin_memory: bool | None = False) -> Data:
    """Load a dataset by name.

    root       where datasets are stored; None = `cropkit.paths.data_root()` (``$CROPKIT_DATA``, the checkout's
               ``data/``, or a per-user cache folder), whatever the working directory
    limit      keep only the first ``limit`` training samples (smoke runs); the test set is never cut
    download   CIFAR only: try to download into ``root`` when the files are missing
    shape, num_classes, size   synthetic only
    num_workers  loader worker processes (persistent, seeded); 0 = load in this process
    pin_memory   page-locked batches for fast copies to a GPU; None = when CUDA is available
    """
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(LOADERS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be None or >= 1; got {limit}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an integer >= 0 (0: load in this process); got {num_workers!r}")
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if root is None:
        root = data_root()
    loaded = LOADERS[name](batch_size, seed, limit, name=name, root=root, download=download, shape=shape,
                           num_classes=num_classes, size=size,
                           loading=dict(num_workers=num_workers, pin_memory=bool(pin_memory)))
    if isinstance(loaded, Data):
        return loaded
    (train, test), input_shape, classes = loaded
    return Data(name, train, test, input_shape, classes, task=of_data(name))


# ----------------------------------------------------------------------------- which task a dataset is for

TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFICATION, REGRESSION, LANGUAGE)}
DATA_TASKS: dict[str, str] = {"depth": "regression", "pydoc": "language",   # every other dataset: classification
                              "cartpole": "control", "acrobot": "control", "lunarlander": "control",
                              "ptb": "language", "nyudepth": "regression"}


def of_data(name: str) -> Task:
    """The task of dataset ``name``."""
    task = DATA_TASKS.get(name, "classification")
    return control.TASK if task == "control" else TASKS[task]
