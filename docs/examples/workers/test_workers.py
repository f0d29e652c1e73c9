"""A small suite whose outcomes depend on the start method: `lab test docs/examples/workers`."""

import multiprocessing
import threading
import time

LOCK = threading.Lock()


def square(x):
    return x * x


def take_the_lock():
    with LOCK:
        pass


def hold_the_lock():
    with LOCK:
        time.sleep(60)


def test_pool_squares():
    """Passes under every start method: the worker function is importable."""
    with multiprocessing.Pool(2) as pool:
        assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]


def test_lambda_target():
    """Fails away from fork: a lambda cannot be pickled to a spawned child."""
    p = multiprocessing.Process(target=lambda: None)
    p.start()
    p.join()
    assert p.exitcode == 0


def test_lock_held_by_a_thread_at_fork():
    """Hangs under fork: the child is born with the lock held, by a thread it does not have."""
    threading.Thread(target=hold_the_lock, daemon=True).start()
    time.sleep(0.2)
    p = multiprocessing.Process(target=take_the_lock)
    p.start()
    p.join()
    assert p.exitcode == 0


def test_after_the_hang():
    """Runs in every run, the hung test's included: the suite goes on without it."""
    assert square(3) == 9
