"""Process pools for the stages that scale with cores: `scan`, `silence`, `tfrecords build`.

Workers are forked from multiprocessing's fork server, a fresh interpreter that imports the
stage's modules once (`preload`): a worker then starts in milliseconds with those modules
loaded, where a spawned worker pays ~2 s of CPU for them (librosa loads numba caches), and it
never inherits TensorFlow or the parent's threads, whatever the parent has imported. A process
has one fork server; a pool that needs more than it imported restarts it when no pool is using
it, and otherwise its workers import the rest themselves (correct, only slower). Each worker
uses one BLAS thread (the pool is the parallelism) and exits when its parent goes away, even
when the parent is SIGKILLed. At exit, the process waits for its fork server, so that the
workers' CPU time is its children's.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
from multiprocessing.context import BaseContext
from multiprocessing.queues import SimpleQueue

CONTEXT = "forkserver"


def executor(
    workers: int,
    preload: Sequence[str],
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> ProcessPoolExecutor:
    """A pool of `workers` processes forked from a server that has imported `preload`."""
    ctx = start(preload)
    return _Pool(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(initializer, initargs)
    )


def start(preload: Sequence[str]) -> BaseContext:
    """Start the fork server now, so that it imports `preload` while the caller does other work.

    Costs the caller a few milliseconds; `executor` calls it too. A server that lacks some of
    `preload` and serves no pool is restarted with them added (one process running several
    stages, like `orpheus demo`, then pays each stage's imports once).
    """
    global _preloaded, _reaps_at_exit
    ctx = mp.get_context(CONTEXT)
    wanted = {"__main__", *preload}  # the main script too: once, not in every worker
    if not wanted <= _preloaded:
        if _live_pools == 0:
            _reap_fork_server()
        _preloaded |= wanted
        ctx.set_forkserver_preload(["__main__", *sorted(_preloaded - {"__main__"})])
    forkserver.ensure_running()
    if not _reaps_at_exit:
        atexit.register(_reap_fork_server)
        _reaps_at_exit = True
    return ctx


_preloaded: frozenset[str] = frozenset()  # what the fork server imports when it starts
_live_pools = 0  # pools made by `executor` and not shut down yet
_reaps_at_exit = False


class _Pool(ProcessPoolExecutor):
    """A ProcessPoolExecutor that counts itself among the live pools until it is shut down."""

    def __init__(self, *args, **kwargs) -> None:
        global _live_pools
        super().__init__(*args, **kwargs)
        _live_pools += 1
        self._counted = True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        global _live_pools
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if self._counted:
            self._counted = False
            _live_pools -= 1


def _reap_fork_server() -> None:
    """At exit, stop the fork server and wait for it, so that its CPU time and its workers'
    count as this process's children's, as `time` and the benchmarks read them."""
    stop = getattr(forkserver._forkserver, "_stop", None)  # CPython's, used by its own tests
    if stop is not None:
        stop()


def simple_queue() -> SimpleQueue:
    """A queue the pool's workers can write to (handed to them through `initargs`)."""
    return mp.get_context(CONTEXT).SimpleQueue()


def _init_worker(initializer: Callable[..., None] | None, initargs: tuple) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")  # the pool is the parallelism: more BLAS threads spin
    # The pool's owner, not the fork server (which a live worker keeps alive): its sentinel
    # becomes ready when the owner dies, however it dies.
    owner = mp.parent_process()

    def watch() -> None:
        owner.join()
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    if initializer is not None:
        initializer(*initargs)
