"""The paper's claims, checked: one row per claim, the paper's number beside the kit's, and a verdict.

    table = cropkit.claims.check(profile="cpu")          # runs (or replays from the cache) what each claim needs
    print(cropkit.claims.markdown(table))

From the shell: ``cropkit claims --profile cpu --out outputs/claims.md``.

Each claim is stated as the paper's result tables state it (Rachwan et al., ICML 2022, Tables 1–4 and the
ResNeXt table of Section 5) and gets a *test decided before the runs*: the tolerance is part of the claim's
definition below, never chosen after seeing the numbers. The verdict is ``reproduced`` when the kit's runs pass the
test, ``not reproduced`` when they do not, and ``not testable offline`` when the claim concerns something the
offline setting cannot show (e.g. GPU memory of CIFAR-sized networks). All numbers come from ``cropkit.run`` over
``seeds`` (≥ 3 under the cpu profile), reported as mean ± std.

The reference code's own deviations from the papers it implements are measured on the same network and batches
(:func:`reference_deviations`): how far its choice moves the kept set away from the paper's definition.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Callable, Sequence

from cropkit.core import hardware, measure, prune, scores
from cropkit.experiments import grid, profiles, runs
from cropkit.methods import registry as methods_lib
from cropkit.methods.registry import REGISTRY, family
from cropkit.tasks import data as data_lib
from cropkit.tasks import models

UNSTRUCTURED_AT_INIT = tuple(m for m in family("Unstructured") if REGISTRY[m].when == "at init")
STRUCTURED = family("Structured")

Need = tuple  # (method, sparsity, options): runs over the setting's seeds that a claim reads


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim: what the paper says, its number, the test applied to the kit's runs, and the runs it reads."""

    name: str
    statement: str
    paper: str
    test: str   # the pass rule in words, fixed before any run
    check: Callable[["Runs"], tuple[str, bool | None]]   # → (the kit's number, passed?) ; None = not testable
    needs: Callable[[object], list[Need]] = lambda cfg: []  # noqa: E731  (the setting → the runs it reads)


class Runs:
    """The runs the claims read, over the setting's seeds: made as one grid (`cropkit.experiments.grid`) by
    :meth:`fetch`, then read with ``runs.get(method, sparsity, **options)``."""

    def __init__(self, cfg, progress: bool = True, cache_dir=None, workers: int = 1):
        self.cfg, self.progress, self.cache_dir, self.workers, self._done = cfg, progress, cache_dir, workers, {}

    def fetch(self, needs: Sequence[Need]) -> None:
        """Make (or replay) every run of ``needs`` at once, ``workers`` at a time."""
        c = self.cfg
        needs = [n for n in dict.fromkeys((m, float(p), tuple(sorted(o.items()))) for m, p, o in needs)
                 if n not in self._done]
        plans = []
        for method, sparsity, options in needs:
            run_options = dict(data=c.data, model=c.model, width=c.width, epochs=c.epochs, **c.run_options)
            run_options.update(options)
            plans.append(grid.plan([method], [sparsity], c.seeds, profile=c.profile, cache_dir=self.cache_dir,
                                   progress=False, **run_options))
        jobs = [job for plan in plans for job in plan]
        results = iter(grid.execute(jobs, "processes" if self.workers > 1 else "here", workers=self.workers,
                                    progress=self.progress))
        for need, plan in zip(needs, plans):
            self._done[need] = [next(results) for _ in plan]

    def get(self, method: str, sparsity: float, **options) -> list:
        key = (method, float(sparsity), tuple(sorted(options.items())))
        if key not in self._done:
            self.fetch([(method, sparsity, options)])
        return self._done[key]

    def values(self, method: str, sparsity: float, column: str, **options) -> list[float]:
        return [float(getattr(r, column)) for r in self.get(method, sparsity, **options)]


def _ms(values: Sequence[float], scale: float = 100, unit: str = " %") -> str:
    """'mean ± std' (std over seeds; omitted for a single seed)."""
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.1f}{unit}"
    return f"{mean:.1f} ± {statistics.stdev(values) * scale:.1f}{unit}"


def _acc(runs: Runs, method: str, sparsity: float, **options) -> list[float]:
    return runs.values(method, 0.0 if method == "dense" else sparsity, "test_acc", **options)


# ----------------------------------------------------------------------------- the claims

def _near_dense(runs: Runs) -> tuple[str, bool]:
    dense = statistics.fmean(_acc(runs, "dense", 0))
    parts, ok = [f"dense {_ms(_acc(runs, 'dense', 0))}"], True
    for p in runs.cfg.high_sparsities:
        acc = _acc(runs, "earlycrop-s", p)
        gap = 100 * (dense - statistics.fmean(acc))
        parts.append(f"EarlyCroP-S @{p:.0%}: {_ms(acc)} (gap {gap:+.1f} pt)")
        ok &= gap <= 2.0
    return "; ".join(parts), ok


def _best_of(runs: Runs, contender: str, field: Sequence[str]) -> tuple[str, bool]:
    p = runs.cfg.sparsity
    means = {m: statistics.fmean(_acc(runs, m, p)) for m in (contender, *field)}
    rival = max(field, key=means.get)
    ranked = sorted(means, key=means.get, reverse=True)
    text = (f"@{p:.0%}: {methods_lib.LABELS[contender]} {_ms(_acc(runs, contender, p))}, rank "
            f"{ranked.index(contender) + 1} of {len(ranked)}; best other: {methods_lib.LABELS[rival]} "
            f"{_ms(_acc(runs, rival, p))}")
    return text, means[contender] >= means[rival]


def _structured_best(runs: Runs) -> tuple[str, bool]:
    return _best_of(runs, "earlycrop-s", [m for m in STRUCTURED if m != "earlycrop-s"])


def _unstructured_best(runs: Runs) -> tuple[str, bool]:
    return _best_of(runs, "earlycrop-u", list(UNSTRUCTURED_AT_INIT))


def _ltr_cost(runs: Runs) -> tuple[str, bool]:
    p = runs.cfg.sparsity
    ltr, early = _acc(runs, "ltr", p), _acc(runs, "earlycrop-u", p)
    cost = statistics.fmean(runs.values("ltr", p, "train_seconds")) / statistics.fmean(
        runs.values("earlycrop-u", p, "train_seconds"))
    epochs = statistics.fmean(runs.values("ltr", p, "epochs_trained")) / statistics.fmean(
        runs.values("earlycrop-u", p, "epochs_trained"))
    matches = statistics.fmean(ltr) >= statistics.fmean(early) - 0.01
    return (f"@{p:.0%}: LTR {_ms(ltr)} vs EarlyCroP-U {_ms(early)}; LTR costs {cost:.1f}× the time "
            f"({epochs:.1f}× the epochs)"), matches and cost >= 2.5


def _pruned_at_init(cfg) -> tuple:
    """The setting's network at initialisation (seed 0): dense, CroP-S-pruned (physically smaller) and CroP-U-masked
    to the claims' sparsity, with one training batch of the run's batch size."""
    import copy


    run_cfg = runs.settings("crop-s", profile=cfg.profile, data=cfg.data, model=cfg.model, width=cfg.width,
                                   **cfg.run_options)
    dataset = data_lib.load(cfg.data, batch_size=run_cfg.batch_size, seed=0, limit=run_cfg.limit)
    batches = data_lib.take(dataset.train, run_cfg.score_batches)
    x, y = batches[0]
    dense = models.build(cfg.model, dataset.input_shape, dataset.num_classes, width=cfg.width, seed=0)
    structured = prune.structured(copy.deepcopy(dense), scores.crop_nodes(dense, batches), cfg.sparsity, x[:2])
    masked = prune.unstructured(copy.deepcopy(dense), scores.crop(dense, batches), cfg.sparsity)
    return dense, structured, masked, x, y


def _structured_saves(runs: Runs, rounds: int = 5) -> tuple[str, bool]:
    """Timed interleaved (dense, structured, masked, dense, …; medians), so machine load hits all three alike:
    a per-run batch time of the trained runs moves by ±50 % on a busy machine."""

    cfg = runs.cfg
    dense, structured, masked, x, y = _pruned_at_init(cfg)
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
    return text, saves and masks_do_not


def _paper_pair(runs: Runs, pair: dict) -> tuple[str, bool]:
    """The paper's own pair (``wide_pair`` of the claims' setting): the wide model pruned by ``method`` to
    ``sparsity`` against the dense narrow model; it passes when the pruned wide model is at least as accurate and
    needs no more memory."""
    wide = runs.get(pair["method"], pair["sparsity"], model=pair["wide"], width=1.0)
    narrow = runs.get("dense", 0.0, model=pair["narrow"], width=1.0)
    memory = {k: statistics.fmean(r.peak_memory_bytes for r in v) for k, v in (("wide", wide), ("narrow", narrow))}
    accuracy = {k: [r.test_acc for r in v] for k, v in (("wide", wide), ("narrow", narrow))}
    text = (f"{pair['wide']} {methods_lib.LABELS[pair['method']]} @{pair['sparsity']:.1%}: {_ms(accuracy['wide'])} "
            f"at {memory['wide'] / 1e9:.2f} GB vs dense {pair['narrow']}: {_ms(accuracy['narrow'])} at "
            f"{memory['narrow'] / 1e9:.2f} GB")
    return text, (statistics.fmean(accuracy["wide"]) >= statistics.fmean(accuracy["narrow"])
                  and memory["wide"] <= memory["narrow"])


def _wide_needs(c) -> list[Need]:
    pair = getattr(c, "wide_pair", None)
    if pair:
        return [(pair["method"], pair["sparsity"], dict(model=pair["wide"], width=1.0)),
                ("dense", 0.0, dict(model=pair["narrow"], width=1.0))]
    return [("crop-s", c.wide_sparsity, dict(width=c.wide_width))] + [("dense", 0.0, dict(width=w))
                                                                      for w in c.narrow_widths]


def _wide_beats_narrow(runs: Runs) -> tuple[str, bool]:
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
        return f"no dense width in {c.narrow_widths} fits the pruned wide model's {budget / 1e6:.2f} MB", False
    wide_acc, narrow_acc = [r.test_acc for r in wide], [r.test_acc for r in narrow]
    text = (f"×{c.wide_width} CroP-S @{c.wide_sparsity:.0%}: {_ms(wide_acc)} at {budget / 1e6:.2f} MB vs dense "
            f"×{narrow_width}: {_ms(narrow_acc)} at "
            f"{statistics.fmean(r.peak_memory_bytes for r in narrow) / 1e6:.2f} MB")
    return text, statistics.fmean(wide_acc) >= statistics.fmean(narrow_acc)


CLAIMS = (
    Claim("earlycrop-s near dense", "EarlyCroP-S stays close to dense at high sparsity",
          "ResNet18/CIFAR-10 @95 %: 91.0 % vs dense 91.5 %; VGG16/CIFAR-10 @98 %: 93.0 % vs 90.2 %",
          "within 2 points of dense at every high sparsity", _near_dense,
          lambda c: [("dense", 0.0, {})] + [("earlycrop-s", p, {}) for p in c.high_sparsities]),
    Claim("earlycrop-s best structured", "EarlyCroP-S beats the other structured methods",
          "ResNet18/CIFAR-10 @95 %: 91.0 % vs next best CroPit-S 87.8 % (best in all four tables)",
          "highest mean test accuracy of the eight structured methods", _structured_best,
          lambda c: [(m, c.sparsity, {}) for m in STRUCTURED]),
    Claim("earlycrop-u beats at-init", "EarlyCroP-U beats the at-init unstructured criteria",
          "ResNet18/CIFAR-10 @95 %: 91.1 % vs best at-init CroPit-U 89.1 %",
          "mean test accuracy ≥ that of Random-U, SNIP, GraSP, CroP-U and CroPit-U", _unstructured_best,
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
          "pruned wide mean accuracy ≥ the widest dense model whose peak memory fits the same budget",
          _wide_beats_narrow, lambda c: _wide_needs(c)),
)


def settings(profile: str = "cpu", **overrides):
    """The claims' setting for ``profile`` (`cropkit.experiments.profiles` table "claims"), with overrides."""
    return profiles.settings("claims", profile, **overrides)


def check(profile: str = "cpu", claims: Sequence[Claim] = CLAIMS, progress: bool = True, cache_dir=None,
          workers: int = 1, **overrides):
    """Run what every claim needs (or replay it from the results cache ``cache_dir``, default
    `cropkit.paths.cache_root`) and return the table (pandas.DataFrame, one row per claim)."""
    import pandas as pd

    cfg = settings(profile, **overrides)
    if len(cfg.seeds) != len(set(cfg.seeds)):
        raise ValueError(f"seeds must be distinct; got {cfg.seeds}")
    runs = Runs(cfg, progress=progress, cache_dir=cache_dir, workers=workers)
    runs.fetch([need for claim in claims for need in claim.needs(cfg)])
    rows = []
    for claim in claims:
        measured, passed = claim.check(runs)
        verdict = "not testable offline" if passed is None else "reproduced" if passed else "not reproduced"
        rows.append(dict(claim=claim.statement, paper=claim.paper, kit=measured, test=claim.test, verdict=verdict))
    table = pd.DataFrame(rows)
    table.attrs["setting"] = dict(profile=cfg.profile, data=cfg.data, model=cfg.model, width=cfg.width,
                                  epochs=cfg.epochs, seeds=list(cfg.seeds), sparsity=cfg.sparsity,
                                  high_sparsities=list(cfg.high_sparsities), **cfg.run_options)
    table.attrs["deviations"] = reference_deviations(cfg)
    return table


# ----------------------------------------------------------------------------- the reference code's deviations

def _kept(scores: dict, sparsity: float, strict: bool = False) -> set:
    """Flat indices (over all layers in order) of the weights a global top-k keeps; ``strict`` keeps only scores
    strictly above the k-th largest (the reference code: k − 1 weights, ties dropped)."""
    import torch

    flat = torch.cat([s.flatten() for s in scores.values()])
    k = max(1, int(round((1 - sparsity) * flat.numel())))
    values, order = torch.topk(flat, k)
    if strict:
        order = order[values > values[-1]]
    return set(order.tolist())


def reference_deviations(cfg) -> list[dict]:
    """What each deviation of the EarlyCroP reference code changes, measured on a fresh model of the claims'
    setting and its scoring batches at the claims' sparsity: the share of the paper-definition kept set that the
    reference choice would not keep."""
    import torch.nn.functional as F


    run_cfg = runs.settings("crop-u", profile=cfg.profile, data=cfg.data, model=cfg.model, width=cfg.width,
                                   **cfg.run_options)
    dataset = data_lib.load(cfg.data, batch_size=run_cfg.batch_size, seed=0, limit=run_cfg.limit)
    model = models.build(cfg.model, dataset.input_shape, dataset.num_classes, width=cfg.width, seed=0)
    batches = data_lib.take(dataset.train, run_cfg.score_batches)
    p = cfg.sparsity

    def changed(ours: dict, theirs: dict, strict: bool = False) -> str:
        a, b = _kept(ours, p), _kept(theirs, p, strict=strict)
        differ = len(a - b)
        return f"{differ:,} of the {len(a):,} kept weights ({differ / len(a):.1%}) differ at {p:.0%} sparsity"

    nll_on_logits = lambda out, y: F.nll_loss(out, y)  # noqa: E731  (no log-softmax: the reference's SNIP/SNAP)
    grasp = scores.grasp(model, batches)
    crop = scores.crop(model, batches)
    rows = [
        dict(deviation="GraSP inverted (keeps what GraSP removes)",
             changes=changed(grasp, {k: -v for k, v in grasp.items()})),
        dict(deviation="SNIP scored with nll_loss on raw logits instead of cross-entropy",
             changes=changed(scores.snip(model, batches), scores.snip(model, batches, loss_fn=nll_on_logits))),
        dict(deviation="keeps only scores strictly above the k-th largest (k − 1 weights, ties dropped)",
             changes=changed(crop, crop, strict=True)),
        dict(deviation="scores on the first test-set batches instead of training batches",
             changes=changed(crop, scores.crop(model, data_lib.take(dataset.test, run_cfg.score_batches)))),
    ]
    return rows


def markdown(table) -> str:
    """The claims table as Markdown, with its setting and the reference code's deviations below it."""
    s = table.attrs.get("setting", {})
    lines = ["| claim | paper | kit (mean ± std over seeds) | test | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {r.claim} | {r.paper} | {r.kit} | {r.test} | **{r.verdict}** |" for r in table.itertuples()]
    lines += ["", f"Setting: {s.get('data')} / {s.get('model')} ×{s.get('width')}, {s.get('epochs')} epochs after "
              f"pruning, seeds {s.get('seeds')}, profile {s.get('profile')}.", ""]
    deviations = table.attrs.get("deviations") or []
    if deviations:
        lines += ["The reference code's deviations, measured on the same network and scoring batches:", "",
                  "| deviation | what it changes |", "|---|---|"]
        lines += [f"| {d['deviation']} | {d['changes']} |" for d in deviations]
    return "\n".join(lines) + "\n"


def against_dense(summary: dict, sparsities: Sequence[float], higher_is_better: bool, at_init: Sequence[str],
                  contender: str = "earlycrop-u", dense: str = "dense-long", floor: tuple | None = None) -> dict:
    """The per-domain verdict of lesson 05 on the paper's finding (Rachwan et al. 2022, §5: close to dense up to
    high sparsity, better than the at-init baselines), from ``summary`` = {(method, sparsity): (mean, std)} over
    seeds (dense at sparsity 0.0). At each swept sparsity p, with σ the seeds' standard deviations:

    * close to dense: the contender is better than ``dense`` or worse by at most √(σ_c² + σ_d²);
    * ahead of at-init: it is at least as good as the best ``at_init`` method at p, up to √(σ_c² + σ_b²).

    ``reproduced`` when both hold at every p, ``not reproduced`` when they hold together at none, else ``mixed``;
    ``undecided`` when dense does not beat the know-nothing ``floor`` = (name, value) by more than its σ.
    """
    def better(a, b):  # a − b in the direction of "better"
        return a - b if higher_is_better else b - a

    d_mean, d_std = summary[(dense, 0.0)]
    per_sparsity = []
    for p in sparsities:
        if (contender, p) not in summary:
            continue
        c_mean, c_std = summary[(contender, p)]
        gap, spread = better(c_mean, d_mean), math.hypot(c_std, d_std)
        row = dict(sparsity=p, earlycrop_u=c_mean, dense=d_mean, gap_to_dense=gap, spread_dense=spread,
                   close_to_dense=bool(gap >= -spread))
        if at_init:
            best = max(at_init, key=lambda m: better(summary[(m, p)][0], 0.0))
            b_mean, b_std = summary[(best, p)]
            gap, spread = better(c_mean, b_mean), math.hypot(c_std, b_std)
            row.update(best_at_init=best, best_at_init_value=b_mean, gap_to_at_init=gap, spread_at_init=spread,
                       ahead_of_at_init=bool(gap >= -spread))
        row["holds"] = row["close_to_dense"] and row.get("ahead_of_at_init", True)
        per_sparsity.append(row)
    holds = [r["holds"] for r in per_sparsity]
    verdict = "reproduced" if holds and all(holds) else "not reproduced" if not any(holds) else "mixed"
    if floor is not None and better(d_mean, floor[1]) <= d_std:
        verdict = f"undecided: dense does not beat the {floor[0]} ({floor[1]:.3f})"  # nothing learned to keep
    close = [r["sparsity"] for r in per_sparsity if r["close_to_dense"]]
    result = dict(verdict=verdict, per_sparsity=per_sparsity, close_to_dense_up_to=max(close) if close else None)
    if floor is not None and per_sparsity:  # how fine the seeds' spread is against what dense learned
        result["spread_over_learned"] = (max(r["spread_dense"] for r in per_sparsity)
                                         / max(abs(d_mean - floor[1]), 1e-12))
    return result
