"""Issue 11's library options: the larger generated MNIST-1D and the detector's every-N-steps cadence in `run`."""
import numpy as np
import pytest
import torch

import cropkit as ck
from cropkit.experiments import profiles, runs
from cropkit.tasks import data as data_lib
from cropkit.training import loop as train

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- mnist1d-large

def test_mnist1d_large_is_the_same_generator_with_more_samples():
    data = ck.data.load("mnist1d-large", batch_size=32)
    assert data.input_shape == (1, 40) and data.num_classes == 10
    n = data_lib.MNIST1D_SIZES["mnist1d-large"]
    assert len(data.train.dataset) == int(0.8 * n) and len(data.test.dataset) == n - int(0.8 * n)
    assert set(data.test.dataset.tensors[1].tolist()) == set(range(10))
    # the split is fixed: the test set does not move with the run's seed
    other = ck.data.load("mnist1d-large", batch_size=32, seed=5)
    assert torch.equal(data.test.dataset.tensors[0], other.test.dataset.tensors[0])


def test_mnist1d_variants_are_cached_with_their_size_in_the_name(tmp_path, monkeypatch):
    monkeypatch.setitem(data_lib.MNIST1D_SIZES, "mnist1d-large", 500)
    data = ck.data.load("mnist1d-large", root=tmp_path)
    assert (tmp_path / "mnist1d-500.npz").exists() and not (tmp_path / "mnist1d.npz").exists()
    assert len(data.train.dataset) == 400 and len(data.test.dataset) == 100
    again = ck.data.load("mnist1d-large", root=tmp_path)  # replayed from the file: identical
    assert torch.equal(data.train.dataset.tensors[0], again.train.dataset.tensors[0])
    stored = np.load(tmp_path / "mnist1d-500.npz")
    assert stored["x"].shape == (400, 40) and stored["x_test"].shape == (100, 40)


@pytest.mark.parametrize("n", [0, 99, 2.5, True, "5000"])
def test_mnist1d_sample_count_is_validated(tmp_path, n):
    with pytest.raises(ValueError, match="num_samples"):
        data_lib._mnist1d_arrays(tmp_path, n)


def test_run_accepts_mnist1d_large_as_data():
    cfg = runs.settings("earlycrop-u", data="mnist1d-large", model="cnn1d")
    assert cfg.data == "mnist1d-large"


# ----------------------------------------------------------------------------- the detector every N steps

def _step_run(tmp_path, **options):
    # smoke profile on 256 digits with batch 64: 4 steps per epoch, 2 epochs of sparse phase, cap 2 epochs
    return ck.run("earlycrop-u", sparsity=0.9, profile="smoke", batch_size=64, cache_dir=tmp_path, progress=False,
                  **options)


def test_detector_every_n_steps_prunes_mid_epoch_and_keeps_the_sparse_phase_whole(tmp_path):
    # τ huge: the detector fires at its first possible update, block 2 = step 2, in the middle of epoch 1
    r = _step_run(tmp_path, detect_every_steps=1, threshold=1e9)
    e = r.epochs
    assert r.prune_epoch == 0 and r.epochs_trained == 1 + e  # the rest of epoch 1, then the full sparse phase
    assert len(r.history) == r.epochs_trained and abs(r.weight_sparsity - 0.9) <= 0.01
    assert r.history[-1]["lr"] < r.history[0]["lr"] / 10  # one-cycle over exactly the steps left (no overrun)
    assert not any("did not fire" in w for w in r.warnings) and r.forced is False
    per_epoch = _step_run(tmp_path, threshold=1e9)  # once per epoch: fires at the end of epoch 2
    assert per_epoch.prune_epoch == 2 and per_epoch.key != r.key


def test_detector_every_n_steps_is_capped_in_epochs(tmp_path):
    r = _step_run(tmp_path, detect_every_steps=3, threshold=1e-12)
    cap = profiles.RUN["smoke"]["max_dense_epochs"]
    assert r.prune_epoch == cap and r.epochs_trained == cap + r.epochs
    assert any("did not fire" in w and "every 3 steps" in w for w in r.warnings)
    assert r.forced is True and "every 3 steps" in r.forced_reason


def test_detect_every_steps_enters_the_cache_key_and_is_validated(tmp_path):
    cfg = runs.settings("earlycrop-s", profile="smoke", detect_every_steps=5)
    config = runs._config("earlycrop-s", cfg, 0.9, 0, torch.device("cpu"))
    assert config["detect_every_steps"] == 5
    default = runs._config("earlycrop-s", runs.settings("earlycrop-s", profile="smoke"), 0.9, 0,
                              torch.device("cpu"))
    assert default["detect_every_steps"] is None and ck.results.config_key(default) != ck.results.config_key(config)
    for bad in (0, -1, 2.5, "10", True):
        with pytest.raises(ValueError, match="detect_every_steps"):
            ck.run("earlycrop-u", profile="smoke", cache_dir=tmp_path, progress=False, detect_every_steps=bad)
    assert not any(tmp_path.iterdir())


def test_reset_optimizer_mid_epoch_schedules_the_steps_left():
    data = ck.data.load("digits", batch_size=64, limit=256)  # 4 steps per epoch

    class ResetAtStep2(train.Callback):
        def on_step_end(self, trainer):
            if trainer.step == 2:
                trainer.reset_optimizer(epochs=2, schedule="onecycle")
                self.total = trainer.scheduler.total_steps

    cb = ResetAtStep2()
    model = ck.models.build("mlp", (1, 8, 8), 10, width=0.1, seed=0)
    trainer = train.Trainer(model, data, 3, callbacks=[cb], progress=False, evaluate_every_epoch=False)
    trainer.fit()  # OneCycleLR raises if stepped past its total: it must not
    assert cb.total == 2 * 4 - 2 and trainer.epoch == 2 and trainer.step == 8 and trainer.epoch_step == 0


# ----------------------------------------------------------------------------- the search script runs

def test_premise_search_runs_and_prints_its_table(capsys):
    from benchmarks import premise_search

    rows = premise_search.main(["--only", "digits-cnn-w0.5", "--set", "max_dense=2", "epochs=1",
                                "--train-probe", "200"])
    assert len(rows) == 1 and rows[0]["fire_epoch"] <= 2 and 0 <= rows[0]["acc_fire"] <= 1
    swept = premise_search.main(["--only", "digits-cnn-w0.5", "--set", "max_dense=3", "epochs=1", "--taus", "0.1",
                                 "1e9", "--ref-sparsities", "0.5", "--train-probe", "200"])
    assert [r["fire_epoch"] for r in swept][1] == 2  # τ huge: the seed rule fires at its first chance
    assert "acc@fire" in capsys.readouterr().out


def test_structured_earlycrop_prunes_mid_epoch_too(tmp_path):
    r = ck.run("earlycrop-s", sparsity=0.9, profile="smoke", batch_size=64, cache_dir=tmp_path, progress=False,
               detect_every_steps=1, threshold=1e9)
    assert r.prune_epoch == 0 and r.epochs_trained == 1 + r.epochs and r.node_sparsity > 0
    assert abs(r.weight_sparsity - 0.9) <= 0.02
