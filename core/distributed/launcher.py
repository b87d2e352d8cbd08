"""``kaffa launch -n N script.py [args...]``: a thin wrapper over ``mpiexec``.

It finds ``mpiexec`` (the one installed next to this Python first: the ``mpich`` wheel of the
``distributed`` extra puts it there), starts N copies of ``python script.py args...`` with this
interpreter, sets the environment (unbuffered output, the collective timeout) and returns the
job's exit status. Plain ``mpiexec -n N python script.py`` works as well: kaffa.distributed finds
COMM_WORLD from the variables the launcher sets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from kaffa.distributed.comm import TIMEOUT_VAR


def find_mpiexec(explicit: str | None = None) -> str | None:
    """``explicit``, else ``mpiexec`` beside this interpreter (a venv's bin), else on PATH."""
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("mpiexec") or shutil.which("mpirun")


def command(
    n: int, target: Sequence[str], mpiexec: str, module: bool = False, extra: Sequence[str] = ()
) -> list[str]:
    """The mpiexec command line: N ranks, each ``python [-m] target...``."""
    py = [sys.executable, "-m", *target] if module else [sys.executable, *target]
    return [mpiexec, "-n", str(n), *extra, *py]


def environment(timeout: float | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # ranks' lines arrive as printed, not at exit
    if timeout is not None:
        env[TIMEOUT_VAR] = str(timeout)
    return env


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        print(f"kaffa launch: -n must be at least 1, got {args.n}", file=sys.stderr)
        return 2
    target = list(args.target)
    if target and target[0] == "--":
        target = target[1:]
    if not target:
        print("kaffa launch: give a script (or -m module) to run", file=sys.stderr)
        return 2
    mpiexec = find_mpiexec(args.mpiexec)
    if mpiexec is None:
        print(
            "kaffa launch: no mpiexec found; install the distributed extra (pip install kaffa[distributed]: "
            "mpi4py and the mpich wheel, which provides mpiexec) or pass --mpiexec PATH",
            file=sys.stderr,
        )
        return 2
    cmd = command(args.n, target, mpiexec, module=args.module, extra=args.mpiexec_args or ())
    if args.print_command:
        print(" ".join(cmd))
        return 0
    proc = subprocess.Popen(cmd, env=environment(args.timeout))
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # pass ^C on to the job, then wait for it to wind down
        proc.send_signal(signal.SIGINT)
        code = proc.wait()
    if code != 0:
        print(
            f"kaffa launch: the job of {args.n} rank(s) failed with exit status {code} "
            "(see the ranks' output above)",
            file=sys.stderr,
        )
    return code


def add_launch_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``launch`` subcommand on the ``kaffa`` command's subparsers."""
    p = sub.add_parser(
        "launch",
        help="run a script on N MPI ranks (a thin wrapper over mpiexec)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("-n", "--np", dest="n", type=int, required=True, help="number of ranks (processes)")
    p.add_argument("-m", dest="module", action="store_true", help="run the target as a module (python -m)")
    p.add_argument(
        "--timeout",
        type=float,
        help=f"seconds a collective waits for the other ranks before failing the job (sets {TIMEOUT_VAR})",
    )
    p.add_argument("--mpiexec", help="the mpiexec program to use (default: beside this Python, then PATH)")
    p.add_argument(
        "--mpiexec-arg",
        dest="mpiexec_args",
        action="append",
        metavar="ARG",
        help="an extra argument for mpiexec (repeat it; --mpiexec-arg=-hosts --mpiexec-arg=127.0.0.1)",
    )
    p.add_argument(
        "--print-command", action="store_true", help="print the mpiexec command instead of running it"
    )
    p.add_argument(
        "target", nargs=argparse.REMAINDER, help="script.py [args...] (or, with -m, module [args...])"
    )
    p.set_defaults(func=run)
