"""Sanity checks of pruning scores (Frankle et al. 2021, Su et al. 2020): shuffled masks keep every layer's count,
random channels keep every layer's width, re-initialised networks keep their masks, inverted scores keep the
lowest-scored weights (against a brute-force sort), and the layer sensitivity table is zero where nothing is pruned."""
import copy

import pytest
import torch

import cropkit as ck
from cropkit.core import prune, sanity, scores
from cropkit.core.layers import prunable_layers
from cropkit.core.masks import pruned_layers
from cropkit.training.sensitivity import layer_sensitivity

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:structured pruning to .* leaves")]


def cnn(seed=0):
    return ck.models.build("cnn", (1, 8, 8), 10, width=0.5, seed=seed)


def mlp():
    return ck.models.build("mlp", (1, 40), 10, width=0.125, seed=0)


def inputs(shape=(1, 8, 8), n=4):
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))
    return x, [(x, torch.zeros(n, dtype=torch.long))]


def pruned_cnn(sparsity=0.8):
    model = cnn()
    return prune.unstructured(model, scores.magnitude(model), sparsity)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- shuffling

def test_shuffling_keeps_each_layer_count_and_moves_the_weights():
    masks = prune.masks(pruned_cnn())
    before = {k: v.clone() for k, v in masks.items()}
    shuffled = sanity.shuffle_within_layers(masks, seed=0)
    assert list(shuffled) == list(masks)
    for name, mask in masks.items():
        assert shuffled[name].shape == mask.shape and shuffled[name].dtype == mask.dtype
        assert int(shuffled[name].sum()) == int(mask.sum())
    assert any(not torch.equal(shuffled[k], masks[k]) for k in masks)
    assert all(torch.equal(masks[k], before[k]) for k in masks)  # the input is untouched


def test_shuffling_is_deterministic_per_seed_and_differs_across_seeds():
    masks = prune.masks(pruned_cnn())
    first, again = sanity.shuffle_within_layers(masks, 3), sanity.shuffle_within_layers(masks, 3)
    other = sanity.shuffle_within_layers(masks, 4)
    assert all(torch.equal(first[k], again[k]) for k in masks)
    assert any(not torch.equal(first[k], other[k]) for k in masks)


def test_shuffled_masks_prune_a_model_to_the_same_per_layer_counts():
    masks = prune.masks(pruned_cnn())
    model = sanity.reinit(cnn(), sanity.shuffle_within_layers(masks, 1), seed=0)
    assert {k: int(v.sum()) for k, v in prune.masks(model).items()} == {k: int(v.sum()) for k, v in masks.items()}


# ----------------------------------------------------------------------------- random channels

def test_random_channels_keep_every_layer_width_of_the_criterion_on_the_cnn():
    dense = cnn()
    x, batch = inputs()
    plan = prune.structured_plan(copy.deepcopy(dense), scores.NODE_SCORES["l1_nodes"](dense, batch), 0.4, x[:1])
    small = plan.apply()
    control_plan = sanity.random_channels_plan(copy.deepcopy(dense), sanity.kept_nodes(small), x[:1], seed=1)
    control = control_plan.apply()
    assert sanity.kept_nodes(control) == sanity.kept_nodes(small) != sanity.kept_nodes(dense)
    assert any(plan.removed.get(name) != control_plan.removed.get(name) for name in sanity.kept_nodes(dense))
    assert sum(m.weight.numel() for _, m in prunable_layers(control)) == \
        sum(m.weight.numel() for _, m in prunable_layers(small))  # hence the weight count too
    assert control(x).shape == (4, 10)


def test_random_channels_are_deterministic_per_seed():
    dense = cnn()
    x, _ = inputs()
    kept = {"0": 5, "7": 9}
    a = sanity.random_channels_plan(copy.deepcopy(dense), kept, x[:1], seed=2).removed
    b = sanity.random_channels_plan(copy.deepcopy(dense), kept, x[:1], seed=2).removed
    c = sanity.random_channels_plan(copy.deepcopy(dense), kept, x[:1], seed=3).removed
    assert a == b and a != c


def test_random_channels_keep_residual_groups_together():
    dense = ck.models.build("resnet18", (3, 8, 8), 10, width=0.125, seed=0)
    x, batch = inputs((3, 8, 8), n=2)
    small = prune.structured(copy.deepcopy(dense), scores.NODE_SCORES["l1_nodes"](dense, batch), 0.5, x[:1])
    control = sanity.random_channels(copy.deepcopy(dense), sanity.kept_nodes(small), x[:1], seed=0)
    assert sanity.kept_nodes(control) == sanity.kept_nodes(small)
    assert control(x).shape == (2, 10)
    coupled = {"layer1.0.conv2": 3, "layer1.1.conv2": 5}  # one residual stream: they lose the same channels
    with pytest.raises(ValueError, match="coupled"):
        sanity.random_channels_plan(copy.deepcopy(dense), coupled, x[:1])


@pytest.mark.parametrize("kept, match", [({"nope": 3}, "not node layers"), ({"0": 0}, r"\[1, 16\]"),
                                         ({"0": torch.ones(3, dtype=torch.bool)}, "shape"), ([3], "dict")])
def test_random_channels_reject_bad_counts(kept, match):
    x, _ = inputs()
    with pytest.raises(ValueError, match=match):
        sanity.random_channels_plan(cnn(), kept, x[:1])


# ----------------------------------------------------------------------------- re-initialisation

def test_reinit_keeps_the_masks_and_draws_new_weights():
    model = pruned_cnn()
    before, masks = state(model), prune.masks(model)
    fresh = sanity.reinit(model, masks, seed=1)
    assert same_state(state(model), before)  # the input is untouched
    assert all(torch.equal(prune.masks(fresh)[k], masks[k]) for k in masks)
    for (name, old), (_, new) in zip(prunable_layers(model), prunable_layers(fresh)):
        assert not torch.equal(old.weight, new.weight)  # the original keeps its weights
        assert torch.all(new.weight[~masks[f"{name}.weight"]] == 0)
    assert same_state(state(sanity.reinit(model, masks, seed=1)), state(fresh))
    assert not same_state(state(sanity.reinit(model, masks, seed=2)), state(fresh))


def test_reinit_takes_other_masks_and_checks_their_names():
    model = pruned_cnn()
    shuffled = sanity.shuffle_within_layers(prune.masks(model), seed=0)
    fresh = sanity.reinit(model, shuffled, seed=0)
    assert all(torch.equal(prune.masks(fresh)[k], shuffled[k]) for k in shuffled)
    with pytest.raises(ValueError, match="prunable weights"):
        sanity.reinit(model, {k: v for k, v in shuffled.items() if k != "0.weight"}, seed=0)


# ----------------------------------------------------------------------------- inversion

@pytest.mark.parametrize("sparsity", [0.3, 0.7])
def test_inverted_scores_keep_the_lowest_weights_at_the_same_budget(sparsity):
    model = mlp()
    s = scores.magnitude(model)
    prune.unstructured(model, sanity.invert(s), sparsity)
    flat = torch.cat([v.flatten() for v in s.values()])
    n_keep = flat.numel() - round(sparsity * flat.numel())
    expected = torch.zeros(flat.numel(), dtype=torch.bool)
    expected[torch.sort(flat, stable=True).indices[:n_keep]] = True  # brute force: the n_keep lowest
    kept = torch.cat([m.flatten() for m in prune.masks(model).values()])
    assert int(kept.sum()) == n_keep
    assert torch.equal(kept, expected)


def test_inversion_keeps_the_budget_with_infinite_scores():
    model = mlp()
    s = scores.magnitude(model)
    s["1.weight"][0, 0] = float("inf")  # negated to −∞, the kit would read it as already pruned
    s["3.weight"][0, 0] = float("-inf")
    prune.unstructured(model, sanity.invert(s), 0.0)
    assert all(bool(m.all()) for m in prune.masks(model).values())


def test_inverted_node_scores_remove_the_highest_nodes():
    model = cnn()
    x, batch = inputs()
    s = scores.NODE_SCORES["l1_nodes"](model, batch)
    plan = prune.structured_plan(model, sanity.invert(s), 0.5, x[:1], budget="nodes", scope="layer")
    for name, score in s.items():
        removed = torch.zeros(len(score), dtype=torch.bool)
        removed[plan.removed.get(name, [])] = True
        assert removed.any()
        assert score[removed].min() >= score[~removed].max()


def test_invert_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        sanity.invert({"0.weight": torch.tensor([1.0, float("nan")])})


# ----------------------------------------------------------------------------- layer sensitivity

@pytest.fixture(scope="module")
def trained(one_thread):
    data = ck.data.load("digits", batch_size=64, seed=0, limit=256)
    model = ck.models.build("cnn", data.input_shape, data.num_classes, width=0.5, seed=0)
    ck.train.Trainer(model, data, 2, progress=False, seed=0).fit()
    return model, data


def test_layer_sensitivity_is_zero_unpruned_and_positive_when_pruned_hard(trained):
    model, data = trained
    before = state(model)
    table = layer_sensitivity(model, data, [0.0, 0.95], criterion="magnitude")
    assert same_state(state(model), before)
    assert list(table.columns) == ["layer", "weights", "sparsity", "metric", "drop"]
    assert sorted(set(table.layer)) == sorted(name for name, _ in prunable_layers(model))
    assert (table[table.sparsity == 0.0]["drop"] == 0).all()
    assert (table[table.sparsity == 0.95]["drop"] > 0).any()
    assert table.attrs["metric"] == "acc" and 0 < table.attrs["reference"] <= 1


def test_layer_sensitivity_with_fine_tuning_is_zero_unpruned(trained):
    model, data = trained
    before = state(model)
    table = layer_sensitivity(model, data, [0.0], criterion="random", finetune_epochs=1)
    assert same_state(state(model), before)
    assert (table["drop"] == 0).all() and len(table) == len(list(prunable_layers(model)))


@pytest.mark.parametrize("kwargs, match", [(dict(sparsities=[1.0]), r"\[0, 1\)"), (dict(sparsities=0.5), "list"),
                                           (dict(sparsities=[0.5], criterion="nope"), "criterion"),
                                           (dict(sparsities=[0.5], finetune_epochs=-1), "finetune_epochs")])
def test_layer_sensitivity_rejects_bad_input(trained, kwargs, match):
    model, data = trained
    with pytest.raises(ValueError, match=match):
        layer_sensitivity(model, data, **kwargs)


def test_with_masks_prunes_a_copy_by_exactly_these_masks_and_keeps_its_weights():
    model = ck.models.build("mlp", (8,), 3, width=0.25, seed=0)
    masks = {k: torch.rand(m.shape, generator=torch.Generator().manual_seed(1)) < 0.3
             for k, m in prune.masks(model).items()}
    pruned = sanity.with_masks(model, masks)
    assert all(torch.equal(prune.masks(pruned)[k], m) for k, m in masks.items())
    assert all(not m.all() for m in prune.masks(pruned).values()) and all(m.all() for m in prune.masks(model).values())
    for (name, a), (_, b) in zip(pruned_layers(model), pruned_layers(pruned)):
        assert torch.equal(b.weight, a.weight * masks[f"{name}.weight"])
    with pytest.raises(ValueError, match="masks must name exactly"):
        sanity.with_masks(model, {"nope.weight": torch.ones(1, dtype=torch.bool)})
