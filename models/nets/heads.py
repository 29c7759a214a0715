"""Output heads: how a net's raw output becomes a 0-10 score, and the per-net loss and hint of eq. 6.

- `classification`: the paper's softmax over rating bins (hard labels); the score is the expectation over
  bin centres, so MAE/RMSE are measured on a continuous score.
- `soft`: the same bins, trained on Gaussian soft labels centred on the true score (stable on small data).
- `regression`: one output (offset from the training mean), squared, Huber or absolute (L1) loss; the last
  two follow MAE, the reported metric, more closely than the squared loss.
The hint term of eq. 6 is ||l(x) - z(x)||^2 on logits for the binned heads and on outputs for regression.
"""

from __future__ import annotations

import torch
from torch import nn

HEADS = ("classification", "soft", "regression")
REGRESSION_LOSSES = ("mse", "huber", "l1")


class Head(nn.Module):
    def __init__(self, kind: str, centre: float, *, low: float, high: float, width: float, sigma: float, loss: str,
                 huber_delta: float):
        super().__init__()
        if kind not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, not {kind!r}")
        if loss not in REGRESSION_LOSSES:
            raise ValueError(f"regression loss must be one of {', '.join(REGRESSION_LOSSES)}, not {loss!r}")
        self.kind, self.sigma, self.loss_name, self.huber_delta = kind, sigma, loss, huber_delta
        self.low, self.width = low, width
        n_bins = max(1, round((high - low) / width))
        self.register_buffer("centres", low + width * (torch.arange(n_bins, dtype=torch.float32) + 0.5))
        self.register_buffer("centre", torch.tensor(float(centre)))

    @property
    def out_dim(self) -> int:
        return 1 if self.kind == "regression" else len(self.centres)

    def score(self, out: torch.Tensor) -> torch.Tensor:
        """Raw output [B, out_dim] -> predicted score [B]."""
        if self.kind == "regression":
            return out.squeeze(-1) + self.centre
        return torch.softmax(out, -1) @ self.centres

    def loss(self, out: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The batch's mean loss; with `weight` (one per film), the mean of each film's loss times its weight."""
        per_film = self.film_loss(out, y)
        return per_film.mean() if weight is None else (per_film * weight).mean()

    def film_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[B] each film's loss: what `loss` averages."""
        if self.kind == "regression":
            pred = out.squeeze(-1) + self.centre
            if self.loss_name == "huber":
                return nn.functional.huber_loss(pred, y, delta=self.huber_delta, reduction="none")
            if self.loss_name == "l1":
                return nn.functional.l1_loss(pred, y, reduction="none")
            return nn.functional.mse_loss(pred, y, reduction="none")
        if self.kind == "classification":
            target = ((y - self.low) / self.width).long().clamp(0, len(self.centres) - 1)
            return nn.functional.cross_entropy(out, target, reduction="none")
        return -(self.soft_labels(y) * torch.log_softmax(out, -1)).sum(-1)

    def soft_labels(self, y: torch.Tensor) -> torch.Tensor:
        """[B] scores -> [B, bins]: a Gaussian of width sigma centred on each score, over the bin centres,
        normalised to sum to 1 (near 0 or 10 the cut-off tail's mass goes to the bins that remain)."""
        return torch.softmax(-0.5 * ((y.unsqueeze(-1) - self.centres) / self.sigma) ** 2, -1)

    @staticmethod
    def hint(student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """||l(x) - z(x)||^2, averaged over the batch (each film's times its `weight`, if given)."""
        per_film = (student - teacher).pow(2).sum(-1)
        return per_film.mean() if weight is None else (per_film * weight).mean()
