"""The real `mmsent` command line, run two ways.

`mmsent(...)` calls `mmsent.cli.main(argv)` in this process, as `python -m mmsent` does after its
imports: the same parser, settings checks, files and exit status, without paying Python's, torch's
and transformers' imports (seconds) again for every call. `mmsent_process(...)` starts a real process,
for the tests where the process boundary is what is tested: signals, resource limits, locks between
processes, torchrun, what a fresh interpreter imports.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    """The test's environment without SageMaker's variables (a job's would redirect every folder), plus `env`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SM_")} | (env or {})


def mmsent(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`mmsent ARGS` through main(argv) in this process: its exit status, stdout and stderr, as a process
    would give them (argparse's exits and a bug's traceback, exit 1, included). `env` and `cwd` hold for
    the call only."""
    from mmsent.cli import main

    saved_environ, saved_cwd = dict(os.environ), os.getcwd()
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(_environment(env))
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = main(list(args))
            except SystemExit as exit:  # argparse's --help, --version and usage errors
                status = exit.code if isinstance(exit.code, int | None) else (print(exit.code, file=sys.stderr) or 1)
            except Exception:  # a bug: the interpreter would print its traceback and exit 1
                traceback.print_exc()
                status = 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
    return subprocess.CompletedProcess(["mmsent", *args], status or 0, stdout.getvalue(), stderr.getvalue())


def mmsent_process(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                   **options) -> subprocess.CompletedProcess:  # fmt: skip
    """`python -m mmsent ARGS` in a new process (`options` go to subprocess.run, e.g. preexec_fn)."""
    # No timeout: on a busy 2-core machine a run is slow, not hung; CI's own limit catches a hang.
    return subprocess.run([sys.executable, "-m", "mmsent", *args], capture_output=True, text=True,
                          env=_environment(env), cwd=cwd, **options)  # fmt: skip


def status_and_stderr(args: list[str]) -> tuple[int, str]:
    """`mmsent ARGS` in this process: its exit status (argparse's own errors included) and stderr."""
    result = mmsent(*args)
    return result.returncode, result.stderr
