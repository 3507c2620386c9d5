"""The paper's whole experimental grid, as data, and its price before anything is submitted (Rachwan et al. 2022).

    cropkit sweep --plan paper --dry-run                      # every configuration, its epochs and device-hours
    cropkit sweep --plan paper --dry-run --epoch-seconds 20   # one dense epoch of 20 s for every setting instead

Each :class:`Setting` is one table or one figure panel of the paper: data × model × methods × sparsities, run under
the ``paper`` profile (`cropkit.experiments.profiles`) with the setting's options on top, over the profile's seeds (0,
1, 2). The
dry run validates every configuration as `cropkit.run` would (`cropkit.experiments.grid.plan`), looks it up in the
results cache,
and prices it; it never loads a dataset, so it works where the real sets are absent.

**Where a setting comes from.** The image tables use the paper's §4 setup: Adam, lr 2e-3, weight decay 5e-5, 80 epochs
after pruning, batch 256 (Tiny-ImageNet: 128), one-cycle in the sparse phase for every network but VGG16 (constant).
Each table's sparsity: ResNet18/CIFAR-10 at 95 % and VGG16/CIFAR-10 at 98 % are the paper's (quoted by the claims,
`cropkit.experiments.claims`); the sparsities of the VGG16/CIFAR-100 and ResNet18/Tiny-ImageNet tables are *assumed*
here
(``checked=False``: compare them with the paper before submitting). The domain figures (NYU depth, PTB, the control
games) plot the metric over sparsity; their sparsities, methods, epochs and sizes are the kit's choices
(:data:`DOMAIN_OPTIONS`, :data:`DOMAIN_METHODS`), not read off the paper.

**The price.** A job's epochs are the most it trains (`cropkit.methods.method.Method.epochs`); ``upper`` prices
every one at
the cost of a dense epoch, ``estimate`` prices the epochs a structured method trains after pruning at (1 − p) of it
(a physically smaller network: FLOPs fall about as the weights do; a masked network costs a dense epoch). One dense
epoch's seconds, per setting (``EPOCH_SECONDS``), are assumed unless given: the paper's GTX 1080 Ti ran EarlyCroP-U on
ResNet18/CIFAR-10 at 95 % in 0.74 h (its cost table), about 31 s for each of ~85 epochs; every other image, depth and
language setting is scaled from that by its training FLOPs per epoch (forward FLOPs per sample, FlopCounterMode, ×
samples per epoch): a crude rule that assumes the same GPU utilisation everywhere (a recurrent network's 80
sequential steps use a GPU far worse, so PTB's figure is a lower bound). The control games run their environments on
a CPU (a GPU does not help a 3-layer policy): their seconds were measured here, on one core of a shared 2-core CPU
(process time per epoch, evaluation included, 30 epochs of 16 episodes). Give ``--epoch-seconds`` (all settings) or
``epoch_seconds={setting name: s}`` (:func:`dry_run`) measured on the jobs' own GPU for a real budget.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from cropkit.experiments import grid, profiles
from cropkit.experiments.results import default_cache_dir

IMAGE_METHODS = ("dense", "random-u", "snip", "grasp", "crop-u", "cropit-u", "earlycrop-u", "ltr", "random-s",
                 "snap", "crop-s", "cropit-s", "earlycrop-s", "earlybird", "gatedecorators", "efficientconvnets")
DOMAIN_METHODS = ("dense", "random-u", "snip", "crop-u", "earlycrop-u", "earlycrop-s")  # lesson 05's comparison
DOMAIN_SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98)
# Each domain figure's model and run options on top of the paper profile. The real sets: NYU Depth v2 with Laina et
# al.'s FCRN (their batch of 16); PTB with the pointer sentinel LSTM at the EarlyCroP reference code's size and
# optimiser (hidden 300, batch 128, Adam 1e-3, constant, 30 epochs); the control games with the zoo's 3-layer policy,
# REINFORCE, 16 episodes and one step per epoch at a constant lr 5e-3.
DOMAIN_OPTIONS = {
    "nyudepth": dict(model="fcrn", width=1.0, epochs=30, batch_size=16, limit=None, score_batches=10,
                     max_dense_epochs=10, measure_emissions=True),
    "ptb": dict(model="pointer_lstm", width=2.34375, epochs=30, batch_size=128, limit=None, lr=1e-3,
                schedule="constant", score_batches=10, max_dense_epochs=10, measure_emissions=True),
    **{env: dict(model="policy", width=1.0, epochs=100, batch_size=16, limit=None, lr=5e-3, schedule="constant",
                 score_batches=4, max_dense_epochs=20, measure_emissions=True)
       for env in ("cartpole", "acrobot", "lunarlander")},
}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One table or figure panel of the paper: what runs, where it comes from, and what is assumed."""

    name: str
    source: str                            # the paper's table / figure / section
    data: str
    model: str
    methods: tuple[str, ...]
    sparsities: tuple[float, ...]
    options: dict = dataclasses.field(default_factory=dict)  # run options on top of the paper profile
    checked: bool = True                   # False: the sparsities are assumed, not read off the paper
    note: str = ""


def _domain(name: str, source: str, methods=DOMAIN_METHODS, note: str = "") -> Setting:
    options = dict(DOMAIN_OPTIONS[name])
    model = options.pop("model")
    return Setting(name, source, name, model, methods, DOMAIN_SPARSITIES, options, checked=False, note=note)


VGG = dict(schedule="constant")  # §4: one-cycle for every network but VGG16
GRID: tuple[Setting, ...] = (
    Setting("resnet18-cifar10", "Table 1", "cifar10", "resnet18", IMAGE_METHODS, (0.95,)),
    Setting("vgg16-cifar10", "Table 2", "cifar10", "vgg16", IMAGE_METHODS, (0.98,), VGG),
    Setting("vgg16-cifar100", "Table 3", "cifar100", "vgg16", IMAGE_METHODS, (0.98,), VGG, checked=False),
    Setting("resnet18-tinyimagenet", "Table 4", "tinyimagenet", "resnet18", IMAGE_METHODS, (0.95,),
            dict(batch_size=128), checked=False),
    Setting("resnext-wide", "§5, ResNeXt table", "cifar10", "resnext101_32x48d", ("crop-s",), (0.985,),
            note="CIFAR-10 at 32×32 in the CIFAR form (the reference code: ImageNet form, images resized to 64)"),
    Setting("resnext-narrow", "§5, ResNeXt table", "cifar10", "resnext101_32x16d", ("dense",), (0.0,),
            note="the dense model of about the wide pruned one's GPU memory"),
    _domain("nyudepth", "§4.4, depth figure (RMSE)", note="the labeled set's 795 training frames; FCRN from scratch"),
    _domain("ptb", "§4.4, language figure (log-perplexity)", DOMAIN_METHODS[:-1],
            note="EarlyCroP-S left out: the kit cannot remove LSTM units (the reference code ran it)"),
    _domain("cartpole", "§4.4, control figure (return)"),
    _domain("acrobot", "§4.4, control figure (return)"),
    _domain("lunarlander", "§4.4, control figure (return)"),
)
PLANS = {"paper": GRID}

# Forward FLOPs per sample (FlopCounterMode, full width; tests/test_paper_grid.py recounts them) and samples per epoch
FLOPS = {"resnet18-cifar10": 1.1108e9, "vgg16-cifar10": 0.6264e9, "vgg16-cifar100": 0.6265e9,
         "resnet18-tinyimagenet": 4.4435e9, "resnext-wide": 100.05e9, "resnext-narrow": 23.542e9,
         "nyudepth": 85.417e9, "ptb": 0.61344e9}  # ptb: one sequence of 80 tokens
SAMPLES = {"resnet18-cifar10": 50_000, "vgg16-cifar10": 50_000, "vgg16-cifar100": 50_000,
           "resnet18-tinyimagenet": 100_000, "resnext-wide": 50_000, "resnext-narrow": 50_000, "nyudepth": 795,
           "ptb": 11_619}  # ptb: (929 589 training tokens − 1) // 80
ANCHOR, ANCHOR_SECONDS = "resnet18-cifar10", 31.0  # 0.74 h / ~85 epochs on the paper's GTX 1080 Ti
EPOCH_SECONDS = {name: round(ANCHOR_SECONDS * FLOPS[name] * SAMPLES[name] / (FLOPS[ANCHOR] * SAMPLES[ANCHOR]), 1)
                 for name in FLOPS}
EPOCH_SECONDS.update(cartpole=0.2, acrobot=0.3, lunarlander=0.6)  # measured (CPU; see the module docstring)
STRUCTURED_AFTER_PRUNING = {"random-s", "snap", "crop-s", "cropit-s", "earlycrop-s", "earlybird", "gatedecorators",
                            "efficientconvnets"}


def settings(plan: str = "paper") -> tuple[Setting, ...]:
    if plan not in PLANS:
        raise ValueError(f"unknown plan {plan!r}; choose one of {list(PLANS)}")
    return PLANS[plan]


def jobs(plan: str = "paper", seeds=None, cache_dir: str | Path | None = None,
         epoch_seconds: float | dict | None = None):
    """Every configuration of ``plan`` as a frame: setting, source, data, model, method, sparsity, seed, epochs (at
    most), status (cached / to run / same run as above), seconds of one dense epoch and the job's device-hours
    (``upper``, ``estimate``; see the module docstring). Validated as `cropkit.run` validates a run; no data is read."""
    import pandas as pd

    seeds = tuple(profiles.settings("run", "paper").seeds if seeds is None else seeds)
    cache_dir = Path(cache_dir or default_cache_dir()).expanduser().absolute()
    rows, seen = [], set()
    for s in settings(plan):
        seconds = _seconds(s, epoch_seconds)
        for job in grid.plan(s.methods, s.sparsities, seeds, profile="paper", cache_dir=cache_dir, remote="cuda",
                            data=s.data, model=s.model, **s.options):
            sparse = s.options.get("epochs", profiles.RUN["paper"]["epochs"])
            after = sparse * (1 - job.sparsity) if job.method in STRUCTURED_AFTER_PRUNING else sparse
            status = "cached" if job.cached else "same run as above" if job.key in seen else "to run"
            seen.add(job.key)
            todo = status == "to run"
            rows.append(dict(setting=s.name, source=s.source, data=s.data, model=s.model, method=job.method,
                             sparsity=job.sparsity, seed=job.seed, epochs=job.epochs, status=status,
                             epoch_s=seconds, upper_h=todo * job.epochs * seconds / 3600,
                             estimate_h=todo * (job.epochs - sparse + after) * seconds / 3600))
    return pd.DataFrame(rows)


def _seconds(s: Setting, given) -> float:
    seconds = EPOCH_SECONDS[s.name] if given is None else \
        given.get(s.name, EPOCH_SECONDS[s.name]) if isinstance(given, dict) else given
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"epoch seconds (--epoch-seconds) must be a number of seconds > 0; got {seconds!r} for "
                         f"{s.name}")
    return float(seconds)


def command(s: Setting, seeds) -> str:
    """The `cropkit sweep` command that submits setting ``s`` (on SLURM: add --executor slurm --partition ...)."""
    options = {k: v for k, v in s.options.items() if k not in ("width", "epochs")}
    flags = [f"--data {s.data}", f"--model {s.model}", f"--sparsity {' '.join(f'{p:g}' for p in s.sparsities)}",
             f"--seeds {' '.join(map(str, seeds))}"]
    flags += [f"--{k} {s.options[k]:g}" for k in ("width", "epochs") if k in s.options]
    flags += [f"--set {k}={v}" for k, v in options.items()]  # a bare word is a string (`cropkit.cli`)
    return f"cropkit sweep {' '.join(s.methods)} --profile paper " + " ".join(flags)


def dry_run(plan: str = "paper", seeds=None, cache_dir=None, epoch_seconds=None, show=print):
    """Print every configuration of ``plan``, each setting's epochs and device-hours with the command that submits
    it, and the totals; submit nothing. Returns :func:`jobs`' frame."""
    import pandas as pd

    seeds = tuple(profiles.settings("run", "paper").seeds if seeds is None else seeds)
    frame = jobs(plan, seeds, cache_dir, epoch_seconds)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_columns", None):
        show(frame.drop(columns=["source", "epoch_s"]).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    show("")
    for s in settings(plan):
        part = frame[frame.setting == s.name]
        todo = part[part.status == "to run"]
        assumed = "" if s.checked else " (sparsities assumed: check against the paper)"
        show(f"{s.name} — {s.source}: {s.data} / {s.model}, {len(s.methods)} methods × {len(s.sparsities)} "
             f"sparsities × {len(seeds)} seeds = {len(part)} configurations, {len(todo)} to run, "
             f"{int(todo.epochs.sum())} epochs at most; one dense epoch {part.epoch_s.iloc[0]:g} s "
             f"({'as given' if epoch_seconds is not None else 'assumed'}) → ≤ {todo.upper_h.sum():.3g} h, "
             f"≈ {todo.estimate_h.sum():.3g} h{assumed}" + (f"; {s.note}" if s.note else ""))
        show(f"    {command(s, seeds)}")
    todo = frame[frame.status == "to run"]
    gpu = ~todo.data.isin(["cartpole", "acrobot", "lunarlander"])
    show(f"\n{len(frame)} configurations, {len(todo)} to run ({int(todo.epochs.sum())} epochs at most): "
         f"≤ {todo[gpu].upper_h.sum():.4g} GPU-hours (≈ {todo[gpu].estimate_h.sum():.4g} with structured networks "
         f"priced after pruning), plus ≤ {todo[~gpu].upper_h.sum():.3g} CPU-hours for the control games; "
         f"dry run: submitted 0 jobs")
    return frame
