"""The data pipeline that can feed a GPU: worker processes and pinned memory, with the CPU defaults unchanged."""
import pytest
import torch

import cropkit as ck
from cropkit.experiments import runs
from cropkit.tasks import data, loaders


def _epochs(loader, n=2) -> list[list[torch.Tensor]]:
    return [[torch.cat([x.flatten(1), y[:, None].float()], 1) for x, y in loader] for _ in range(n)]


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_workers_change_neither_the_order_nor_the_content(name):
    """Two epochs of the training loader and the test loader: the same batches with 0 and 2 workers."""
    alone = data.load(name, batch_size=64, seed=3, limit=200, size=256)
    workers = data.load(name, batch_size=64, seed=3, limit=200, size=256, num_workers=2)
    assert alone.train.num_workers == 0 and not alone.train.pin_memory  # the CPU defaults
    assert workers.train.num_workers == 2 and workers.train.persistent_workers
    for a, b in [(alone.train, workers.train), (alone.test, workers.test)]:
        for epoch_a, epoch_b in zip(_epochs(a), _epochs(b)):
            assert len(epoch_a) == len(epoch_b) and all(torch.equal(x, y) for x, y in zip(epoch_a, epoch_b))
    assert not torch.equal(_epochs(alone.train, 2)[0][0], _epochs(alone.train, 2)[1][0])  # it does reshuffle


def test_pin_memory_follows_cuda_unless_given(monkeypatch):
    """pin_memory=None pins exactly when CUDA is there (faked here: the batches are not iterated, so nothing is
    pinned); a run pins when its device is CUDA; True/False are taken as given."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert data.load("digits", pin_memory=None).train.pin_memory
    assert data.load("digits", pin_memory=None).test.pin_memory
    assert not data.load("digits", pin_memory=False).train.pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not data.load("digits", pin_memory=None).train.pin_memory
    assert data.load("digits", pin_memory=True).train.pin_memory
    with pytest.raises(ValueError, match="num_workers must be an integer >= 0"):
        data.load("digits", num_workers=-1)


def test_a_run_asks_for_pinned_batches_on_cuda(monkeypatch, tmp_path):
    """cropkit.run resolves pin_memory=None from its device: the loaders it builds on a (faked) CUDA device pin."""
    asked = {}
    load = data.load

    def spy(*args, **kwargs):
        asked.update(kwargs)
        raise KeyboardInterrupt  # stop before training: only the arguments are checked

    monkeypatch.setattr(data, "load", spy)
    monkeypatch.setattr(ck.train, "resolve_device", lambda device=None: torch.device("cuda" if device else "cpu"))
    monkeypatch.setattr(ck.hardware, "device_name", lambda device: "a faked GPU")
    for device, pinned in [("cuda", True), (None, False)]:
        with pytest.raises(KeyboardInterrupt):
            ck.run("dense", profile="smoke", device=device, cache_dir=tmp_path, num_workers=1)
        assert asked["pin_memory"] is pinned and asked["num_workers"] == 1
    monkeypatch.setattr(data, "load", load)


def test_num_workers_is_in_the_cache_key(tmp_path):
    """Workers change CIFAR's augmentation stream, so results computed with other workers never replay."""
    _, zero = runs.configuration("dense", profile="smoke")
    _, two = runs.configuration("dense", profile="smoke", num_workers=2)
    assert zero["num_workers"] == 0 and two["num_workers"] == 2
    assert ck.results.cache_path(tmp_path, zero) != ck.results.cache_path(tmp_path, two)


def test_the_order_is_the_one_a_shuffling_dataloader_gives():
    """The oracle: torch's own DataLoader(shuffle=True, generator=seeded), the loader every run used before
    workers could be asked for; three epochs, so a draw missing or added per epoch would show."""
    from torch.utils.data import DataLoader, TensorDataset

    dataset = TensorDataset(torch.arange(300))
    ours = loaders.loader_pair(dataset, dataset, 64, seed=5)[0]
    torchs = DataLoader(dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(5))
    for _ in range(3):
        assert [b.tolist() for b, in ours] == [b.tolist() for b, in torchs]


def test_tensor_batches_are_the_per_sample_loaders_bit_for_bit():
    """Over tensors each batch is one index per tensor instead of samples stacked one by one. The oracle is torch's
    per-sample DataLoader over the same order: three epochs of the training loader and the test loader, values,
    dtypes and shapes; the order's generator is still where a resumed run finds it."""
    from torch.utils.data import DataLoader, TensorDataset

    from cropkit.core.plumbing import rng_state

    x, y = torch.randn(300, 1, 40), torch.randint(0, 10, (300,))
    train, test = loaders.tensor_loaders(x, y, x[:70], y[:70], 64, seed=5)
    dataset = TensorDataset(x, y)
    oracle = DataLoader(dataset, batch_size=64, sampler=loaders.Shuffle(dataset, generator=torch.Generator()
                                                                         .manual_seed(5)))
    oracle_test = DataLoader(TensorDataset(x[:70], y[:70]), batch_size=256)
    assert len(train) == len(oracle) == 5 and len(test) == 1
    for _ in range(3):
        for ours, theirs in [*zip(train, oracle), *zip(test, oracle_test)]:
            assert all(a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) for a, b in zip(ours, theirs))
    assert torch.equal(rng_state(train)["sampler"], oracle.sampler.generator.get_state())
