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
from cadence.pipelines.repetitions import STRIDE, RepetitionCounting

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


def add_windows(parser: argparse.ArgumentParser, stride_default: str = f"{STRIDE}, or the window if shorter") -> None:
    parser.add_argument("--window", type=positive, default=default(RepetitionCounting, "window"),
                        help="poses per counting window (default %(default)s)")
    parser.add_argument("--stride", type=positive, default=None,
                        help=f"poses between window starts (default: {stride_default})")


def add_detect_every(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detect-every", type=positive, default=default(RepetitionCounting, "detection_interval"),
                        metavar="K", dest="detection_interval",
                        help="run the person detector on the first frame of every K and track the people found "
                             "in between, so a new person is found within K frames (default %(default)s; "
                             "1: the detector on every frame, about 1.4x slower on one person)")


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
