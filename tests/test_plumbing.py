"""The shared helpers, each written once: eval mode, a model's device, a parameter's plain name."""
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from cropkit.core import masks
from cropkit.core.plumbing import device_of, eval_mode, plain_name


def test_eval_mode_restores_every_module_own_mode_even_after_an_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    model[1].eval()  # a frozen norm inside a training network
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, False, True]
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("inside")
    assert [m.training for m in model.modules()] == [True, True, False, True]


def test_device_of_a_model_with_and_without_parameters():
    assert device_of(nn.Linear(2, 2)) == torch.device("cpu")
    assert device_of(nn.ReLU()) == torch.device("cpu")


def test_plain_name_undoes_both_pruning_reparametrisations():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    masks.unstructured(model, {"0.weight": torch.rand(3, 4), "1.weight": torch.rand(2, 3)}, 0.5)
    torch_prune.l1_unstructured(model[1], "bias", amount=0.5)
    names = {plain_name(n) for n, _ in model.named_parameters()}
    assert names == {"0.weight", "0.bias", "1.weight", "1.bias"}
    assert plain_name("parametrizations.weight.original") == "weight" and plain_name("weight_orig") == "weight"
