import numpy as np
import pytest
import torch

import cropkit as ck


@pytest.mark.parametrize("name, shape", [("digits", (1, 8, 8)), ("mnist1d", (1, 40)), ("synthetic", (3, 32, 32))])
def test_shapes_and_classes(name, shape):
    data = ck.data.load(name, batch_size=32, seed=0)
    x, y = next(iter(data.train))
    assert data.input_shape == shape and x.shape == (32, *shape)
    assert data.num_classes == 10 and y.dtype == torch.long and 0 <= int(y.min()) and int(y.max()) < 10


def test_digits_split_is_fixed_and_disjoint_sizes():
    a, b = ck.data.load("digits", seed=0), ck.data.load("digits", seed=1)
    assert len(a.train.dataset) == 1437 and len(a.test.dataset) == 360
    # the test set does not depend on the run's seed
    assert torch.equal(a.test.dataset.tensors[0], b.test.dataset.tensors[0])


def test_mnist1d_sizes():
    data = ck.data.load("mnist1d")
    assert len(data.train.dataset) == 4000 and len(data.test.dataset) == 1000


def test_same_seed_same_order_other_seed_other_order():
    first = [next(iter(ck.data.load("digits", batch_size=16, seed=s).train))[1] for s in (3, 3, 4)]
    assert torch.equal(first[0], first[1])
    assert not torch.equal(first[0], first[2])


def test_limit_cuts_train_only():
    data = ck.data.load("digits", limit=100)
    assert len(data.train.dataset) == 100 and len(data.test.dataset) == 360


def test_take():
    data = ck.data.load("digits", batch_size=10)
    assert len(ck.data.take(data.train, 3)) == 3
    with pytest.raises(ValueError, match="n >= 1"):
        ck.data.take(data.train, 0)
    with pytest.raises(ValueError, match="no batches"):
        ck.data.take([], 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="imagenet"), "unknown dataset 'imagenet'.*digits"),
    (dict(name="digits", batch_size=0), "batch_size"),
    (dict(name="digits", limit=0), "limit"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ck.data.load(**kwargs)


def test_missing_cifar_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*download"):
        ck.data.load("cifar10", root=tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        ck.data.load("cifar100", root=tmp_path, download=False)


def _write_tiny_cifar(root, monkeypatch):
    """Ten training images per class and two test images per class in CIFAR-10's on-disk format, accepted by
    torchvision (tests/cifar_files.py)."""
    from cifar_files import use_checksums, write_cifar

    use_checksums(monkeypatch, {"cifar10": write_cifar(root, "cifar10", train_per_class=10)}, root / "hook")


def test_cifar_path_reads_real_on_disk_format(tmp_path, monkeypatch):
    _write_tiny_cifar(tmp_path, monkeypatch)
    data = ck.data.load("cifar10", root=tmp_path, batch_size=8, download=False)
    x, y = next(iter(data.train))
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
    assert len(data.train.dataset) == 100 and len(data.test.dataset) == 20
    # normalised with CIFAR statistics: roughly centred
    assert abs(float(next(iter(data.test))[0].mean())) < 1.0


def test_corrupt_cifar_file_is_named_as_failing_its_checksum(tmp_path, monkeypatch):
    _write_tiny_cifar(tmp_path, monkeypatch)
    damaged = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    damaged.write_bytes(damaged.read_bytes()[:-10])  # truncated: present, but not the original file
    for download in (False, True):  # never "could not be downloaded", even when a download would be tried
        with pytest.raises(ValueError, match=r"data_batch_3 failed the MD5 checksum.*Delete .*cifar-10-batches-py"):
            ck.data.load("cifar10", root=tmp_path, download=download)


@pytest.mark.parametrize("content, words", [
    (b"not a zip file at all", "not a readable MNIST-1D cache"),
    ("foreign", r"holds the arrays \['a'\]"),
    ("shape", r"'x' has shape \(10, 40\)"),
    ("labels", "labels 'y' run from 0 to 42"),
])
def test_foreign_or_corrupt_mnist1d_cache_is_named(tmp_path, content, words):
    path = tmp_path / "mnist1d.npz"
    good = {"x": np.zeros((4000, 40)), "y": np.zeros(4000, dtype=np.int64), "x_test": np.zeros((1000, 40)),
            "y_test": np.zeros(1000, dtype=np.int64)}
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        arrays = {"foreign": {"a": np.zeros(3)}, "shape": {**good, "x": np.zeros((10, 40))},
                  "labels": {**good, "y": np.arange(4000) % 43}}[content]
        np.savez(path, **arrays)
    with pytest.raises(ValueError, match=words) as err:
        ck.data.load("mnist1d", root=tmp_path)
    assert str(path) in str(err.value) and "delete" in str(err.value)
    np.savez(path, **good)  # the right arrays are read (and not regenerated)
    assert len(ck.data.load("mnist1d", root=tmp_path).train.dataset) == 4000
