"""A thread sleeps in C with the GIL held (ctypes.PyDLL does not release it): the main thread
can never run Python again."""
import ctypes
import threading
import time


def hold_the_gil():
    ctypes.PyDLL(None).sleep(3600)  # PyDLL keeps the GIL across the call


if __name__ == "__main__":
    threading.Thread(target=hold_the_gil, name="gil-holder", daemon=True).start()
    time.sleep(0.5)
    print("never printed")
