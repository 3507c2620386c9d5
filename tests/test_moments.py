"""`cropkit.lessons.moments.moment`: a run stopped at its first prune is the run's own moment, bit for bit.

The oracle is the run itself: a callback handed to `cropkit.run` (it comes after the method's own, so it sees the
network right after the prune) records the model at the end of every epoch; the moment's pruned network must equal
the one of the run's prune epoch, tensor for tensor, and its θ_t the weights under the run's masks."""
import pytest
import torch

import cropkit as ck
from cropkit.core import measure, prune
from cropkit.core.masks import pruned_layers
from cropkit.lessons.moments import moment
from cropkit.tasks import models
from cropkit.training.loop import Callback

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:structured pruning to .* leaves"),
              pytest.mark.filterwarnings("ignore:EarlyCroP detector")]

TINY = dict(data="digits", model="cnn", width=0.25, epochs=1, profile="smoke", sparsity=0.9, seed=1)


class Record(Callback):
    """Every state of the first training: at its start and at each epoch's end (copies)."""

    def __init__(self):
        self.begin, self.ends, self.trainings = None, [], 0

    def on_train_begin(self, trainer):
        self.trainings += 1
        if self.trainings == 1:
            self.begin = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    def on_epoch_end(self, trainer):
        if self.trainings == 1:
            self.ends.append({k: v.clone() for k, v in trainer.model.state_dict().items()})


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run_and_moment(method, **options):
    record = Record()
    result = ck.run(method, cache=False, progress=False, callbacks=[record], **TINY, **options)
    return result, record, moment(method, **TINY, **options)


def test_earlycrop_u_moment_is_the_runs_prune():
    result, record, m = run_and_moment("earlycrop-u")
    assert m.prune_epoch == result.prune_epoch >= 1 and m.forced == result.forced
    at_prune = record.ends[result.prune_epoch - 1]  # the network right after the prune, before any sparse step
    assert same_state(m.pruned.state_dict(), at_prune)
    for name, layer in pruned_layers(m.pruned):  # θ_t: the weights under the masks
        assert torch.equal(layer.parametrizations.weight.original, dict(m.theta_t.named_modules())[name].weight)
    assert not same_state(m.theta_t.state_dict(), m.theta_0.state_dict())  # trained before the prune
    built = models.build("cnn", m.data.input_shape, m.data.num_classes, width=0.25, seed=1)
    assert same_state(m.theta_0.state_dict(), built.state_dict())
    layout = measure.kept_weights(m.pruned, built)
    assert {k: list(v) for k, v in layout.items()} == result.weight_layout


def test_earlycrop_s_moment_is_the_runs_smaller_network():
    result, record, m = run_and_moment("earlycrop-s")
    assert m.prune_epoch == result.prune_epoch >= 1
    assert same_state(m.pruned.state_dict(), record.ends[result.prune_epoch - 1])
    assert {k: list(v) for k, v in measure.kept_nodes(m.pruned, m.theta_0).items()} == result.layout
    assert measure.nonzero_param_count(m.theta_t) == measure.nonzero_param_count(m.theta_0)  # θ_t is still dense


def test_at_init_moment_scores_theta_0():
    result, record, m = run_and_moment("snip")
    assert m.prune_epoch == result.prune_epoch == 0 and m.forced is None
    assert same_state(m.theta_t.state_dict(), m.theta_0.state_dict())
    assert same_state(m.pruned.state_dict(), record.begin)  # the run trained exactly this network
    assert len(m.batches) == m.settings.score_batches


def test_moment_scores_on_the_runs_batches():
    m = moment("crop-u", **TINY)
    masks = prune.masks(prune.unstructured(m.theta_t, ck.scores.crop(m.theta_t, m.batches, seed=1), 0.9))
    assert all(torch.equal(masks[k], v) for k, v in prune.masks(m.pruned).items())


def test_moment_caches_nothing(tmp_path):
    moment("snip", cache_dir=tmp_path, **TINY)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("method, options", [("dense", {}), ("cropit-u", {}), ("gatedecorators", {}),
                                             ("earlycrop-u", {"iterative": True})])
def test_methods_without_a_one_shot_prune_are_refused(method, options):
    with pytest.raises(ValueError, match="one-shot prune through Context.prune"):
        moment(method, **{**TINY, **({"sparsity": 0.0} if method == "dense" else {})}, **options)
