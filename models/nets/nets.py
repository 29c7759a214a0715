"""The paper's neural models as short compositions of `models.nets.layers`.

Every model maps a batch (dict group -> LongTensor) to a dict of raw outputs: `{"out": ...}` for a single
net, `{"teacher": z, "student": l}` for the jointly trained pair (KD with sum pooling, K-ADN with attention).
FM and DeepFM output one number each (their original form); the others follow the configured head.
"""

from __future__ import annotations

import torch
from torch import nn

from models.nets.layers import MLP, DenseBranch, FeaturesEmbedding, FeaturesLinear, FMInteraction
from pipeline import registry
from pipeline.params import NetConfig


class FM(nn.Module):
    """Rendle's factorisation machine: bias + per-token weights + pairwise interactions of all tokens."""

    outputs = ("out",)

    def __init__(self, sizes: dict[str, int], *, dim: int, n_dense: int, dense_width: int):
        super().__init__()
        self.features = FeaturesEmbedding(sizes, dim, "sum", attention_hidden=None)
        self.linear = FeaturesLinear(self.features.embedding.num_embeddings)
        self.fm = FMInteraction()
        # Dense inputs enter FM as real-valued features of the first-order term (through the dense branch).
        self.dense = DenseBranch.make(n_dense, dense_width)
        self.dense_out = nn.Linear(dense_width, 1) if self.dense is not None else None

    def _dense_term(self, x) -> torch.Tensor | float:
        return 0.0 if self.dense is None else self.dense_out(self.dense(x["dense"])).squeeze(-1)

    def forward(self, x):
        ids = self.features.flat_ids(x)[0]
        tokens = self.features.embedding(ids)  # [B, W, D]; the padding row is zero
        return {"out": (self.linear(ids) + self.fm(tokens) + self._dense_term(x)).unsqueeze(-1)}


class DeepFM(FM):
    """FM plus an MLP over the sum-pooled group embeddings, sharing one embedding table (Guo et al.)."""

    def __init__(self, sizes: dict[str, int], *, dim: int, hidden: list[int], dropout: float, n_dense: int,
                 dense_width: int):
        # The dense inputs join the MLP here, not FM's first-order term (which gets none).
        super().__init__(sizes, dim=dim, n_dense=0, dense_width=dense_width)
        self.dense = DenseBranch.make(n_dense, dense_width)
        self.dense_out = None
        self.mlp = MLP(len(sizes) * dim + DenseBranch.out(self.dense), hidden, 1, dropout)

    def forward(self, x):
        ids = self.features.flat_ids(x)[0]
        tokens = self.features.embedding(ids)
        deep = self.mlp(DenseBranch.join(self.dense, self.features(x).flatten(1), x)).squeeze(-1)
        return {"out": (self.linear(ids) + self.fm(tokens) + deep).unsqueeze(-1)}


class AttentionNet(nn.Module):
    """AT: attention-pooled embeddings -> the teacher's MLP, trained alone (the paper's ablation)."""

    outputs = ("out",)

    def __init__(self, sizes, *, dim, hidden, out_dim, dropout, attention_hidden, linear, n_dense, dense_width):
        super().__init__()
        self.features = FeaturesEmbedding(sizes, dim, "attention", attention_hidden)
        self.dense = DenseBranch.make(n_dense, dense_width)
        self.mlp = MLP(len(sizes) * dim + DenseBranch.out(self.dense), hidden, out_dim, dropout)
        self.linear = FeaturesLinear(self.features.embedding.num_embeddings) if linear else None

    def forward(self, x):
        pooled = DenseBranch.join(self.dense, self.features(x).flatten(1), x)
        return {"out": self.mlp(pooled) + _wide(self.linear, self.features, x)}


class TeacherStudent(nn.Module):
    """Shared embedding (+ attention) layers feeding a private teacher MLP and a private student MLP.

    Trained jointly with eq. 6 (see `models.nets.loss.joint_loss`); `branch(name)` is one net alone, for
    prediction, parameter counts and timing.
    """

    outputs = ("teacher", "student")

    def __init__(self, sizes, *, dim, teacher, student, out_dim, pooling, dropout, attention_hidden, linear,
                 n_dense, dense_width):
        super().__init__()
        self.features = FeaturesEmbedding(sizes, dim, pooling, attention_hidden)
        # The dense branch (popularity feature set) is shared like the embedding.
        self.dense = DenseBranch.make(n_dense, dense_width)
        width = len(sizes) * dim + DenseBranch.out(self.dense)
        self.teacher = MLP(width, teacher, out_dim, dropout)
        self.student = MLP(width, student, out_dim, dropout)
        # Optional shared first-order ("wide") term, added to both nets' outputs.
        self.linear = FeaturesLinear(self.features.embedding.num_embeddings) if linear else None

    def forward(self, x):
        pooled = DenseBranch.join(self.dense, self.features(x).flatten(1), x)
        wide = _wide(self.linear, self.features, x)
        return {"teacher": self.teacher(pooled) + wide, "student": self.student(pooled) + wide}

    def branch(self, name: str) -> Branch:
        return Branch(self.features, getattr(self, name), name, self.linear, self.dense)


class Branch(nn.Module):
    """One net of a teacher-student pair: the shared layers plus that net's private MLP."""

    def __init__(self, features: FeaturesEmbedding, mlp: MLP, name: str, linear: FeaturesLinear | None = None,
                 dense: DenseBranch | None = None):
        super().__init__()
        self.features, self.mlp, self.name, self.linear, self.dense = features, mlp, name, linear, dense
        self.outputs = (name,)

    def forward(self, x):
        pooled = DenseBranch.join(self.dense, self.features(x).flatten(1), x)
        return {self.name: self.mlp(pooled) + _wide(self.linear, self.features, x)}


def _wide(linear: FeaturesLinear | None, features: FeaturesEmbedding, x) -> torch.Tensor | float:
    if linear is None:
        return 0.0
    return linear(features.flat_ids(x)[0]).unsqueeze(-1)


# Each builder passes its net exactly the settings that net takes (the constructors take no others and have
# no defaults): `common` holds what every net takes, the rest comes from cfg by name.
def build_fm(sizes, cfg: NetConfig, out_dim: int, common: dict) -> nn.Module:
    return FM(sizes, **common)


def build_deepfm(sizes, cfg: NetConfig, out_dim: int, common: dict) -> nn.Module:
    return DeepFM(sizes, hidden=cfg.deepfm_hidden, dropout=cfg.dropout, **common)


def build_at(sizes, cfg: NetConfig, out_dim: int, common: dict) -> nn.Module:
    return AttentionNet(sizes, hidden=cfg.teacher, out_dim=out_dim, dropout=cfg.dropout,
                        attention_hidden=cfg.attention_hidden, linear=cfg.linear, **common)


def build_kd(sizes, cfg: NetConfig, out_dim: int, common: dict) -> nn.Module:
    return TeacherStudent(sizes, teacher=cfg.teacher, student=cfg.student, out_dim=out_dim, pooling="sum",
                          dropout=cfg.dropout, attention_hidden=cfg.attention_hidden, linear=cfg.linear, **common)


def build_kadn(sizes, cfg: NetConfig, out_dim: int, common: dict) -> nn.Module:
    return TeacherStudent(sizes, teacher=cfg.teacher, student=cfg.student, out_dim=out_dim, pooling="attention",
                          dropout=cfg.dropout, attention_hidden=cfg.attention_hidden, linear=cfg.linear, **common)


def build(kind: str, sizes: dict[str, int], cfg: NetConfig, out_dim: int, n_dense: int = 0) -> nn.Module:
    """The net `kind` names in `pipeline.registry` (its `build_*` function here); n_dense dense inputs, if any."""
    if kind not in registry.NETS:
        raise ValueError(f"unknown neural model {kind!r}")
    common = {"dim": cfg.dim, "n_dense": n_dense, "dense_width": cfg.dense_width}
    return registry.builder(kind)(sizes, cfg, out_dim, common)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.inference_mode()  # lighter than no_grad: no version counters, no view tracking
def predict_scores(model: nn.Module, head, x: dict[str, torch.Tensor], batch: int = 4096) -> dict[str, torch.Tensor]:
    """Scores [N] per output of `model`, in eval mode, in batches."""
    model.eval()
    n = next(iter(x.values())).shape[0]
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in model.outputs}
    for start in range(0, n, batch):
        out = model({g: v[start : start + batch] for g, v in x.items()})
        for name, raw in out.items():
            parts[name].append(head.score(raw))
    return {name: torch.cat(p) if p else torch.zeros(0) for name, p in parts.items()}


def ensemble_scores(members: list[nn.Module], head, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores [N] per output of an ensemble (one net per seed): every member scores every film, then the
    scores are averaged, in float64. Cross-validation, `kadn evaluate`, `kadn predict` and Table 2 all
    score through this one function."""
    per_member = [predict_scores(m, head, x) for m in members]
    return {k: torch.stack([p[k].double() for p in per_member]).mean(0) for k in per_member[0]}
