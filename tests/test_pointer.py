"""PTB (cropkit.tasks.ptb) on tiny files in the standard format, and the pointer sentinel LSTM (cropkit.tasks.pointer):
the mixture's weights sum to one, the mixture against a hand computation, L = 0 is the plain LSTM language model, the
language loss on its log-probabilities is the mixture's NLL (value and gradient), every unstructured method runs on it
and the structured ones are refused."""
import math
import warnings

import pytest
import torch
from torch.nn import functional as F

import cropkit as ck
from cropkit.core.layers import prunable_layers
from cropkit.tasks import ptb
from cropkit.tasks.nets import LSTMLanguageModel
from cropkit.tasks.pointer import PointerSentinelLM
from cropkit.tasks.task import token_cross_entropy

V, T = 13, 9


def pointer(window=100, seed=0):
    torch.manual_seed(seed)
    return PointerSentinelLM((T,), V, width=0.125, window=window).double()


def tokens(n=3, seed=1):
    return torch.randint(0, V, (n, T), generator=torch.Generator().manual_seed(seed))


def test_gate_and_pointer_weights_sum_to_one_and_log_p_is_normalised():
    model, x = pointer(), tokens()
    p_vocab, a, g = model.mixture(x)
    torch.testing.assert_close(g + a.sum(-1), torch.ones_like(g))
    assert (a.triu(1) == 0).all() and (g > 0).all() and (g < 1).all()  # never a later position
    torch.testing.assert_close(model(x).exp().sum(-1), torch.ones(3, T, dtype=torch.double))


def test_the_mixture_against_a_hand_computation():
    model, x = pointer(window=3), tokens(n=2)
    p_vocab, a, g = model.mixture(x)
    assert (a.tril(-3) == 0).all()  # only the last L = 3 positions
    h = model.hidden_states(x)
    want = torch.empty(2, T, V, dtype=torch.double)
    for n in range(2):
        for t in range(T):
            q = torch.tanh(model.query(h[n, t]))
            window = list(range(max(0, t - 2), t + 1))
            logits = torch.stack([q @ h[n, i] for i in window] + [q @ model.sentinel])
            weights = logits.softmax(0)
            p = weights[-1] * torch.softmax(model.decoder(h[n, t]), 0)
            for w_i, i in zip(weights[:-1], window):
                p = p + w_i * F.one_hot(x[n, i], V).double()
            want[n, t] = p.log()
    torch.testing.assert_close(model(x), want)


def test_without_a_window_it_is_the_plain_lstm_language_model():
    model, x = pointer(window=0), tokens()
    plain = LSTMLanguageModel((T,), V, width=0.125, embedding=128, hidden=128).double()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"query.weight", "query.bias", "sentinel"}
    _, _, g = model.mixture(x)
    assert (g == 1).all()
    torch.testing.assert_close(model(x), F.log_softmax(plain(x), dim=-1))


def test_the_language_loss_on_log_p_is_the_mixtures_nll_in_value_and_gradient():
    model, x, y = pointer(), tokens(), tokens(seed=2)
    nll = F.nll_loss(model(x).reshape(-1, V), y.reshape(-1))
    ce = token_cross_entropy(model(x), y)
    torch.testing.assert_close(ce, nll)
    params = [p for p in model.parameters()]
    for g_ce, g_nll in zip(torch.autograd.grad(ce, params), torch.autograd.grad(nll, params)):
        torch.testing.assert_close(g_ce, g_nll)
    prunable = [n for n, _ in prunable_layers(model)]
    assert prunable == ["input_gates", "hidden_gates", "query", "decoder"]  # the decoder stays the output layer


@pytest.mark.parametrize("method", ["dense", "snip", "crop-u", "earlycrop-u", "random-u"])
def test_every_unstructured_method_runs_on_it(method, one_thread):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a forced EarlyCroP prune at the smoke cap
        result = ck.run(method, data="pydoc", model="pointer_lstm", profile="smoke", cache=False, progress=False)
    assert result.metric == "log_ppl" and math.isfinite(result.test_metric)
    assert abs(result.weight_sparsity - (0.0 if method == "dense" else 0.9)) <= 0.01


def test_structured_methods_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="removes whole nodes.*'pointer_lstm'.*use dense or an unstructured"):
        ck.run("crop-s", data="pydoc", model="pointer_lstm", profile="smoke", cache=False)


# ----------------------------------------------------------------------------- PTB, in the standard format

TRAIN = ["the cat sat on the mat", "a <unk> of N dogs", "the dog ate the cat"] * 8
TEST = ["the cat ate a zebra", "N dogs sat"] * 10


@pytest.fixture
def ptb_root(tmp_path):
    folder = tmp_path / "ptb"
    folder.mkdir()
    for name, lines in (("train", TRAIN), ("valid", TEST[:4]), ("test", TEST)):
        (folder / f"ptb.{name}.txt").write_text("".join(f" {line} \n" for line in lines))  # PTB's spacing
    return tmp_path


def test_ptb_files_become_sequences_of_ids(ptb_root):
    c = ptb.corpus(str(ptb_root))
    # 24 lines of 6, 5, 5 words plus <eos>: 'the' (32) most frequent, then <eos> (24), cat (16) ...
    assert c["words"][:3] == ["the", "<eos>", "cat"] and len(c["train"]) == 8 * (7 + 6 + 6)
    assert "zebra" not in c["words"] and c["words"][int(c["test"][4])] == "<unk>"  # unseen → <unk>
    assert [c["words"][int(i)] for i in c["train"][:7]] == ["the", "cat", "sat", "on", "the", "mat", "<eos>"]
    data = ck.data.load("ptb", root=ptb_root, batch_size=1)
    assert data.input_shape == (80,) and data.num_classes == len(c["words"]) and data.task.name == "language"
    x, y = next(iter(ck.data.load("ptb", root=ptb_root, batch_size=1).test))
    assert x.shape == (1, 80) and torch.equal(x[0, 1:], y[0, :-1])  # the target is the next token
    assert len(data.train.dataset) == (len(c["train"]) - 1) // 80


def test_missing_ptb_files_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ck.data.load("ptb", root=tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "ptb") in message and "simple-examples.tgz" in message


def test_paper_profile_runs_the_pointer_model_on_ptb(ptb_root, monkeypatch, one_thread):
    monkeypatch.setenv("CROPKIT_DATA", str(ptb_root))
    result = ck.run("crop-u", data="ptb", profile="paper", sparsity=0.5, width=0.125, epochs=1, batch_size=1,
                    score_batches=1, measure_emissions=False, cache=False, progress=False)
    assert result.model == "pointer_lstm" and result.dataset == "ptb" and math.isfinite(result.test_metric)
