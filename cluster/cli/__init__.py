"""The ``cadence`` command line, a thin layer over the library: ``main`` (the parser and how errors
are reported), ``options`` (what the commands share), and a module per command group: ``counting``
(count, serve), ``audio`` (features, evaluate, predict, export), ``training`` (train, tune) and
``bench``."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
