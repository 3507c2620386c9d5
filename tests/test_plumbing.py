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


def test_frozen_computes_each_masked_weight_once_and_the_same():
    """Inside ``frozen`` a masked layer's weight is θ_orig ⊙ m computed once (parametrize's cache): outputs equal the
    uncached eval-mode ones; after the block the cache is gone (a new mask is seen) and the modes are back."""
    from cropkit.core.plumbing import frozen

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    masks.unstructured(model, {f"{i}.weight": torch.rand_like(model[i].weight) for i in (0, 3)}, 0.5)
    x = torch.randn(4, 6)
    with torch.no_grad(), eval_mode(model):
        plain = model(x)
    calls = []
    model[0].parametrizations.weight[0].register_forward_hook(lambda *_: calls.append(1))
    with frozen(model):
        assert not model.training and torch.equal(model(x), plain) and torch.equal(model(x), plain)
    assert len(calls) == 1 and model.training
    model[0].parametrizations.weight[0].mask.zero_()
    with frozen(model):
        assert not torch.equal(model(x), plain) and model[0].weight.abs().sum() == 0
