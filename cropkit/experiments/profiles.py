"""Named profiles: how big a run or a lesson is.

| profile | for              | budget                                                                     |
|---------|------------------|----------------------------------------------------------------------------|
| smoke   | tests and CI     | seconds per notebook on 2 CPU cores                                        |
| cpu     | a learner laptop | ≤ 10 minutes per notebook on 2 CPU cores, on digits / mnist1d (default)   |
| paper   | a GPU            | CIFAR-10/100, ResNet18/VGG16, Adam 2e-3, wd 5e-5, batch 256, 80 epochs after    |
|         |                  | pruning, one-cycle                                                         |

Here live the defaults of every `cropkit.run` (:data:`RUN`) and the setting of the claims (:data:`CLAIMS`):

    cfg = settings("run", "smoke", epochs=3)     # RUN["smoke"] with epochs 3
    cfg.lr

A lesson's sizes live beside the lesson, not here: its parameters cell holds the ``cpu`` values and
``notebooks/NN_name.profiles.json`` the ``smoke`` and ``paper`` ones (`cropkit.lessons.lesson_parameters`).
Keys of the tables are lower-case; overrides may be given in upper case.
"""
from __future__ import annotations

import types

PROFILES = ("smoke", "cpu", "paper")

# Defaults of cropkit.run / cropkit.compare for each profile.
RUN = {
    "smoke": dict(data="digits", model="cnn", width=0.5, epochs=2, batch_size=128, limit=256, score_batches=1,
                  lr=2e-3, weight_decay=5e-5, schedule="onecycle", max_dense_epochs=2, ltr_rounds=2,
                  rewind_epoch=0, ticks=2, dense_epochs=1, measure_emissions=False, seeds=(0,)),
    "cpu": dict(data="digits", model="cnn", width=1.0, epochs=20, batch_size=64, limit=None, score_batches=4,
                lr=2e-3, weight_decay=5e-5, schedule="onecycle", max_dense_epochs=8, ltr_rounds=3,
                rewind_epoch=1, ticks=4, dense_epochs=1, measure_emissions=True, seeds=(0, 1, 2)),
    "paper": dict(data="cifar10", model="resnet18", width=1.0, epochs=80, batch_size=256, limit=None,
                  score_batches=10, lr=2e-3, weight_decay=5e-5, schedule="onecycle", max_dense_epochs=20,
                  ltr_rounds=5, rewind_epoch=1, ticks=10, dense_epochs=1, measure_emissions=True,
                  seeds=(0, 1, 2)),
}

# The setting of `cropkit.experiments.claims` (the paper's claims, checked): ``sparsity`` is where methods are ranked,
# ``high_sparsities`` where EarlyCroP-S is compared with dense; ``run_options`` go to every `cropkit.run`.
CLAIMS = {
    "smoke": dict(data="digits", model="cnn", width=0.5, epochs=2, seeds=[0], sparsity=0.9, high_sparsities=[0.9],
                  wide_width=1.0, wide_sparsity=0.9, narrow_widths=[0.25, 0.5],
                  run_options=dict(batch_size=128, limit=256, score_batches=1, max_dense_epochs=2, ltr_rounds=2,
                                   rewind_epoch=0, ticks=2, measure_emissions=False)),
    # The paper's Table 1 network (ResNet18, here at a quarter width and in its 1-D form) on mnist1d, with the
    # reference detector rule at τ = 0.7, which fires while the network is still learning (lesson 02)
    "cpu": dict(data="mnist1d", model="resnet18", width=0.25, epochs=6, seeds=[0, 1, 2], sparsity=0.95,
                high_sparsities=[0.95, 0.98], wide_width=0.5, wide_sparsity=0.95,
                narrow_widths=[0.0625, 0.09375, 0.125, 0.1875, 0.25, 0.375],
                run_options=dict(batch_size=128, score_batches=4, rule="reference", threshold=0.7,
                                 max_dense_epochs=10, ltr_rounds=3, rewind_epoch=1, measure_emissions=False)),
    # wide_pair: the paper's own pair (§5), ResNeXt101 32×48d pruned by CroP-S to 98.5 % against a dense 32×16d
    "paper": dict(data="cifar10", model="resnet18", width=1.0, epochs=80, seeds=[0, 1, 2], sparsity=0.95,
                  high_sparsities=[0.95, 0.98], wide_width=2.0, wide_sparsity=0.95,
                  narrow_widths=[0.25, 0.375, 0.5, 0.625, 0.75, 1.0], run_options=dict(),
                  wide_pair=dict(method="crop-s", wide="resnext101_32x48d", sparsity=0.985,
                                 narrow="resnext101_32x16d")),
}


def table(key: str) -> dict[str, dict]:
    """The per-profile table for ``key`` ("run" or "claims")."""
    tables = {"run": RUN, "claims": CLAIMS}
    if key not in tables:
        raise ValueError(f"no profile table for {key!r}; known: {sorted(tables)}")
    return tables[key]


def settings(key: str, profile: str, **overrides) -> types.SimpleNamespace:
    """The profile's values for ``key``, with every override that is not ``None`` taking precedence.

    Unknown override names fail loudly (a typo in a parameters cell must not be ignored).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    values = dict(table(key)[profile])
    for name, value in overrides.items():
        k = name.lower()
        if k not in values:
            raise ValueError(f"{name!r} is not a setting of {key!r}; allowed: {sorted(values)}")
        if value is not None:
            values[k] = value
    return types.SimpleNamespace(profile=profile, **values)
