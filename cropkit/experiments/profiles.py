"""Named profiles: how big a run or a lesson is.

| profile | for              | budget                                                                     |
|---------|------------------|----------------------------------------------------------------------------|
| smoke   | tests and CI     | seconds per notebook on 2 CPU cores                                        |
| cpu     | a learner laptop | ≤ 10 minutes per notebook on 2 CPU cores, on digits / mnist1d (default)   |
| paper   | a GPU            | CIFAR-10/100, ResNet18/VGG16, Adam 2e-3, wd 5e-5, batch 256, 80 epochs after    |
|         |                  | pruning, one-cycle                                                         |

Here live the defaults of every `cropkit.run` (:data:`RUN`):

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

def table(key: str) -> dict[str, dict]:
    """The per-profile table for ``key`` (only "run": the claims' setting is `cropkit.experiments.claims.SETTINGS`)."""
    tables = {"run": RUN}
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
