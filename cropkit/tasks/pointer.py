r"""The pointer sentinel LSTM (Merity et al. 2017, "Pointer Sentinel Mixture Models", §2): the paper's PTB network
(Rachwan et al. 2022, §4.4; the EarlyCroP reference code's ``PSMM``).

An LSTM language model (`cropkit.tasks.nets.LSTMLanguageModel`: embedding, gates from two ``nn.Linear``) reads tokens
x_1 … x_T into hidden states h_1 … h_T. At step t its prediction of the next token mixes two distributions:

    p_vocab = softmax(U h_t)                                the decoder's softmax over the vocabulary
    q_t = tanh(W h_t + b)                                   the query (``query``, an nn.Linear)
    z_i = q_t · h_i  for the last L positions i ∈ (t − L, t]     attention logits over the window
    [a, g] = softmax([z; q_t · s])                          s: the sentinel vector, an extra attention logit
    p(w) = g · p_vocab(w) + Σ_{i : x_i = w} a_i              g + Σ_i a_i = 1

so the pointer can copy a word of the window (a rare name, a number) and the sentinel's weight g says how much to
trust the softmax instead (§2.3). L = ``window`` (Merity et al.: 100); the window stops at the start of the sequence,
whose hidden state starts at zero (truncated backpropagation through time, as for the ``lstm``), so with the PTB
sequences of 80 tokens (`cropkit.tasks.ptb`) every earlier position is in it, as in the reference code. With L = 0 the
sentinel is the only logit, g = 1, and the model is the plain LSTM language model.

**Output: log-probabilities** log p (N, T, V). The language task's loss (`cropkit.tasks.task.LANGUAGE`,
``token_cross_entropy``) applies cross-entropy, i.e. log-softmax then NLL. For a normalised log p, log-softmax is the
identity (log p − log Σ_w p(w) = log p − 0), so that loss *is* the negative log-likelihood of the mixture, as a
function of θ: its gradient g, Hessian-gradient product Hg and gate gradients — what every pruning score
differentiates — are those of −log p(target). (The reference code likewise trains ``nll_loss`` on ``log p``.)

Every weight that computes the mixture is an ``nn.Linear`` (input and recurrent gates, the query, the decoder), so
every unstructured method prunes it; the sentinel vector and the embedding, like norm layers, are not pruned.
Structured pruning is refused (`cropkit.tasks.models.NO_STRUCTURED`), as for the ``lstm``. Not kept from the reference
code:
its dropout of 0.3 (the kit's language networks have none) and the pointer over earlier windows' states.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from cropkit.tasks.nets import LSTMLanguageModel

WINDOW = 100  # L, Merity et al. 2017


class PointerSentinelLM(LSTMLanguageModel):
    """Tokens (N, T) → log p (N, T, V) of the pointer sentinel mixture."""

    def __init__(self, input_shape, num_classes, width=1.0, embedding=128, hidden=128, window=WINDOW):
        super().__init__(input_shape, num_classes, width, embedding, hidden)
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise ValueError(f"window (the pointer's L) must be an integer >= 0; got {window!r}")
        H, self.window = self.hidden_size, window
        decoder = self.decoder
        del self.decoder                                     # re-registered last: the decoder stays the output layer
        self.query = nn.Linear(H, H)                         # q_t = tanh(W h_t + b)
        self.sentinel = nn.Parameter(torch.empty(H))         # s
        self.decoder = decoder
        with torch.no_grad():
            bound = 1 / math.sqrt(H)
            for w in (self.query.weight, self.query.bias, self.sentinel):
                w.uniform_(-bound, bound)

    def mixture(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(p_vocab (N, T, V), a (N, T, T): the pointer's weight on position i at step t, g (N, T): the gate)."""
        h = self.hidden_states(tokens)                       # (N, T, H)
        q = torch.tanh(self.query(h))                        # (N, T, H)
        z = q @ h.transpose(1, 2)                            # (N, T, T): z[t, i] = q_t · h_i
        T = tokens.shape[1]
        t, i = torch.arange(T, device=z.device)[:, None], torch.arange(T, device=z.device)[None, :]
        z = z.masked_fill((i > t) | (i <= t - self.window), float("-inf"))  # only the last L positions up to t
        weights = torch.cat([z, (q @ self.sentinel)[..., None]], dim=2).softmax(dim=2)  # (N, T, T + 1)
        return self.decoder(h).softmax(dim=2), weights[..., :T], weights[..., T]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        p_vocab, a, g = self.mixture(tokens)
        N, T = tokens.shape
        pointer = torch.zeros_like(p_vocab).scatter_add_(2, tokens[:, None, :].expand(N, T, T), a)  # Σ_{x_i = w} a_i
        p = g[..., None] * p_vocab + pointer
        return p.clamp_min(torch.finfo(p.dtype).tiny).log()  # (N, T, V); > 0 unless the softmax underflows


def pointer_lstm(input_shape, num_classes, width=1.0) -> nn.Module:
    """Pointer sentinel LSTM over a vocabulary of ``num_classes`` tokens (embedding = hidden = 128 × width; the
    paper's PTB network has 300: width 2.34375)."""
    if len(input_shape) != 1:
        raise ValueError(f"pointer_lstm takes token sequences, input_shape (T,); got {tuple(input_shape)}")
    return PointerSentinelLM(input_shape, num_classes, width)


TASK_MODELS = {"pointer_lstm": pointer_lstm}
