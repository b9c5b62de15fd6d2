"""Several Python threads on one state: operations, callbacks and their
exceptions stay on their own thread."""

from __future__ import annotations

import threading

import numpy as np

import nnx_state as nnx


class Oops(Exception):
    pass


def test_threads_share_a_state():
    n_threads, rounds = 4, 150
    state = nnx.State({f"t{i}": {"w": nnx.Param(np.zeros(1)), "s": nnx.BatchStat(np.zeros(1))} for i in range(n_threads)})
    errors: list = []
    barrier = threading.Barrier(n_threads)

    def work(i: int) -> None:
        mine = f"t{i}"
        try:
            barrier.wait()
            for r in range(rounds):
                params = nnx.filter_state(state, lambda p, x: p[0] == mine and isinstance(x, nnx.Param))
                params[mine]["w"][...] += 1
                if i % 2:
                    try:  # this thread's callback fails; the others' must not notice
                        nnx.split_state(state, lambda p, x: (_ for _ in ()).throw(Oops(mine)))
                    except Oops as e:
                        assert str(e) == mine
                    else:
                        raise AssertionError("no exception")
                else:
                    parts = nnx.split_state(state, nnx.Param, ...)
                    assert len(nnx.to_flat_state(parts[0])) == n_threads
                state[mine]["extra"] = np.full(1, r)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(n_threads):
        assert state[f"t{i}"]["w"][...] == rounds
        assert state[f"t{i}"]["extra"][0] == rounds - 1
