"""Every method end to end on the smoke profile (digits, the cnn, sparsity 0.9), the cache, the table, bad input.

The sixteen smoke runs happen once per module (``smoke``) and share one cache directory with the other tests.
"""
import dataclasses
import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

import cropkit as ck
from cropkit.core import prune
from cropkit.core.layers import prunable_layers
from cropkit.experiments import profiles, results, runs
from cropkit.methods import ltr
from cropkit.methods import registry as methods
from cropkit.tasks import models
from cropkit.training.callbacks import rewind, state_of
from cropkit.training.loop import Trainer

PAPER_METHODS = ("dense", "random-u", "snip", "grasp", "crop-u", "cropit-u", "earlycrop-u", "ltr",
                "random-s", "snap", "crop-s", "cropit-s", "earlycrop-s", "earlybird",
                "gatedecorators", "efficientconvnets")
STRUCTURED = {"random-s", "snap", "crop-s", "cropit-s", "earlycrop-s", "earlybird", "gatedecorators",
              "efficientconvnets"}
SMOKE = profiles.RUN["smoke"]
E = SMOKE["epochs"]


def _same(a: dict, b: dict) -> bool:
    """Equal rows, NaN included (emissions are NaN when codecarbon is off)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def smoke(cache_dir):
    return {m: ck.run(m, sparsity=0.9, profile="smoke", cache_dir=cache_dir, progress=False) for m in PAPER_METHODS}


def test_methods_are_the_spec_list_in_order():
    assert ck.METHODS == PAPER_METHODS
    assert set(methods.REGISTRY) == set(PAPER_METHODS)


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_smoke_run_reaches_the_target(smoke, method):
    r = smoke[method]
    assert (r.method, r.dataset, r.model, r.profile) == (method, "digits", "cnn", "smoke")
    if method == "dense":
        assert r.target_sparsity == 0 and r.weight_sparsity == 0
    else:
        assert r.target_sparsity == 0.9 and abs(r.weight_sparsity - 0.9) <= 0.01
    assert (r.node_sparsity > 0) == (method in STRUCTURED)
    assert 0 <= r.test_acc <= 1 and r.best_test_acc >= 0
    assert len(r.history) == r.epochs_trained  # one record per epoch actually trained
    kept, dense = (sum(layer[i] for layer in r.weight_layout.values()) for i in (0, 1))
    assert r.weight_layout and 1 - kept / dense == pytest.approx(r.weight_sparsity)  # where the sparsity went


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_epochs_trained_and_prune_epoch(smoke, method):
    r = smoke[method]
    expected = {  # epochs_trained as the methods module defines it
        "ltr": (SMOKE["ltr_rounds"] + 1) * E,          # the dense training + one retraining per round
        "gatedecorators": SMOKE["ticks"] + E,
        "efficientconvnets": SMOKE["dense_epochs"] + E,
    }
    if method in ("earlycrop-u", "earlycrop-s", "earlybird"):
        assert 1 <= r.prune_epoch <= SMOKE["max_dense_epochs"]
        assert r.epochs_trained == r.prune_epoch + E
    elif method == "dense":
        assert r.prune_epoch is None and r.epochs_trained == E
    else:
        assert r.epochs_trained == expected.get(method, E)
        assert r.prune_epoch == {"ltr": SMOKE["ltr_rounds"] * E, "gatedecorators": SMOKE["ticks"],
                                 "efficientconvnets": SMOKE["dense_epochs"]}.get(method, 0)


def test_result_has_every_column_of_the_spec(smoke):
    row = smoke["earlycrop-s"].row()
    for column in ("method", "dataset", "model", "width", "seed", "target_sparsity", "test_acc", "best_test_acc",
                   "weight_sparsity", "node_sparsity", "params", "flops", "nonzero_macs", "epochs_trained",
                   "prune_epoch", "train_seconds", "batch_time_ms", "peak_memory_bytes", "peak_memory_method",
                   "disk_bytes", "emissions_g", "warnings"):
        assert column in row
    assert "history" not in row and all(not isinstance(v, (list, dict)) for v in row.values())
    assert math.isnan(row["emissions_g"])  # codecarbon is off in the smoke profile


def test_structured_models_are_smaller_and_unstructured_are_not(smoke):
    dense, snap, snip = smoke["dense"], smoke["snap"], smoke["snip"]
    assert snap.flops < dense.flops and snap.params < dense.params
    assert snip.flops == dense.flops and snip.nonzero_macs < dense.nonzero_macs
    assert snip.params < dense.params  # masked weights are not parameters any more (θ_orig not counted twice)
    assert snip.disk_bytes < dense.disk_bytes  # masked weights are stored sparse


def test_forced_detection_is_a_field_and_a_recorded_warning(smoke, cache_dir):
    # smoke's dense phase (2 epochs) is shorter than EarlyBird's window (5): it must prune at the cap and say so
    r = smoke["earlybird"]
    assert r.prune_epoch == SMOKE["max_dense_epochs"]
    assert r.forced is True and "did not fire" in r.forced_reason and r.forced_reason in r.warnings
    assert r.row()["forced"] is True and r.row()["forced_reason"] == r.forced_reason
    assert all(smoke[m].forced is None and smoke[m].forced_reason is None for m in ("dense", "snap", "ltr"))
    again = ck.run("earlybird", sparsity=0.9, profile="smoke", cache_dir=cache_dir, progress=False)
    assert again.from_cache and (again.forced, again.forced_reason) == (True, r.forced_reason)
    fired = ck.run("earlycrop-u", sparsity=0.9, profile="smoke", threshold=1e9, cache=False, progress=False)
    assert fired.prune_epoch == 2 and fired.forced is False and fired.forced_reason is None  # the rule fired


def test_a_result_cached_before_the_forced_and_threads_columns_still_loads(smoke, tmp_path):
    stored = smoke["earlycrop-u"].to_json()
    for key in ("forced", "forced_reason", "threads", "cpus"):
        del stored[key]
    (tmp_path / "old.json").write_text(json.dumps(stored))
    old = results.load_cached(tmp_path / "old.json")
    assert old is not None and old.forced is None and old.threads is None and old.cpus is None


def test_cache_replays_without_training(smoke, cache_dir, monkeypatch):
    def must_not_train(ctx):
        raise AssertionError("a cached run trained again")

    monkeypatch.setitem(methods.REGISTRY, "snap", dataclasses.replace(methods.REGISTRY["snap"], train=must_not_train))
    again = ck.run("snap", sparsity=0.9, profile="smoke", cache_dir=cache_dir, progress=False)
    assert again.from_cache and _same(again.row(), smoke["snap"].row())
    # dense ignores sparsity: any target replays the same run
    assert ck.run("dense", sparsity=0.5, profile="smoke", cache_dir=cache_dir, progress=False).from_cache


def test_cache_false_bypasses(cache_dir, monkeypatch):
    class Trained(Exception):
        pass

    def trains(ctx):
        raise Trained

    monkeypatch.setitem(methods.REGISTRY, "snap", dataclasses.replace(methods.REGISTRY["snap"], train=trains))
    with pytest.raises(Trained):
        ck.run("snap", sparsity=0.9, profile="smoke", cache_dir=cache_dir, cache=False, progress=False)


def test_cache_key_changes_with_configuration(smoke):
    key = smoke["snap"].key
    cfg = runs.settings("snap", profile="smoke")
    base = runs._config("snap", cfg, 0.9, 0, torch.device("cpu"))
    assert results.cache_path(".", base).stem == key
    for change in (dict(sparsity=0.8), dict(seed=1), dict(lr=1e-3), dict(code="other")):
        assert results.config_key({**base, **change}) != results.config_key(base)


def test_compare_gives_the_paper_table(smoke, cache_dir, tmp_path):
    table = ck.compare(["dense", "snap", "snip"], sparsity=0.9, seeds=(0, 1), profile="smoke",
                       cache_dir=cache_dir, progress=False)
    assert list(table.index) == ["dense", "snap", "snip"]
    assert list(table.columns[:11]) == ["Type", "Method", "Seeds", "Test accuracy ↑", "Weight sparsity",
                                        "Node sparsity", "Training time (s) ↓", "Batch time (ms) ↓",
                                        "Peak memory (MB) ↓", "Disk (kB) ↓", "Emissions (mg) ↓"]
    assert "±" in table.loc["snap", "Test accuracy ↑"] and "±" in table.loc["snap", "Node sparsity"]
    assert table.loc["snip", "Node sparsity"] == "-" and table.loc["dense", "Weight sparsity"] == "-"
    runs = results.runs_frame(table)
    assert len(runs) == 6 and set(runs["seed"]) == {0, 1}
    snap0 = [r for r in table.attrs["runs"] if r["method"] == "snap" and r["seed"] == 0]
    assert len(snap0) == 1 and _same(snap0[0], smoke["snap"].row())
    mean = runs.loc[runs.method == "snap", "test_acc"].mean() * 100
    assert table.loc["snap", "Test accuracy ↑"].startswith(f"{mean:.1f}%")

    raw = ck.compare(["dense", "snap", "snip"], sparsity=0.9, seeds=(0, 1), profile="smoke", cache_dir=cache_dir,
                     progress=False, aggregate=False)
    assert len(raw) == 6 and "test_acc" in raw.columns
    stats = results.summary(runs.to_dict("records"))
    assert stats.loc["snap", ("test_acc", "mean")] == pytest.approx(mean / 100)

    csv, runs_csv = results.save_table(table, tmp_path / "t.csv")
    assert pd.read_csv(csv, index_col=0).shape == table.shape and len(pd.read_csv(runs_csv)) == 6
    (js,) = results.save_table(table, tmp_path / "t.json")
    payload = json.loads(js.read_text())
    assert len(payload["table"]) == 3 and len(payload["runs"]) == 6


def test_rewind_keeps_masks_and_restores_survivors():
    model = models.build("mlp", (1, 8), 3, width=0.1, seed=0)
    start = state_of(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    prune.unstructured(model, ck.scores.magnitude(model), 0.5)
    rewind(model, start)
    for name, module in prunable_layers(model):
        kept = prune.masks(model)[f"{name}.weight"]
        assert torch.equal(module.weight[kept], start[f"{name}.weight"][kept])
        assert (module.weight[~kept] == 0).all()


def test_ltr_reinit_control_differs_from_rewinding(smoke, cache_dir):
    r = ck.run("ltr", sparsity=0.9, profile="smoke", cache_dir=cache_dir, progress=False, reinit=True)
    assert r.key != smoke["ltr"].key and abs(r.weight_sparsity - 0.9) <= 0.01
    assert r.epochs_trained == smoke["ltr"].epochs_trained


@pytest.mark.parametrize("method", ["earlycrop-u", "earlycrop-s"])
def test_earlycrop_iterative_option_prunes_the_same_moment_in_cropit_steps(smoke, cache_dir, method, monkeypatch):
    calls = []
    real = prune.cropit
    monkeypatch.setattr(prune, "cropit", lambda *a, **k: calls.append(k.get("structured")) or real(*a, **k))
    r = ck.run(method, sparsity=0.9, profile="smoke", cache_dir=cache_dir, progress=False, iterative=True)
    assert calls == [method == "earlycrop-s"], "the iterative option prunes once, through CroPit's schedule"
    assert r.key != smoke[method].key and abs(r.weight_sparsity - 0.9) <= 0.01
    assert r.prune_epoch == smoke[method].prune_epoch and r.epochs_trained == smoke[method].epochs_trained


@pytest.mark.parametrize("kwargs, words", [
    (dict(method="sni"), "unknown method"),
    (dict(method="snip", data="imagenet"), "unknown data"),
    (dict(method="snip", data="synthetic"), "unknown data"),
    (dict(method="snip", model="resnet1000"), "unknown model"),
    (dict(method="snip", sparsity=1.0), "[0, 1)"),
    (dict(method="snip", sparsity=-0.1), "[0, 1)"),
    (dict(method="snip", sparsity="0.9"), "[0, 1)"),
    (dict(method="snip", epochs=0), "epochs"),
    (dict(method="snip", profile="laptop"), "profile"),
    (dict(method="snip", thresold=0.1), "unknown option"),
    (dict(method="earlycrop-u", rule="median"), "rule"),
    (dict(method="earlycrop-u", iterative="true"), "True or False"),
    (dict(method="ltr", rewind_epoch=5), "rewind_epoch"),
])
def test_bad_input_says_what_is_allowed(kwargs, words, tmp_path):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace(")", r"\)")):
        ck.run(**{"profile": "smoke", "cache_dir": tmp_path, "progress": False, **kwargs})
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was stored


def test_compare_validates_every_method_first(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        ck.compare(["dense", "snip", "nope"], profile="smoke", cache_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_compare_in_worker_processes_gives_the_same_runs(smoke, tmp_path):
    raw = ck.compare(["random-s", "snap"], sparsity=0.9, seeds=(0,), profile="smoke", cache_dir=tmp_path,
                     progress=False, aggregate=False, workers=2)
    for _, row in raw.iterrows():
        mine = smoke[row["method"]]
        assert row["test_acc"] == pytest.approx(mine.test_acc, abs=1e-9)
        assert row["weight_sparsity"] == mine.weight_sparsity and row["epochs_trained"] == mine.epochs_trained


def test_ltr_reinit_redraws_the_survivors(cache_dir, monkeypatch):
    """The control re-initialises the survivors with a new draw from the same initialiser; rewinding (k = 0 in the
    smoke profile) puts back θ₀ itself."""
    seen = {}
    real = ltr.rewind
    monkeypatch.setattr(ltr, "rewind", lambda model, state: seen.setdefault("state", state) and real(model, state))
    theta0 = state_of(models.build("cnn", (1, 8, 8), 10, width=SMOKE["width"], seed=0))
    for reinit in (False, True):
        seen.clear()
        ck.run("ltr", sparsity=0.9, profile="smoke", cache=False, progress=False, reinit=reinit)
        for name, _ in prunable_layers(models.build("cnn", (1, 8, 8), 10, width=SMOKE["width"])):
            key = f"{name}.weight"
            drawn, original = seen["state"][key], theta0[key]
            assert torch.equal(drawn, original) != reinit, (reinit, key)
            assert 0.8 < float(drawn.std() / original.std()) < 1.25  # the same initialiser


@pytest.mark.parametrize("method, criterion", [("earlycrop-u", "crop"), ("earlycrop-s", "crop_nodes")])
def test_earlycrop_scores_and_keeps_theta_t_not_theta0(method, criterion, monkeypatch):
    """EarlyCroP scores the network it has trained to the firing epoch (θ_t), and keeps training θ_t: no rewinding."""
    from cropkit.core import scores

    seen = {}
    table = scores.WEIGHT_SCORES if criterion == "crop" else scores.NODE_SCORES
    real = table[criterion]

    def spy(model, batches, **kw):
        seen["scored"] = {n: m.weight.detach().clone() for n, m in prunable_layers(model)}
        seen["model"] = model
        return real(model, batches, **kw)

    monkeypatch.setitem(table, criterion, spy)
    train_begin = []
    monkeypatch.setattr(Trainer, "reset_optimizer",
                        lambda self, *a, real=Trainer.reset_optimizer, **k:
                        train_begin.append({n: m.weight.detach().clone()
                                            for n, m in prunable_layers(self.model)})
                        or real(self, *a, **k))
    r = ck.run(method, sparsity=0.9, profile="smoke", cache=False, progress=False)
    assert r.prune_epoch >= 1
    theta0 = dict(prunable_layers(models.build("cnn", (1, 8, 8), 10, width=SMOKE["width"], seed=0)))
    assert all(not torch.equal(w, theta0[n].weight) for n, w in seen["scored"].items())  # θ_t ≠ θ₀
    after = train_begin[-1]  # the weights the sparse phase starts from
    if method == "earlycrop-u":  # survivors are θ_t's values, pruned ones 0
        for n, w in after.items():
            assert torch.equal(w[w != 0], seen["scored"][n][w != 0])
    else:  # the surviving channels carry θ_t's values, never θ₀'s
        for n, w in after.items():
            assert not torch.equal(w, theta0[n].weight[: w.shape[0]])


# The smoke profile trains 2 epochs of 2 optimizer steps (256 samples, batch 128): too short for any method to
# beat chance (10 %), so its runs only check the bookkeeping. This short-but-real setting (3 epochs of 16 steps,
# sparsity 0.5) is where every method must show that it learns.
LEARNING = dict(sparsity=0.5, profile="smoke", batch_size=32, epochs=3, limit=512, progress=False)
CHANCE = 0.1
MARGIN = {  # test accuracy must exceed chance by this much (seed 0; measured 0.80–0.93 for all but GraSP)
    "grasp": 0.1,  # GraSP removes the weights whose removal raises the gradient flow most; here it trails (0.39)
}


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_every_method_beats_chance_when_trained_a_little(method, cache_dir):
    r = ck.run(method, cache_dir=cache_dir, **LEARNING)
    margin = MARGIN.get(method, 0.4)
    assert r.test_acc > CHANCE + margin, f"{method}: {r.test_acc:.3f} is not {margin} above chance ({CHANCE})"


# ----------------------------------------------------------------------------- bad input never costs a result

def test_a_diverged_run_is_an_error_naming_the_epoch_and_is_never_cached(tmp_path):
    with pytest.raises(ck.train.DivergedError, match=r"loss became nan in epoch \d+, step \d+.*lower learning rate"):
        ck.run("dense", profile="smoke", lr=1e30, cache_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_an_unwritable_cache_costs_a_warning_not_the_result(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a cache folder under a file cannot be created, even by root
    with pytest.warns(UserWarning, match=r"could not be cached at .*a-file.*it is returned") as caught:
        r = ck.run("dense", profile="smoke", cache_dir=blocker / "cache", progress=False)
    assert r.epochs_trained == E and 0 <= r.test_acc <= 1 and not r.from_cache
    assert any("could not be cached" in str(w.message) for w in caught)
    with pytest.warns(UserWarning, match="cannot be cached in .*a-file is a file, not a folder"):
        table = ck.compare(["dense"], seeds=(0,), profile="smoke", cache_dir=blocker / "cache", progress=False)
    assert table.loc["dense", "Seeds"] == 1


def test_limit_none_means_the_whole_training_set(tmp_path, monkeypatch):
    assert runs.settings("dense", profile="smoke").limit == SMOKE["limit"]      # omitted: the profile's
    assert runs.settings("dense", profile="smoke", limit=None).limit is None    # explicit None: everything
    seen = {}

    def probe(ctx):
        seen["train"] = len(ctx.data.train.dataset)
        raise KeyboardInterrupt  # stop before training: the data is what this test is about

    monkeypatch.setitem(methods.REGISTRY, "dense", dataclasses.replace(methods.REGISTRY["dense"], train=probe))
    with pytest.raises(KeyboardInterrupt):
        ck.run("dense", profile="smoke", limit=None, cache_dir=tmp_path, progress=False)
    assert seen["train"] == 1437  # digits' whole training split, not smoke's 256
    for bad in (0, 2.5, "all", True):
        with pytest.raises(ValueError, match="limit must be an integer >= 1 .* or None"):
            runs.settings("dense", profile="smoke", limit=bad)


def test_more_score_batches_than_the_data_has_is_a_recorded_warning(tmp_path):
    # smoke: 256 training samples in batches of 128 = 2 batches
    r = ck.run("snip", profile="smoke", score_batches=5, cache_dir=tmp_path, progress=False)
    assert any("score_batches=5" in w and "scoring used 2" in w for w in r.warnings), r.warnings


def test_repeated_seeds_or_methods_are_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"repeat \[0\]"):
        ck.compare(["dense"], seeds=(0, 1, 0), profile="smoke", cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"repeat \['snip'\]"):
        ck.compare(["snip", "dense", "snip"], seeds=(0,), profile="smoke", cache_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_compare_honours_device_or_rejects_it(tmp_path):
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        ck.compare(["dense"], seeds=(0,), profile="smoke", device="tpu", cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        ck.run("dense", profile="smoke", device="tpu", cache_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())
    raw = ck.compare(["dense"], seeds=(0,), profile="smoke", device="cpu", cache_dir=tmp_path, progress=False,
                     aggregate=False)
    assert list(raw["device"]) == ["cpu"]


# ----------------------------------------------------------------------------- cost columns a reader can trust

def test_cache_key_holds_library_versions_and_the_device_name(smoke):
    config = smoke["snap"].config
    assert config["versions"] == results.library_versions()
    assert set(config["versions"]) == {"torch", "torchvision", "torch-pruning"}
    assert config["versions"]["torch"] == torch.__version__.split("+")[0]
    assert config["device_name"] == ck.hardware.device_name("cpu") and config["device_name"]
    for change in (dict(versions={**config["versions"], "torch-pruning": "0.0"}), dict(device_name="other")):
        assert results.config_key({**config, **change}) != results.config_key(config)


def test_code_version_ignores_docstrings_and_comments_but_not_code():
    source = 'def f(x):\n    """Doc."""\n    return x + 1  # why\n\nclass A:\n    """Doc."""\n    y = 2\n'
    prose = 'def f(x):\n    """Another docstring\n\n    over lines."""\n    # a new comment\n    return x + 1\n\n' \
            'class A:\n    y = 2  # changed comment\n'
    code = source.replace("x + 1", "x + 2")
    assert results._code(source) == results._code(prose)
    assert results._code(source) != results._code(code)
    only_docstring = 'def g():\n    """Only a docstring."""\n'
    assert "pass" in results._code(only_docstring)  # still valid code


def test_first_run_of_a_process_is_timed_after_the_warm_up(tmp_path):
    """The one-time import of torch._dynamo (seconds) must happen before the clock of the first run starts."""
    script = (
        "import sys, time, torch\n"
        "torch.set_num_threads(1)\n"
        "from cropkit.experiments import runs\n"
        "import dataclasses\n"
        "from cropkit.methods import registry as methods\n"
        "from cropkit.methods.dense import dense\n"
        "seen = []\n"
        "def probe(ctx):\n"
        "    seen.append('torch._dynamo' in sys.modules)\n"
        "    return dense(ctx)\n"
        "methods.REGISTRY['dense'] = dataclasses.replace(methods.REGISTRY['dense'], train=probe)\n"
        "assert 'torch._dynamo' not in sys.modules, 'not a fresh process'\n"
        "t = [runs.run('dense', profile='smoke', cache=False, progress=False).train_seconds for _ in range(2)]\n"
        "print(seen, f'first {t[0]:.3f} s, again {t[1]:.3f} s, ratio {t[0] / t[1]:.2f}')\n"
        "assert seen == [True, True]\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CROPKIT_CACHE": str(tmp_path)})
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_earlycrop_criterion_separates_when_from_how(tmp_path):
    """criterion= swaps the score EarlyCroP applies to θ_t; it enters the cache key; a wrong kind is refused."""
    options = dict(profile="smoke", cache_dir=tmp_path, progress=False)
    crop = ck.run("earlycrop-u", **options)
    magnitude = ck.run("earlycrop-u", criterion="magnitude", **options)
    assert crop.key != magnitude.key and magnitude.config["criterion"] == "magnitude"
    assert magnitude.prune_epoch == crop.prune_epoch  # the same detector decides when
    assert abs(magnitude.weight_sparsity - 0.9) < 0.01
    with pytest.raises(ValueError, match="not a weight score.*magnitude"):
        ck.run("earlycrop-u", criterion="crop_nodes", **options)
    with pytest.raises(ValueError, match="not a node score"):
        ck.run("earlycrop-s", criterion="magnitude", **options)


def test_every_module_a_run_imports_enters_the_code_version():
    """A module that cropkit.run imports decides what a run computes: editing it must make cached results
    unreachable, so none of them may be excluded from code_version() as presentation."""
    code = ("import sys, cropkit.experiments.runs; "
            "print(' '.join(m for m in sys.modules if m.startswith('cropkit.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = {m.split(".", 1)[1] for m in done.stdout.split()} - {"core", "tasks", "training", "methods",
                                                                     "experiments"}  # the packages' faces
    shown = {m for m in imported if results.presentation(m)}
    assert imported - shown <= set(results.result_modules())
    assert not shown - {"paths"}, \
        f"presentation modules {shown} are imported by a run: they decide results; remove them from " \
        f"PRESENTATION_MODULES"
    assert {"experiments.runs", "methods.registry", "core.scores", "core.structured", "core.masks", "core.derivatives",
            "methods.gates"} <= set(results.result_modules())


def test_a_run_reports_the_bits_per_nonzero_of_sparse_storage(tmp_path):
    """The paper's disk column for masked models, format-free: 32 value bits and a column index per nonzero."""
    result = ck.run("crop-u", profile="smoke", cache_dir=tmp_path, progress=False)
    assert 32 < result.bits_per_nonzero < 32 + 16 and "bits_per_nonzero" in result.row()
    older = {k: v for k, v in result.to_json().items() if k != "bits_per_nonzero"}  # cached before the column
    assert math.isnan(ck.Result.from_json(older).bits_per_nonzero)
