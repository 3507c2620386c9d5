"""NYU Depth v2's labeled set (cropkit.tasks.nyu) on a tiny HDF5 file in the real layout (MATLAB v7.3: every array
read with its dimensions reversed), with and without the official split file, and the paper profile's FCRN run."""
import math
import warnings

import numpy as np
import pytest
import torch

import cropkit as ck
from cropkit.tasks import nyu

N, W, H = 6, 40, 30  # frames, and a frame's width and height (the real file: 1449, 640, 480)


def write_labeled(root, splits=None):
    """``images`` (N, 3, W, H) uint8 and ``depths`` (N, W, H): depth = 1 + column / 10 + frame (metres), so the
    loaded maps must grow along their width and be flat along their height; brightness likewise."""
    import h5py

    folder = root / "nyu_depth_v2"
    folder.mkdir(parents=True, exist_ok=True)
    column = np.arange(W, dtype=np.float32)[None, :, None]                      # varies along the stored W axis
    depths = 1 + column / 10 + np.arange(N, dtype=np.float32)[:, None, None] + np.zeros((N, W, H), np.float32)
    frame = np.arange(N)[:, None, None, None]
    images = (column[:, None] * 5 + frame * 7 + np.arange(3)[None, :, None, None] * 3).astype(np.uint8)  # N, 3, W, 1
    images = np.broadcast_to(images, (N, 3, W, H)).copy()  # frames differ (identical ones make a BatchNorm's var 0)
    with h5py.File(folder / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"], f["depths"] = images, depths
    if splits is not None:
        from scipy.io import savemat

        savemat(folder / "splits.mat", {"trainNdxs": np.array(splits[0])[:, None],
                                        "testNdxs": np.array(splits[1])[:, None]})
    return root


@pytest.fixture(autouse=True)
def small_frames(monkeypatch):
    monkeypatch.setattr(nyu, "SIZE", (H // 2, W // 2))
    nyu.tensors.cache_clear()
    yield
    nyu.tensors.cache_clear()


def frame_offsets(depths):  # which frames a split holds: depth − 1 − column / 10 at column 0
    return [round(float(d[0, :, 0].mean()) - 1) for d in depths]


def test_reads_the_transposed_layout_resizes_and_keeps_metres(tmp_path):
    root = write_labeled(tmp_path, splits=([2, 4, 6], [1, 3, 5]))
    data = ck.data.load("nyudepth", root=root, batch_size=2)
    assert data.input_shape == (3, H // 2, W // 2) and data.num_classes == 1 and data.task.name == "regression"
    x, y = data.train.dataset.tensors
    assert x.shape == (3, 3, H // 2, W // 2) and y.shape == (3, 1, H // 2, W // 2)
    assert (y[:, :, :, 1:] > y[:, :, :, :-1]).all()                       # deeper to the right: W is the last axis
    torch.testing.assert_close(y, y[:, :, :1].expand_as(y))               # flat along the height
    assert (x[:, :, :, 1:] > x[:, :, :, :-1]).all()                       # the image transposed the same way
    assert abs(float(x.mean())) < 1e-5                                    # standardised with training statistics
    assert frame_offsets(y) == [1, 3, 5] and frame_offsets(data.test.dataset.tensors[1]) == [0, 2, 4]  # 1-based


def test_without_the_split_file_the_first_frames_train_and_a_warning_says_so(tmp_path):
    root = write_labeled(tmp_path)
    with pytest.warns(UserWarning, match="no splits.mat.*first 3 frames.*last 3.*not the official"):
        data = ck.data.load("nyudepth", root=root)
    assert frame_offsets(data.train.dataset.tensors[1]) == [0, 1, 2]
    assert frame_offsets(data.test.dataset.tensors[1]) == [3, 4, 5]


def test_missing_file_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ck.data.load("nyudepth", root=tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "nyu_depth_v2") in message and "splits.mat" in message


def test_paper_profile_runs_fcrn_on_it(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("CROPKIT_DATA", str(write_labeled(tmp_path, splits=([1, 2, 3, 4], [5, 6]))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers left with one node at this width
        result = ck.run("crop-s", data="nyudepth", profile="paper", sparsity=0.5, width=1 / 16, epochs=1,
                        batch_size=2, score_batches=1, measure_emissions=False, cache=False, progress=False)
    assert result.model == "fcrn" and result.metric == "rmse" and math.isfinite(result.test_metric)
    assert result.node_sparsity > 0
