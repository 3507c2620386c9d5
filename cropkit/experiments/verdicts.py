"""Verdicts decided by rules fixed before the runs, read against the seeds' spread: a difference within it is a tie,
and a tie decides nothing ("undecided").

    margin_verdict(margin, spread)    a claim's margin (positive: it holds) against √(σ_a² + σ_b²)
    combine(verdicts)                 several conditions of one claim
    against_dense(summary, …)         lesson 05's per-domain verdict on the paper's finding
    disturbance(as_is, disturbed, r)  did shuffling, re-initialising or inverting a prune cost accuracy (lesson 06)
    sanity_claims(accuracy, r)        Frankle et al. (2021)'s claims on a lesson's runs; knows_which: the kit's question
"""
from __future__ import annotations

import math
import statistics
from typing import Sequence

REPRODUCED, NOT_REPRODUCED, UNDECIDED = "reproduced", "not reproduced", "undecided"


def seed_spread(*samples: Sequence[float]) -> float:
    """√(Σ σ²) of the samples' standard deviations (0 for a single value): what a difference is read against."""
    return math.sqrt(sum(statistics.stdev(s) ** 2 for s in samples if len(s) > 1))


def margin_verdict(margin: float, noise: float) -> str:
    """``reproduced`` when the claim's ``margin`` exceeds the seeds' ``noise``, ``not reproduced`` when it falls
    short by more than that, ``undecided`` within it."""
    return REPRODUCED if margin > noise else NOT_REPRODUCED if margin < -noise else UNDECIDED


def combine(verdicts: Sequence[str]) -> str:
    """All conditions reproduced: reproduced; any clearly not: not reproduced; else undecided."""
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    return REPRODUCED if verdicts and all(v == REPRODUCED for v in verdicts) else UNDECIDED


def across(verdicts: Sequence[str]) -> str:
    """One claim decided under several thread counts: the same verdict, or undecided where they differ."""
    return verdicts[0] if len(set(verdicts)) == 1 else UNDECIDED


def against_dense(summary: dict, sparsities: Sequence[float], higher_is_better: bool, at_init: Sequence[str],
                  contender: str = "earlycrop-u", dense: str = "dense-long", floor: tuple | None = None) -> dict:
    """The per-domain verdict of lesson 05 on the paper's finding (Rachwan et al. 2022, §5: close to dense up to
    high sparsity, better than the at-init baselines), from ``summary`` = {(method, sparsity): (mean, std)} over
    seeds (dense at sparsity 0.0). At each swept sparsity p, with σ the seeds' standard deviations:

    * close to dense: the contender is better than ``dense`` or worse by at most √(σ_c² + σ_d²);
    * ahead of at-init: better than the best ``at_init`` method at p by more than √(σ_c² + σ_b²) (holds); worse by
      more than that (fails); a tie within the spread decides nothing.

    ``reproduced`` when both hold at every p, ``not reproduced`` when they hold together at none and no p is a tie,
    ``undecided`` when the ties leave it open (no p fails, some tie), else ``mixed``; also ``undecided`` when dense
    does not beat the know-nothing ``floor`` = (name, value) by more than its σ.
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
            ahead = margin_verdict(gap, spread)
            row.update(best_at_init=best, best_at_init_value=b_mean, gap_to_at_init=gap, spread_at_init=spread,
                       ahead_of_at_init=None if ahead == UNDECIDED else ahead == REPRODUCED)
        ahead = row.get("ahead_of_at_init", True)
        row["holds"] = None if row["close_to_dense"] and ahead is None else row["close_to_dense"] and bool(ahead)
        per_sparsity.append(row)
    holds = [r["holds"] for r in per_sparsity]
    if holds and all(h is True for h in holds):
        verdict = REPRODUCED
    elif holds and all(h is False for h in holds):
        verdict = NOT_REPRODUCED
    elif not any(h is False for h in holds):
        verdict = UNDECIDED  # nothing fails, but the ties decide nothing
    else:
        verdict = "mixed"
    if floor is not None and better(d_mean, floor[1]) <= d_std:
        verdict = f"undecided: dense does not beat the {floor[0]} ({floor[1]:.3f})"  # nothing learned to keep
    close = [r["sparsity"] for r in per_sparsity if r["close_to_dense"]]
    result = dict(verdict=verdict, per_sparsity=per_sparsity, close_to_dense_up_to=max(close) if close else None)
    if floor is not None and per_sparsity:  # how fine the seeds' spread is against what dense learned
        result["spread_over_learned"] = (max(r["spread_dense"] for r in per_sparsity)
                                         / max(abs(d_mean - floor[1]), 1e-12))
    return result


# ----------------------------------------------------------------------------- what a score knows (lesson 06)

HURT, NOT_HURT = "hurt", "not hurt"
CHECKS = ("shuffle", "reinit", "invert")  # the disturbances of Frankle et al. (2021), `cropkit.core.sanity`


def disturbance(as_is: Sequence[float], disturbed: Sequence[float], resolution: float) -> dict:
    """Did a disturbance of a method's prune (its masks shuffled within layers, its weights re-drawn, its ranking
    inverted) cost accuracy? The rule, fixed before the runs: the drop d = mean(as is) − mean(disturbed) against the
    seeds' spread n = √(σ_as² + σ_dist²):

    * ``hurt`` when d > n (worse by more than the spread);
    * ``not hurt`` when d < −n (better by more than the spread), or when |d| ≤ n and n ≤ ``resolution``: level,
      read on seeds fine enough to see a drop of ``resolution`` (a tie on wide spreads shows nothing);
    * ``undecided`` otherwise, and always with fewer than two seeds on either side (no spread to read against).
    """
    drop, noise = statistics.fmean(as_is) - statistics.fmean(disturbed), seed_spread(as_is, disturbed)
    verdict = HURT if drop > noise else NOT_HURT if drop < -noise or noise <= resolution else UNDECIDED
    if min(len(as_is), len(disturbed)) < 2:
        verdict = UNDECIDED
    return dict(drop=drop, spread=noise, verdict=verdict)


# Frankle et al. (ICLR 2021), §5–6, as claims on the methods of a run: (claim, methods, check, expected outcome).
SANITY_CLAIMS = (
    ("Shuffling the masks within layers does not hurt pruning at initialisation", ("snip", "grasp", "crop-u"),
     "shuffle", NOT_HURT),
    ("Re-initialising the weights does not hurt pruning at initialisation", ("snip", "grasp", "crop-u"),
     "reinit", NOT_HURT),
    ("Inverting the scores hurts SNIP (and CroP, its gradient-flow cousin)", ("snip", "crop-u"), "invert", HURT),
    ("Inverting the scores does not hurt GraSP", ("grasp",), "invert", NOT_HURT),
    ("Shuffling hurts magnitude pruning after (some) training", ("earlycrop-u-magnitude",), "shuffle", HURT),
)


def sanity_claims(accuracy: dict, resolution: float) -> list[dict]:
    """Each of `SANITY_CLAIMS` decided on ``accuracy`` = {(method, check): [one value per seed]} (check ``"none"``:
    the method as is): ``reproduced`` when every method named shows the expected outcome by `disturbance`'s rule,
    ``not reproduced`` when one shows the opposite, else ``undecided``. Claims whose methods did not run are
    left out."""
    rows = []
    for claim, methods, check, expected in SANITY_CLAIMS:
        if not all((m, "none") in accuracy and (m, check) in accuracy for m in methods):
            continue
        per = {m: disturbance(accuracy[(m, "none")], accuracy[(m, check)], resolution) for m in methods}
        outcomes = [REPRODUCED if p["verdict"] == expected else UNDECIDED if p["verdict"] == UNDECIDED
                    else NOT_REPRODUCED for p in per.values()]
        rows.append(dict(claim=claim, check=check, expected=expected, verdict=combine(outcomes), methods=per))
    return rows


def knows_which(accuracy: dict, method: str, resolution: float) -> dict:
    """Does ``method``'s prune know *which* weights, beyond how many per layer? ``yes`` when shuffling its masks
    within layers hurts (`disturbance`), ``no`` when it does not, else ``undecided``."""
    result = disturbance(accuracy[(method, "none")], accuracy[(method, "shuffle")], resolution)
    answer = {HURT: "yes", NOT_HURT: "no"}.get(result["verdict"], UNDECIDED)
    return dict(result, method=method, answer=answer)
