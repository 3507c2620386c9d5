"""The run option ``sanity``: Frankle et al. (ICLR 2021)'s ablations of a method's one-shot prune as ordinary cached
runs. "none" is the method unchanged; "shuffle" keeps every layer's count (structured: node count) and moves what is
kept; "reinit" keeps the masks (structured: the smaller network) on fresh weights; "invert" keeps the lowest-scored
weights at the same budget. Methods whose prune is not one call of `Context.prune` refuse the option."""
import pytest
import torch

import cropkit as ck
from cropkit import cli
from cropkit.core import prune, sanity, scores
from cropkit.core.masks import pruned_layers
from cropkit.experiments import grid, results, runs
from cropkit.methods.context import REINIT_OFFSET, Context
from cropkit.methods.options import SANITY_CHECKS
from cropkit.methods.registry import REGISTRY

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:structured pruning to .* leaves"),
              pytest.mark.filterwarnings("ignore:EarlyCroP detector")]

TINY = dict(data="digits", model="cnn", width=0.25, epochs=1, profile="smoke")


def run(method, **options):
    return ck.run(method, sparsity=0.9, seed=0, cache=False, progress=False, **TINY, **options)


def context(method="snip", seed=0, **options) -> Context:
    cfg = runs.settings(method, **TINY, **options)
    data = ck.data.load(cfg.data, batch_size=cfg.batch_size, seed=seed, limit=cfg.limit)
    return Context(cfg, data, 0.9, seed, torch.device("cpu"), progress=False)


def pruned(check, criterion="snip", method="snip"):
    """(context, the model it prunes, the prune with ``sanity=check``): the model is a fresh build of the run's seed,
    so every check prunes the same network on the same batches."""
    ctx = context(method, sanity=check)
    return ctx, ctx.build_model(), ctx.prune(ctx.build_model(), criterion)


def counts(masks):
    return {name: int(mask.sum()) for name, mask in masks.items()}


def same_masks(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def originals(model):
    """θ_orig of every prunable layer (the weights under the masks), by layer name."""
    return {name: m.parametrizations.weight.original.detach().clone() for name, m in pruned_layers(model)}


# ----------------------------------------------------------------------------- none

def test_none_is_the_method_unchanged():
    ctx, model, plain = pruned("none")
    direct = prune.unstructured(model, scores.snip(model, ctx.batches, loss_fn=ctx.loss_fn, seed=0), 0.9)
    assert same_masks(prune.masks(plain), prune.masks(direct))
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), direct.state_dict().values()))
    given, omitted = run("snip", sanity="none"), run("snip")
    assert given.key == omitted.key and given.config["sanity"] == "none"
    timeless = [[{k: v for k, v in e.items() if k != "seconds"} for e in r.history] for r in (given, omitted)]
    assert given.test_acc == omitted.test_acc and timeless[0] == timeless[1]


# ----------------------------------------------------------------------------- unstructured

def test_shuffle_keeps_every_layer_count_and_the_weights_and_moves_the_masks():
    ctx, _, plain = pruned("none")
    _, _, shuffled = pruned("shuffle")
    before, after = prune.masks(plain), prune.masks(shuffled)
    assert counts(after) == counts(before) and not same_masks(after, before)
    assert same_masks(after, sanity.shuffle_within_layers(before, seed=ctx.seed))  # seeded by the run's seed
    assert all(torch.equal(originals(plain)[k], w) for k, w in originals(shuffled).items())


def test_the_method_trains_the_shuffled_mask():
    """Through the method's own function: the trained network still carries the shuffled masks."""
    _, _, plain = pruned("none")
    _, _, shuffled = pruned("shuffle")
    final = REGISTRY["snip"].train(context("snip", sanity="shuffle"))
    assert same_masks(prune.masks(final), prune.masks(shuffled))
    assert not same_masks(prune.masks(final), prune.masks(plain))
    result = run("snip", sanity="shuffle")
    assert result.config["sanity"] == "shuffle" and result.weight_sparsity == pytest.approx(0.9, abs=1e-3)


def test_reinit_keeps_the_masks_on_a_fresh_draw_of_the_whole_network():
    ctx, _, plain = pruned("none")
    _, _, fresh = pruned("reinit")
    assert same_masks(prune.masks(fresh), prune.masks(plain))
    assert all(not torch.equal(originals(plain)[k], w) for k, w in originals(fresh).items())
    other = ctx.build_model(seed=ctx.seed + REINIT_OFFSET)  # LTR's random-reinit draw: biases and norms fresh too
    assert all(torch.equal(originals(fresh)[name], m.weight) for name, m in pruned_layers(other))
    rest = {k: v for k, v in other.state_dict().items() if k in fresh.state_dict()}
    assert rest and all(torch.equal(fresh.state_dict()[k], v) for k, v in rest.items())


def test_reinit_leaves_the_random_number_generators_as_they_were():
    ctx = context(sanity="reinit")
    model = ctx.build_model()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ctx.prune(model, "snip")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.filterwarnings("ignore:layer .* would lose every weight")  # inverted SNIP empties the first layers
def test_invert_keeps_the_lowest_scored_weights_at_the_same_budget():
    ctx, model, inverted = pruned("invert")
    _, _, plain = pruned("none")
    snip = scores.snip(model, ctx.batches, loss_fn=ctx.loss_fn, seed=0)
    direct = prune.unstructured(model, sanity.invert(snip), 0.9)
    after = prune.masks(inverted)
    assert same_masks(after, prune.masks(direct)) and not same_masks(after, prune.masks(plain))
    assert sum(counts(after).values()) == sum(counts(prune.masks(plain)).values())
    kept = torch.cat([snip[k].flatten()[after[k].flatten()] for k in after])
    dropped = torch.cat([snip[k].flatten()[~after[k].flatten()] for k in after])
    assert kept.mean() < dropped.mean()


# ----------------------------------------------------------------------------- structured

def test_structured_shuffle_keeps_the_node_counts_and_invert_moves_them():
    plain, shuffled, inverted = (run("crop-s", sanity=check) for check in ("none", "shuffle", "invert"))
    assert shuffled.layout == plain.layout and shuffled.weight_sparsity == plain.weight_sparsity
    ctx, _, a = pruned("none", "crop_nodes", "crop-s")
    _, _, b = pruned("shuffle", "crop_nodes", "crop-s")
    assert sanity.kept_nodes(a) == sanity.kept_nodes(b)
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    _, _, c = pruned("invert", "crop_nodes", "crop-s")
    assert inverted.layout != plain.layout or any(
        not torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_structured_reinit_keeps_the_smaller_network_and_draws_its_weights_afresh():
    _, _, plain = pruned("none", "crop_nodes", "crop-s")
    ctx, _, fresh = pruned("reinit", "crop_nodes", "crop-s")
    assert sanity.kept_nodes(fresh) == sanity.kept_nodes(plain)
    a, b = plain.state_dict(), fresh.state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert all(not torch.equal(a[k], b[k]) for k in a if k.endswith("weight") and b[k].numel() > 1
               and b[k].ndim > 1)
    own = ctx.build_model()
    own.own_init = True  # a model that initialises itself cannot be redrawn with the zoo's initialisation
    with pytest.raises(ValueError, match="initialises itself"):
        ctx.prune(own, "crop_nodes")


def test_earlycrop_s_shuffles_its_one_shot_prune():
    plain, shuffled = run("earlycrop-s"), run("earlycrop-s", sanity="shuffle")
    assert shuffled.layout == plain.layout and shuffled.prune_epoch == plain.prune_epoch
    assert shuffled.key != plain.key and shuffled.config["sanity"] == "shuffle"
    a, b = (REGISTRY["earlycrop-s"].train(context("earlycrop-s", sanity=check)) for check in ("none", "shuffle"))
    assert sanity.kept_nodes(a) == sanity.kept_nodes(b)
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ----------------------------------------------------------------------------- key, grid, command line

def test_the_option_enters_the_key_grids_and_the_command_line():
    keys = {check: runs.configuration("snip", **TINY, sanity=check)[1] for check in SANITY_CHECKS}
    assert len({results.config_key(c) for c in keys.values()}) == len(SANITY_CHECKS)
    assert all(c["sanity"] == check for check, c in keys.items())
    jobs = grid.plan(["snip", "crop-s"], seeds=[0], cache=False, sanity="shuffle", **TINY)
    plain = grid.plan(["snip", "crop-s"], seeds=[0], cache=False, **TINY)
    assert all(j.kwargs["sanity"] == "shuffle" for j in jobs) and {j.key for j in jobs}.isdisjoint(
        {j.key for j in plain})
    args = cli.parser().parse_args(["run", "snip", "--set", "sanity=shuffle"])
    assert ("sanity", "shuffle") in args.options
    assert "sanity (str; one of none/shuffle/reinit/invert" in runs.options()["sanity"].describe()


# ----------------------------------------------------------------------------- refused

def test_bad_values_and_methods_that_do_not_take_it_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown sanity 'bogus'; choose one of \['none', 'shuffle', 'reinit', "
                                         r"'invert'\]"):
        run("snip", sanity="bogus")
    for method in ("ltr", "dense", "cropit-u", "earlybird", "gatedecorators", "efficientconvnets"):
        with pytest.raises(ValueError, match=f"{method} does not take option sanity .*'snip'.*sanity='none'"):
            run(method, sanity="shuffle")
    with pytest.raises(ValueError, match="dense does not take option sanity"):
        grid.plan(["dense", "snip"], seeds=[0], cache=False, sanity="invert", **TINY)
    assert runs.configuration("ltr", **TINY, sanity="none")[1] == runs.configuration("ltr", **TINY)[1]
    with pytest.raises(ValueError, match="one-shot prune only"):
        run("earlycrop-u", iterative=True, sanity="invert")
