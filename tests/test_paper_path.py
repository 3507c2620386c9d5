"""The ``paper`` profile, executed on CPU (issue 13): CIFAR-format files written by the test (tests/cifar_files.py),
the paper's networks (at full width in the two `cropkit.run` tests), its augmentation, schedule, detector, surgery and
measurements — only the sizes shrunk by overrides (epochs, training images, batch size, scoring batches, dense-phase
cap; widths in some lessons). No GPU run of this path has been made; tests/test_gpu_branches.py covers the CUDA-only
branches with fakes.

Per-lesson seconds of the lesson tests are printed (``pytest -s``) so that their share of the suite stays visible.
"""
from __future__ import annotations

import functools
import time
import warnings

import pytest
import torch
from torchvision import transforms

import cropkit as ck
from cropkit.core.layers import prunable_layers
from cropkit.lessons import lesson_parameters, notebook

# Only sizes change. A full-width ResNet18 or VGG16 step is costly on a CPU, so a run sees a handful of images:
# 8 training images in batches of 4, one scoring batch, at most two dense epochs. (The cost columns time 13
# training steps and profile 2 more on the scoring batch, so the batch size sets most of a run's cost.)
SHRUNK = dict(epochs=1, limit=8, batch_size=4, score_batches=1, max_dense_epochs=2)
RESNET18_CIFAR_PARAMS = 11_173_962  # the CIFAR ResNet18 (3×3 stem, no max-pool) for 10 classes
# FLOPs per 32×32 sample, 2 per multiply-accumulate: the 3×3 stem at 32×32, four 64-channel convs at 32×32, then per
# stage (128 @ 16×16, 256 @ 8×8, 512 @ 4×4) a strided conv, three convs and a 1×1 shortcut, and the fc
_STAGES = sum(c // 2 * c * 9 * s * s + 3 * c * c * 9 * s * s + c // 2 * c * s * s
              for c, s in ((128, 16), (256, 8), (512, 4)))
RESNET18_CIFAR_FLOPS = 2 * (3 * 64 * 9 * 32 * 32 + 4 * 64 * 64 * 9 * 32 * 32 + _STAGES + 512 * 10)
VGG16_CIFAR_PARAMS = 14_728_266  # the CIFAR VGG16 with batch norm and one linear classifier, 10 classes


@pytest.fixture
def spies(monkeypatch):
    """Record what a run really did: the data it loaded, the schedules it built, how often the training images were
    augmented, and the final model it measured."""
    seen = {"data": [], "schedules": [], "crops": 0, "flips": 0, "measured": []}
    load, make_schedule, peak_memory = ck.data.load, ck.train.make_schedule, ck.measure.peak_memory
    crop, flip = transforms.RandomCrop.forward, transforms.RandomHorizontalFlip.forward

    def spy_load(*args, **kwargs):
        seen["data"].append(load(*args, **kwargs))
        return seen["data"][-1]

    def spy_schedule(name, *args, **kwargs):
        seen["schedules"].append(name)
        return make_schedule(name, *args, **kwargs)

    def spy_peak(model, *args, **kwargs):
        seen["measured"].append(model)
        return peak_memory(model, *args, **kwargs)

    def counting(key, forward):
        def wrapped(self, img):
            seen[key] += 1
            return forward(self, img)
        return wrapped

    monkeypatch.setattr(ck.data, "load", spy_load)
    monkeypatch.setattr(ck.train, "make_schedule", spy_schedule)
    monkeypatch.setattr(ck.measure, "peak_memory", spy_peak)
    monkeypatch.setattr(transforms.RandomCrop, "forward", counting("crops", crop))
    monkeypatch.setattr(transforms.RandomHorizontalFlip, "forward", counting("flips", flip))
    return seen


def _dense(model: str, classes: int = 10) -> torch.nn.Module:
    return ck.models.build(model, (3, 32, 32), classes, width=1.0, seed=0)


def test_paper_networks_are_the_full_cifar_architectures():
    resnet, vgg = _dense("resnet18"), _dense("vgg16")
    assert ck.measure.param_count(resnet) == RESNET18_CIFAR_PARAMS
    assert ck.measure.param_count(vgg) == VGG16_CIFAR_PARAMS
    # 17 convs + 3 shortcut convs + fc in ResNet18; 13 convs + 1 classifier in VGG16
    assert len(list(prunable_layers(resnet))) == 21 and len(list(prunable_layers(vgg))) == 14
    assert ck.measure.flops(resnet, torch.zeros(2, 3, 32, 32)) == RESNET18_CIFAR_FLOPS


def _check_common(result, spies, cifar_root, method):
    assert result.method == method and result.profile == "paper" and result.dataset == "cifar10"
    assert result.width == 1.0 and result.epochs == 1 and result.device == "cpu"
    assert result.config["batch_size"] == 4 and result.config["limit"] == 8
    for column in ("test_acc", "best_test_acc", "train_seconds", "batch_time_ms", "flops", "nonzero_macs"):
        value = getattr(result, column)
        assert value == value and abs(value) != float("inf") and value >= 0, (column, value)
    assert 0.0 <= result.test_acc <= 1.0 and result.peak_memory_bytes > 0 and result.disk_bytes > 0
    assert result.emissions_g >= 0  # the paper profile measures emissions (codecarbon, offline); NaN if it failed
    # the CIFAR path: the tiny files under the data root, with the paper's training augmentation, which ran
    data = spies["data"][0]
    assert data.name == "cifar10" and data.input_shape == (3, 32, 32) and data.num_classes == 10
    dataset = data.train.dataset.dataset  # a Subset of torchvision's CIFAR10 (limit)
    assert isinstance(dataset, __import__("torchvision").datasets.CIFAR10)
    assert str(dataset.root) == str(cifar_root) and len(data.train.dataset) == 8
    kinds = [type(t) for t in dataset.transform.transforms]
    assert kinds[:2] == [transforms.RandomCrop, transforms.RandomHorizontalFlip]
    assert spies["crops"] >= 8 * result.epochs_trained and spies["flips"] == spies["crops"]
    assert spies["schedules"][-1] == "onecycle"  # the sparse phase (train.warm_up may build one before)


def test_crop_s_on_the_paper_path(cifar_root, spies, one_thread):
    result = ck.run("crop-s", profile="paper", sparsity=0.5, cache=False, progress=False, **SHRUNK)
    _check_common(result, spies, cifar_root, "crop-s")
    assert result.model == "resnet18" and result.prune_epoch == 0 and result.epochs_trained == 1
    assert "constant" not in spies["schedules"]  # no dense phase: pruned at initialisation
    # structured surgery: whole channels removed, so the network is physically smaller than full-width ResNet18
    final = spies["measured"][-1]
    assert 0.0 < result.node_sparsity < 1.0
    assert ck.measure.param_count(final) < RESNET18_CIFAR_PARAMS and result.flops < RESNET18_CIFAR_FLOPS
    assert len(list(prunable_layers(final))) == 21  # the same layers, narrower
    assert abs(result.weight_sparsity - 0.5) <= 0.01


def test_earlycrop_u_on_the_paper_path_with_vgg16(cifar_root, spies, one_thread):
    with warnings.catch_warnings():  # a forced prune is recorded in result.warnings; no need to print it
        warnings.simplefilter("ignore")
        result = ck.run("earlycrop-u", profile="paper", model="vgg16", sparsity=0.9, cache=False, progress=False,
                        **SHRUNK)
    _check_common(result, spies, cifar_root, "earlycrop-u")
    assert result.model == "vgg16"
    # the detector watched a dense phase of at most two epochs (constant LR), then one one-cycle sparse epoch; the
    # paper's seed rule rarely fires that early, and then the prune is forced at the cap, with a warning
    forced = [w for w in result.warnings if "did not fire within the maximum dense phase of 2 epochs" in w]
    assert result.prune_epoch == 2 if forced else result.prune_epoch in (1, 2)
    assert result.epochs_trained == result.prune_epoch + 1
    assert "constant" in spies["schedules"]
    assert len(result.history) == result.epochs_trained
    # unstructured: the full-size network keeps every node and its dense FLOPs; 90 % of its weights are zero
    final = spies["measured"][-1]
    dense = _dense("vgg16")
    assert result.node_sparsity == 0.0 and ck.measure.param_count(final) == VGG16_CIFAR_PARAMS
    assert abs(result.weight_sparsity - 0.9) <= 0.01
    assert result.flops == ck.measure.flops(dense, torch.zeros(2, 3, 32, 32))
    prunable = ck.measure.prunable_count(dense)
    assert abs(result.params - (VGG16_CIFAR_PARAMS - prunable + 0.1 * prunable)) <= 0.01 * prunable


def test_cifar100_files_load_with_the_paper_transform(cifar_root):
    data = ck.data.load("cifar100", batch_size=4, limit=8, seed=0)
    assert data.num_classes == 100 and len(data.train.dataset) == 8 and len(data.test.dataset) == 100
    x, y = next(iter(data.train))
    assert x.shape == (4, 3, 32, 32) and int(y.max()) < 100
    kinds = [type(t) for t in data.train.dataset.dataset.transform.transforms]
    assert kinds == [transforms.RandomCrop, transforms.RandomHorizontalFlip, transforms.ToTensor,
                     transforms.Normalize]


# ----------------------------------------------------------------------------- every lesson under paper

# Size parameters a lesson may declare, and their value here; a lesson gets each one it declares (lesson 05 and any
# later lesson included). Sizes only: data, models, methods, criteria and measurements stay the paper profile's.
# codecarbon's tracker takes seconds to start, once per run: the two cropkit.run tests above measure emissions as the
# paper profile does; the lessons, which make many runs, skip it (MEASURE_EMISSIONS; lesson 04's OPTIONS).
SIZES = dict(EPOCHS=1, BATCH_SIZE=4, LIMIT=8, SEEDS=[0], SCORE_BATCHES=1, MAX_DENSE_EPOCHS=2, SPARSITIES=[0.9],
             LTR_ROUNDS=1, REWIND_EPOCH=0, FOCUS_SPARSITY=0.9, CACHE=False, MEASURE_EMISSIONS=False)
# What a lesson needs beyond SIZES. Widths: lesson 00 trains ResNet18 at full width; the NTK lessons (01, 02)
# build per-sample Jacobians of every weight (10 × 11 M floats per sample at full width), and lessons 03 and 04
# train 6 and 21 networks, so these run the paper's networks at a fraction of their width on a 2-core CPU.
LESSON_SIZES = {
    "00_tour": dict(WIDTH=1.0),
    "01_gradient_flow_and_ntk": dict(WIDTH=0.25, CHECK_SEEDS=1, CHECK_BATCHES=1, CHECK_BATCH_SIZE=1, PROBE_SIZE=2,
                                     SWEEP_SEEDS=1, EIGENVALUES=5),
    "02_rich_to_lazy": dict(WIDTH=0.25, EPOCHS=2, PROBE_SIZE=2, NTK_EVERY=2, TRY_WIDTHS=[0.125], TRY_LRS=[2e-3],
                            TRY_EPOCHS=1, DIGITS_EPOCHS=1, FRAMES=2),
    "03_lottery_vs_earlycrop": dict(WIDTH=0.25, METHODS=["ltr", "ltr-reinit", "earlycrop-u", "crop-u", "random-u"]),
    "04_structured_pruning": dict(
        WIDTH=0.125, TABLES=[["resnet18", 0.9], ["vgg16", 0.9]], EXPLORER_WIDTH=0.125, EXPLORER_BATCH=4,
        SWEEP=[0.9], WIDE_WIDTH=0.25, NARROW_WIDTHS=[0.125],
        OPTIONS=dict(batch_size=4, limit=8, score_batches=1, max_dense_epochs=2, ticks=1, measure_emissions=False)),
    # four domains × (dense + 5 methods): each network at half its paper width, on 8 scenes, sequences or
    # 8-step episodes (evaluation still plays the 10 full evaluation episodes of a control game)
    "05_beyond_classification": dict(WIDTH=0.5, WORKERS=1),
    # every disturbance of one method, one structured layout, one sensitivity column: the paper's path, not its size
    "06_what_scores_know": dict(WIDTH=0.125, METHODS=["snip"], STRUCTURED=["crop-s"], SENSITIVITY_SPARSITIES=[0.9],
                                WORKERS=1),
}
LESSONS = notebook.notebooks()
declared_parameters = functools.cache(lesson_parameters.declared_parameters)  # papermill reads a lesson in ~1 s


def lesson_parameters(path) -> dict:
    """The shrunk sizes for a lesson: every SIZES entry it declares, then its own entries."""
    declared = declared_parameters(path)
    return {**{k: v for k, v in SIZES.items() if k in declared}, **LESSON_SIZES.get(path.stem, {})}


def test_every_lesson_has_its_sizes_shrunk():
    """A lesson without a size parameter the shrunk run needs would train the paper's full sizes here."""
    assert len(LESSONS) >= 5
    for path in LESSONS:
        declared = declared_parameters(path)
        given = lesson_parameters(path)
        assert not set(LESSON_SIZES.get(path.stem, {})) - set(declared), path.name
        for size in ("EPOCHS", "BATCH_SIZE", "LIMIT", "OPTIONS"):
            if size not in declared:
                continue
            assert size in given, f"{path.name} declares {size}, which the paper-path test must shrink"


@pytest.mark.slow
@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_runs_under_paper(path, cifar_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CROPKIT_CACHE", str(tmp_path / "cache"))
    # one torch thread in the kernel: on a shared 2-core machine two OpenMP threads wait on each other (a training
    # step of ResNet18 ×0.25 took 18× longer with two than with one while other jobs ran)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    results = notebook.execute(path, profile="paper", output_dir=tmp_path / "out", parameters=lesson_parameters(path),
                               budget_s=None)
    print(f"\n{path.stem} under paper: {time.perf_counter() - start:.1f} s")
    assert results["profile"] == "paper"
    if "data" in results:
        assert results["data"] == "cifar10"
    if "model" in results:
        assert results["model"] == "resnet18"
    check = CHECKS.get(path.stem)
    if check:
        check(results)


def _tour(r):
    assert r["width"] == 1.0 and r["params"] == RESNET18_CIFAR_PARAMS and r["flops_per_sample"] == RESNET18_CIFAR_FLOPS
    assert len(r["history"]) == 1 and 0.0 <= r["final_test_acc"] <= 1.0


def _lottery(r):
    rows = [row for row in r["rows"] if row["method"] != "dense"]
    assert {row["method"] for row in rows} == {"ltr", "ltr-reinit", "earlycrop-u", "crop-u", "random-u"}
    assert all(abs(row["weight_sparsity"] - 0.9) <= 0.01 for row in rows)
    assert all(0.0 <= row["test_acc"] <= 1.0 for row in r["rows"])
    assert r["lr"] == [2e-3], "the paper profile trains at the paper's learning rate (LR = None in its profile)"


def _structured(r):
    assert [t["model"] for t in r["tables"]] == ["resnet18", "vgg16"]
    for table in r["tables"]:
        rows = {row["method"]: row for row in table["rows"]}
        assert len(rows) == 10 and rows["dense"]["node_sparsity"] == 0.0
        assert rows["crop-s"]["node_sparsity"] > 0 and rows["crop-s"]["params"] < rows["dense"]["params"]
        assert abs(rows["crop-u"]["weight_sparsity"] - 0.9) <= 0.01


CHECKS = {"00_tour": _tour, "03_lottery_vs_earlycrop": _lottery, "04_structured_pruning": _structured}
