"""The task-general core (issue 14): CroP's Hg for an L2 loss and a sequence loss against a dense float64 Hessian,
SNIP's gradient against autograd, the depth and pydoc data, the classification path unchanged, the trainer's and
the context's hooks, the data/model checks, and `cropkit.run` on the new tasks."""
import functools
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from cropkit.core import prune, scores
from cropkit.core.layers import classifier_name, prunable_layers, signal_preserving_init
from cropkit.experiments import paper_grid, profiles, runs
from cropkit.experiments.results import Result, paper_table
from cropkit.lessons import lesson_parameters, notebook
from cropkit.methods.context import Context
from cropkit.tasks import data, domains, models
from cropkit.tasks import nets as task_models
from cropkit.tasks import task as tasks
from cropkit.tasks.task import Data
from cropkit.training import loop as train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: one thread is faster on a shared, busy machine


def oracle(model, batches, loss_fn, plain):
    """(θ, g, H(g ⊙ m)): H from torch.autograd.functional.hessian of L = (1/B) Σ_b loss_fn(f(x_b), y_b) over the
    flattened prunable weights (through functional_call, so any architecture), formed densely; m the masks.
    ``plain``: an unmasked twin of ``model`` that gets its effective weights θ ⊙ m (functional_call needs plain
    weights)."""
    masks = prune.masks(model)
    with torch.no_grad():
        for name, layer in prunable_layers(plain):
            layer.weight.copy_(model.get_submodule(name).weight)
    model = plain.eval()
    names = [f"{n}.weight" for n, _ in prunable_layers(model)]
    theta = {k: model.get_submodule(k[:-7]).weight.detach().clone() for k in names}
    shapes = [theta[k].shape for k in names]
    unflat = lambda v: {k: p.view(s) for k, p, s in zip(names, torch.split(v, [s.numel() for s in shapes]), shapes)}

    def loss(vector):
        weights = unflat(vector)
        return sum(loss_fn(functional_call(model, weights, (x,)), y) for x, y in batches) / len(batches)

    flat = torch.cat([theta[k].flatten() for k in names])
    g = torch.autograd.functional.jacobian(loss, flat)
    H = torch.autograd.functional.hessian(loss, flat)  # row by row: faster than vmap on these tiny nets
    m = torch.cat([masks[k].flatten() if k in masks else torch.ones(theta[k].numel()) for k in names]).to(g.dtype)
    return theta, unflat(g), unflat(H @ (g * m))


def rel_err(got, want):
    a, b = torch.cat([got[k].flatten() for k in want]), torch.cat([want[k].flatten() for k in want])
    return float((a - b).norm() / b.norm())


def tiny_fcn():
    """The fcn's parts, smaller (112 weights, so that the dense Hessian stays cheap): stem, a strided residual
    block, an up-projection back to full resolution, a 1-map head."""
    torch.manual_seed(0)
    return signal_preserving_init(nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Tanh(), task_models.Residual(2, 2, stride=2),
        nn.Upsample(scale_factor=2), nn.Conv2d(2, 1, 3, padding=1))).double()


def tiny_lstm():
    return models.build("lstm", (4,), 7, width=1 / 32, seed=0).double()


def regression_batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64),
             torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)) for _ in range(2)]


def token_batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 7, (3, 4), generator=g), torch.randint(0, 7, (3, 4), generator=g)) for _ in range(2)]


CASES = {"l2-fcn": (tiny_fcn, regression_batches, tasks.REGRESSION),
         "sequence-lstm": (tiny_lstm, token_batches, tasks.LANGUAGE)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_crop_hg_matches_dense_hessian_for_the_new_losses(case, masked):
    build, make_batches, task = CASES[case]
    model, batches = build(), make_batches()
    if masked:  # a re-scored (CroPit, iterative EarlyCroP) network: H(g ⊙ m) at the effective weights
        prune.unstructured(model, scores.magnitude(model), 0.3)
    theta, g, hg = oracle(model, batches, task.loss_fn, plain=build())
    assert all(v.abs().sum() > 0 for v in hg.values())  # every layer takes part: the oracle is not vacuous
    got = scores.crop(model, batches, loss_fn=task.loss_fn)
    assert rel_err(got, {k: (theta[k] * hg[k]).abs() for k in theta}) < 1e-8
    grasp = scores.grasp(model, batches, loss_fn=task.loss_fn, norms="eval")  # the oracle differentiates in eval mode
    assert rel_err(grasp, {k: theta[k] * hg[k] for k in theta}) < 1e-8
    snip = scores.snip(model, batches, loss_fn=task.loss_fn)
    assert rel_err(snip, {k: (theta[k] * g[k]).abs() for k in theta}) < 1e-8


# ----------------------------------------------------------------------------- the data

def test_depth_scenes_are_seeded_shaped_and_learnable_beyond_the_mean():
    images, depth = domains.render_depth.__wrapped__(16, seed=5)
    again, depth_again = domains.render_depth.__wrapped__(16, seed=5)
    other, _ = domains.render_depth.__wrapped__(16, seed=6)
    assert images.shape == (16, 3, 32, 32) and depth.shape == (16, 1, 32, 32)
    assert (images == again).all() and (depth == depth_again).all() and not (images == other).all()
    assert 0 <= images.min() and images.max() <= 1 and depth.min() > 0
    d = domains.depth_data()
    assert abs(d["y_train"].mean()) < 1e-4 and abs(d["y_train"].std() - 1) < 1e-3  # standardised targets
    # structure a network can use: the mean map per pixel (floor rows near, wall far) beats the constant mean
    per_pixel = (d["y_test"] - d["y_train"].mean(0)).pow(2).mean().sqrt()
    assert per_pixel < 0.8 * (d["y_test"] - d["y_train"].mean()).pow(2).mean().sqrt()


def test_depth_loader_has_a_fixed_test_set_and_a_regression_task():
    a, b = data.load("depth", batch_size=32, seed=0, limit=64), data.load("depth", batch_size=32, seed=1, limit=64)
    assert a.task is tasks.REGRESSION and a.input_shape == (3, 32, 32) and a.num_classes == 1
    assert len(a.train.dataset) == 64 and len(a.test.dataset) == domains.DEPTH_SIZES[1]
    assert torch.equal(a.test.dataset.tensors[1], b.test.dataset.tensors[1])
    x, y = next(iter(a.train))
    assert x.shape == (32, 3, 32, 32) and y.shape == (32, 1, 32, 32)


def test_pydoc_corpus_split_vocabulary_and_next_token_targets():
    corpus = domains.pydoc_corpus(50)
    assert len(corpus["words"]) == 51 and corpus["words"][0] == "<unk>"
    sizes = {k: len(corpus[k]) for k in ("train", "valid", "test")}
    total = sum(sizes.values())
    assert 0.75 < sizes["train"] / total < 0.85 and 0.07 < sizes["test"] / total < 0.13
    assert int(corpus["train"].max()) == 50 and (corpus["test"] == 0).any()  # rare test words are <unk>
    d = data.load("pydoc", batch_size=16, seed=0, limit=40)
    assert d.task is tasks.LANGUAGE and d.input_shape == (domains.SEQ_LEN,) and d.num_classes == domains.VOCAB + 1
    x, y = next(iter(d.train))
    assert x.shape == y.shape == (16, domains.SEQ_LEN) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # the target is the next token
    inputs, targets = domains.sequences(torch.arange(10), 3)
    assert inputs.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and targets.tolist() == [[1, 2, 3], [4, 5, 6],
                                                                                           [7, 8, 9]]
    with pytest.raises(ValueError, match="vocab"):
        domains.pydoc_corpus(0)


# ----------------------------------------------------------------------------- the trainer and the context

def _tiny_loaders(n=32):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    return loader, loader


def test_classification_history_keys_are_unchanged_and_other_tasks_name_their_metric():
    model = models.build("mlp", (1, 8, 8), 3, width=0.1, seed=0)
    history = train.fit(model, _tiny_loaders(), 1, progress=False)
    assert list(history.epochs[0]) == ["epoch", "train_loss", "train_acc", "lr", "seconds", "test_loss", "test_acc"]
    d = data.load("depth", batch_size=32, limit=32)
    history = train.fit(models.build("fcn", d.input_shape, 1, width=0.125, seed=0), d, 1, progress=False)
    record = history.epochs[0]
    assert set(record) == {"epoch", "train_loss", "train_rmse", "lr", "seconds", "test_loss", "test_rmse"}
    assert math.isclose(record["test_rmse"], math.sqrt(record["test_loss"]), rel_tol=1e-5)  # equal-size batches


def test_trainer_binds_a_loader_that_asks_for_the_model_at_every_epoch():
    class Bound(list):
        def bind(self, model):
            self.seen.append(model)

    loader = Bound(_tiny_loaders()[0])
    loader.seen = []
    model = models.build("mlp", (1, 8, 8), 3, width=0.1, seed=0)
    train.fit(model, (loader, None), 2, progress=False, evaluate_every_epoch=False)
    assert loader.seen == [model, model]


def test_context_takes_scoring_batches_from_the_data_when_it_offers_them():
    train_loader, test_loader = _tiny_loaders()
    asked = []

    def scoring_batches(n, batch_size, seed):
        asked.append((n, batch_size, seed))
        return [next(iter(train_loader))]

    d = Data("x", train_loader, test_loader, (1, 8, 8), 3, scoring_batches=scoring_batches)
    cfg = runs.settings("crop-u", data="digits", model="mlp", profile="smoke", score_batches=2)
    ctx = Context(cfg, d, 0.5, 3, torch.device("cpu"), False)
    assert len(ctx.batches) == 1 and asked == [(2, cfg.batch_size, 3)]


def test_settings_reject_a_model_of_another_task_and_structured_lstm():
    with pytest.raises(ValueError, match="fcn"):
        runs.settings("dense", data="depth", model="cnn")
    with pytest.raises(ValueError, match="regression"):
        runs.settings("dense", data="digits", model="fcn")
    with pytest.raises(ValueError, match="crop-u"):
        runs.settings("crop-s", data="pydoc", model="lstm")
    runs.settings("crop-s", data="depth", model="fcn")  # the fcn has channels to remove
    assert runs.settings("dense", data="pydoc").model == "lstm"  # the task's model, not the profile's classifier
    assert runs.settings("dense", data="digits").model == "cnn"


def test_results_cached_before_the_metric_columns_still_load():
    fields = dict(method="dense", dataset="digits", model="cnn", width=1.0, seed=0, target_sparsity=0.0,
                  profile="smoke", epochs=1, test_acc=0.5, best_test_acc=0.6, weight_sparsity=0.0, node_sparsity=0.0,
                  params=1, flops=1.0, nonzero_macs=1.0, epochs_trained=1, prune_epoch=None, train_seconds=1.0,
                  batch_time_ms=1.0, peak_memory_bytes=1, peak_memory_method="x", disk_bytes=1, emissions_g=0.0,
                  device="cpu")
    old = Result.from_json(fields)
    assert (old.metric, old.test_metric, old.best_test_metric) == ("acc", 0.5, 0.6)
    classification = paper_table([old.row()], {"dense": "Dense"}, {"dense": "Dense"})
    assert not any(c.startswith("Test acc ") for c in classification.columns)  # the paper's table, as before
    depth = Result.from_json({**fields, "test_acc": math.nan, "best_test_acc": math.nan, "metric": "rmse",
                              "test_metric": 0.5, "best_test_metric": 0.4})
    table = paper_table([depth.row(), {**depth.row(), "test_metric": 0.7}], {"dense": "Dense"}, {"dense": "Dense"})
    assert table.loc["dense", "Test rmse ↓"] == "0.600 ± 0.141" and table.loc["dense", "Test accuracy ↑"] == "-"


# ----------------------------------------------------------------------------- cropkit.run on the new tasks

@functools.cache
def lesson_05_settings() -> dict:
    """{profile: {dataset: run options}} of lesson 05: its parameters cell (cpu) with its sidecar on top."""
    path = notebook.lessons_dir() / "05_beyond_classification.ipynb"
    cell = lesson_parameters.declared_parameters(path)["SETTINGS"]
    return {p: lesson_parameters.profile_values(path, p).get("SETTINGS", cell) for p in profiles.PROFILES}


def test_the_domain_settings_are_valid_run_settings():
    """Lesson 05's settings under every profile and the paper grid's domain figures (`cropkit.run` options)."""
    grid_settings = {name: dict(options) for name, options in paper_grid.DOMAIN_OPTIONS.items()}
    for env in ("cartpole", "acrobot"):  # the lesson plays the games under paper as the grid does
        assert lesson_05_settings()["paper"][env] == grid_settings[env]
    for profile, domains_ in [*lesson_05_settings().items(), ("paper", grid_settings)]:
        for dataset, options in domains_.items():
            for method in ("dense", "crop-u", "earlycrop-u"):
                cfg = runs.settings(method, data=dataset, profile=profile, **options)
                assert models.of_model(cfg.model) == data.of_data(dataset).name


@pytest.mark.parametrize("setting, method", [(("depth", "fcn"), m) for m in ("dense", "crop-u", "earlycrop-u",
                                                                            "crop-s")]
                         + [(("pydoc", "lstm"), m) for m in ("dense", "crop-u", "earlycrop-u")])
def test_run_on_the_new_tasks(setting, method):
    dataset, model = setting
    options = {**lesson_05_settings()["smoke"][dataset], "model": model}
    r = runs.run(method, data=dataset, sparsity=0.8, cache=False, progress=False, profile="smoke", device="cpu",
                 **options)
    task = data.of_data(dataset)
    assert r.metric == task.metric and math.isfinite(r.test_metric) and math.isfinite(r.best_test_metric)
    assert r.test_metric == r.history[-1][f"test_{task.metric}"] and math.isnan(r.test_acc)
    assert r.weight_sparsity == pytest.approx(0.0 if method == "dense" else 0.8, abs=0.01)
    assert r.flops > 0 and r.peak_memory_bytes > 0 and r.batch_time_ms > 0
    if method == "crop-s":
        assert r.node_sparsity > 0


# ----------------------------------------------------------------------------- the models

def test_lstm_cell_from_linear_layers_equals_torch_lstm():
    model = models.build("lstm", (5,), 11, width=1 / 16, seed=0)
    H = model.hidden_size
    reference = nn.LSTM(model.embedding.embedding_dim, H, batch_first=True)
    with torch.no_grad():  # torch's gate order is i, f, g, o, as ours; its two biases add up to our one
        reference.weight_ih_l0.copy_(model.input_gates.weight)
        reference.weight_hh_l0.copy_(model.hidden_gates.weight)
        reference.bias_ih_l0.copy_(model.input_gates.bias)
        reference.bias_hh_l0.zero_()
    tokens = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(0))
    hidden, _ = reference(model.embedding(tokens))
    assert torch.allclose(model(tokens), model.decoder(hidden), atol=1e-6)
    assert [name for name, _ in prunable_layers(model)] == ["input_gates", "hidden_gates", "decoder"]


def test_fcn_maps_an_image_to_a_full_resolution_map_and_rejects_other_inputs():
    model = models.build("fcn", (3, 32, 32), 1, width=0.25, seed=0)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1, 32, 32)
    assert classifier_name(model) == str(len(model) - 1)  # the 1-map head: its outputs are not nodes
    with pytest.raises(ValueError, match="divisible by 4"):
        models.build("fcn", (3, 30, 30), 1)
    with pytest.raises(ValueError, match="token sequences"):
        models.build("lstm", (3, 8, 8), 10)
    with pytest.raises(ValueError, match=">= 2"):
        models.build("cnn", (1, 8, 8), 1)  # a classifier still needs two classes
