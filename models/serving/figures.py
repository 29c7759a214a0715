"""The evaluate stage's figures as PNG files: images any browser or `dvc plots show` page opens offline.

Drawn with matplotlib's Agg backend (no display). Each function takes plain numbers (the same ones the
metrics and plot CSVs hold) and writes one file atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never look for a display

import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first
import numpy as np  # noqa: E402

from pipeline.io import atomic_path  # noqa: E402

FEATURE_SETS = {"models": "pre-release features", "models_with_popularity": "with popularity counts"}
FLOOR = "mean"  # the training-mean baseline: marked on the axis, never a bar that sets the scale
DPI = 110


def _save(fig, path: Path) -> None:
    # No creation time or software version in the file: the same figures give the same bytes.
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def model_errors(sets: dict[str, dict], path: Path, metric: str = "cv_mae") -> None:
    """Per-model CV error (mean, with the CV standard deviation as bars), best first, one panel per feature
    set on a shared axis; the mean baseline is a dashed line (or an arrow when off the scale)."""
    panels = {k: {m: v for m, v in models.items() if isinstance(v, dict)} for k, models in sets.items()}
    panels = {k: v for k, v in panels.items() if v}
    mean_key, std_key = f"{metric}_mean", f"{metric}_std"
    label = {"cv_mae": "MAE", "cv_rmse": "RMSE"}[metric]
    bars = [(v[mean_key], v[std_key]) for models in panels.values() for m, v in models.items() if m != FLOOR]
    lo = min(m - s for m, s in bars) if bars else 0.0
    hi = max(m + s for m, s in bars) if bars else 1.0
    pad = 0.08 * (hi - lo or 1.0)
    lo, hi = max(0.0, lo - pad), hi + pad
    rows = max(len(m) for m in panels.values())
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 0.42 * rows + 1.6), sharex=True,
                             squeeze=False)
    for ax, (key, models) in zip(axes[0], panels.items()):
        ranked = sorted(((v[mean_key], v[std_key], m) for m, v in models.items() if m != FLOOR), reverse=True)
        y = np.arange(len(ranked))
        ax.barh(y, [r[0] - lo for r in ranked], left=lo, xerr=[r[1] for r in ranked], color="#4c78a8",
                ecolor="#333333", capsize=3, height=0.6)
        ax.set_yticks(y, [r[2] for r in ranked])
        for yi, (mean, std, _) in zip(y, ranked):
            ax.text(min(mean + std + pad / 4, hi), yi, f"{mean:.3f}", va="center", ha="left", fontsize=8)
        if FLOOR in models:
            floor = models[FLOOR][mean_key]
            if floor <= hi:
                ax.axvline(floor, color="#d62728", linestyle="--", linewidth=1, label=f"mean baseline {floor:.3f}")
                ax.legend(loc="lower right", fontsize=8)
            else:
                ax.annotate(f"mean baseline {floor:.3f} →", xy=(hi, len(ranked) - 0.5), ha="right", va="center",
                            color="#d62728", fontsize=8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(-0.6, len(ranked) - 0.2)
        ax.set_title(FEATURE_SETS.get(key, key))
        ax.set_xlabel(f"cross-validated {label} (mean ± std over folds; lower is better)")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{label} per model, best at the top")
    fig.tight_layout()
    _save(fig, path)


def predicted_vs_actual(actual: np.ndarray, predicted: dict[str, np.ndarray], path: Path) -> None:
    """One scatter per model of predicted against actual score on the test split, with the line y = x."""
    fig, axes = plt.subplots(1, len(predicted), figsize=(4.6 * len(predicted), 4.6), squeeze=False)
    lo = float(min(np.min(actual), *(np.min(p) for p in predicted.values()))) - 0.2
    hi = float(max(np.max(actual), *(np.max(p) for p in predicted.values()))) + 0.2
    for ax, (name, pred) in zip(axes[0], predicted.items()):
        mae = float(np.mean(np.abs(np.asarray(pred) - actual)))
        ax.scatter(actual, pred, s=10, alpha=0.6, color="#4c78a8")
        ax.plot([lo, hi], [lo, hi], color="#d62728", linestyle="--", linewidth=1, label="y = x (perfect)")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_title(f"{name} (test MAE {mae:.3f})")
        ax.set_xlabel("actual Douban score")
        ax.set_ylabel("predicted score")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def learning_curves(curve: list[dict], path: Path) -> None:
    """Training and validation loss, and the validation MAE of student and teacher, per evaluation."""
    epoch = [r["epoch"] for r in curve]
    fig, (loss_ax, mae_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epoch, [r["train_loss"] for r in curve], label="training loss", marker=".")
    loss_ax.plot(epoch, [r["val_loss"] for r in curve], label="validation loss", marker=".")
    loss_ax.set_ylabel("joint loss")
    mae_ax.plot(epoch, [r["val_mae_student"] for r in curve], label="student (K-ADN)", marker=".")
    mae_ax.plot(epoch, [r["val_mae_teacher"] for r in curve], label="teacher", marker=".")
    best = int(np.argmin([r["val_mae_student"] for r in curve])) if curve else None
    if best is not None:
        mae_ax.axvline(epoch[best], color="#999999", linestyle=":", linewidth=1, label="best checkpoint")
    mae_ax.set_ylabel("validation MAE")
    for ax, title in ((loss_ax, "loss"), (mae_ax, "validation MAE")):
        ax.set_xlabel("epoch")
        ax.set_title(f"K-ADN {title} per half-epoch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def table2(distillation: dict, path: Path) -> None:
    """The paper's Table 2 as bars: teacher against student, one panel per quantity the models determine
    (wall-clock times differ on every run, so a stage output never shows them)."""
    quantities = [("params", "parameters"), ("size_kb", "weights (KB)"),
                  ("multiply_adds_per_film", "multiply-adds per film")]
    sides = {side: dict(distillation[side]) for side in ("teacher", "student")}
    fig, axes = plt.subplots(1, len(quantities), figsize=(3.2 * len(quantities), 3.6))
    for ax, (key, title) in zip(axes, quantities):
        values = [sides["teacher"][key], sides["student"][key]]
        ax.bar(["teacher", "student"], values, color=["#9ecae9", "#4c78a8"])
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max(values) * 1.2 or 1)
        for x, v in enumerate(values):
            ax.text(x, v, f"{v:,.4g}", ha="center", va="bottom", fontsize=8)
        ax.set_xlabel(f"student: -{100 * (1 - values[1] / values[0]):.1f}%" if values[0] else "")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Table 2: teacher and student (each an ensemble of {distillation.get('seeds', 1)})")
    fig.tight_layout()
    _save(fig, path)
