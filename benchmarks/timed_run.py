"""Run a command as a user would and time it from launch: the seconds until it prints
``first step done`` (``cs336 train`` prints it once its first training step has finished:
imports, data checks, building and compiling included) and until it exits. Its output
goes to a log file; a JSON line with both times and the exit status is printed last.

    python benchmarks/timed_run.py --log run.log -- cs336 train configs/2024/tinystories.toml
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", required=True, help="where the command's output goes")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    start = time.perf_counter()
    first_step = None
    with open(args.log, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if first_step is None and "first step done" in line:
                first_step = time.perf_counter() - start
            log.write(line)
        status = proc.wait()
    wall = time.perf_counter() - start
    print(json.dumps({"first_step_s": first_step, "wall_s": wall, "exit": status}))
    return status


if __name__ == "__main__":
    sys.exit(main())
