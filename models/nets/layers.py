"""Tiny composable layers (pytorch-fm style) that every neural model here is built from.

Inputs are a dict group -> LongTensor [B, width] of model ids (0 = padding, 1 = out-of-vocabulary), the
layout of `pipeline.features.encode.Restricted.x`. One embedding table holds every group (offset per group), so the
adaptive regulariser sees one frequency vector.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class FeaturesEmbedding(nn.Module):
    """Embeds every group's ids; pools each group's multi-hot list by sum or by attention (paper eq. 1).

    Row 0 of the one table is the shared padding row (always zero, never trained); group g's id i >= 1
    lives at row 1 + offset[g] + i - 1, so OOV (id 1) rows are real, trainable rows.
    """

    def __init__(self, sizes: dict[str, int], dim: int, pooling: str, attention_hidden: int | None):
        super().__init__()
        if pooling not in ("sum", "attention"):
            raise ValueError(f"pooling must be 'sum' or 'attention', not {pooling!r}")
        if pooling == "attention" and attention_hidden is None:
            raise ValueError("attention pooling needs attention_hidden (train.nets.attention_hidden)")
        self.groups = list(sizes)
        self.sizes = dict(sizes)
        self.dim = dim
        offsets, total = [], 1
        for g in self.groups:
            offsets.append(total - 1)
            total += sizes[g] - 1
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self.embedding = nn.Embedding(total, dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=0.05)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.pooling = pooling
        self.attention = ActivationUnit(dim, attention_hidden) if pooling == "attention" else None

    @property
    def n_fields(self) -> int:
        return len(self.groups)

    def row_frequencies(self, freq: dict[str, np.ndarray]) -> torch.Tensor:
        """Training frequency per table row (Restricted.freq laid out like the table), for eq. 3."""
        parts = [torch.zeros(1)] + [torch.as_tensor(freq[g][1:], dtype=torch.float32) for g in self.groups]
        return torch.cat(parts)

    def flat_ids(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All groups side by side: table row ids [B, W] (0 = padding), mask [B, W], each column's group [W]."""
        ids = torch.cat([torch.where(x[g] > 0, x[g] + self.offsets[k], 0) for k, g in enumerate(self.groups)], 1)
        owner = torch.cat([torch.full((x[g].shape[1],), k, dtype=torch.long) for k, g in enumerate(self.groups)])
        return ids, ids > 0, owner

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled fields [B, G, D]. Works on the real (unpadded) tokens only, packed as one list."""
        ids, mask, owner = self.flat_ids(x)
        batch = ids.shape[0]
        rows, cols = mask.nonzero(as_tuple=True)
        segment = rows * self.n_fields + owner[cols]  # which (film, group) each token pools into
        tokens = self.embedding(ids[rows, cols])  # [T, D]
        summed = _pool(tokens, segment, batch * self.n_fields).view(batch, self.n_fields, self.dim)
        if self.attention is None:
            return summed
        # v_A, "the target movie's vector": the mean of its plain-pooled group embeddings.
        movie = summed.mean(1)
        weights = self.attention(tokens, movie[rows])
        return _pool(tokens * weights.unsqueeze(-1), segment, batch * self.n_fields).view_as(summed)


def _pool(tokens: torch.Tensor, segment: torch.Tensor, n: int) -> torch.Tensor:
    return tokens.new_zeros(n, tokens.shape[-1]).index_add_(0, segment, tokens)


class ActivationUnit(nn.Module):
    """DIN's local activation unit: a([e, v, e*v, e-v]) -> PReLU hidden -> one weight, no softmax.

    `forward` never builds the 4D-wide concatenation: W[e, v, e*v, e-v] = [W_e + W_d, W_p, W_v - W_d][e, e*v, v],
    the same function as `reference` with a narrower product.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(nn.Linear(4 * dim, hidden), nn.PReLU(hidden), nn.Linear(hidden, 1))

    def forward(self, tokens: torch.Tensor, movie: torch.Tensor) -> torch.Tensor:
        """tokens [T, D], each token's movie vector [T, D] -> weights [T]."""
        first, prelu, last = self.net
        w_e, w_v, w_p, w_d = first.weight.split(self.dim, dim=1)  # each [H, D]
        hidden = torch.addmm(first.bias, torch.cat([tokens, tokens * movie, movie], -1),
                             torch.cat([w_e + w_d, w_p, w_v - w_d], 1).t())
        return torch.addmv(last.bias, nn.functional.prelu(hidden, prelu.weight), last.weight.squeeze(0))

    def reference(self, tokens: torch.Tensor, movie: torch.Tensor) -> torch.Tensor:
        """The literal formula, kept to test `forward` against."""
        return self.net(torch.cat([tokens, movie, tokens * movie, tokens - movie], -1)).squeeze(-1)


class FeaturesLinear(nn.Module):
    """First-order term: a bias per token, summed over the film's tokens, plus a global bias."""

    def __init__(self, n_rows: int):
        super().__init__()
        self.weight = nn.Embedding(n_rows, 1, padding_idx=0)
        nn.init.zeros_(self.weight.weight)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: table rows [B, W]; the padding row 0 holds a zero weight."""
        return self.weight(ids).squeeze(-1).sum(1) + self.bias


class FMInteraction(nn.Module):
    """Second-order FM term over every active token: 0.5 * ((sum e)^2 - sum e^2), summed over dims."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        square_of_sum = tokens.sum(1).pow(2)
        sum_of_square = tokens.pow(2).sum(1)
        return 0.5 * (square_of_sum - sum_of_square).sum(-1)


class MLP(nn.Module):
    """Linear -> PReLU (paper eq. 2) -> dropout per hidden layer, then a linear output layer."""

    def __init__(self, in_dim: int, hidden: list[int], out_dim: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(in_dim, h), nn.PReLU(h)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            in_dim = h
        layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def adaptive_l2(weight: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
    """Paper eq. 3: 0.5 * sum over the rows occurring in this batch of ||w_i||^2 / n_i.

    Only rows in the batch enter the sum (I_i), so rows of absent features get no gradient from it; a rare
    feature (small n_i) is pulled harder towards zero than a frequent one.
    """
    rows = torch.unique(ids[mask])
    return 0.5 * (weight[rows].pow(2).sum(-1) / freq[rows].clamp_min(1.0)).sum()


class DenseBranch(nn.Module):
    """Dense inputs (standardised counts + missing indicators) -> Linear -> PReLU, to be concatenated to the
    pooled embeddings; `join` is that concatenation (a no-op for a model without dense inputs)."""

    def __init__(self, n_in: int, width: int):
        super().__init__()
        self.width = width
        self.net = nn.Sequential(nn.Linear(n_in, width), nn.PReLU(width))

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        return self.net(dense)

    @staticmethod
    def join(branch: DenseBranch | None, pooled: torch.Tensor, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return pooled if branch is None else torch.cat([pooled, branch(x["dense"])], 1)

    @staticmethod
    def make(n_in: int, width: int) -> DenseBranch | None:
        return DenseBranch(n_in, width) if n_in else None

    @staticmethod
    def out(branch: DenseBranch | None) -> int:
        return 0 if branch is None else branch.width
