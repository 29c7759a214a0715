"""Fitting a neural model: `fit` trains one net per seed (`fit_net` each: Adam, mini-batches, validation
several times per epoch, the best validation checkpoint kept (paper §2.3.1), early stopping, adaptive
regularisation (eq. 3), eq. 6 loss). `models.training.fit.fit_model` reaches it through `pipeline.registry` by name, so
the baselines' stages never import it.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from models.nets.heads import Head
from models.nets.layers import adaptive_l2
from models.nets.loss import joint_loss
from models.nets.nets import build, ensemble_scores
from models.training.data import DENSE, FitData, drop_people, tensors
from pipeline.params import Common, NetConfig
from pipeline.registry import SCALAR_NETS


def make_head(kind: str, cfg: NetConfig, centre: float) -> Head:
    head = "regression" if kind in SCALAR_NETS else cfg.head
    return Head(head, centre, low=cfg.bins.low, high=cfg.bins.high, width=cfg.bins.width, sigma=cfg.soft_sigma,
                loss=cfg.regression_loss, huber_delta=cfg.huber_delta)


@dataclass
class NetFit:
    """One net's training run: the net at its best validation checkpoint and its learning curve."""

    kind: str
    model: torch.nn.Module
    head: Head
    primary: str  # the output the checkpoint is chosen by (the student for a pair)
    curve: list[dict] = field(default_factory=list)  # one record per validation: the learning curve
    best: dict = field(default_factory=dict)
    train_s: float = 0.0


def train_step(model, opt, xb: dict, yb: torch.Tensor, head: Head, hint_weight: float,
               block_gradient: bool, penalty=None, wb: torch.Tensor | None = None) -> torch.Tensor:
    """One optimiser step on a batch: eq. 6 (each film's terms times its weight in `wb`, if given; plus
    `penalty(xb)`, if given), backward, update. The training loop and Table 2's training-time measurement
    both take their steps here."""
    loss, _ = joint_loss(model(xb), yb, head, hint_weight, block_gradient, wb)
    if penalty is not None:
        loss = loss + penalty(xb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def evals_per_epoch(n_batches: int, cfg: NetConfig) -> int:
    """Validations per epoch: `evals_per_epoch`, or more when an epoch has over `eval_steps` steps per
    validation. On a large set a net peaks within an epoch or two; validating by steps keeps the best
    checkpoint as close and lets patience stop the run as soon after it as on a small set."""
    if cfg.eval_steps is None:
        return cfg.evals_per_epoch
    return max(cfg.evals_per_epoch, -(-n_batches // cfg.eval_steps))


def fit_net(kind: str, data: FitData, cfg: NetConfig, seed: int, progress: bool = False, label: str = "") -> NetFit:
    # Each net seeds torch's global generator (initial weights, dropout) itself, so no fit depends on the fits
    # before it; the stage's runtime (models.training.runtime) restores the generator on leaving.
    torch.manual_seed(seed)
    x, y, train_rows, val_rows = data.x, data.y, data.train_rows, data.val_rows
    head = make_head(kind, cfg, float(y[train_rows].mean()))
    model = build(kind, data.sizes, cfg, head.out_dim, x[DENSE].shape[1] if DENSE in x else 0)
    primary = "student" if "student" in model.outputs else "out"
    freq_t = model.features.row_frequencies(data.freq)
    xt, yt = tensors(x, train_rows), torch.from_numpy(y[train_rows])
    xv, yv = tensors(x, val_rows), torch.from_numpy(y[val_rows])
    weights = data.train_weights()  # recency weights of the training rows (validation stays a plain MAE)
    wt = None if weights is None else torch.from_numpy(weights.astype(np.float32))
    # fused: one kernel for the whole update; the for-loop version costs as much as the 1024-wide layer.
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    gen = torch.Generator().manual_seed(seed)
    # Its own stream, so the batch order does not depend on whether tokens are dropped.
    drop_gen = torch.Generator().manual_seed(seed + 1_000_003) if cfg.token_dropout else None
    n, batch = len(train_rows), cfg.batch
    n_batches = max(1, -(-n // batch))
    evals = evals_per_epoch(n_batches, cfg)
    eval_at = {round(n_batches * (k + 1) / evals) - 1 for k in range(evals)}
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * n_batches)
                if cfg.lr_schedule == "cosine" else None)
    penalty = None
    if cfg.adaptive_l2:
        def penalty(xb):  # eq. 3 on the embedding rows this batch uses
            ids, mask, _ = model.features.flat_ids(xb)
            return cfg.adaptive_l2 * adaptive_l2(model.features.embedding.weight, ids, mask, freq_t)
    fitted = NetFit(kind, model, head, primary)
    best_state, best_mae, stale = None, float("inf"), 0
    patience = cfg.patience
    started = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        running, seen = 0.0, 0
        bar = tqdm(range(n_batches), desc=f"{label or kind} epoch {epoch + 1}", leave=False, file=sys.stderr,
                   disable=not progress, mininterval=0.5)
        stop = False
        for b in bar:
            idx = order[b * batch : (b + 1) * batch]
            xb = {g: v[idx] for g, v in xt.items()}
            if drop_gen is not None:  # (eq. 3's penalty then weighs the rows the batch really used)
                xb = drop_people(xb, cfg.token_dropout, drop_gen)
            loss = train_step(model, opt, xb, yt[idx], head, cfg.hint_weight, cfg.block_gradient, penalty,
                              None if wt is None else wt[idx])
            if schedule is not None:
                schedule.step()
            running += loss.item() * len(idx)
            seen += len(idx)
            if b in eval_at:
                record = _validate(model, head, xv, yv, cfg)
                record.update(epoch=round(epoch + (sorted(eval_at).index(b) + 1) / evals, 4),
                              train_loss=running / max(seen, 1))
                running, seen = 0.0, 0
                fitted.curve.append(record)
                mae = record[f"val_mae_{primary}"]
                bar.set_postfix(val_mae=f"{mae:.4f}")
                if mae < best_mae - 1e-6:
                    best_mae, stale = mae, 0
                    best_state = copy.deepcopy(model.state_dict())
                    fitted.best = dict(record)
                else:
                    stale += 1
                    stop = patience is not None and stale >= patience
        bar.close()
        if progress and fitted.curve:
            print(f"{label or kind} epoch {epoch + 1}: val MAE {fitted.curve[-1][f'val_mae_{primary}']:.4f} "
                  f"(best {best_mae:.4f})", file=sys.stderr)
        if stop:
            break
    fitted.train_s = time.perf_counter() - started
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return fitted


@torch.no_grad()
def _validate(model, head, xv, yv, cfg) -> dict:
    model.eval()
    outputs = model(xv)
    loss, _ = joint_loss(outputs, yv, head, cfg.hint_weight, cfg.block_gradient)
    record = {"val_loss": float(loss)}
    for name, raw in outputs.items():
        record[f"val_mae_{name}"] = float((head.score(raw) - yv).abs().mean())
    model.train()
    return record


def net_scores(fits: list[NetFit], x: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Scores per output of the nets fitted with one seed each, averaged (models.nets.ensemble_scores)."""
    return {k: v.numpy() for k, v in ensemble_scores([f.model for f in fits], fits[0].head,
                                                     tensors(x, rows)).items()}


def fit(trained, name: str, cfg: NetConfig, common: Common, data: FitData, seed: int, progress: bool = False,
        features=None) -> None:
    """`cfg.seeds` nets into `trained.fits`, one per seed (each after the first validating on its own rows
    with `rotate_val`)."""
    for k in range(cfg.seeds):
        label = f"{name} seed {k + 1}/{cfg.seeds}"
        seed_data = data.rotated(seed + k) if cfg.rotate_val and k else data
        trained.fits.append(fit_net(name, seed_data, cfg, seed + k, progress, label))


def raw_scores(trained, rows: np.ndarray) -> dict[str, np.ndarray]:
    return net_scores(trained.fits, trained.x, rows)
