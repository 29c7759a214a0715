"""The process-wide state the model stages run under, in one place: the global random generators (Python's,
NumPy's, torch's), torch's thread count and deterministic-kernel flag, the BLAS libraries' threads, and the
worker processes the fits run in (`train.common.workers`).

    with runtime(seed=common.seed, threads=common.threads, workers=common.workers, shared=enc) as pool:
        task = run_task(pool, enc, fn, *args)   # fn(enc, *args) in a worker, or here without a pool
        result = task.result()

`runtime` sets all of it on entering and puts each back on leaving (the pool shut down, its pending tasks
cancelled when an error leaves early), so a test, a notebook or a second stage in the same process finds
the state it had. Every worker process starts with the same settings and seeds, and holds its own copy of
`shared` (the encoded data: sent once when it starts, not with every task).

Each fit still seeds from its own seed (a net seeds torch's generator as it starts, `models.training.fit_net`;
a baseline takes `random_state`), so results depend on neither the order of the fits nor the number of
workers; the seed here fixes whatever else draws from a global generator.
"""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch
from threadpoolctl import threadpool_limits

# What a worker process was given when it started (`shared`), read by the tasks it runs.
_WORKER: dict = {}


@contextmanager
def runtime(*, seed: int, threads: int, workers: int = 1,
            shared=None) -> Iterator[ProcessPoolExecutor | None]:
    """Seeds, threads and deterministic kernels set (and restored on leaving); yields the worker pool of
    `workers` processes, or None for 1 (every task then runs in this process, `run_task`)."""
    threads = max(1, int(threads))
    saved = _state()
    # The BLAS libraries read OMP_NUM_THREADS and the like only when they load, long before a stage starts;
    # threadpoolctl sets their threads at run time and puts them back.
    blas = threadpool_limits(limits=threads, user_api="blas")
    try:
        _apply(seed, threads)
        with _pool(workers, seed, threads, shared) as pool:
            yield pool
    finally:
        blas.restore_original_limits()
        _restore(saved)


def _apply(seed: int, threads: int) -> None:
    _set_deterministic(True, warn_only=False)  # a nondeterministic kernel is an error, not a warning
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _set_deterministic(on: bool, warn_only: bool) -> None:
    # torch.use_deterministic_algorithms also imports and configures the inductor compiler, which nothing here
    # uses: a second of start-up in every stage. The flag it sets for eager kernels is this one.
    eager_only = getattr(torch._C, "_set_deterministic_algorithms", None)
    if eager_only is None:  # a torch without it: the public call
        torch.use_deterministic_algorithms(on, warn_only=warn_only)
    else:
        eager_only(on, warn_only=warn_only)


def _state() -> dict:
    return {"threads": torch.get_num_threads(), "deterministic": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate()}


def _restore(saved: dict) -> None:
    _set_deterministic(saved["deterministic"], saved["warn_only"])
    torch.set_num_threads(saved["threads"])
    torch.set_rng_state(saved["torch_rng"])
    np.random.set_state(saved["numpy_rng"])
    random.setstate(saved["python_rng"])


def _start_worker(seed: int, threads: int, shared) -> None:
    threadpool_limits(limits=threads, user_api="blas")  # the process ends with the pool: nothing to restore
    _apply(seed, threads)
    _WORKER["shared"] = shared


@contextmanager
def _pool(workers: int, seed: int, threads: int, shared) -> Iterator[ProcessPoolExecutor | None]:
    """Forked workers, so each starts with the modules and `shared` already loaded (spawning re-imports torch
    in each, seconds of CPU per stage); safe because torch runs `threads` threads (one in the stages) set
    before any worker starts, so no thread pool is copied half-way through its work."""
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_worker, initargs=(seed, threads, shared))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def run_task(pool: ProcessPoolExecutor | None, shared, fn, *args):
    """A future-like handle on `fn(shared, *args)`: run in a worker of `pool` (which holds its own copy of
    `shared`), or here when its result is asked for if there is no pool."""
    if pool is None:
        return _Later(fn, shared, *args)
    return pool.submit(_in_worker, fn, *args)


def _in_worker(fn, *args):
    return fn(_WORKER["shared"], *args)


class _Later:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def result(self):
        return self.fn(*self.args)
