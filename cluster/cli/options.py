"""Options the commands share, declared once, and the types that check them.

An option's default comes from the library (the constructor or dataclass it configures) and its
``dest`` is that parameter's name, so a :class:`ParameterError` the library raises is reported
under the option's own name (see :func:`~cadence.cluster.cli.main.main`).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cadence.pipelines.errors import InputError
from cadence.pipelines.pose import joint_names
from cadence.pipelines.repetitions import STRIDE_SECONDS, RepetitionCounting

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def default(owner: type, name: str) -> Any:
    """The default of a dataclass field or a constructor parameter."""
    if dataclasses.is_dataclass(owner):
        found = {f.name: f for f in dataclasses.fields(owner)}[name]
        return found.default_factory() if found.default is dataclasses.MISSING else found.default
    return inspect.signature(owner).parameters[name].default


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def joints(text: str) -> tuple[str, ...]:
    try:
        return joint_names(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def layers(text: str) -> tuple[int, ...]:
    """A network's hidden layers, as 100 or 128x64 (units per layer)."""
    try:
        widths = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a network: give units per layer, as 100 or 128x64") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every layer needs at least one unit")
    return widths


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json``: the same in every command, a flag: standard output carries JSON and nothing else."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on standard output (nothing "
                                                            "else is printed there)")


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", metavar="ADDR", default=None,
                        help="join the Ray cluster at ADDR (default: $RAY_ADDRESS, else start Ray locally)")


def add_pose_actors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pose-actors", type=positive, default=None, metavar="N",
                        help="pose extraction actors on each node, shared by its feeds (default: one per CPU of "
                             "the node)")


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return value


def rate(text: str) -> float | None:
    """Frames posed a second: a number, or ``all`` (every frame)."""
    if text.strip().lower() == "all":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be frames a second (a number) or 'all', got {text!r}") from None


def add_windows(parser: argparse.ArgumentParser,
                stride_default: str = f"{STRIDE_SECONDS:g}, or the window if shorter") -> None:
    """The counting job's analysis rate and windows, in seconds (``--window``/``--stride``: the old
    form, in frames at 30 fps); :func:`counting_job` reads them."""
    parser.add_argument("--rate", type=rate, default=RepetitionCounting.rate, metavar="R|all",
                        help="pose at most R frames a second of each source, one frame in a whole step (a 30 fps "
                             "video at 15: every other frame; 24 and 25 fps: 12 and 12.5); the frames between are "
                             "never made images. 15 halves the cost on 30 fps sources and counts the RepCount dev "
                             "set within 0.01 MAE of every frame, but takes motion that repeats nothing for "
                             "repetitions more often (docs/benchmarks.md). Default: all, every frame")
    parser.add_argument("--window-seconds", type=seconds, default=default(RepetitionCounting, "window_seconds"),
                        metavar="S", help="seconds of poses per counting window (default %(default)s)")
    parser.add_argument("--stride-seconds", type=seconds, default=None, metavar="S",
                        help=f"seconds between counts (default: {stride_default}); whole half-seconds give "
                             "the same counts, only more or fewer of them")
    parser.add_argument("--window", type=positive, default=None, metavar="FRAMES",
                        help="the old form of --window-seconds, in frames at 30 fps (90 = 3 s)")
    parser.add_argument("--stride", type=positive, default=None, metavar="FRAMES",
                        help="the old form of --stride-seconds, in frames at 30 fps (15 = 0.5 s)")


def add_detect_every(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detect-every", type=seconds, default=default(RepetitionCounting, "detection_seconds"),
                        metavar="S", dest="detection_seconds",
                        help="run the person detector on the first frame posed in every S seconds and track the "
                             "people found in between, so a new person is found within S seconds whatever the "
                             "rate (default %(default)s; 0: the detector on every frame posed, about 1.4x slower on "
                             "one person)")


def counting_job(args: argparse.Namespace, **settings: Any) -> RepetitionCounting:
    """The counting job of the options :func:`add_windows` (and :func:`add_detect_every`, where
    given) declared, with ``settings``, checked."""
    window = args.window_seconds if args.window is None else args.window / 30
    stride = args.stride_seconds if args.stride is None else args.stride / 30
    detection = getattr(args, "detection_seconds", default(RepetitionCounting, "detection_seconds"))
    return RepetitionCounting(window_seconds=window, stride_seconds=stride, rate=args.rate,
                              detection_seconds=detection, **settings).check_params()


def add_data(parser: argparse.ArgumentParser, holding: str) -> None:
    parser.add_argument("--data", metavar="DIR", default=os.environ.get("CADENCE_DATA"),
                        help=f"the data folder holding {holding} (default: $CADENCE_DATA)")


def add_figures(parser: argparse.ArgumentParser) -> None:
    """A benchmark's outputs: ``--json`` (as every command) and ``--out FILE`` for the figures."""
    add_json(parser, "the figures")
    parser.add_argument("--out", metavar="FILE.json", help="also write the figures as JSON to FILE.json")


def data_folder(args: argparse.Namespace, holding: str) -> Path:
    """--data (or $CADENCE_DATA), checked to hold what the benchmark reads."""
    if not args.data:
        raise InputError("--data", "is needed", f"give the folder holding {holding}, or set CADENCE_DATA")
    if not (Path(args.data) / holding).is_dir():
        raise InputError(args.data, f"holds no {holding}", "give --data the folder that does")
    return Path(args.data)


def report(args: argparse.Namespace, figures: dict, lines: Callable[[dict], list[str]] | None = None) -> None:
    """A benchmark's figures: JSON with --json, else ``lines(figures)`` (or key: value lines); and to --out."""
    if args.json:
        emit(json.dumps(figures))
    else:
        for line in (lines(figures) if lines else [f"{k}: {v}" for k, v in figures.items()]):
            print(line)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))


_json_out = None  # with --json: the real standard output, which nothing but emit() writes to


def emit(line: str) -> None:
    """One line of a command's documented output: with ``--json`` on the real standard output, which
    nothing else reaches (see ``main._only_json_on_stdout``); else as ``print`` writes it."""
    print(line, file=_json_out or sys.stdout, flush=True)


def note(command: str, message: str) -> None:
    """A line for the person at the terminal (standard error)."""
    print(f"cadence {command}: {message}", file=sys.stderr, flush=True)
