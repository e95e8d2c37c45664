"""Thread counts on an idle machine and on one whose cores other processes keep busy.

    python bench/threads_under_load.py [--busy 0,1,2] [--steps 2000] [--repeats 1]

Times ``twinnet run palindrome --set length=5 --set steps=STEPS`` (the vanilla RNN in the NumPy
engine, small matrix products) as a whole command with ``--threads 1``, ``--threads 2`` (all
cores here) and with no ``--threads`` (twinnet's default: ``TWINNET_THREADS``, else the cores
other processes leave idle when the run starts), while 0, 1, ... processes spin on the cores.
Prints one row per load, the times side by side, the default's thread count and the ratios.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import twinnet  # noqa: F401,I001
from twinnet import hardware


def _spin() -> None:
    while True:
        pass


def _time(steps: int, threads: int | None, out: Path) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "twinnet", "run", "palindrome", "--set", "length=5", "--set", f"steps={steps}",
           "--out", str(out)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k != "TWINNET_THREADS"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return wall, json.loads((out / "env.json").read_text())["threads"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--busy", default="0,1,2", help="numbers of spinning processes to measure under")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    print(f"CPU: {hardware.cpu_name()} ({hardware.cpu_capability()}), {hardware.cores()} cores; "
          f"palindrome T=5, {args.steps} steps, NumPy engine, whole command, best of {args.repeats}")
    print(f"{'busy processes':>15} {'--threads 1':>12} {'--threads 2':>12} {'default':>12} {'(threads)':>10} "
          f"{'2 / 1':>7} {'default / 1':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for busy in (int(b) for b in args.busy.split(",")):
            spinners = [mp.Process(target=_spin, daemon=True) for _ in range(busy)]
            for s in spinners:
                s.start()
            time.sleep(1.0)  # let the load show in /proc/stat
            try:
                best: dict = {}
                for k in range(args.repeats):
                    for label, threads in (("1", 1), ("2", 2), ("default", None)):
                        wall, used = _time(args.steps, threads, Path(tmp) / f"{busy}-{k}-{label}")
                        if label not in best or wall < best[label][0]:
                            best[label] = (wall, used)
            finally:
                for s in spinners:
                    s.terminate()
            one, two, default = best["1"][0], best["2"][0], best["default"][0]
            print(f"{busy:>15} {one:>11.1f}s {two:>11.1f}s {default:>11.1f}s {best['default'][1]:>10} "
                  f"{two / one:>6.2f}x {default / one:>11.2f}x", flush=True)


if __name__ == "__main__":
    main()
