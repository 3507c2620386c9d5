"""Loaders every dataset shares: a seeded order that does not depend on the number of worker processes, seeded
workers and the test loader."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset


def seed_worker(worker_id: int) -> None:
    """Seed a loader worker's Python and NumPy generators from its torch seed, which the DataLoader derives from
    the loader's seeded generator (PyTorch's reproducibility recipe): augmentation repeats from run to run."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class Shuffle(RandomSampler):
    """A new order every epoch from a seeded generator. Each epoch first draws from it what a shuffling DataLoader
    draws (its workers' base seed) before the permutation, so the order is the one a ``DataLoader(shuffle=True,
    generator=g)`` without workers gives, whatever the number of workers and whether they persist (a persistent
    pool draws that seed once, not every epoch, which would shift every later epoch's order)."""

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        yield from super().__iter__()


class Batches(BatchSampler):
    """The indices of whole batches, in ``sampler``'s order; ``generator`` is the sampler's (the state a resumed
    run puts back, `cropkit.core.plumbing.rng_state`)."""

    @property
    def generator(self):
        return getattr(self.sampler, "generator", None)


def _loader(data, batch_size: int, sampler, **loading) -> DataLoader:
    """A loader of ``batch_size`` batches in ``sampler``'s order. Over tensors (a ``TensorDataset``) it indexes each
    tensor once per batch (``tensor[indices]``) instead of taking the samples one by one and stacking them: the same
    batches, bit for bit, without the per-sample Python work (on the lessons' small networks a quarter of a
    millisecond of every step)."""
    if isinstance(data, TensorDataset):
        return DataLoader(data, batch_size=None, sampler=Batches(sampler, batch_size, drop_last=False), **loading)
    return DataLoader(data, batch_size=batch_size, sampler=sampler, **loading)


def loader_pair(train, test, batch_size, seed, *, num_workers=0, pin_memory=False) -> tuple[DataLoader, DataLoader]:
    """The training loader (shuffled by a generator seeded with ``seed``) and the test loader, with
    ``num_workers`` persistent worker processes each, seeded from a generator of their own, and pinned batches if
    asked."""
    loading = dict(num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0,
                   worker_init_fn=seed_worker if num_workers > 0 else None)
    order = Shuffle(train, generator=torch.Generator().manual_seed(seed))
    workers = torch.Generator().manual_seed(seed)  # the workers' seeds: never drawn from the order's generator
    return (_loader(train, batch_size, order, generator=workers, **loading),
            _loader(test, max(batch_size, 256), SequentialSampler(test), **loading))


def tensor_loaders(x_train, y_train, x_test, y_test, batch_size, seed, **loading) -> tuple[DataLoader, DataLoader]:
    """:func:`loader_pair` over tensors."""
    return loader_pair(TensorDataset(x_train, y_train), TensorDataset(x_test, y_test), batch_size, seed, **loading)
