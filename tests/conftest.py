"""Shared fixtures. Notebooks are executed once per session and their JSON shared by every test that checks it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny smoke models run faster on one thread than on two on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory) -> Path:
    """Where smoke-profile notebook outputs go. Set CROPKIT_TEST_OUTPUT to keep them (CI keeps them in outputs/)."""
    keep = os.environ.get("CROPKIT_TEST_OUTPUT")
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("smoke")


@pytest.fixture(scope="session")
def run_notebook(smoke_dir):
    """run_notebook("02_rich_to_lazy") → the JSON that notebook wrote under the smoke profile (executed once)."""
    from cropkit.lessons import notebook

    cache: dict[str, dict] = {}

    def run(stem: str) -> dict:
        if stem not in cache:
            path = ROOT / "notebooks" / f"{stem}.ipynb"
            cache[stem] = notebook.execute(path, profile="smoke", output_dir=smoke_dir)
        return cache[stem]

    return run


@pytest.fixture(scope="session")
def cifar_files(tmp_path_factory) -> tuple[Path, dict]:
    """A data root holding tiny CIFAR-10 and CIFAR-100 sets in torchvision's on-disk format (`cifar_files.py`),
    written once per session, and the checksums torchvision must be given to accept them."""
    from cifar_files import write_cifar

    root = tmp_path_factory.mktemp("cifar-data")
    return root, {"cifar10": write_cifar(root, "cifar10"),
                  "cifar100": write_cifar(root, "cifar100", train_per_class=2, test_per_class=1)}


@pytest.fixture
def cifar_root(cifar_files, monkeypatch, tmp_path) -> Path:
    """The tiny CIFAR data root, accepted by torchvision in this process and in the kernels and processes it
    starts, and made the default data root (``$CROPKIT_DATA``) for the test."""
    from cifar_files import use_checksums

    root, checksums = cifar_files
    use_checksums(monkeypatch, checksums, tmp_path / "sitecustomize")
    monkeypatch.setenv("CROPKIT_DATA", str(root))
    return root
