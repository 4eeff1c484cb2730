"""Run a command as a user would and time it from launch: the seconds until it prints
``first step done`` (``cs336 train`` prints it once its first training step has finished:
imports, data checks, building and compiling included), until its last line of output
(``done: ...`` for a run that completed) and until it exits (what follows the last line is
the interpreter's exit: atexit handlers, compile workers, CUDA teardown). Its output goes
to a log file; a JSON line with the times and the exit status is printed last.

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
    first_step = last_line = None
    with open(args.log, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if first_step is None and "first step done" in line:
                first_step = time.perf_counter() - start
            log.write(line)
            last_line = time.perf_counter() - start
        status = proc.wait()
    wall = time.perf_counter() - start
    exit_s = None if last_line is None else wall - last_line
    report = {"first_step_s": first_step, "last_line_s": last_line, "wall_s": wall}
    print(json.dumps({**report, "after_last_line_s": exit_s, "exit": status}))
    return status


if __name__ == "__main__":
    sys.exit(main())
