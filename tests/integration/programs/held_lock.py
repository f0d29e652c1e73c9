"""Deadlocks under fork only: a thread holds a lock while the child starts."""
import multiprocessing
import threading
import time

import helper  # a --file beside the script

LOCK = threading.Lock()


def take_the_lock():
    with LOCK:
        print("child took the lock", flush=True)


def hold_the_lock():
    with LOCK:
        time.sleep(600)


if __name__ == "__main__":
    print("default start method:", multiprocessing.get_start_method(), helper.NAME, flush=True)
    threading.Thread(target=hold_the_lock, daemon=True).start()
    time.sleep(0.3)
    proc = multiprocessing.Process(target=take_the_lock)
    proc.start()
    proc.join()
