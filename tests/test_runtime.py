"""`models.training.runtime.runtime`: seeds, threads, deterministic kernels and the worker pool set in one
place, and every one of them put back on leaving."""

from __future__ import annotations

import random
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from models.training.data import FitData
from models.training.fit import fit_model
from models.training.runtime import run_task, runtime
from pipeline.features.encode import load_encoded
from tests.model_support import encoded_catalogue, fast


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def state() -> dict:
    return {"threads": torch.get_num_threads(), "deterministic": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(), "blas": blas_threads(),
            "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state()[1].copy(),
            "python_rng": random.getstate()}


def assert_same(a: dict, b: dict) -> None:
    assert {k: a[k] for k in ("threads", "deterministic", "warn_only", "blas", "python_rng")} == \
        {k: b[k] for k in ("threads", "deterministic", "warn_only", "blas", "python_rng")}
    assert torch.equal(a["torch_rng"], b["torch_rng"])
    assert np.array_equal(a["numpy_rng"], b["numpy_rng"])


@pytest.fixture
def other_state():
    """A process state unlike the stages': two threads, deterministic kernels off (warnings only), generators
    drawn from."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(False, warn_only=True)
    torch.rand(3), np.random.rand(3), random.random()
    yield
    torch.set_num_threads(saved[0])
    torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])


@pytest.mark.parametrize("fails", [False, True])
def test_the_state_is_set_inside_and_restored_on_leaving(other_state, fails):
    before = state()
    with pytest.raises(RuntimeError) if fails else nullcontext(), runtime(seed=5, threads=1):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()  # a nondeterministic kernel fails
        assert set(blas_threads()) <= {1}
        assert torch.initial_seed() == 5
        torch.rand(5), np.random.rand(5), random.random()  # the generators move on inside
        if fails:
            raise RuntimeError("a stage fails half-way")
    assert_same(state(), before)


def test_the_seed_sets_every_global_generator():
    def draws(seed: int) -> tuple:
        with runtime(seed=seed, threads=1):
            return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()

    assert draws(3) == draws(3)
    assert all(a != b for a, b in zip(draws(3), draws(4)))


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    enc = load_encoded(encoded_catalogue(tmp_path_factory.mktemp("runtime")))
    common = fast().train.common
    rows, val = enc.index("train"), enc.index("val")
    restricted = enc.restrict(rows, common.min_count)
    return enc, FitData(restricted.x, restricted.freq, enc.rating.astype(np.float32), rows, val)


def test_two_runs_under_it_give_identical_predictions(catalogue):
    """A net with dropout (which draws from torch's global generator) fitted twice, with other work drawing
    from the generators in between: the same scores."""
    enc, data = catalogue
    params = fast()
    cfg = params.train.nets.model_copy(update={"dropout": 0.3, "epochs": 2})
    scores = []
    for _ in range(2):
        with runtime(seed=0, threads=1):
            fitted = fit_model("kadn", cfg, params.train.common, data, seed=0)
            scores.append(fitted.scores(enc.index("test"))["student"])
        torch.rand(10), np.random.rand(10)
    assert np.array_equal(scores[0], scores[1])


def _worker_state(shared, label: str) -> dict:
    return {"label": label, "shared": shared, "threads": torch.get_num_threads(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(), "blas": blas_threads(),
            "torch_seed": torch.initial_seed(), "numpy_rng": np.random.get_state()[1][:8].tolist(),
            "python_rng": random.getstate()[1][:8]}


def test_the_pool_s_workers_get_the_same_threads_and_seeds(other_state):
    with runtime(seed=11, threads=1) as none:
        assert none is None  # one worker: every task runs here
        here = _worker_state("shared", "here")
        assert run_task(none, "shared", _worker_state, "here").result() == here
    with runtime(seed=11, threads=1, workers=2, shared="shared") as pool:
        tasks = [run_task(pool, "unused here", _worker_state, f"task {k}") for k in range(4)]
        states = [t.result() for t in tasks]
    for k, got in enumerate(states):
        assert got == {**here, "label": f"task {k}"}
    assert here["torch_seed"] == 11 and here["threads"] == 1 and here["deterministic"]
    assert torch.get_num_threads() == 2  # and this process is back to its own settings


def _boom(shared):
    raise ValueError("a fit fails in a worker")


def test_a_failing_task_leaves_through_the_runtime_and_the_state_is_restored(other_state):
    before = state()
    with pytest.raises(ValueError, match="fails in a worker"), \
            runtime(seed=1, threads=1, workers=2, shared=None) as pool:
        run_task(pool, None, _boom).result()
    assert_same(state(), before)
