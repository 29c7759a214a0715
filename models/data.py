"""Feature arrays -> what each kind of model consumes: index tensors for the nets, a sparse multi-hot
matrix for the baselines. Both come from the same `Restricted` arrays, so every model sees the same features.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from pipeline.encode import GROUPS, PAD


def tensors(x: dict[str, np.ndarray], rows: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    return {g: torch.from_numpy(np.ascontiguousarray(x[g] if rows is None else x[g][rows]).astype(np.int64))
            for g in GROUPS}


def multi_hot(x: dict[str, np.ndarray], sizes: dict[str, int], rows: np.ndarray | None = None) -> sp.csr_matrix:
    """One column per (group, model id) except padding; the OOV columns count a film's unknown tokens."""
    blocks = []
    for g in GROUPS:
        arr = x[g] if rows is None else x[g][rows]
        r, c = np.nonzero(arr != PAD)
        blocks.append(sp.csr_matrix((np.ones(len(r), np.float32), (r, arr[r, c])), shape=(len(arr), sizes[g])))
    return sp.hstack(blocks, format="csr")


def kfold(n: int, folds: int, repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Repeated k-fold over `n` rows: (train positions, held-out positions), identical for every model."""
    out = []
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        order = rng.permutation(n)
        parts = np.array_split(order, folds)
        for k in range(folds):
            held = np.sort(parts[k])
            out.append((np.sort(np.concatenate([p for j, p in enumerate(parts) if j != k])), held))
    return out
