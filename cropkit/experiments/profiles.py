"""Named profiles: how big a run or a notebook is.

| profile | for              | budget                                                                     |
|---------|------------------|----------------------------------------------------------------------------|
| smoke   | tests and CI     | seconds per notebook on 2 CPU cores                                        |
| cpu     | a learner laptop | ≤ 10 minutes per notebook on 2 CPU cores, on digits / mnist1d (default)   |
| paper   | a GPU            | CIFAR-10/100, ResNet18/VGG16, Adam 2e-3, wd 5e-5, batch 256, 80 epochs after    |
|         |                  | pruning, one-cycle                                                         |

A notebook's parameters cell holds plain literals; ``None`` means "the profile's value":

    cfg = cropkit.profiles.settings("02_rich_to_lazy", PROFILE, EPOCHS=EPOCHS)
    cfg.epochs

Keys of the tables are lower-case; overrides may be given in upper case (the notebook's parameter names).
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

# Per-notebook tables: {notebook stem: {profile: {key: value}}}. Each notebook owns its entry.
NOTEBOOKS: dict[str, dict[str, dict]] = {
    "00_tour": {
        "smoke": dict(data="digits", model="cnn", width=0.5, epochs=2, limit=256, batch_size=64),
        "cpu": dict(data="digits", model="cnn", width=1.0, epochs=15, limit=None, batch_size=64),
        "paper": dict(data="cifar10", model="resnet18", width=1.0, epochs=30, limit=None, batch_size=256),
    },
    "01_gradient_flow_and_ntk": {
        "smoke": dict(data="digits", model="cnn", width=0.25, limit=256, batch_size=32, check_seeds=1,
                      check_batches=2, check_batch_size=4, probe_size=4, score_batches=1, sweep_seeds=1,
                      sparsities=[0.5, 0.9], eigenvalues=10),
        "cpu": dict(data="digits", model="cnn", width=0.5, limit=None, batch_size=64, check_seeds=4,
                    check_batches=4, check_batch_size=12, probe_size=16, score_batches=4, sweep_seeds=3,
                    sparsities=[0.5, 0.7, 0.8, 0.9, 0.95, 0.98], eigenvalues=40),
        "paper": dict(data="cifar10", model="resnet18", width=1.0, limit=None, batch_size=256, check_seeds=3,
                      check_batches=3, check_batch_size=4, probe_size=12, score_batches=10, sweep_seeds=3,
                      sparsities=[0.5, 0.7, 0.8, 0.9, 0.95, 0.98], eigenvalues=40),
    },
    # cpu: the setting where the premise holds (benchmarks/premise_search.py): mnist1d, cnn ×0.5, batch 128, the
    # reference rule at τ = 0.7; the digits run of section 2 keeps the lessons' former setting for contrast.
    "02_rich_to_lazy": {
        "smoke": dict(data="digits", model="cnn", width=0.25, limit=256, batch_size=64, epochs=4, lr=2e-3,
                      probe_size=4, ntk_every=2, tau=0.1, ref_tau=0.7, try_widths=[0.25, 0.5], try_lrs=[2e-3],
                      try_epochs=4, frames=8, threads=1, digits_width=0.25, digits_batch_size=64, digits_epochs=4),
        "cpu": dict(data="mnist1d", model="cnn", width=0.5, limit=None, batch_size=128, epochs=16, lr=2e-3,
                    probe_size=16, ntk_every=8, tau=0.1, ref_tau=0.7, try_widths=[0.25, 0.5, 1.0, 2.0],
                    try_lrs=[5e-4, 2e-3, 8e-3], try_epochs=10, frames=40, threads=1, digits_width=1.0,
                    digits_batch_size=64, digits_epochs=15),
        "paper": dict(data="cifar10", model="resnet18", width=1.0, limit=None, batch_size=256, epochs=20, lr=2e-3,
                      probe_size=8, ntk_every=50, tau=0.1, ref_tau=0.7, try_widths=[0.25, 0.5, 1.0],
                      try_lrs=[5e-4, 2e-3, 8e-3], try_epochs=10, frames=60, threads=None, digits_width=1.0,
                      digits_batch_size=64, digits_epochs=15),
    },
    # cpu: the setting where EarlyCroP's premise holds (lesson 02, benchmarks/premise_search.py); one torch thread
    # (these small nets train several times faster on one thread than on two on a shared 2-core machine).
    "03_lottery_vs_earlycrop": {
        "smoke": dict(data="digits", model="cnn", width=0.5, epochs=2, batch_size=128, limit=256, score_batches=1,
                      max_dense_epochs=2, rule="reference", threshold=0.7, ltr_rounds=2, rewind_epoch=0,
                      measure_emissions=False, sparsities=[0.5, 0.9], seeds=[0], focus_sparsity=0.9, threads=1),
        "cpu": dict(data="mnist1d", model="cnn", width=0.5, epochs=6, batch_size=128, limit=None, score_batches=4,
                    max_dense_epochs=10, rule="reference", threshold=0.7, ltr_rounds=3, rewind_epoch=1,
                    measure_emissions=False, sparsities=[0.5, 0.8, 0.9, 0.95], seeds=[0, 1, 2], focus_sparsity=0.9,
                    threads=1),
        "paper": dict(data="cifar10", model="resnet18", width=1.0, epochs=80, batch_size=256, limit=None,
                      score_batches=10, max_dense_epochs=20, rule="seed", threshold=None, ltr_rounds=5,
                      rewind_epoch=1, measure_emissions=True, sparsities=[0.5, 0.8, 0.9, 0.95, 0.98],
                      seeds=[0, 1, 2], focus_sparsity=0.95, threads=None),
    },
    # cpu: lesson 02's setting (mnist1d, cnn x0.5, batch 128, EarlyCroP-S's detector: the reference rule at τ = 0.7)
    "04_structured_pruning": {
        "smoke": dict(data="digits", width=0.5, epochs=2, seeds=[0], threads=1, tables=[["cnn", 0.9]], run_options={},
                      explorer_models=["resnet18", "vgg16"], explorer_criterion="snap_nodes", explorer_width=0.125,
                      explorer_batch=4, explorer_data="synthetic", explorer_threads=1, sweep=[0.9], wide_width=1.0,
                      wide_sparsity=0.9, narrow_widths=[0.25, 0.5]),
        "cpu": dict(data="mnist1d", width=0.5, epochs=6, seeds=[0, 1, 2], threads=1, tables=[["cnn", 0.9]],
                    run_options=dict(batch_size=128, rule="reference", threshold=0.7, max_dense_epochs=10),
                    explorer_models=["resnet18", "vgg16"], explorer_criterion="crop_nodes", explorer_width=0.25,
                    explorer_batch=8, explorer_data="synthetic", explorer_threads=1,
                    sweep=[0.3, 0.5, 0.7, 0.8, 0.9, 0.95],
                    wide_width=2.0, wide_sparsity=0.9, narrow_widths=[0.25, 0.375, 0.5, 0.625, 0.75, 1.0]),
        "paper": dict(data="cifar10", width=1.0, epochs=80, seeds=[0, 1, 2], threads=None, run_options={},
                      tables=[["resnet18", 0.95], ["vgg16", 0.98]], explorer_models=["resnet18", "vgg16"],
                      explorer_criterion="crop_nodes", explorer_width=1.0, explorer_batch=64,
                      explorer_data="cifar10", explorer_threads=None, sweep=[0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98],
                      wide_width=2.0, wide_sparsity=0.95, narrow_widths=[0.25, 0.375, 0.5, 0.625, 0.75, 1.0]),
    },
    # Every domain's runs use DOMAINS[profile][data] with the lesson's ``sizes`` on top: the sweep makes ~30 runs per
    # domain, so under cpu the depth and pydoc runs train on a quarter or a third of their sets for fewer epochs (a
    # run of a few seconds) and the LSTM at lr 5e-3 (dense after 3 epochs, seed 0: 5.23 nats at 2e-3, 5.17 at 5e-3).
    # Sparsities per domain where the methods part (measured, one seed: at 98 % the at-init depth networks are at
    # the constant predictor's RMSE, ≈ 1, and EarlyCroP-U at 0.93).
    # workers: runs at once in separate one-thread processes (2 cores: two runs side by side).
    "05_beyond_classification": {
        "smoke": dict(domains=["depth", "pydoc", "cartpole", "acrobot"], sizes={}, seeds=[0],
                      sparsities=dict(depth=[0.5, 0.9], pydoc=[0.5, 0.9], cartpole=[0.5, 0.9], acrobot=[0.5, 0.9]),
                      rule="reference", threshold=0.7, threads=1, workers=1),
        "cpu": dict(domains=["depth", "pydoc", "cartpole", "acrobot"], seeds=[0, 1],
                    sizes=dict(depth=dict(epochs=4, batch_size=32, limit=512, score_batches=2, max_dense_epochs=3),
                               pydoc=dict(width=0.5, epochs=3, batch_size=32, limit=1024, lr=5e-3, score_batches=2,
                                          max_dense_epochs=3)),
                    sparsities=dict(depth=[0.5, 0.9, 0.95], pydoc=[0.5, 0.9, 0.98], cartpole=[0.5, 0.8, 0.9],
                                    acrobot=[0.5, 0.8, 0.9]),
                    rule="reference", threshold=0.7, threads=1, workers=2),
        "paper": dict(domains=["depth", "pydoc", "cartpole", "acrobot"], sizes={}, seeds=[0, 1, 2],
                      sparsities=dict(depth=[0.5, 0.8, 0.9, 0.95, 0.98], pydoc=[0.5, 0.8, 0.9, 0.95, 0.98],
                                      cartpole=[0.5, 0.8, 0.9, 0.95, 0.98], acrobot=[0.5, 0.8, 0.9, 0.95, 0.98]),
                      rule="seed", threshold=None, threads=None, workers=1),
    },
}


# `cropkit.run` settings for the regression, language and control stand-ins (issue 14, `cropkit.tasks.domains`,
# `cropkit.tasks.control`): {profile: {data: options}}; lesson 05 reads these. Sizes: smoke runs take seconds; cpu
# keeps an
# epoch to a few seconds on one thread (fcn ×0.5 on 2000 scenes, lstm ×1 on ~2900 sequences of 32 tokens); control:
# REINFORCE, 16 episodes and one step per epoch, constant lr 5e-3 (CartPole reaches 500 within 30 epochs).
DOMAINS = {
    "smoke": {
        "depth": dict(model="fcn", width=0.25, epochs=1, batch_size=32, limit=64, score_batches=1,
                      max_dense_epochs=1, measure_emissions=False),
        "pydoc": dict(model="lstm", width=0.5, epochs=1, batch_size=32, limit=64, score_batches=1,
                      max_dense_epochs=1, measure_emissions=False),
        **{env: dict(model="policy", width=0.25, epochs=1, batch_size=2, limit=20, lr=5e-3, schedule="constant",
                     score_batches=1, max_dense_epochs=1, measure_emissions=False)
           for env in ("cartpole", "acrobot", "lunarlander")},
    },
    "cpu": {
        "depth": dict(model="fcn", width=0.5, epochs=6, batch_size=64, limit=None, score_batches=4,
                      max_dense_epochs=6, measure_emissions=False),
        "pydoc": dict(model="lstm", width=1.0, epochs=4, batch_size=64, limit=None, score_batches=4,
                      max_dense_epochs=4, measure_emissions=False),
        **{env: dict(model="policy", width=0.5, epochs=30, batch_size=16, limit=None, lr=5e-3, schedule="constant",
                     score_batches=1, max_dense_epochs=10, measure_emissions=False)
           for env in ("cartpole", "acrobot", "lunarlander")},  # LunarLander, dense, 30 epochs: −118, −51, +59 for
    },                                                          # seeds 0, 1, 2 against a random policy's −193
    "paper": {
        "depth": dict(model="fcn", width=1.0, epochs=30, batch_size=64, limit=None, score_batches=10,
                      max_dense_epochs=15, measure_emissions=True),
        "pydoc": dict(model="lstm", width=2.0, epochs=20, batch_size=64, limit=None, score_batches=10,
                      max_dense_epochs=10, measure_emissions=True),
        **{env: dict(model="policy", width=1.0, epochs=100, batch_size=16, limit=None, lr=5e-3, schedule="constant",
                     score_batches=4, max_dense_epochs=20, measure_emissions=True)
           for env in ("cartpole", "acrobot", "lunarlander")},
        # the real sets (`cropkit.experiments.paper_grid`): NYU Depth v2 with Laina et al.'s FCRN (their batch of 16);
        # PTB with the
        # pointer sentinel LSTM at the EarlyCroP reference code's size and optimiser (hidden 300, batch 128, Adam
        # 1e-3, constant, 30 epochs)
        "nyudepth": dict(model="fcrn", width=1.0, epochs=30, batch_size=16, limit=None, score_batches=10,
                         max_dense_epochs=10, measure_emissions=True),
        "ptb": dict(model="pointer_lstm", width=2.34375, epochs=30, batch_size=128, limit=None, lr=1e-3,
                    schedule="constant", score_batches=10, max_dense_epochs=10, measure_emissions=True),
    },
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
    """The per-profile table for ``key`` ("run", "claims", "domains" or a notebook stem)."""
    tables = {"run": RUN, "claims": CLAIMS, "domains": DOMAINS, **NOTEBOOKS}
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
