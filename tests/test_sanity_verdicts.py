"""Lesson 06's verdicts (`cropkit.experiments.verdicts`): each rule decided both ways on made-up accuracies."""
import pytest

from cropkit.experiments import verdicts as v

R = 0.02  # resolution: seeds fine enough to see a 2-point drop


def test_a_drop_beyond_the_spread_hurts():
    out = v.disturbance([0.90, 0.91, 0.92], [0.80, 0.81, 0.82], R)
    assert out["verdict"] == v.HURT and out["drop"] == pytest.approx(0.10)
    assert out["spread"] == pytest.approx(0.01 * 2 ** 0.5)


def test_a_tie_on_fine_seeds_is_not_hurt_and_on_wide_seeds_undecided():
    assert v.disturbance([0.90, 0.91, 0.92], [0.905, 0.91, 0.915], R)["verdict"] == v.NOT_HURT
    assert v.disturbance([0.90, 0.91, 0.92], [0.95, 0.96, 0.97], R)["verdict"] == v.NOT_HURT  # better is not hurt
    better_on_wide_seeds = v.disturbance([0.80, 0.83, 0.86], [0.90, 0.93, 0.96], R)
    assert better_on_wide_seeds["spread"] > R and better_on_wide_seeds["verdict"] == v.NOT_HURT
    wide = v.disturbance([0.70, 0.90, 0.99], [0.72, 0.88, 0.97], R)
    assert wide["verdict"] == v.UNDECIDED and wide["spread"] > R


def test_one_seed_decides_nothing():
    assert v.disturbance([0.90], [0.50], R)["verdict"] == v.UNDECIDED
    assert v.disturbance([0.90], [0.90], R)["verdict"] == v.UNDECIDED


def _accuracy(drops: dict) -> dict:
    """Every method of the claims as is at 0.90 ± 0.01, each check lower by ``drops[(method, check)]`` (default 0)."""
    methods = {m for _, ms, _, _ in v.SANITY_CLAIMS for m in ms}
    base = [0.89, 0.90, 0.91]
    acc = {(m, "none"): base for m in methods}
    for m in methods:
        for check in v.CHECKS:
            acc[(m, check)] = [a - drops.get((m, check), 0.0) for a in base]
    return acc


def test_the_claims_hold_on_runs_that_behave_as_frankle_et_al_found():
    acc = _accuracy({("snip", "invert"): 0.2, ("crop-u", "invert"): 0.2, ("earlycrop-u-magnitude", "shuffle"): 0.1})
    rows = v.sanity_claims(acc, R)
    assert len(rows) == len(v.SANITY_CLAIMS) and all(r["verdict"] == v.REPRODUCED for r in rows)


def test_the_claims_fail_on_runs_that_behave_the_other_way():
    acc = _accuracy({("snip", "shuffle"): 0.1, ("grasp", "reinit"): 0.1, ("grasp", "invert"): 0.2})
    verdict = {r["claim"]: r["verdict"] for r in v.sanity_claims(acc, R)}
    shuffle, reinit, snip_inv, grasp_inv, magnitude = (c for c, *_ in v.SANITY_CLAIMS)
    assert verdict[shuffle] == verdict[reinit] == verdict[grasp_inv] == v.NOT_REPRODUCED
    assert verdict[snip_inv] == verdict[magnitude] == v.NOT_REPRODUCED  # expected a drop, saw none


def test_a_claim_on_wide_seeds_is_undecided_and_a_missing_method_leaves_it_out():
    acc = _accuracy({})
    acc[("grasp", "invert")] = [0.5, 0.9, 0.99]
    rows = {r["claim"]: r for r in v.sanity_claims(acc, R)}
    assert rows[v.SANITY_CLAIMS[3][0]]["verdict"] == v.UNDECIDED
    del acc[("snip", "reinit")]
    assert v.SANITY_CLAIMS[1][0] not in {r["claim"] for r in v.sanity_claims(acc, R)}


def test_knows_which_answers_yes_no_or_undecided():
    acc = {("earlycrop-u", "none"): [0.89, 0.90, 0.91], ("earlycrop-u", "shuffle"): [0.79, 0.80, 0.81]}
    assert v.knows_which(acc, "earlycrop-u", R)["answer"] == "yes"
    acc[("earlycrop-u", "shuffle")] = [0.89, 0.90, 0.91]
    assert v.knows_which(acc, "earlycrop-u", R)["answer"] == "no"
    acc[("earlycrop-u", "shuffle")] = [0.6, 0.9, 0.99]
    assert v.knows_which(acc, "earlycrop-u", R)["answer"] == v.UNDECIDED
