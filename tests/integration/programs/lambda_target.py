"""A lambda as the Process target, behind the guard."""
import multiprocessing

if __name__ == "__main__":
    print("default start method:", multiprocessing.get_start_method(), flush=True)
    proc = multiprocessing.Process(target=lambda: print("child ran", flush=True))
    proc.start()
    proc.join()
    raise SystemExit(proc.exitcode)
