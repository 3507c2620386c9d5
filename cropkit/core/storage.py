"""A pruned network on disk: masked weights stored sparse (CSR), so the disk column shows what pruning saves.

``save`` writes a state whose zero-heavy prunable weights are CSR tensors; ``dense_state`` turns it back into an
ordinary ``state_dict``; ``disk_size`` is the bytes ``save`` writes; ``sparse_bits`` what an index format costs.
"""
from __future__ import annotations

import io
import math

import torch
from torch import nn

from cropkit.core.layers import prunable_layers
from cropkit.core.measure import nonzero_param_count

SPARSE_SHAPES = "__cropkit_sparse_shapes__"  # entry of a saved state: {weight key: its dense shape}


def _csr(w: torch.Tensor) -> torch.Tensor:
    """``w`` viewed as (out, rest) in CSR with int32 indices: nnz values, nnz column indices, out + 1 row pointers."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        csr = w.reshape(w.shape[0], -1).to_sparse_csr()
        return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(), csr.shape)


def _state_for_disk(model: nn.Module) -> dict:
    """state_dict with masked weights folded in; a prunable weight is stored as CSR with int32 indices (of its
    (out, rest) view) when that is smaller than dense, its dense shape under ``SPARSE_SHAPES``."""
    state, shapes = {}, {}
    for key, value in model.state_dict().items():
        if key.endswith(("weight_orig", "weight_mask")) or ".parametrizations." in key:
            continue
        state[key] = value
    for name, m in prunable_layers(model):
        w = m.weight.detach()
        key = f"{name}.weight" if name else "weight"
        nnz = int(torch.count_nonzero(w))
        csr_bytes = nnz * (w.element_size() + 4) + (w.shape[0] + 1) * 4
        if csr_bytes < w.numel() * w.element_size():
            state[key], shapes[key] = _csr(w), tuple(w.shape)
        else:
            state[key] = w.clone()
    if shapes:
        state[SPARSE_SHAPES] = shapes
    return state


def dense_state(state: dict) -> dict:
    """The ordinary state_dict of a state saved by :func:`save` (CSR weights back to dense tensors)."""
    shapes = state.get(SPARSE_SHAPES, {})
    return {k: v.to_dense().reshape(shapes[k]) if k in shapes else v for k, v in state.items() if k != SPARSE_SHAPES}


def save(model: nn.Module, f) -> None:
    """``torch.save`` of the model's weights, masked (unstructured) weights as CSR with int32 indices.
    Reload with ``model.load_state_dict(dense_state(torch.load(f)))``."""
    torch.save(_state_for_disk(model), f)


def disk_size(model: nn.Module) -> int:
    """Bytes of :func:`save`: masked (unstructured) weights stored as CSR with int32 indices."""
    buffer = io.BytesIO()
    save(model, buffer)
    return buffer.getbuffer().nbytes


def sparse_bits(model: nn.Module, value_bits: int = 32) -> dict:
    """An information estimate of the storage of a sparse model, independent of any file format:
    each nonzero prunable weight costs ``value_bits`` plus a column index of ⌈log₂ row length⌉ bits (CSR of its
    (out, rest) view; row pointers are negligible and left out), every other parameter ``value_bits``.
    Returns ``{"bits": total, "bits_per_nonzero": value + mean index bits over the nonzero weights}``."""
    index, nnz_total = 0.0, 0
    for _, m in prunable_layers(model):
        w = m.weight.detach()
        nnz = int(torch.count_nonzero(w))
        row = max(2, w[0].numel())
        index += nnz * math.ceil(math.log2(row))
        nnz_total += nnz
    others = nonzero_param_count(model) - nnz_total  # biases, norm parameters: every entry counts
    bits = nnz_total * value_bits + index + others * value_bits
    return {"bits": bits, "bits_per_nonzero": value_bits + (index / nnz_total if nnz_total else 0.0)}
