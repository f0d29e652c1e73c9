"""No __main__ guard: starts a child at module level."""
import multiprocessing


def work():
    print("child ran", flush=True)


print("default start method:", multiprocessing.get_start_method(), flush=True)
proc = multiprocessing.Process(target=work)
proc.start()
proc.join()
raise SystemExit(proc.exitcode)
