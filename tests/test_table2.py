"""Table 2 split into the layers teacher and student share (embedding table, attention, dense branch) and
their private MLPs: at scale the embedding table dominates both whole counts, so only the private part shows
the architecture's own reduction."""

import pytest

from models.serving.artifacts import load_model
from models.stages.evaluate import run_evaluate
from models.stages.train import run_train
from tests.model_support import encoded_catalogue, fast, fast_params


def mlp_counts(width: int, hidden: list[int], seeds: int) -> tuple[int, int]:
    """(parameters, multiply-adds per film) of `seeds` MLPs: Linear + PReLU per hidden layer, Linear to 1."""
    params = macs = 0
    for h in hidden:
        params += width * h + h + h  # weights, biases, PReLU slopes
        macs += width * h
        width = h
    params += width + 1
    macs += width
    return params * seeds, macs * seeds


@pytest.mark.parametrize("seeds", [1, 2])
def test_counts_split_into_shared_and_private(tmp_path, seeds):
    params = fast_params()
    params["models"] = {"baselines": [], "nets": ["kadn"]}
    params["train"]["nets"].update(teacher=[16, 8], student=[8], seeds=seeds)
    enc = encoded_catalogue(tmp_path)
    run_train("kadn", fast(params), enc, tmp_path / "models")
    table = run_evaluate(fast(params), enc, tmp_path / "models", tmp_path / "e.json", tmp_path / "plots")["distillation"]
    teacher, student = table["teacher"], table["student"]
    width = load_model(tmp_path / "models", "kadn").nets[0].teacher.net[0].in_features
    assert (teacher["params_private"], teacher["multiply_adds_private_per_film"]) == mlp_counts(width, [16, 8], seeds)
    assert (student["params_private"], student["multiply_adds_private_per_film"]) == mlp_counts(width, [8], seeds)
    for side in (teacher, student):
        assert side["params_shared"] + side["params_private"] == side["params"]
        assert side["multiply_adds_shared_per_film"] + side["multiply_adds_private_per_film"] == pytest.approx(
            side["multiply_adds_per_film"], abs=1)
    # The shared layers are the same in both; the embedding table makes most of them.
    assert teacher["params_shared"] == student["params_shared"] > 0
    assert teacher["multiply_adds_shared_per_film"] == student["multiply_adds_shared_per_film"] > 0
    assert table["param_reduction_private"] == round(1 - student["params_private"] / teacher["params_private"], 4)
    assert table["param_reduction_private"] > table["param_reduction"]
    assert table["multiply_add_reduction_private"] == round(
        1 - student["multiply_adds_private_per_film"] / teacher["multiply_adds_private_per_film"], 4)
