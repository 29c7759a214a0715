"""Eq. 6 of the paper, for any head: each net's own loss, plus lambda times the teacher-student hint."""

from __future__ import annotations

import torch

from models.nets.heads import Head


def joint_loss(outputs: dict[str, torch.Tensor], y: torch.Tensor, head: Head, hint_weight: float,
               block_gradient: bool, weight: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum of every output's loss against y, plus `hint_weight * ||l - z||^2` for a teacher-student pair;
    with `weight` (one per film), each film's terms count that many times (train.common.recency_half_life).

    With `block_gradient` the hint pulls only the student towards the teacher (Rocket Launching's gradient
    block): measured before building, the unblocked hint at weight 1 drags both nets to the mean.
    """
    parts = {name: head.loss(out, y, weight) for name, out in outputs.items()}
    if hint_weight and "teacher" in outputs and "student" in outputs:
        teacher = outputs["teacher"].detach() if block_gradient else outputs["teacher"]
        parts["hint"] = hint_weight * head.hint(outputs["student"], teacher, weight)
    return sum(parts.values()), parts
