"""Lesson 03's helpers: entries, LTR's schedule read from a run, the Pareto front and the seed-aware gap."""
import pandas as pd
import pytest

from cropkit.experiments import grid, lottery, runs
from cropkit.experiments.results import Result
from cropkit.methods import registry


def test_entries_resolve_to_methods_and_variants():
    assert registry.resolve("snip") == ("snip", {})
    assert registry.resolve("ltr-reinit") == ("ltr", {"reinit": True})
    with pytest.raises(ValueError, match="unknown method 'lth'.*ltr-reinit"):
        registry.resolve("lth")


def test_round_targets_end_at_the_target_and_prune_a_constant_fraction():
    targets = lottery.round_targets(0.9, 3)
    assert targets[0] == 0 and targets[-1] == pytest.approx(0.9) and len(targets) == 4
    kept = [1 - t for t in targets]
    ratios = [b / a for a, b in zip(kept, kept[1:])]
    assert ratios == pytest.approx([0.1 ** (1 / 3)] * 3)


def _ltr_result(reinit: bool) -> Result:
    # two rounds after the first training, 3 epochs each; accuracy 0.5 + 0.1·training + 0.01·epoch-in-training
    history = [dict(epoch=t * 3 + e, training=t, test_acc=0.5 + 0.1 * t + 0.01 * e)
               for t in range(3) for e in (1, 2, 3)]
    fields = dict(method="ltr", dataset="digits", model="cnn", width=1.0, seed=4, target_sparsity=0.75, profile="smoke",
                  epochs=3, test_acc=0.73, best_test_acc=0.73, weight_sparsity=0.75, node_sparsity=0.0, params=1,
                  flops=1.0, nonzero_macs=1.0, epochs_trained=9, prune_epoch=6, train_seconds=1.0, batch_time_ms=1.0,
                  peak_memory_bytes=1, peak_memory_method="x", disk_bytes=1, emissions_g=float("nan"), device="cpu")
    return Result(**fields, config=dict(ltr_rounds=2, reinit=reinit), history=history)


def test_ltr_rounds_read_each_training_from_the_history():
    rounds = lottery.ltr_rounds(_ltr_result(reinit=False))
    assert [r["round"] for r in rounds] == [0, 1, 2] and all(r["epochs"] == 3 for r in rounds)
    assert [r["test_acc"] for r in rounds] == pytest.approx([0.53, 0.63, 0.73])
    assert [r["round_sparsity"] for r in rounds] == pytest.approx([0, 0.5, 0.75])
    frame = lottery.rounds([_ltr_result(False), _ltr_result(True)])
    assert list(dict.fromkeys(frame["method"])) == ["ltr", "ltr-reinit"] and len(frame) == 6


def test_pareto_front_against_brute_force():
    costs = [1, 2, 2, 3, 4, 5]
    accs = [0.5, 0.7, 0.6, 0.7, 0.9, 0.9]
    assert lottery.pareto_front(costs, accs) == [0, 1, 4]  # (2, 0.6), (3, 0.7) and (5, 0.9) are dominated


def test_gap_calls_ties_within_the_seed_spread():
    runs = pd.DataFrame(dict(method=["a", "a", "b", "b", "a", "a", "b", "b"],
                             target_sparsity=[0.5] * 4 + [0.9] * 4,
                             test_acc=[0.80, 0.82, 0.79, 0.83, 0.90, 0.92, 0.60, 0.62]))
    summary = lottery.mean_std(runs, "test_acc")
    gaps = lottery.gap(summary, "a", "b").set_index("target_sparsity")
    assert gaps.loc[0.5, "verdict"] == "tie within the seed spread"
    assert gaps.loc[0.9, "verdict"] == "a ahead" and gaps.loc[0.9, "difference"] == pytest.approx(0.30)


def test_is_cached_agrees_with_the_cache_of_cropkit_run(tmp_path):
    options = dict(profile="smoke", epochs=1, limit=64, cache_dir=tmp_path, measure_emissions=False)
    is_cached = lambda entry, **extra: grid.plan([entry], [0.5], [0], **options, **extra)[0].cached
    assert not is_cached("ltr-reinit")
    jobs = grid.plan(["ltr-reinit"], [0.5], [0], **options)
    results = grid.execute(jobs, progress=False)
    assert not results[0].from_cache and registry.entry_of(results[0].method, results[0].config) == "ltr-reinit"
    assert is_cached("ltr-reinit") and runs.replay("ltr", sparsity=0.5, seed=0, reinit=True, **options) is not None
    assert not is_cached("ltr"), "rewinding and its control are different runs"
    assert not is_cached("ltr-reinit", cache=False)
    assert grid.execute(grid.plan(["ltr-reinit"], [0.5], [0], **options), progress=False)[0].from_cache
