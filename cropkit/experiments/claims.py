"""The paper's claims, checked: one row per claim, the paper's number beside the kit's, and a verdict.

    table = cropkit.claims.check(profile="cpu")          # runs (or replays from the cache) what each claim needs
    print(cropkit.claims.markdown(table))

From the shell: ``./kit claims`` (= ``cropkit claims --profile cpu``) writes ``outputs/claims.md``.

Each claim is stated as the paper's result tables state it (Rachwan et al., ICML 2022, Tables 1–4 and the
ResNeXt table of §5) and gets a *test decided before the runs* (`SETTINGS`, the tests below): a margin the kit's
runs must clear, read against the seeds' spread √(σ_a² + σ_b²) (`cropkit.experiments.verdicts`). The verdict is
``reproduced`` when the margin exceeds the spread, ``not reproduced`` when it falls short by more than the spread,
and ``undecided`` within it — a tie decides nothing. Run under several environments — thread counts
(``threads=(1, 2)``) and CPU kernels (``kernels=("native", "avx2")``: torch restricted to AVX2 instructions, in
fresh worker processes, its runs cached in ``<cache>/kernels-avx2``) — a claim whose verdict differs between them is
``undecided`` too: per-seed results of a cut at θ_t move with floating-point summation order, so a verdict that moves
with it is not one the runs decide.

**A setting that can decide.** A one-shot cut to 95 % drops any network to chance, so every method trains to
convergence after its last cut, and every method gets **the same total budget** (``total_epochs``: the sparse phase
is what is left after the epochs spent before the last cut; LTR gets it for each of its trainings, since its claim
is about that cost). The table below the claims shows, per method, its total epochs and cuts, its training loss at
the end beside dense's, how often its detector fired or was forced, and for structured methods where the budget
went (kept channels per stage). Every run is made with a fixed number of torch threads, recorded with the table
(threads, CPU, library versions, commit, date): per-seed results of a cut at θ_t move with floating-point summation
order.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import statistics
import subprocess
import warnings
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from cropkit.core import hardware, measure, prune, scores
from cropkit.experiments import deviations, grid
from cropkit.experiments import verdicts as V
from cropkit.experiments.results import default_cache_dir, library_versions
from cropkit.experiments.runs import cpus as run_cpus
from cropkit.experiments.runs import settings as run_settings
from cropkit.experiments.starvation import stage_layout
from cropkit.methods.registry import LABELS, REGISTRY, family
from cropkit.paths import checkout
from cropkit.tasks import data as data_lib
from cropkit.tasks import models

UNSTRUCTURED_AT_INIT = tuple(m for m in family("Unstructured") if REGISTRY[m].when == "at init")
STRUCTURED = family("Structured")
# their spread decides verdicts, so they run over more seeds: the rows of claims 1-4 and the rivals that were best
# in a three-seed table (GateDecorators for claim 2, CroPit-U for claim 3, LTR for claim 4)
DECIDING = ("dense", "crop-u", "crop-s", "earlycrop-u", "earlycrop-s", "gatedecorators", "cropit-u", "ltr")

# The claims' setting per profile. cpu: the paper's Table 1 network (ResNet18, a quarter width, its 1-D form) on
# mnist1d; every method 40 epochs in total (at-init methods converge by then: 30 → 40 moves dense by 0.5 points);
# EarlyCroP's detector is the paper's rule Δ_t = ‖θ_t − θ₀‖² at τ = 0.2 with a cap of 10 dense epochs (several chances:
# the seed rule can fire from epoch 2 on; at 1e-2 it fires at epoch 3 in every run, the README's detector column);
# one torch thread per run, two runs at a time. Peak learning rate 1e-2 (Adam,
# one-cycle): at the profile's 2e-3 dense converged (training loss 0.001) but EarlyCroP-S and EarlyCroP-U at 95 % ended
# at 0.37 and 0.51 with seeds collapsed to 61-77 %; at 1e-2, the only change, every row ends at 0.002-0.031 and dense
# itself gains 2.6 points (benchmarks/claims_learning_rate.py prints both).
SETTINGS = {
    "smoke": dict(data="digits", model="cnn", width=0.5, total_epochs=3, seeds=[0], deciding_seeds=[0, 1],
                  sparsity=0.9, high_sparsities=[0.9], wide_width=1.0, wide_sparsity=0.9, narrow_widths=[0.25, 0.5],
                  layer_floor=0.1, threads=1, workers=1,
                  run_options=dict(batch_size=128, limit=256, score_batches=1, rule="seed", threshold=0.2,
                                   max_dense_epochs=2, ltr_rounds=2, rewind_epoch=0, ticks=2,
                                   measure_emissions=False)),
    "cpu": dict(data="mnist1d", model="resnet18", width=0.25, total_epochs=40, seeds=[0, 1, 2],
                deciding_seeds=[0, 1, 2, 3, 4], sparsity=0.95, high_sparsities=[0.95, 0.98], wide_width=0.5,
                wide_sparsity=0.95, narrow_widths=[0.0625, 0.09375, 0.125, 0.1875, 0.25, 0.375], layer_floor=0.1,
                threads=1, workers=2,
                run_options=dict(batch_size=128, lr=1e-2, score_batches=4, rule="seed", threshold=0.2,
                                 max_dense_epochs=10, ltr_rounds=3, rewind_epoch=1, measure_emissions=False)),
    # wide_pair: the paper's own pair (§5), ResNeXt101 32×48d pruned by CroP-S to 98.5 % against a dense 32×16d
    "paper": dict(data="cifar10", model="resnet18", width=1.0, total_epochs=100, seeds=[0, 1, 2],
                  deciding_seeds=[0, 1, 2, 3, 4], sparsity=0.95, high_sparsities=[0.95, 0.98], wide_width=2.0,
                  wide_sparsity=0.95, narrow_widths=[0.25, 0.375, 0.5, 0.625, 0.75, 1.0], layer_floor=0.1,
                  threads=None, workers=1, run_options=dict(max_dense_epochs=20),
                  wide_pair=dict(method="crop-s", wide="resnext101_32x48d", sparsity=0.985,
                                 narrow="resnext101_32x16d")),
}

Need = tuple  # (method, sparsity, options): the runs a claim reads, over the setting's seeds


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim: what the paper says, its number, the test (fixed before any run), the runs it reads."""

    name: str
    statement: str
    paper: str
    test: str
    check: Callable[["Runs"], tuple[str, str]]   # → (the kit's numbers, verdict)
    needs: Callable[[object], list[Need]] = lambda cfg: []  # noqa: E731


def settings(profile: str = "cpu", **overrides):
    """The claims' setting for ``profile`` (`SETTINGS`), with overrides (unknown names are an error)."""
    import types

    if profile not in SETTINGS:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(SETTINGS)}")
    values = dict(SETTINGS[profile])
    for name, value in overrides.items():
        if name not in values:
            raise ValueError(f"{name!r} is not a setting of the claims; allowed: {sorted(values)}")
        if value is not None:
            values[name] = value
    return types.SimpleNamespace(profile=profile, **values)


class Environment(NamedTuple):
    """Where a set of runs is made: torch threads per run and the CPU kernels (`cropkit.experiments.grid.KERNELS`)."""

    threads: int | None
    kernels: str = "native"

    def __str__(self) -> str:
        return self.describe()

    def describe(self, per_run: str = "") -> str:
        """'1 torch thread', '2 torch threads per run, AVX2 kernels' (``per_run=" per run"``)."""
        where = "threads as torch picks" if self.threads is None else \
            f"{self.threads} torch thread{'s' * (self.threads != 1)}"
        return where + per_run + ("" if self.kernels == "native" else f", {self.kernels.upper()} kernels")

    def cache_dir(self, cache_dir=None) -> Path | None:
        """Native runs in the cache itself; others in a folder of their own (their keys are the native runs')."""
        if self.kernels == "native":
            return cache_dir
        return Path(cache_dir or default_cache_dir()).expanduser() / f"kernels-{self.kernels}"


class Runs:
    """The runs the claims read: made as one grid (`cropkit.experiments.grid`) by :meth:`fetch`, then read with
    ``runs.get(method, sparsity, **options)`` (a method of `DECIDING` over ``deciding_seeds``, others ``seeds``).
    ``kernels`` other than "native" run in worker processes whose torch uses them."""

    def __init__(self, cfg, progress: bool = True, cache_dir=None, kernels: str = "native"):
        self.cfg, self.progress, self._done = cfg, progress, {}
        self.kernels = grid.check_kernels(kernels)
        self.cache_dir = Environment(cfg.threads, kernels).cache_dir(cache_dir)

    def seeds(self, method: str) -> list[int]:
        return list(self.cfg.deciding_seeds if method in DECIDING else self.cfg.seeds)

    def fetch(self, needs: Sequence[Need]) -> None:
        """Make (or replay) every run of ``needs`` at once, ``workers`` at a time."""
        c = self.cfg
        needs = [n for n in dict.fromkeys((m, float(p), tuple(sorted(o.items()))) for m, p, o in needs)
                 if n not in self._done]
        plans = [grid.plan([method], [sparsity], self.seeds(method), profile=c.profile, cache_dir=self.cache_dir,
                           progress=False, threads=c.threads, **{**self.run_options(), **dict(options)})
                 for method, sparsity, options in needs]
        processes = c.workers > 1 or self.kernels != "native"
        results = iter(grid.execute([job for plan in plans for job in plan], "processes" if processes else "here",
                                    workers=c.workers, progress=self.progress, kernels=self.kernels))
        for need, plan in zip(needs, plans):
            self._done[need] = [next(results) for _ in plan]

    def run_options(self) -> dict:
        c = self.cfg
        return dict(data=c.data, model=c.model, width=c.width, epochs=c.total_epochs, total_epochs=c.total_epochs,
                    **c.run_options)

    def get(self, method: str, sparsity: float, **options) -> list:
        key = (method, float(0.0 if method == "dense" else sparsity), tuple(sorted(options.items())))
        if key not in self._done:
            self.fetch([(method, key[1], options)])
        return self._done[key]

    def values(self, method: str, sparsity: float, column: str, **options) -> list[float]:
        return [float(getattr(r, column)) for r in self.get(method, sparsity, **options)]

    def fetched(self) -> list[tuple[Need, list]]:
        """Every (need, its results) made so far, in order."""
        return [((m, p, dict(o)), results) for (m, p, o), results in self._done.items()]


def _ms(values: Sequence[float], scale: float = 100, unit: str = " %") -> str:
    """'mean ± std' (std over seeds; omitted for a single seed)."""
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.1f}{unit}"
    return f"{mean:.1f} ± {statistics.stdev(values) * scale:.1f}{unit}"


def _acc(runs: Runs, method: str, sparsity: float, **options) -> list[float]:
    return runs.values(method, sparsity, "test_acc", **options)


# ----------------------------------------------------------------------------- the claims

def _near_dense(runs: Runs, **options) -> tuple[str, str]:
    """Claim 1's test; ``options`` change EarlyCroP-S's runs (e.g. ``layer_floor``, a deviation from the paper)."""
    dense = _acc(runs, "dense", 0)
    parts, found = [f"dense {_ms(dense)}"], []
    label = "EarlyCroP-S" + "".join(f" {k}={v}" for k, v in options.items())
    for p in runs.cfg.high_sparsities:
        acc = _acc(runs, "earlycrop-s", p, **options)
        gap = 100 * (statistics.fmean(dense) - statistics.fmean(acc))
        parts.append(f"{label} @{p:.0%}: {_ms(acc)} (gap {gap:+.1f} pt)")
        found.append(V.margin_verdict(2.0 - gap, 100 * V.seed_spread(dense, acc)))  # within 2 points
    return "; ".join(parts), V.combine(found)


def _best_of(runs: Runs, contender: str, field: Sequence[str]) -> tuple[str, str]:
    p = runs.cfg.sparsity
    accs = {m: _acc(runs, m, p) for m in (contender, *field)}
    means = {m: statistics.fmean(a) for m, a in accs.items()}
    rival = max(field, key=means.get)
    ranked = sorted(means, key=means.get, reverse=True)
    text = (f"@{p:.0%}: {LABELS[contender]} {_ms(accs[contender])}, rank {ranked.index(contender) + 1} of "
            f"{len(ranked)}; best other: {LABELS[rival]} {_ms(accs[rival])}")
    return text, V.margin_verdict(means[contender] - means[rival], V.seed_spread(accs[contender], accs[rival]))


def _structured_best(runs: Runs) -> tuple[str, str]:
    return _best_of(runs, "earlycrop-s", [m for m in STRUCTURED if m != "earlycrop-s"])


def _unstructured_best(runs: Runs) -> tuple[str, str]:
    return _best_of(runs, "earlycrop-u", list(UNSTRUCTURED_AT_INIT))


def _ltr_cost(runs: Runs) -> tuple[str, str]:
    p = runs.cfg.sparsity
    ltr, early = _acc(runs, "ltr", p), _acc(runs, "earlycrop-u", p)
    cost = statistics.fmean(runs.values("ltr", p, "train_seconds")) / statistics.fmean(
        runs.values("earlycrop-u", p, "train_seconds"))
    epochs = statistics.fmean(runs.values("ltr", p, "epochs_trained")) / statistics.fmean(
        runs.values("earlycrop-u", p, "epochs_trained"))
    matches = V.margin_verdict(statistics.fmean(ltr) - statistics.fmean(early) + 0.01, V.seed_spread(ltr, early))
    costs = V.REPRODUCED if cost >= 2.5 else V.NOT_REPRODUCED  # measured side by side in the same setting
    return (f"@{p:.0%}: LTR {_ms(ltr)} vs EarlyCroP-U {_ms(early)}; LTR costs {cost:.1f}× the time "
            f"({epochs:.1f}× the epochs)"), V.combine([matches, costs])


def pruned_at_init(cfg, run_options: dict) -> tuple:
    """The setting's network at initialisation (seed 0): dense, CroP-S-pruned (physically smaller) and CroP-U-masked
    to the claims' sparsity, with one training batch of the run's batch size."""
    run_cfg = run_settings("crop-s", profile=cfg.profile, **run_options)
    dataset = data_lib.load(cfg.data, batch_size=run_cfg.batch_size, seed=0, limit=run_cfg.limit)
    batches = data_lib.take(dataset.train, run_cfg.score_batches)
    x, y = batches[0]
    dense = models.build(cfg.model, dataset.input_shape, dataset.num_classes, width=cfg.width, seed=0)
    structured = prune.structured(copy.deepcopy(dense), scores.crop_nodes(dense, batches), cfg.sparsity, x[:2])
    masked = prune.unstructured(copy.deepcopy(dense), scores.crop(dense, batches), cfg.sparsity)
    return dense, structured, masked, x, y


def _structured_saves(runs: Runs, rounds: int = 5) -> tuple[str, str]:
    """Timed interleaved (dense, structured, masked, dense, …; medians), so machine load hits all three alike."""
    cfg = runs.cfg
    dense, structured, masked, x, y = pruned_at_init(cfg, runs.run_options())
    candidates = {"dense": dense, "structured": structured, "masked": masked}
    times = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, model in candidates.items():
            times[name].append(measure.batch_time(model, x, y, warmup=1, repeats=3))
    time_ratio = {n: statistics.median(t) / statistics.median(times["dense"]) for n, t in times.items()}
    memory = {n: measure.peak_memory(m, x, y) for n, m in candidates.items()}
    memory_ratio = {n: memory[n]["bytes"] / memory["dense"]["bytes"] for n in candidates}
    text = (f"{cfg.model} ×{cfg.width} @{cfg.sparsity:.0%}, a training step of batch {len(x)} against dense "
            f"(timed interleaved, {rounds} rounds, {hardware.device_name(x.device)}): CroP-S batch time "
            f"×{time_ratio['structured']:.2f}, peak memory ×{memory_ratio['structured']:.2f}; CroP-U masks "
            f"×{time_ratio['masked']:.2f}, ×{memory_ratio['masked']:.2f} (memory: {memory['dense']['method']})")
    saves = time_ratio["structured"] < 0.9 and memory_ratio["structured"] < 0.9
    masks_do_not = time_ratio["masked"] >= 0.9 and memory_ratio["masked"] >= 0.9
    return text, V.REPRODUCED if saves and masks_do_not else V.NOT_REPRODUCED


def _paper_pair(runs: Runs, pair: dict) -> tuple[str, str]:
    """The paper's own pair (``wide_pair``): the wide model pruned by ``method`` to ``sparsity`` against the dense
    narrow model; it holds when the pruned wide model is more accurate and needs no more memory."""
    wide = runs.get(pair["method"], pair["sparsity"], model=pair["wide"], width=1.0)
    narrow = runs.get("dense", 0.0, model=pair["narrow"], width=1.0)
    memory = {k: statistics.fmean(r.peak_memory_bytes for r in v) for k, v in (("wide", wide), ("narrow", narrow))}
    accuracy = {k: [r.test_acc for r in v] for k, v in (("wide", wide), ("narrow", narrow))}
    text = (f"{pair['wide']} {LABELS[pair['method']]} @{pair['sparsity']:.1%}: {_ms(accuracy['wide'])} "
            f"at {memory['wide'] / 1e9:.2f} GB vs dense {pair['narrow']}: {_ms(accuracy['narrow'])} at "
            f"{memory['narrow'] / 1e9:.2f} GB")
    better = V.margin_verdict(statistics.fmean(accuracy["wide"]) - statistics.fmean(accuracy["narrow"]),
                              V.seed_spread(accuracy["wide"], accuracy["narrow"]))
    return text, V.combine([better, V.REPRODUCED if memory["wide"] <= memory["narrow"] else V.NOT_REPRODUCED])


def _wide_needs(c) -> list[Need]:
    pair = getattr(c, "wide_pair", None)
    if pair:
        return [(pair["method"], pair["sparsity"], dict(model=pair["wide"], width=1.0)),
                ("dense", 0.0, dict(model=pair["narrow"], width=1.0))]
    return [("crop-s", c.wide_sparsity, dict(width=c.wide_width))] + [("dense", 0.0, dict(width=w))
                                                                      for w in c.narrow_widths]


def _wide_beats_narrow(runs: Runs) -> tuple[str, str]:
    c = runs.cfg
    if getattr(c, "wide_pair", None):  # the paper profile: exactly the paper's ResNeXt pair
        return _paper_pair(runs, c.wide_pair)
    wide = runs.get("crop-s", c.wide_sparsity, width=c.wide_width)
    budget = statistics.fmean(r.peak_memory_bytes for r in wide)
    narrow_width, narrow = None, None
    for width in sorted(c.narrow_widths):  # the widest dense model whose training step fits the wide one's memory
        candidate = runs.get("dense", 0.0, width=width)
        if statistics.fmean(r.peak_memory_bytes for r in candidate) <= budget:
            narrow_width, narrow = width, candidate
    if narrow is None:
        return f"no dense width in {c.narrow_widths} fits the pruned wide model's {budget / 1e6:.2f} MB", \
            V.NOT_REPRODUCED
    wide_acc, narrow_acc = [r.test_acc for r in wide], [r.test_acc for r in narrow]
    text = (f"×{c.wide_width} CroP-S @{c.wide_sparsity:.0%}: {_ms(wide_acc)} at {budget / 1e6:.2f} MB vs dense "
            f"×{narrow_width}: {_ms(narrow_acc)} at "
            f"{statistics.fmean(r.peak_memory_bytes for r in narrow) / 1e6:.2f} MB")
    return text, V.margin_verdict(statistics.fmean(wide_acc) - statistics.fmean(narrow_acc),
                                  V.seed_spread(wide_acc, narrow_acc))


CLAIMS = (
    Claim("earlycrop-s near dense", "EarlyCroP-S stays close to dense at high sparsity",
          "ResNet18/CIFAR-10 @95 %: 91.0 % vs dense 91.5 %; VGG16/CIFAR-10 @98 %: 93.0 % vs 90.2 %",
          "within 2 points of dense at every high sparsity", _near_dense,
          lambda c: [("dense", 0.0, {})] + [("earlycrop-s", p, {}) for p in c.high_sparsities]),
    Claim("earlycrop-s best structured", "EarlyCroP-S beats the other structured methods",
          "ResNet18/CIFAR-10 @95 %: 91.0 % vs next best CroPit-S 87.8 % (best in all four tables)",
          "mean test accuracy above the best of the other seven structured methods", _structured_best,
          lambda c: [(m, c.sparsity, {}) for m in STRUCTURED]),
    Claim("earlycrop-u beats at-init", "EarlyCroP-U beats the at-init unstructured criteria",
          "ResNet18/CIFAR-10 @95 %: 91.1 % vs best at-init CroPit-U 89.1 %",
          "mean test accuracy above the best of Random-U, SNIP, GraSP, CroP-U and CroPit-U", _unstructured_best,
          lambda c: [(m, c.sparsity, {}) for m in ("earlycrop-u", *UNSTRUCTURED_AT_INIT)]),
    Claim("ltr matches at a cost", "LTR matches EarlyCroP-U, at ≥ 2.5× the training cost",
          "ResNet18/CIFAR-10 @95 %: LTR 91.5 % in 1.94 h vs EarlyCroP-U 91.1 % in 0.74 h (2.6×)",
          "LTR within 1 point of (or above) EarlyCroP-U and ≥ 2.5× its training time", _ltr_cost,
          lambda c: [("ltr", c.sparsity, {}), ("earlycrop-u", c.sparsity, {})]),
    Claim("structured saves, masks do not", "Structured pruning saves time and memory; masks do not",
          "ResNet18/CIFAR-10 @95 %: EarlyCroP-S 66 ms, 0.56 GB vs dense 109 ms, 2.38 GB; EarlyCroP-U 97 ms, 2.86 GB",
          "structured (CroP-S) below 0.9× dense in batch time and peak memory; masked (CroP-U) ≥ 0.9× in both",
          _structured_saves),
    Claim("pruned wide beats dense narrow", "A pruned wide model beats a dense narrow one of equal memory",
          "ResNeXt101 32×48d CroP-S @98.5 %: 92.5 % at 3.56 GB vs dense 32×16d: 92.1 % at 3.89 GB",
          "pruned wide mean accuracy above the widest dense model whose peak memory fits the same budget",
          _wide_beats_narrow, _wide_needs),
)


# ----------------------------------------------------------------------------- the table

def _floor_needs(c) -> list[Need]:
    """Beside the claims, not one of them: EarlyCroP-S with a per-layer floor (a deviation from the paper)."""
    return [("earlycrop-s", p, dict(layer_floor=c.layer_floor)) for p in c.high_sparsities]


def _runs_table(runs: Runs) -> list[dict]:
    """Per fetched configuration: accuracy (final, best), the training loss at the end beside dense's, total
    epochs, cuts, detector (fired / forced, at which epochs), and for structured methods the stage layout."""
    rows = []
    for (method, sparsity, options), results in runs.fetched():
        spec = REGISTRY[method]
        cfg = run_settings(method, profile=runs.cfg.profile, **{**runs.run_options(), **options})
        fired = [r.prune_epoch for r in results if r.forced is False]
        forced = [r.prune_epoch for r in results if r.forced]
        rows.append(dict(
            method=LABELS[method] + "".join(f" {k}={v}" for k, v in options.items()), sparsity=sparsity,
            seeds=len(results), test_acc=_ms([r.test_acc for r in results]),
            best_test_acc=_ms([r.best_test_acc for r in results]),
            train_loss_end=statistics.fmean(r.history[-1]["train_loss"] for r in results),
            epochs=statistics.fmean(r.epochs_trained for r in results), cuts=spec.cuts(cfg),
            detector=(f"fired {len(fired)} at {sorted(fired)}, forced {len(forced)}" if fired or forced else ""),
            layout=stage_layout(results[0].layout) if results[0].layout else ""))
    return rows


def provenance(threads, kernel_sets=("native",)) -> dict:
    """Where and when the table's numbers were made: threads, CPU and the vector instructions torch's kernels use
    (per-seed results move with both: `benchmarks/cpu_kernels.py`), the kernel sets the runs were made with, library
    versions, the commit, the date."""
    commit = None
    root = checkout()
    if root is not None:
        try:
            done = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True,
                                  text=True, timeout=10)
            commit = done.stdout.strip() or None
        except OSError:
            commit = None
    import torch

    return dict(threads=threads, machine=hardware.device_name("cpu"), kernels=torch.backends.cpu.get_cpu_capability(),
                kernel_sets=list(kernel_sets), versions=library_versions(), commit=commit,
                date=datetime.date.today().isoformat())


def check_kernel_sets(kernels: Sequence[str]) -> list[str]:
    """The kernel sets to run the claims with: each known, none twice, each one this CPU can run and none the same as
    another (AVX2 on a CPU whose native kernels are AVX2 repeats the native runs) — checked in a fresh process each."""
    kernels = list(kernels)
    if not kernels:
        raise ValueError(f"give at least one kernel set; choose from {list(grid.KERNELS)}")
    repeated = sorted({k for k in kernels if kernels.count(k) > 1})
    if repeated:
        raise ValueError(f"kernels {kernels} repeat {repeated}; give each once")
    found = {k: grid.call_with_kernels(grid.check_kernels(k), grid.capability) for k in kernels}
    same = [k for k in kernels if k != "native" and found[k] == grid.capability() and "native" in kernels]
    if same:
        raise ValueError(f"this CPU's native kernels are {grid.capability()} already: kernels {same} would repeat "
                         f"the native runs; give --kernels native alone")
    return kernels


def _checks(claims: Sequence[Claim], runs: Runs) -> list[tuple[str, str]]:
    """Each claim's (numbers, verdict). A claim that measures rather than reads runs (claim 5 times training steps)
    is computed in a process with the runs' kernels."""
    return [claim.check(runs) if claim.needs(runs.cfg) or runs.kernels == "native" else
            grid.call_with_kernels(runs.kernels, claim.check, runs) for claim in claims]


def fit_workers(workers: int, threads: int | None, explicit: bool = False) -> int:
    """Runs at once under ``threads`` torch threads each: the setting's ``workers``, fewer where ``workers × threads``
    would exceed this process's CPUs (runs then contend for cores: on 2 cores, two 2-thread runs at once took several
    times as long each as one alone). A count the user chose (``explicit``) is kept, with a warning."""
    cores = run_cpus()
    if threads is None or workers * threads <= cores:
        return workers
    if explicit:
        warnings.warn(f"{workers} runs at once × {threads} torch threads each exceed the {cores} CPUs here: the runs "
                      "will contend for cores (results are unchanged, time is not); fewer workers avoid it",
                      stacklevel=2)
        return workers
    fit = max(1, cores // threads)
    print(f"claims: {threads} torch threads per run on {cores} CPUs: {fit} run{'s' * (fit != 1)} at once "
          f"(the setting's {workers} would oversubscribe the cores)", flush=True)
    return fit


def check(profile: str = "cpu", claims: Sequence[Claim] = CLAIMS, progress: bool = True, cache_dir=None,
          threads: Sequence[int] | None = None, kernels: Sequence[str] = ("native",), **overrides):
    """Run what every claim needs (or replay it from the results cache) in each environment — each thread count of
    ``threads`` (default: the setting's) with each kernel set of ``kernels`` (`cropkit.experiments.grid.KERNELS`) —
    and return the table (pandas.DataFrame, one row per claim): the kit's numbers and verdict per environment, and the
    verdict across them. ``table.attrs`` holds the setting, the per-method runs per environment, the provenance and
    the reference code's deviations."""
    import pandas as pd

    cfg = settings(profile, **overrides)
    for seeds in (cfg.seeds, cfg.deciding_seeds):
        grid.check_seeds(seeds)
    kernels = check_kernel_sets(kernels)
    counts = list(threads) if threads else [cfg.threads]
    environments = [Environment(t, k) for k in kernels for t in counts]
    found, tables, floored = {}, {}, {}
    for env in environments:
        if len(environments) > 1 and progress:
            print(f"claims: runs with {env}", flush=True)
        workers = fit_workers(cfg.workers, env.threads, explicit=overrides.get("workers") is not None)
        runs = Runs(settings(profile, **{**overrides, "threads": env.threads, "workers": workers}), progress=progress,
                    cache_dir=cache_dir, kernels=env.kernels)
        runs.fetch([need for claim in claims for need in claim.needs(runs.cfg)] + _floor_needs(runs.cfg))
        found[env] = _checks(claims, runs)
        if _floor_needs(runs.cfg):
            floored[env] = _near_dense(runs, layer_floor=runs.cfg.layer_floor)
        tables[env] = _runs_table(runs)
    rows = []
    for i, claim in enumerate(claims):
        per = {env: found[env][i] for env in environments}
        rows.append(dict(claim=claim.statement, paper=claim.paper, kit=per[environments[0]][0], test=claim.test,
                         verdict=V.across([v for _, v in per.values()]),
                         **{f"verdict ({env})": v for env, (_, v) in per.items()} if len(environments) > 1 else {}))
    table = pd.DataFrame(rows)
    floor = dict(found=floored, verdict=V.across([v for _, v in floored.values()])) if floored else None
    table.attrs.update(setting=dict(vars(cfg)), runs=tables, floor=floor, provenance=provenance(counts, kernels),
                       deviations=deviations.reference_deviations(cfg))
    return table


def markdown(table) -> str:
    """The claims table as Markdown, its setting and provenance, the runs behind it, and the reference code's
    deviations."""
    s, p = table.attrs.get("setting", {}), table.attrs.get("provenance", {})
    extra = [c for c in table.columns if c.startswith("verdict (")]
    lines = ["| claim | paper | kit (mean ± std over seeds) | test | verdict |" + "".join(f" {c} |" for c in extra),
             "|---|---|---|---|---|" + "---|" * len(extra)]
    lines += [f"| {r['claim']} | {r['paper']} | {r['kit']} | {r['test']} | **{r['verdict']}** |"
              + "".join(f" {r[c]} |" for c in extra) for _, r in table.iterrows()]
    lines += ["", f"Setting: {s.get('data')} / {s.get('model')} ×{s.get('width')}, every method "
              f"{s.get('total_epochs')} epochs in total (LTR: each of its trainings), seeds {s.get('seeds')} "
              f"({s.get('deciding_seeds')} for {', '.join(LABELS[m] for m in DECIDING)}), profile "
              f"{s.get('profile')}; EarlyCroP's detector: {s.get('run_options', {}).get('rule')} rule, τ = "
              f"{s.get('run_options', {}).get('threshold')}, at most {s.get('run_options', {}).get('max_dense_epochs')}"
              f" dense epochs.",
              f"Provenance: torch threads {p.get('threads')}, CPU {p.get('machine')}"
              + (f" ({p['kernels']} kernels" + "".join(f"; also {k.upper()}" for k in p.get("kernel_sets", ())
                                                      if k != "native") + ")" if p.get("kernels") else "") + ", "
              + ", ".join(f"{k} {v}" for k, v in (p.get("versions") or {}).items())
              + f", cropkit {p.get('commit')}, {p.get('date')}.", ""]
    floor = table.attrs.get("floor")
    if floor:
        found = floor["found"]
        per = "; ".join(f"{env}: {v}" for env, (_, v) in found.items()) if len(found) > 1 else ""
        lines += [f"Beside the claims, not one of them: claim 1's test with EarlyCroP-S keeping at least "
                  f"{s.get('layer_floor'):.0%} of every layer's nodes (`layer_floor`, a deviation from the paper, off "
                  f"by default): {next(iter(found.values()))[0]}: **{floor['verdict']}**" + (f" ({per})" if per else "")
                  + ".", ""]
    for env, rows in (table.attrs.get("runs") or {}).items():
        lines += [f"The runs behind the claims ({env.describe(' per run')}; train loss: the last epoch's mean):", "",
                  "| method | sparsity | seeds | test acc | best test acc | train loss (end) | epochs | cuts | "
                  "detector | kept channels per stage (seed 0) |", "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['sparsity']:.0%} | {r['seeds']} | {r['test_acc']} | {r['best_test_acc']} | "
                  f"{r['train_loss_end']:.3f} | {r['epochs']:.0f} | {r['cuts']} | {r['detector']} | {r['layout']} |"
                  for r in rows]
        lines.append("")
    for d in [table.attrs.get("deviations") or []]:
        if d:
            lines += ["The reference code's deviations, measured on the same network and scoring batches:", "",
                      "| deviation | what it changes |", "|---|---|"]
            lines += [f"| {row['deviation']} | {row['changes']} |" for row in d]
    return "\n".join(lines) + "\n"
