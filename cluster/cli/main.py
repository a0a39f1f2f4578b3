"""The ``cadence`` command: its parser, and :func:`main`, which reports what every command may meet
the same way: a bad input (a :class:`CadenceError`) is named with what to do and exits 2, Ctrl-C
and SIGTERM exit 130 keeping what was done; any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence

from cadence.pipelines.errors import CadenceError, ParameterError

from .audio import add_evaluate, add_export, add_features, add_predict
from .bench import add_bench
from .counting import add_count, add_serve
from . import options
from .options import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from .training import add_train, add_tune


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cadence",
        description="Temporal machine learning on streams: count exercise repetitions in videos and camera feeds, "
                    "extract audio features of large corpora and train classifiers on them.")
    parser.add_argument("--verbose", action="store_true", help="keep MediaPipe's native log output on stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_count, add_serve, add_features, add_train, add_tune, add_evaluate, add_predict, add_export,
                add_bench):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        os.environ["CADENCE_VERBOSE"] = "1"  # the pose components keep MediaPipe's chatter too
    else:
        _quiet_native_logging()
    _stop_on_sigterm()
    if getattr(args, "json", False):
        _only_json_on_stdout()
    name = " ".join(filter(None, ("cadence", args.command, getattr(args, "bench", None))))
    try:
        return args.run(args)
    except KeyboardInterrupt as e:
        if isinstance(e, Terminated) and args.command == "serve":  # a supervisor's normal stop
            print(f"{name}: stopped (SIGTERM)", file=sys.stderr)
            return 0
        print(f"{name}: interrupted" + (f"; {e}" if e.args else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    except CadenceError as e:  # bad input, named with what to do: no traceback
        print(f"{name}: error: {_as_the_user_typed_it(e, _chosen(parser, args))}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command that ran."""
    while True:
        commands = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if commands is None:
            return parser
        parser = commands.choices[getattr(args, commands.dest)]


def _as_the_user_typed_it(error: CadenceError, parser: argparse.ArgumentParser) -> str:
    """A parameter out of range, named by the option that set it (--dropout, not dropout_probability)."""
    if isinstance(error, ParameterError):
        option = next((a.option_strings[-1] for a in parser._actions
                       if a.dest == error.parameter and a.option_strings), None)
        if option is not None:
            return f"{option}: {error.problem[len(error.parameter) + 1:]}"
    return str(error)


def _quiet_native_logging() -> None:
    """Send native (C++) stderr to /dev/null; Python's own messages keep the real stderr.

    MediaPipe and TensorFlow Lite print start-up chatter from C++ threads straight to file
    descriptor 2, which no Python setting reaches.  Ray's notice that token authentication is on
    (it stays on) is left out too.  ``--verbose`` keeps it all.
    """
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    sys.stderr.flush()
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(saved, "w", buffering=1)


class Terminated(KeyboardInterrupt):
    """SIGTERM: stops a command as Ctrl-C does (exit 130, what was done kept), and ``cadence serve``
    as a service manager expects of a normal stop (exit 0)."""


def _stop_on_sigterm() -> None:
    """SIGTERM (kill, a service manager, a container stopping) stops as cleanly as Ctrl-C: what was
    done is kept and reported (`connected` keeps it when Ray starts)."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise Terminated("terminated (SIGTERM)")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def _only_json_on_stdout() -> None:
    """With ``--json``, standard output carries the documented JSON lines and nothing else: file
    descriptor 1 is pointed at the real standard error, so what native libraries, Ray (its
    processes, and its messages printed in this one) or anything else writes there, ``print``
    included, lands on stderr; the JSON lines go through ``options.emit`` to a private copy of the
    real stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    real = os.dup(1)
    os.dup2(sys.stderr.fileno(), 1)
    options._json_out = os.fdopen(real, "w", buffering=1)



if __name__ == "__main__":
    sys.exit(main())
