import io
import math
import tempfile

import pytest
import torch
from torch import nn

import cropkit as ck
from cropkit.core import hardware, measure, storage
from cropkit.core.layers import prunable_layers


def test_flops_of_linear_equal_hand_count():
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    # 2 FLOPs per multiply-accumulate; biases and ReLU are not counted by FlopCounterMode
    assert measure.flops(model, torch.randn(4, 20)) == 2 * (20 * 30 + 30 * 5)


def test_flops_of_conv2d_equal_hand_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 10 * 10, 4))
    macs = 8 * 10 * 10 * (3 * 3 * 3) + 800 * 4
    assert measure.flops(model, torch.randn(2, 3, 10, 10)) == 2 * macs


def test_conv1d_flops_and_nonzero_macs():
    model = nn.Sequential(nn.Conv1d(1, 4, 5, padding=2), nn.Flatten(), nn.Linear(4 * 40, 3))
    with torch.no_grad():
        model[0].weight[:2] = 0  # half of the conv weights
    dense_macs = 4 * 40 * 5 + 160 * 3
    assert measure.flops(model, torch.randn(2, 1, 40)) == 2 * dense_macs
    assert measure.nonzero_macs(model, torch.randn(2, 1, 40)) == 2 * 40 * 5 + 160 * 3


def test_sparsity_of_hand_masked_model_is_exact():
    dense = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    model.load_state_dict(dense.state_dict())
    with torch.no_grad():
        model[0].weight[:, :5] = 0  # 40 weights
        model[2].weight[0, 0] = 0   # 1 weight
    total = 80 + 48 + 18
    assert measure.prunable_count(dense) == total
    assert measure.weight_sparsity(model, dense) == pytest.approx(41 / total, abs=1e-12)
    assert measure.node_sparsity(model, dense) == 0.0  # masks remove no node
    assert measure.kept_weights(model, dense) == {"0": (40, 80), "2": (47, 48), "4": (18, 18)}


def test_node_sparsity_of_a_physically_smaller_model():
    dense = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    small = nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    # 4 of 8 + 0 of 6 hidden nodes removed; the classifier's 3 outputs are not nodes
    assert measure.node_sparsity(small, dense) == pytest.approx(4 / 14)
    assert measure.weight_sparsity(small, dense) == pytest.approx(1 - (40 + 24 + 18) / 146)
    assert measure.kept_nodes(small, dense) == {"0": (4, 8), "2": (6, 6)}
    assert measure.kept_weights(small, dense) == {"0": (40, 80), "2": (24, 48), "4": (18, 18)}


def test_torch_prune_masks_are_read_through():
    from torch.nn.utils import prune

    dense = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
    prune.l1_unstructured(model[0], "weight", amount=30)
    assert measure.weight_sparsity(model, dense) == pytest.approx(30 / 120)
    assert measure.param_count(model) == measure.param_count(dense)
    assert measure.nonzero_param_count(model) == measure.param_count(dense) - 30


def test_batch_time_and_peak_memory_are_positive_and_ordered():
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    small = ck.models.build("cnn", (3, 32, 32), 10, width=0.25)
    big = ck.models.build("cnn", (3, 32, 32), 10, width=2.0)
    assert 0 < measure.batch_time(small, x, y, warmup=1, repeats=3)
    mem_small, mem_big = measure.peak_memory(small, x, y), measure.peak_memory(big, x, y)
    assert "profiler" in mem_small["method"]
    # the wider net holds at least its bigger weights, gradients and Adam moments (4 copies of fp32 params)
    assert mem_big["bytes"] > mem_small["bytes"]
    assert mem_big["bytes"] >= 4 * 4 * measure.param_count(big)


def test_disk_size_stores_masked_weights_sparse():
    from torch.nn.utils import prune

    model = nn.Sequential(nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10))
    dense_bytes = storage.disk_size(model)
    prune.random_unstructured(model[0], "weight", amount=0.95)
    sparse_bytes = storage.disk_size(model)
    assert dense_bytes > 4 * 200 * 200 and sparse_bytes < 0.4 * dense_bytes


def test_unstructured_model_is_saved_as_csr_with_int32_indices_and_reloads():
    from cropkit.core import prune, scores
    from cropkit.tasks import models

    model = models.build("cnn", (1, 8, 8), 10, seed=0)
    dense_bytes = storage.disk_size(model)
    prune.unstructured(model, scores.random(model), 0.9)
    sparse_bytes = storage.disk_size(model)
    assert sparse_bytes < 0.3 * dense_bytes  # CSR + int32: ≈ 0.24 (COO with int64 indices: 0.77)
    buffer = io.BytesIO()
    storage.save(model, buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    csr = state["0.weight"]
    assert csr.layout == torch.sparse_csr and csr.col_indices().dtype == csr.crow_indices().dtype == torch.int32
    fresh = models.build("cnn", (1, 8, 8), 10, seed=1)
    fresh.load_state_dict(storage.dense_state(state))
    for (_, a), (_, b) in zip(prunable_layers(fresh), prunable_layers(model)):
        assert torch.equal(a.weight, b.weight.detach())
    estimate = storage.sparse_bits(model)
    assert 32 < estimate["bits_per_nonzero"] < 32 + 12  # value + a column index of at most ⌈log₂ 3136⌉ bits
    assert estimate["bits"] < 0.2 * 32 * measure.param_count(model)


def test_nonzero_macs_of_a_linear_over_a_sequence():
    model = nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3, bias=False))
    with torch.no_grad():
        model[0].weight[:, :3] = 0  # 15 of 30 weights nonzero
    x = torch.randn(2, 7, 6)  # 7 positions (tokens) per sample
    assert measure.nonzero_macs(model, x) == 7 * (15 + 15)


def test_emissions_estimate_is_finite():
    """codecarbon is a dependency: when it is installed and fails, this test fails (it is skipped only when the
    package is absent)."""
    pytest.importorskip("codecarbon")
    with hardware.Emissions() as e:
        sum(range(10 ** 5))
    assert e.error is None, e.error
    assert math.isfinite(e.grams) and e.grams >= 0
    with hardware.Emissions(enabled=False) as off:
        pass
    assert math.isnan(off.grams) and off.error == "disabled"


def test_emissions_leave_no_folder_behind(tmp_path, monkeypatch):
    """codecarbon wants an output folder; one per run used to stay in the temp dir (1495 of them after a day)."""
    pytest.importorskip("codecarbon")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with hardware.Emissions() as e:
        assert [p.name.startswith("cropkit-codecarbon-") for p in tmp_path.iterdir()] == [True]
    assert e.error is None, e.error
    assert list(tmp_path.iterdir()) == []


def test_empty_reference_is_an_error():
    with pytest.raises(ValueError, match="no prunable weights"):
        measure.weight_sparsity(nn.Sequential(nn.ReLU()))


def test_cpu_peak_memory_counts_the_activations_of_a_conv_net():
    """The peak grows with the batch by at least the conv outputs that backward keeps (4 bytes each)."""
    from cropkit.tasks import models

    model = models.build("cnn", (1, 16, 16), 10, seed=0)
    per_sample = 4 * (32 * 16 * 16 * 2 + 64 * 8 * 8 * 2)  # conv1–conv4 outputs of one sample, float32
    peaks = {}
    for n in (64, 512):
        x, y = torch.randn(n, 1, 16, 16), torch.randint(0, 10, (n,))
        peaks[n] = measure.peak_memory(model, x, y)["bytes"]
    assert peaks[512] - peaks[64] >= (512 - 64) * per_sample


def test_device_name_closes_what_it_reads():
    """The lessons record every warning of a sweep: an unclosed /proc/cpuinfo printed a line per run."""
    import gc
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        name = hardware.device_name("cpu")
        gc.collect()
    assert name and not [w for w in caught if issubclass(w.category, ResourceWarning)]
