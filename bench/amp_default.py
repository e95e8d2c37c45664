"""The default mixed-precision setting against float32 and forced bfloat16, side by side on this CPU.

    python bench/amp_default.py [--data-dir ../shared/data] [--experiment cnn-vgg-best] [--no-bf16]
                                [--with-forced] [--repeats 2]

Runs ``twinnet run EXPERIMENT --quick`` as a user would, once with the default (``amp=auto``), once
with ``--set amp=false`` and, with ``--with-forced``, once with ``--set amp=true`` (on a CPU without
native bfloat16 that is the emulated path, minutes for a few steps). ``--no-bf16`` makes twinnet
take the path of a CPU without bfloat16 (``TWINNET_CPU_BF16=0``) on any machine. Each command is
timed whole, repeats interleaved; prints the CPU, the best time of each, the training time the run
recorded, and the ratio of the default to float32, which should be about 1 where the CPU has no
bfloat16 (issue: the default must not take more than 1.5x float32 there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import twinnet  # noqa: F401,I001
from twinnet import hardware


def _run(experiment: str, data_dir: str, amp: str | None, env: dict, out: Path) -> tuple[float, float, bool]:
    cmd = [sys.executable, "-m", "twinnet", "run", experiment, "--quick", "--data-dir", data_dir, "--out", str(out)]
    if amp is not None:
        cmd += ["--set", f"amp={amp}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    return wall, summary["train_time_s"], summary["amp"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--experiment", default="cnn-vgg-best")
    p.add_argument("--no-bf16", action="store_true", help="take the path of a CPU without native bfloat16")
    p.add_argument("--with-forced", action="store_true", help="also time --set amp=true (slow without bf16)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if args.no_bf16:
        env["TWINNET_CPU_BF16"] = "0"
        os.environ["TWINNET_CPU_BF16"] = "0"
    print(f"CPU: {hardware.cpu_name()}, torch capability {hardware.cpu_capability()}, native bf16: "
          f"{hardware.cpu_bf16()}{' (forced off)' if args.no_bf16 else ''}, {hardware.cores()} cores")
    print(f"{args.experiment} --quick, best of {args.repeats} (repeats interleaved), whole command and training:")
    settings = {"default (amp=auto)": None, "float32 (amp=false)": "false"}
    if args.with_forced:
        settings["forced bf16 (amp=true)"] = "true"
    best: dict[str, tuple[float, float, bool]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            for name, amp in settings.items():
                wall, train, used = _run(args.experiment, args.data_dir, amp, env, Path(tmp) / f"{k}-{amp}")
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, train, used)
    for name, (wall, train, used) in best.items():
        print(f"  {name:24s} command {wall:7.1f} s   training {train:7.1f} s   bf16 autocast used: {used}")
    d, f = best["default (amp=auto)"], best["float32 (amp=false)"]
    print(f"default / float32: command {d[0] / f[0]:.2f}x, training {d[1] / f[1]:.2f}x")
    if args.with_forced:
        forced = best["forced bf16 (amp=true)"]
        print(f"forced bf16 / float32: command {forced[0] / f[0]:.2f}x, training {forced[1] / f[1]:.2f}x")


if __name__ == "__main__":
    main()
