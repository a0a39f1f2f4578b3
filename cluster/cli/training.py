"""``cadence train`` and ``cadence tune``: classifiers on a feature store.

The classifier's options set its own parameters (each option's ``dest`` is the parameter's name),
with the classifier's own defaults: nothing here declares a setting again.
"""

from __future__ import annotations

import argparse
import json

from cadence.pipelines.classifiers import FullyConnectedNetworkClassifier
from cadence.pipelines.errors import InputError
from cadence.pipelines.storage import Location, check_writable_folder

from cadence.cluster.audio.settings import CLASSIFIERS, DEFAULT_GRIDS, SEARCHED, TrainSettings

from .options import emit, add_address, add_json, default, layers, note, positive

# option: (the mlp's parameter, its type, what it sets); logistic regression is fitted in one go and takes none
MLP_OPTIONS = {
    "--epochs": ("maximum_iterations", positive, "most epochs"),
    "--patience": ("early_stop_iteration_count", positive, "epochs without improvement before stopping"),
    "--hidden": ("hidden_unit_counts", layers, "the hidden layers, units per layer as 100 or 128x64"),
    "--batch-size": ("batch_size", positive, "rows per gradient step"),
    "--learning-rate": ("learning_rate", float, "Adam's step size"),
    "--dropout": ("dropout_probability", float, "share of hidden units dropped at each training step, 0..<1"),
    "--tolerance": ("early_stopping_tolerance", float, "how much an epoch must lower the best validation loss "
                                                      "to count as better"),
}


def _shown(parameter: str) -> str:
    value = default(FullyConnectedNetworkClassifier, parameter)
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _add_classifier(parser: argparse.ArgumentParser, searched: tuple[str, ...] = ()) -> None:
    """--store, --classifier, --seed, --l2 and the mlp's options; those setting a parameter in
    ``searched`` take several values."""
    parser.add_argument("--store", required=True, metavar="DIR", help="the feature store (or the folder holding it): a path or a URI")
    parser.add_argument("--classifier", choices=tuple(CLASSIFIERS), default=TrainSettings().name,
                        help="default %(default)s")
    parser.add_argument("--seed", type=int, default=None, dest="random_seed", metavar="N",
                        help="seeds initial weights and every shuffle (default "
                             f"{default(FullyConnectedNetworkClassifier, 'random_seed')})")
    several = "l2_penalty" in searched
    parser.add_argument("--l2", type=float, default=None, dest="l2_penalty", metavar="X", nargs="+" if several else None,
                        help=("L2 penalties per example to try" if several else
                              "L2 penalty per example (default: logreg chooses it on the validation rows, the "
                              "strongest within one standard error of the best, and says which; mlp takes "
                              f"{_shown('l2_penalty')})"))
    for option, (parameter, kind, what) in MLP_OPTIONS.items():
        many = parameter in searched
        metavar = "N[xN...]" if kind is layers else "N" if kind is positive else "X"
        parser.add_argument(option, type=kind, default=None, dest=parameter, nargs="+" if many else None, metavar=metavar,
                            help=f"mlp: {what}{' to try' if many else ''} (default {_shown(parameter)})")


def _options_of(parameters: tuple[str, ...]) -> str:
    options = {"l2_penalty": "--l2"} | {parameter: option for option, (parameter, _, _) in MLP_OPTIONS.items()}
    return ", ".join(options[p] for p in parameters)


def classifier_options(args: argparse.Namespace) -> dict:
    """The classifier parameters given on the command line (a list each for tune's searched ones),
    refusing the mlp's options for logistic regression."""
    given = {parameter: getattr(args, parameter) for parameter in ("random_seed", "l2_penalty",
                                                                   *(p for p, _, _ in MLP_OPTIONS.values()))
             if getattr(args, parameter, None) is not None}
    if args.classifier == "logreg":
        refused = [option for option, (parameter, _, _) in MLP_OPTIONS.items() if parameter in given]
        if refused:
            raise InputError("/".join(refused), "apply to the mlp only", "drop them, or --classifier mlp")
    return given


def add_train(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train", help="train a classifier on a feature store (no re-extraction), with early stopping and checkpoints",
        description="Train a classifier on the clip rows of a feature store made by 'cadence features'. The MLP is "
                    "trained in minibatch loops over chunks streamed from the store (memory follows --chunk-size, "
                    "not the corpus), shuffled per epoch from --seed, validated every epoch on the 'val' split (or "
                    "every tenth train file), and stopped after --patience epochs without improvement, keeping "
                    "the best model. logreg is fitted in one go.")
    _add_classifier(train)
    train.add_argument("--chunk-size", type=positive, default=default(TrainSettings, "chunk_size"),
                       help="rows read and updated at a time (default %(default)s)")
    train.add_argument("--checkpoint-dir", metavar="D",
                       help="write D/checkpoint.safetensors (atomically; D may be a URI such as s3://bucket/ckpt)")
    train.add_argument("--checkpoint-every", type=positive, default=default(TrainSettings, "checkpoint_every"),
                       metavar="E", help="epochs between checkpoints (default %(default)s)")
    train.add_argument("--resume", action="store_true", help="continue from D/checkpoint.safetensors")
    train.add_argument("--model", default="model.safetensors", metavar="OUT",
                       help="where to write the model, exactly this file, in safetensors with the extractor's "
                            "parameters and the labels as metadata (default %(default)s); the curve goes to "
                            "OUT-curve.png. A path or a URI (s3://bucket/models/digits.safetensors)")
    add_json(train, "the final metrics")
    train.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from cadence.cluster.audio.train import open_store, plot_curve, save_model, train

    classifier = CLASSIFIERS[args.classifier](**classifier_options(args)).check_params()
    check_writable_folder(args.model, "--model")
    settings = TrainSettings(classifier, chunk_size=args.chunk_size, checkpoint_dir=args.checkpoint_dir,
                             checkpoint_every=args.checkpoint_every, resume=args.resume)

    def on_epoch(event) -> None:
        m = event.metrics
        accuracy = "n/a" if m["validation_accuracy"] is None else f"{m['validation_accuracy']:.4f}"
        loss = "n/a" if m.get("validation_loss") is None else f"{m['validation_loss']:.4f}"
        note("train", f"epoch {event.item_count:3d}/{event.total_item_count}: loss {m['loss']:.4f}  "
                      f"validation loss {loss}  validation accuracy {accuracy}  ({m['seconds']:.1f} s)")

    store = open_store(args.store)
    try:
        result = train(store, settings, on_epoch)
    except KeyboardInterrupt:
        hint = f"--resume continues from {args.checkpoint_dir}" if args.checkpoint_dir else ""
        raise KeyboardInterrupt(*([hint] if hint else [])) from None
    path = save_model(args.model, result, store, settings)
    chosen = result.model.params.get("l2_validation_accuracy")
    if chosen:
        note("train", f"l2 penalty {result.model.params['chosen_l2_penalty']} chosen on the validation rows (the "
                      "strongest within one standard error of the best; accuracy by l2: "
                      f"{', '.join(f'{k} {v:.3f}' for k, v in chosen.items())})")
    if result.history:
        plot_curve(result.history, str(Location.of(path).beside("-curve.png")))
    metrics = result.metrics() | {"model": str(path)}
    if args.json:
        emit(json.dumps(metrics))
    else:
        shown = {k: "n/a" if metrics[k] is None else f"{metrics[k]:.4f}" for k in ("validation_accuracy", "test_accuracy")}
        print(f"{metrics['classifier']}: best epoch {metrics['best_epoch']} of {metrics['epochs']}, validation "
              f"accuracy {shown['validation_accuracy']}, test accuracy {shown['test_accuracy']} -> {path}")
    return 0


def add_tune(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser(
        "tune", help="search classifier settings as parallel Ray Tune trials on a feature store (no re-extraction)",
        description="Train one classifier per combination of the settings given, as Ray Tune trials on the "
                    "features already in the store (one CPU each, in parallel on every core of the local Ray or "
                    "of the cluster at --address, whose nodes must see the store at the same path), then write "
                    "the best (highest validation accuracy, then lowest validation loss) to --model and print a "
                    "table of every trial. Each trial is exactly a 'cadence train' with its settings; "
                    f"{_options_of(SEARCHED)} take the values to try; the grid is what they give (the "
                    "other settings keep their defaults), or when none is given, the default grid: logreg {DEFAULT_GRIDS['logreg']}; "
                    f"mlp {DEFAULT_GRIDS['mlp']}.")
    _add_classifier(tune, searched=SEARCHED)
    tune.add_argument("--model", default="best.safetensors", metavar="OUT",
                      help="where the best trial's model goes (default %(default)s); a URI lets trials on "
                           "every node write their models beside it")
    add_address(tune)
    add_json(tune, "the trials and the best")
    tune.set_defaults(run=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cadence.cluster.audio.tune import grid, trial_table, tune
    from cadence.cluster.runtime.connect import connected

    given = classifier_options(args)
    searched = set(SEARCHED)
    base = TrainSettings(CLASSIFIERS[args.classifier](**{k: v for k, v in given.items() if k not in searched}))
    values = {k: v for k, v in given.items() if k in searched}
    grid(base, values)  # every trial's settings checked before Ray starts

    def on_trial(trial) -> None:
        shown = "failed" if trial.error else f"validation accuracy {trial.validation_accuracy:.4f}"
        note("tune", f"trial {trial.settings}: {shown}")

    check_writable_folder(args.model, "--model")
    with connected(args.address) as cluster:
        note("tune", f"trials on {cluster['cpus']} CPUs ({cluster['address']})")
        result = tune(args.store, base, values, args.model, on_trial)
    if args.json:
        shown = lambda trial: {k: v for k, v in asdict(trial).items() if k != "model"}  # noqa: E731 (trial files are gone)
        emit(json.dumps({"best": shown(result.best), "model": result.model, "seconds": round(result.seconds, 2),
                          "cpus": result.cpus, "trials": [shown(t) for t in result.trials]}, default=list))
        return 0
    print(trial_table(result))
    print(f"best: {result.best.settings}, validation accuracy {result.best.validation_accuracy:.4f} -> {result.model} "
          f"({len(result.trials)} trials in {result.seconds:.1f} s on {result.cpus} CPUs)")
    return 0
