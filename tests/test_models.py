"""Model compositions, heads, the joint loss of eq. 6 (each term and the gradient block), distillation on a
synthetic task, the training loop, cross-validation folds and the training stage's input checks."""

import json

import numpy as np
import pytest
import torch

from models.nets.heads import HEADS
from models.nets.layers import DenseBranch
from models.nets.loss import joint_loss
from models.nets.nets import FM, build, count_params, predict_scores
from models.stages.train import run_train
from models.training.data import Dense, FitData, dense_columns, inner_split, kfold, multi_hot, with_dense
from models.training.fit_net import fit_net, make_head
from models.training.runtime import runtime
from pipeline import groups, registry
from pipeline.errors import KadnError
from pipeline.features.encode import load_encoded
from tests.model_support import encoded_catalogue, fast, fast_params, shipped_head
from tests.params_support import shipped, shipped_params

SIZES = {"directors": 5, "actors": 8, "genres": 4}
CFG = fast().train.nets.model_copy(update={"dim": 4, "attention_hidden": 6, "teacher": [32, 16], "student": [8],
                                          "deepfm_hidden": [8], "dropout": 0.0, "dense_width": 8})


def random_batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"directors": torch.randint(1, 5, (n, 1), generator=g),
            "actors": torch.randint(0, 8, (n, 3), generator=g),
            "genres": torch.randint(0, 4, (n, 2), generator=g)}


@pytest.fixture(autouse=True)
def _seed():
    with runtime(seed=0, threads=1):  # tiny nets: threads only add overhead
        yield


@pytest.mark.parametrize("kind", ["fm", "deepfm", "at", "kd", "kadn"])
@pytest.mark.parametrize("head_kind", HEADS)
def test_every_model_scores_every_film_with_every_head(kind, head_kind):
    head = make_head(kind, CFG.model_copy(update={"head": head_kind}), 7.0)
    model = build(kind, SIZES, CFG, head.out_dim)
    x = random_batch()
    out = model(x)
    assert set(out) == set(model.outputs)
    for raw in out.values():
        assert raw.shape == (6, head.out_dim)
    for scores in predict_scores(model, head, x).values():
        assert scores.shape == (6,) and torch.isfinite(scores).all()


@pytest.mark.parametrize("kind", ["fm", "deepfm", "at", "kd", "kadn"])
def test_a_net_refuses_a_setting_it_does_not_take_and_has_no_defaults(kind):
    # An unknown keyword reaching a net's constructor is an error naming it, never silently dropped.
    common = {"dim": CFG.dim, "n_dense": 0, "dense_width": CFG.dense_width}
    builder = registry.builder(kind)
    assert builder(SIZES, CFG, 1, common).outputs
    with pytest.raises(TypeError, match="bogus"):
        builder(SIZES, CFG, 1, {**common, "bogus": 1})
    # Nor does a constructor fill in a setting that was left out (its value lives in params.yaml alone).
    with pytest.raises(TypeError, match="dense_width"):
        builder(SIZES, CFG, 1, {k: v for k, v in common.items() if k != "dense_width"})
    with pytest.raises(TypeError, match="dropout"):  # FM has no dropout to take
        FM(SIZES, dim=4, n_dense=0, dense_width=8, dropout=0.1)


def test_teacher_and_student_share_embedding_and_attention_but_not_mlps():
    model = build("kadn", SIZES, CFG, 1)
    teacher, student = model.branch("teacher"), model.branch("student")
    shared = {id(p) for p in teacher.features.parameters()}
    assert shared == {id(p) for p in student.features.parameters()}
    assert not {id(p) for p in teacher.mlp.parameters()} & {id(p) for p in student.mlp.parameters()}
    x = random_batch()
    both = model(x)
    assert torch.equal(both["teacher"], teacher(x)["teacher"])
    assert torch.equal(both["student"], student(x)["student"])
    assert count_params(student) < count_params(teacher)


def test_kd_pools_by_sum_and_kadn_by_attention():
    assert build("kd", SIZES, CFG, 1).features.attention is None
    assert build("kadn", SIZES, CFG, 1).features.attention is not None
    assert build("at", SIZES, CFG, 1).features.attention is not None


def test_binned_heads_score_the_expectation_over_bin_centres():
    head = shipped_head("classification", 7.0, bins={"low": 0.0, "high": 10.0, "width": 0.25})
    assert head.out_dim == 40
    logits = torch.full((1, 40), -1e4)
    logits[0, 28] = 0.0  # bin [7.0, 7.25)
    assert head.score(logits).item() == pytest.approx(7.125)
    even = head.score(torch.zeros(1, 40)).item()
    assert even == pytest.approx(5.0)
    # Hard labels: the true score's bin; soft labels are lowest near the true score.
    y = torch.tensor([7.1])
    assert head.loss(logits, y).item() < head.loss(torch.zeros(1, 40), y).item()
    soft = shipped_head("soft", 7.0, bins={"low": 0.0, "high": 10.0, "width": 0.25}, soft_sigma=0.3)
    near, far = torch.zeros(1, 40), torch.zeros(1, 40)
    near[0, 28], far[0, 10] = 5.0, 5.0
    assert soft.loss(near, y) < soft.loss(far, y)


def test_soft_labels_are_a_normalised_gaussian_around_the_score():
    bins = {"low": 0.0, "high": 10.0, "width": 0.25}
    narrow, wide = (shipped_head("soft", 7.0, bins=bins, soft_sigma=s) for s in (0.3, 0.8))
    y = torch.tensor([7.1, 3.4])
    labels = narrow.soft_labels(y)
    assert labels.shape == (2, 40) and labels.sum(-1).tolist() == pytest.approx([1.0, 1.0])
    assert labels.argmax(-1).tolist() == [28, 13]  # the bins holding 7.1 and 3.4
    assert (labels @ narrow.centres).tolist() == pytest.approx(y.tolist(), abs=0.01)  # centred on the score
    spread = [((h.soft_labels(y) * (h.centres - y.unsqueeze(-1)) ** 2).sum(-1) ** 0.5)[0].item()
              for h in (narrow, wide)]
    assert spread == pytest.approx([0.3, 0.8], abs=0.02)  # sigma is the width
    # The loss is the cross-entropy against those labels: lowest when the net outputs exactly them.
    exact = -0.5 * ((y.unsqueeze(-1) - narrow.centres) / 0.3) ** 2  # logits whose softmax is the labels
    noise = torch.randn(2, 40, generator=torch.Generator().manual_seed(0))
    assert narrow.loss(exact, y) < narrow.loss(exact + 0.5 * noise, y)


def test_regression_head_predicts_offsets_from_the_training_mean():
    head = shipped_head("regression", 7.2, regression_loss="mse")
    assert head.score(torch.zeros(3, 1)).tolist() == pytest.approx([7.2] * 3)
    y = torch.tensor([7.2, 8.2])
    assert head.loss(torch.zeros(2, 1), y).item() == pytest.approx(0.5)
    huber = shipped_head("regression", 7.2, regression_loss="huber", huber_delta=0.5)
    assert huber.loss(torch.zeros(2, 1), y).item() < 0.5


@pytest.mark.parametrize("head_kind", HEADS)
def test_joint_loss_is_both_losses_plus_lambda_times_the_hint(head_kind):
    head = shipped_head(head_kind, 7.0)
    z, s = torch.randn(5, head.out_dim), torch.randn(5, head.out_dim)
    y = torch.rand(5) * 4 + 5
    total, parts = joint_loss({"teacher": z, "student": s}, y, head, hint_weight=0.3, block_gradient=True)
    assert set(parts) == {"teacher", "student", "hint"}
    assert parts["teacher"].item() == pytest.approx(head.loss(z, y).item())
    assert parts["student"].item() == pytest.approx(head.loss(s, y).item())
    assert parts["hint"].item() == pytest.approx(0.3 * ((s - z) ** 2).sum(-1).mean().item(), rel=1e-5)
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-5)
    # No hint without a weight, and none for a single net.
    assert "hint" not in joint_loss({"teacher": z, "student": s}, y, head, 0.0, True)[1]
    assert set(joint_loss({"out": z}, y, head, 0.3, True)[1]) == {"out"}


def _grads(model, x, y, head, hint, block):
    model.zero_grad()
    total, _ = joint_loss(model(x), y, head, hint, block)
    total.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_block_keeps_the_hint_out_of_the_teacher():
    head = shipped_head("regression", 7.0)
    model = build("kadn", SIZES, CFG, 1)
    x, y = random_batch(), torch.rand(6) * 4 + 5
    plain = _grads(model, x, y, head, 0.0, True)
    blocked = _grads(model, x, y, head, 5.0, True)
    open_ = _grads(model, x, y, head, 5.0, False)
    teacher = [n for n in plain if n.startswith("teacher.")]
    student = [n for n in plain if n.startswith("student.")]
    assert teacher and student
    for n in teacher:  # blocked: the teacher learns from the labels alone
        assert torch.allclose(blocked[n], plain[n], atol=1e-7)
    assert any(not torch.allclose(open_[n], plain[n]) for n in teacher)
    assert any(not torch.allclose(blocked[n], plain[n]) for n in student)
    # The shared layers still receive the hint through the student.
    assert not torch.allclose(blocked["features.embedding.weight"], plain["features.embedding.weight"])


def test_distillation_helps_a_student_with_few_noisy_labels_when_the_teacher_knows_better():
    """The teacher learns an additive rule from plenty of clean films; a fresh student then sees 40 noisy
    ones. Pulled towards the teacher (eq. 6 hint, gradient blocked) it generalises better than alone."""
    rng = np.random.default_rng(0)
    sizes = {"a": 22, "b": 22}
    effect = {g: rng.normal(0, 1, sizes[g]) for g in sizes}

    def films(n, noise):
        ids = {g: rng.integers(2, sizes[g], (n, 1)) for g in sizes}
        y = 7 + sum(effect[g][ids[g][:, 0]] for g in sizes) + rng.normal(0, noise, n)
        return {g: torch.from_numpy(v) for g, v in ids.items()}, torch.tensor(y, dtype=torch.float32)

    head = shipped_head("regression", 7.0, regression_loss="mse")
    model = build("kd", sizes, CFG.model_copy(update={"dim": 6, "teacher": [32], "student": [16], "dropout": 0.0,
                                                      "linear": False}), 1)
    big_x, big_y = films(800, 0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        joint_loss(model(big_x), big_y, head, 0.0, True)[0].backward()
        opt.step()
    small_x, small_y = films(40, 1.5)
    test_x, test_y = films(500, 0.0)
    teacher_mae = (head.score(model(test_x)["teacher"]) - test_y).abs().mean().item()
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def student_mae(hint):
        model.load_state_dict(start)
        torch.manual_seed(1)
        for m in model.student.modules():  # a fresh student on the teacher's (frozen) shared layers
            if isinstance(m, torch.nn.Linear):
                m.reset_parameters()
        opt = torch.optim.Adam(model.student.parameters(), lr=1e-2)
        for _ in range(150):
            opt.zero_grad()
            joint_loss(model(small_x), small_y, head, hint, block_gradient=True)[0].backward()
            opt.step()
        with torch.no_grad():
            return (head.score(model(test_x)["student"]) - test_y).abs().mean().item()

    alone, distilled = student_mae(0.0), student_mae(2.0)
    print(f"teacher {teacher_mae:.3f} alone {alone:.3f} distilled {distilled:.3f}")
    assert teacher_mae < alone
    assert distilled < alone * 0.85


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return encoded_catalogue(tmp_path_factory.mktemp("models"))


def test_fit_is_deterministic_and_keeps_the_best_validation_checkpoint(catalogue):
    enc = load_encoded(catalogue)
    tr, va = enc.index("train"), enc.index("val")
    r = enc.restrict(tr, 2)
    cfg = fast().train.nets.model_copy(update={"epochs": 4, "evals_per_epoch": 2})
    data = FitData(r.x, r.freq, enc.rating, tr, va)
    a = fit_net("kadn", data, cfg, seed=3)
    b = fit_net("kadn", data, cfg, seed=3)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert len(a.curve) == 8 and [h["epoch"] for h in a.curve][:2] == [0.5, 1.0]
    best = min(h["val_mae_student"] for h in a.curve)
    assert a.best["val_mae_student"] == best
    from models.training.fit_net import net_scores

    pred = net_scores([a], r.x, va)["student"]
    assert np.abs(pred - enc.rating[va]).mean() == pytest.approx(best, abs=1e-4)


def test_eval_steps_validates_more_often_only_when_an_epoch_is_long(catalogue):
    """A long epoch (many batches) gets a validation at least every `eval_steps` steps; a short one keeps
    `evals_per_epoch`, so small sets train exactly as without the setting."""
    enc = load_encoded(catalogue)
    tr, va = enc.index("train"), enc.index("val")
    r = enc.restrict(tr, 2)
    data = FitData(r.x, r.freq, enc.rating, tr, va)
    batches = -(-len(tr) // 8)
    base = fast().train.nets.model_copy(update={"epochs": 1, "evals_per_epoch": 2, "batch": 8, "patience": None})
    plain = fit_net("kadn", data, base, seed=1)
    steps = max(1, batches // 4)
    often = fit_net("kadn", data, base.model_copy(update={"eval_steps": steps}), seed=1)
    roomy = fit_net("kadn", data, base.model_copy(update={"eval_steps": batches}), seed=1)
    assert len(plain.curve) == 2
    assert len(often.curve) == -(-batches // steps) > 2
    assert [h["epoch"] for h in often.curve][-1] == 1.0
    assert [h["val_mae_student"] for h in roomy.curve] == [h["val_mae_student"] for h in plain.curve]


def test_make_head_keeps_fm_and_deepfm_scalar():
    cfg = fast().train.nets.model_copy(update={"head": "soft"})
    assert make_head("deepfm", cfg, 7.0).kind == "regression"
    assert make_head("kadn", cfg, 7.0).kind == "soft"


def test_kfold_partitions_every_row_identically_for_every_model():
    folds = kfold(23, 5, 2, seed=4)
    assert len(folds) == 10
    for k in range(2):
        held = np.concatenate([h for _, h in folds[5 * k : 5 * k + 5]])
        assert sorted(held.tolist()) == list(range(23))
    for tr, held in folds:
        assert not set(tr) & set(held) and len(tr) + len(held) == 23
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, kfold(23, 5, 2, seed=4)))


def test_multi_hot_has_one_column_per_token_and_counts_oov():
    x = {g: np.zeros((2, 1), np.int32) for g in ("directors", "writers", "actors", "genres", "countries",
                                                   "languages", "runtime", "year", "month")}
    x["actors"] = np.array([[2, 1, 1], [3, 0, 0]], np.int32)
    sizes = {g: 4 for g in x}
    m = multi_hot(x, sizes, None, "count").toarray()
    assert m.shape == (2, 36)
    actors = m[:, 8:12]
    assert actors[0].tolist() == [0, 2, 1, 0] and actors[1].tolist() == [0, 0, 0, 1]


def test_training_stage_refuses_inputs_that_do_not_match_their_vocabularies(catalogue, tmp_path):
    import shutil

    enc_dir = tmp_path / "enc"
    shutil.copytree(catalogue, enc_dir)
    vocab = json.loads((enc_dir / "vocab.json").read_text())
    vocab["groups"]["actors"] = vocab["groups"]["actors"][:3]
    vocab["digest"] = "0" * 16
    (enc_dir / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(KadnError, match="vocab.json does not belong"):
        run_train("ridge", fast(), enc_dir, tmp_path / "models")
    meta = json.loads((enc_dir / "meta.json").read_text())
    meta["vocab_digest"] = vocab["digest"]  # digests agree, but the arrays hold ids beyond the vocabulary
    (enc_dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(KadnError, match="beyond its vocabulary"):
        run_train("kadn", fast(), enc_dir, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_unknown_model_and_preset_are_refused(catalogue, tmp_path):
    with pytest.raises(KadnError, match="unknown model"):
        run_train("xgboost", fast(), catalogue, tmp_path)
    params = fast_params()
    params["train"]["nets"]["preset"] = "fastest"
    with pytest.raises(KadnError, match="preset"):
        run_train("kadn", fast(params), catalogue, tmp_path)


def test_paper_preset_applies_the_papers_training_settings():
    from models.training.config import model_config

    params = fast_params()
    params["train"]["nets"]["preset"] = "paper"
    cfg = model_config(fast(params).train, "kadn")
    assert (cfg.lr, cfg.batch, cfg.epochs, cfg.evals_per_epoch, cfg.head, cfg.preset) == \
        (1e-5, 32, 50, 2, "classification", "paper")
    assert cfg.patience is None and cfg.teacher == params["train"]["nets"]["teacher"]


def test_adaptive_regulariser_in_training_shrinks_the_embedding(catalogue):
    enc = load_encoded(catalogue)
    tr, va = enc.index("train"), enc.index("val")
    r = enc.restrict(tr, 2)
    cfg = fast().train.nets.model_copy(update={"epochs": 2})
    norms = {}
    for strength in (0.0, 5.0):
        fitted = fit_net("kadn", FitData(r.x, r.freq, enc.rating, tr, va),
                         cfg.model_copy(update={"adaptive_l2": strength}), seed=1)
        norms[strength] = fitted.model.features.embedding.weight.norm().item()
    assert norms[5.0] < norms[0.0]


# --- Feature sets: pre_release and with_popularity (dense popularity inputs) ---


def _with_popularity(enc_dir, popularity):
    """Rewrite an encoded folder's popularity matrix (the rest untouched)."""
    with np.load(enc_dir / "arrays.npz") as npz:
        data = {k: npz[k] for k in npz.files}
    data["popularity"] = popularity.astype(np.float32)
    np.savez_compressed(enc_dir / "arrays.npz", **data)


@pytest.mark.parametrize("kind", ["fm", "deepfm", "at", "kd", "kadn"])
def test_dense_branch_changes_every_nets_predictions(kind):
    head = shipped_head("regression", 7.0)
    model = build(kind, SIZES, CFG, head.out_dim, n_dense=4)
    assert sum(isinstance(m, DenseBranch) for m in model.modules()) == 1  # the one shared layer
    x = random_batch()
    x["dense"] = torch.zeros(6, 4)
    before = predict_scores(model, head, x)
    x["dense"] = torch.ones(6, 4)
    after = predict_scores(model, head, x)
    for name in model.outputs:
        assert not torch.allclose(before[name], after[name])
    if kind == "kadn":  # teacher and student share the branch, as they share the embedding
        assert model.branch("teacher").dense is model.branch("student").dense is model.dense


def test_dense_inputs_are_standardised_on_training_rows_only_with_missing_flags():
    rng = np.random.default_rng(0)
    pop = rng.normal(5, 2, (50, 3)).astype(np.float32)
    pop[:, 2] = np.nan  # unknown for every film: dropped with a note
    pop[3, 0] = np.nan
    train = np.arange(30)
    columns, notes = dense_columns(pop)
    assert columns == [0, 1] and notes == ["comment_count dropped: unknown for every film"]
    dense = Dense.fit(pop, train, columns)
    changed = pop.copy()
    changed[30:, :2] += 100.0  # non-training rows move; the statistics must not
    assert Dense.fit(changed, train, columns) == dense
    z = dense.transform(pop)
    assert z.shape == (50, 4)
    known = np.isfinite(pop[train, 0])
    assert abs(z[train][known, 0].mean()) < 1e-5 and abs(z[train][known, 0].std() - 1) < 1e-4
    assert z[3, 0] == 0.0 and z[3, 2] == 1.0 and z[4, 2] == 0.0  # NaN -> 0 plus its missing flag
    assert Dense.from_dict(dense.to_dict()) == dense
    x, fitted = with_dense({"directors": np.zeros((50, 1), np.int32)}, pop, train, "with_popularity")
    assert fitted == dense and np.array_equal(x["dense"], z)
    assert with_dense({}, pop, train, "pre_release") == ({}, None)


def test_baselines_get_the_dense_columns_after_the_multi_hot_ones():
    sizes = dict.fromkeys(groups.names(), 3)
    x = {g: np.array([[2], [0]], np.int32) for g in groups.names()}
    oov = shipped_params().train.common.oov
    plain = multi_hot(x, sizes, None, oov)
    x["dense"] = np.array([[0.5, 1.0], [-1.0, 0.0]], np.float32)
    both = multi_hot(x, sizes, None, oov)
    assert both.shape[1] == plain.shape[1] + 2
    assert np.array_equal(both.toarray()[:, -2:], x["dense"])


def test_with_popularity_trains_evaluates_and_skips_cleanly_without_counts(catalogue, tmp_path):
    import shutil

    from models.stages.evaluate import run_evaluate

    params = fast_params()
    params["models"] = {"baselines": ["ridge"], "nets": ["kadn"]}
    params["train"]["common"]["track_records"]["enabled"] = False  # popularity alone (tests/test_track_records.py: both)
    enc_dir = tmp_path / "enc"
    shutil.copytree(catalogue, enc_dir)
    for name in ("ridge", "kadn"):
        run_train(name, fast(params), enc_dir, tmp_path / "pre")
        meta = run_train(name, fast(params), enc_dir, tmp_path / "pop", feature_set="with_popularity")
        assert meta["feature_set"] == "with_popularity" and "skipped" not in meta
    vocab = json.loads((tmp_path / "pop" / "kadn" / "vocab.json").read_text())
    assert vocab["dense"]["columns"] == ["votes", "review_count", "comment_count"]
    assert json.loads((tmp_path / "pre" / "kadn" / "vocab.json").read_text())["dense"] is None
    frag = run_evaluate(fast(params), enc_dir, tmp_path / "pre", tmp_path / "e.json", tmp_path / "plots", tmp_path / "pop")
    for name in ("ridge", "kadn", "kadn_teacher"):
        assert {"mae", "rmse", "cv_mae_mean", "cv_mae_std"} <= set(frag["models_with_popularity"][name])
    assert frag["models_with_popularity"]["kadn"]["mae"] != frag["models"]["kadn"]["mae"]
    # No counts anywhere: the second set is skipped with a note, not an error; pre_release is unchanged.
    pop = load_encoded(enc_dir).popularity
    _with_popularity(enc_dir, np.full_like(pop, np.nan))
    for name in ("ridge", "kadn"):
        meta = run_train(name, fast(params), enc_dir, tmp_path / "pop", feature_set="with_popularity")
        assert meta["skipped"] == "no popularity counts in the data"
        assert [p.name for p in (tmp_path / "pop" / name).iterdir()] == ["skipped.json"]
    frag2 = run_evaluate(fast(params), enc_dir, tmp_path / "pre", tmp_path / "e.json", tmp_path / "plots",
                         tmp_path / "pop")
    assert frag2["models_with_popularity"] == {"skipped": "no popularity counts in the data"}
    assert frag2["models"]["kadn"]["mae"] == frag["models"]["kadn"]["mae"]


# --- Baselines tuned inside each fit ---


def test_baseline_grid_is_searched_on_the_fits_own_training_rows_only(catalogue, monkeypatch):
    import models.training.baselines as baselines
    from models.training.fit import fit_model

    common = fast().train.common
    cfg = shipped("train.ridge", alpha=1.0, grid={"alpha": [0.01, 1.0, 100.0]})
    enc = load_encoded(catalogue)
    y = enc.rating.astype(np.float32)
    rows = np.random.default_rng(1).permutation(len(y))
    train_rows, held = np.sort(rows[: len(y) * 2 // 3]), np.sort(rows[len(y) * 2 // 3 :])
    restricted = enc.restrict(train_rows, common.min_count)
    seen = []
    real = baselines.validation_mae

    def spy(kind, cfg, X, y_fit, fit_rows, val_rows, seed, threads, weight=None):
        seen.append((X.shape[0], np.asarray(y_fit).copy(), fit_rows, val_rows))
        return real(kind, cfg, X, y_fit, fit_rows, val_rows, seed, threads, weight)

    monkeypatch.setattr(baselines, "validation_mae", spy)
    first = fit_model("ridge", cfg, common, FitData(restricted.x, restricted.freq, y, train_rows, held[:5]), 0)
    assert len(seen) == 3 and first.chosen["alpha"] in (0.01, 1.0, 100.0)
    for n, y_fit, fit_rows, val_rows in seen:  # the scorer only ever sees the training rows' labels
        assert n == len(train_rows) and np.array_equal(y_fit, y[train_rows])
        assert not set(fit_rows) & set(val_rows) and len(fit_rows) + len(val_rows) == len(train_rows)
    # Scrambling the held-out labels changes neither the chosen setting nor the predictions.
    y2 = y.copy()
    y2[held] = np.random.default_rng(2).uniform(1, 10, len(held)).astype(np.float32)
    second = fit_model("ridge", cfg, common, FitData(restricted.x, restricted.freq, y2, train_rows, held[:5]), 0)
    assert second.chosen == first.chosen
    assert np.allclose(second.scores(held)["out"], first.scores(held)["out"])


def test_baseline_tuning_features_never_read_its_validation_scores(catalogue, monkeypatch):
    # Track records read scores: the inner split that picks a baseline's setting must rebuild them from its
    # own fit rows, or the validation films' scores leak into the features it is judged on.
    import dataclasses

    import models.training.baselines as baselines
    from models.training.data import features_from
    from models.training.fit import fit_model

    common = fast().train.common
    track_cfg = shipped("train.common.track_records", enabled=True, folds=5, seed=1)
    cfg = shipped("train.ridge", alpha=1.0, grid={"alpha": [0.1, 10.0]})
    enc = load_encoded(catalogue)
    train_rows = enc.index("train")
    restricted = enc.restrict(train_rows, common.min_count)
    seen = []
    real = baselines.validation_mae

    def spy(kind, cfg, X, y_fit, fit_rows, val_rows, seed, threads, weight=None):
        seen.append((X.toarray(), val_rows))
        return real(kind, cfg, X, y_fit, fit_rows, val_rows, seed, threads, weight)

    monkeypatch.setattr(baselines, "validation_mae", spy)

    def tuning_matrix(e):
        build = features_from(e, restricted.x, "pre_release", track_cfg)
        x, _ = build(train_rows)
        seen.clear()
        fit_model("ridge", cfg, common, FitData(x, restricted.freq, e.rating.astype(np.float32), train_rows,
                                                enc.index("val")), 0, features=build)
        return x, seen[0]

    x1, (tune1, val_positions) = tuning_matrix(enc)
    rating = enc.rating.copy()
    rating[train_rows[val_positions]] = np.random.default_rng(3).uniform(1, 10, len(val_positions))
    x2, (tune2, _) = tuning_matrix(dataclasses.replace(enc, rating=rating))
    assert not np.array_equal(x1["dense"], x2["dense"])  # the final fit's features do read those scores
    assert np.array_equal(tune1, tune2)  # the tuning's features do not


def test_every_baseline_is_tuned_per_fold_and_reports_its_choices(catalogue, tmp_path):
    from models.training.baselines import grid_settings

    params = fast_params()
    svm = shipped("train.svm", grid={"C": [1, 2], "gamma": ["x", "y", "z"]})
    assert grid_settings(svm)[:2] == [{"C": 1, "gamma": "x"}, {"C": 1, "gamma": "y"}]
    assert grid_settings(shipped("train.mean")) == [{}]
    for name in ("ridge", "svm", "lightgbm"):
        grid = params["train"][name]["grid"]
        assert grid and all(len(v) >= 2 for v in grid.values())  # params.yaml declares a real grid
    meta = run_train("svm", fast(params), catalogue, tmp_path)
    folds = params["train"]["common"]["cv"]["folds"]
    assert len(meta["cv_chosen"]) == folds and set(meta["chosen"]) == set(params["train"]["svm"]["grid"])


def test_svr_tuning_on_shared_kernel_matrices_scores_every_setting_like_a_plain_svr(catalogue):
    # The grid search fits each gamma's settings on one precomputed kernel matrix; each setting's validation
    # MAE must be the one a plain RBF SVR of that setting gets.
    from models.training.baselines import grid_settings, svr_validation_maes, validation_mae
    from models.training.data import inner_split

    enc = load_encoded(catalogue)
    train_rows = enc.index("train")
    restricted = enc.restrict(train_rows, 2)
    X = multi_hot(restricted.x, restricted.sizes(), train_rows, "scaled")
    y = enc.rating[train_rows].astype(np.float64)
    fit, val = inner_split(np.arange(len(y)), 0.25, 3)
    cfg = shipped("train.svm", kernel="rbf", C=1.0, epsilon=0.1,
                  grid={"C": [0.5, 4.0], "gamma": ["scale", 0.05, "auto"], "epsilon": [0.05, 0.3]})
    settings = grid_settings(cfg)
    shared = [score for _, score in sorted(svr_validation_maes(cfg, settings, X[fit], y[fit], X[val], y[val]))]
    plain = [validation_mae("svm", cfg.with_setting(s), X, y, fit, val, 0, 1) for s in settings]
    assert len(set(np.round(plain, 6))) > 3  # the settings really differ
    assert shared == pytest.approx(plain, abs=1e-6)


def test_svr_tune_rows_caps_the_grid_search_rows_not_the_final_fit(catalogue, monkeypatch):
    import models.training.baselines as baselines
    from models.training.baselines import tune_baseline

    enc = load_encoded(catalogue)
    train_rows = enc.index("train")
    restricted = enc.restrict(train_rows, 2)
    X = multi_hot(restricted.x, restricted.sizes(), train_rows, "scaled")
    y = enc.rating[train_rows].astype(np.float64)
    common = fast().train.common
    seen = []
    real = baselines.svr_validation_maes

    def spy(cfg, settings, X_fit, *args, **kwargs):
        seen.append(X_fit.shape[0])
        return real(cfg, settings, X_fit, *args, **kwargs)

    monkeypatch.setattr(baselines, "svr_validation_maes", spy)
    grid = {"C": [1.0, 3.0]}
    full, capped = (tune_baseline("svm", X, y, shipped("train.svm", kernel="rbf", C=1.0, epsilon=0.1, grid=grid,
                                                      tune_rows=rows), common.tune, 0, common.threads)[0]
                    for rows in (None, 20))
    assert seen[0] > 20 and seen[1] == 20
    assert capped.shape_fit_[0] == full.shape_fit_[0] == len(y)  # the chosen setting is refitted on every row


def test_a_grid_scored_on_inner_folds_picks_the_best_mean_and_never_sees_a_fold_s_own_scores(monkeypatch):
    import models.training.baselines as baselines
    from models.training.baselines import tune_baseline

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = X @ np.array([1.0, -1.0, 0.5, 0.0]) + rng.normal(scale=0.1, size=60)
    # Each alpha's inner-fold scores, made up so that one split alone (the first fold) would pick alpha 1
    # while the mean over the folds picks alpha 10.
    made_up = {1.0: [0.1, 0.9, 0.9], 10.0: [0.2, 0.3, 0.3], 100.0: [0.5, 0.5, 0.5]}
    calls, built_from = [], []

    def score(kind, cfg, X_tune, y_, fit_rows, val_rows, seed, threads, weight=None):
        calls.append((cfg.alpha, tuple(val_rows)))
        return made_up[cfg.alpha][sum(1 for a, _ in calls if a == cfg.alpha) - 1]

    def inner_X(fit_positions):
        built_from.append(tuple(fit_positions))
        return X

    monkeypatch.setattr(baselines, "validation_mae", score)
    cfg = shipped("train.ridge", alpha=1.0, grid={"alpha": [1.0, 10.0, 100.0]})
    tune = shipped("train.common.tune", val=0.2, seed=3, folds=3)
    _, chosen = tune_baseline("ridge", X, y, cfg, tune, 0, 1, inner_X=inner_X)
    assert chosen == {"alpha": 10.0}
    held = [v for a, v in calls if a == 1.0]
    assert sorted(r for v in held for r in v) == list(range(60))  # every row validates exactly once
    # The features of each inner fold are rebuilt from its own fit rows, which never hold its validation rows.
    assert [set(f).isdisjoint(v) for f, v in zip(built_from, held)] == [True] * 3
    calls.clear()
    _, chosen = tune_baseline("ridge", X, y, cfg, shipped("train.common.tune", val=0.2, seed=3, folds=None), 0, 1)
    assert chosen == {"alpha": 1.0} and len(calls) == 3  # one split: one score per setting
    # ...the same split as ever, so the settings chosen without `folds` do not move.
    assert {v for _, v in calls} == {tuple(inner_split(np.arange(60), 0.2, 3)[1])}
    with pytest.raises(KadnError, match="tune.folds is 61, but this fit has only 60 films"):
        tune_baseline("ridge", X, y, cfg, shipped("train.common.tune", folds=61), 0, 1)


def test_a_grid_tuned_on_the_latest_films_validates_on_them_and_fits_on_the_earlier_ones(monkeypatch):
    import models.training.baselines as baselines
    from models.training.baselines import tune_baseline
    from models.training.data import latest_split

    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    y = X @ np.array([1.0, 0.5, -0.5]) + rng.normal(scale=0.1, size=50)
    time = rng.permutation(np.arange(2000, 2050) + 0.5)  # one film a year, in shuffled row order
    time[7] = np.nan  # a film with no release date is never held back
    seen = []

    def score(kind, cfg, X_tune, y_, fit_rows, val_rows, seed, threads, weight=None):
        seen.append((np.asarray(fit_rows), np.asarray(val_rows)))
        return cfg.alpha  # the smallest alpha wins: only where it is validated matters here

    monkeypatch.setattr(baselines, "validation_mae", score)
    cfg = shipped("train.ridge", alpha=1.0, grid={"alpha": [1.0, 10.0]})
    latest = shipped("train.common.tune", val=0.2, folds=None, split="latest")
    _, chosen = tune_baseline("ridge", X, y, cfg, latest, 0, 1, time=time)
    assert chosen == {"alpha": 1.0} and len(seen) == 2
    fit_rows, val_rows = seen[0]
    assert len(val_rows) == 10 and 7 in fit_rows
    assert np.nanmax(time[fit_rows]) < time[val_rows].min()  # every validation film is later than every fit film
    assert sorted(np.concatenate([fit_rows, val_rows])) == list(range(50))
    np.testing.assert_array_equal(latest_split(time, 0.2)[1], val_rows)
    with pytest.raises(KadnError, match="tune.split is latest, but the films have no release dates"):
        tune_baseline("ridge", X, y, cfg, latest, 0, 1)
