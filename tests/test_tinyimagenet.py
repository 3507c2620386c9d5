"""Tiny-ImageNet (cropkit.tasks.tinyimagenet) on a tiny set in the distributed layout (tests/tinyimagenet_files.py): the
loader, the paper profile's run path with shrunk sizes, and the command line."""
import pytest
import torch
from torchvision import transforms

import cropkit as ck
from cropkit import cli

SHRUNK = dict(width=0.125, epochs=1, limit=8, batch_size=4, score_batches=1, max_dense_epochs=1,
              measure_emissions=False)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from tinyimagenet_files import write_tinyimagenet

    root = tmp_path_factory.mktemp("tinyimagenet")
    write_tinyimagenet(root)
    return root


def test_loads_the_distributed_layout_with_the_cifar_style_augmentation(tiny_root):
    data = ck.data.load("tinyimagenet", root=tiny_root, batch_size=4, seed=0)
    assert data.input_shape == (3, 64, 64) and data.num_classes == 4 and data.task.name == "classification"
    assert len(data.train.dataset) == 16 and len(data.test.dataset) == 8
    x, y = next(iter(data.train))
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32 and y.dtype == torch.long
    kinds = [type(t) for t in data.train.dataset.transform.transforms]
    assert kinds == [transforms.RandomCrop, transforms.RandomHorizontalFlip, transforms.ToTensor, transforms.Normalize]
    assert data.train.dataset.transform.transforms[0].padding == 8
    # labels: the sorted wnids; the validation annotations name each image's class
    labels = sorted(int(label) for _, label in data.test.dataset.samples)
    assert labels == [0, 0, 1, 1, 2, 2, 3, 3]
    first, _ = data.train.dataset[0]  # the grey-scale JPEG comes out as 3 channels
    assert first.shape == (3, 64, 64)
    limited = ck.data.load("tinyimagenet", root=tiny_root, limit=4)
    assert sorted(label for _, label in limited.train.dataset.samples) == [0, 1, 2, 3]  # a limit keeps every class


def test_missing_set_says_where_to_put_it_and_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ck.data.load("tinyimagenet", root=tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "tiny-imagenet-200") in message
    assert "tiny-imagenet-200.zip" in message and "unzip" in message


def test_the_zoos_resnet18_takes_64_by_64_inputs():
    model = ck.models.build("resnet18", (3, 64, 64), 200, width=0.125, seed=0).eval()
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 200)


def test_paper_profile_runs_on_tinyimagenet(tiny_root, monkeypatch, one_thread):
    monkeypatch.setenv("CROPKIT_DATA", str(tiny_root))
    result = ck.run("crop-s", data="tinyimagenet", profile="paper", sparsity=0.5, cache=False, progress=False,
                    **SHRUNK)
    assert result.dataset == "tinyimagenet" and result.model == "resnet18" and result.profile == "paper"
    assert 0.0 <= result.test_acc <= 1.0 and result.node_sparsity > 0
    assert abs(result.weight_sparsity - 0.5) <= 0.01


def test_command_line_runs_on_tinyimagenet(tiny_root, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("CROPKIT_DATA", str(tiny_root))
    status = cli.main(["run", "dense", "--data", "tinyimagenet", "--profile", "paper", "--width", "0.125",
                       "--epochs", "1", "--set", "limit=8", "--set", "batch_size=4", "--set", "score_batches=1",
                       "--set", "measure_emissions=False",
                       "--no-cache", "--quiet"])
    out = capsys.readouterr().out
    assert status == 0 and "tinyimagenet" in out and "resnet18" in out
