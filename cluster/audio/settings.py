"""What a training job is told (:class:`TrainSettings`) and the classifiers it may train, by the
names the command line gives them; light to import, so every command reads its defaults here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cadence.pipelines.classifiers import FullyConnectedNetworkClassifier, LogisticRegressionClassifier

Classifier = LogisticRegressionClassifier | FullyConnectedNetworkClassifier
CLASSIFIERS: dict[str, type] = {"logreg": LogisticRegressionClassifier, "mlp": FullyConnectedNetworkClassifier}
# What stopping and the epoch count do; a resumed run may change them (they are not the model's identity).
STOPPING = ("maximum_iterations", "early_stop_iteration_count", "early_stopping_tolerance")


@dataclass
class TrainSettings:
    """A training job on a store: the classifier, whose own parameters say how it learns (epochs are
    its ``maximum_iterations``, patience its ``early_stop_iteration_count``, the shuffles' seed its
    ``random_seed``), and what only a job over a store has: chunks, checkpoints, the row level.

    >>> TrainSettings(LogisticRegressionClassifier(l2_penalty=0.01)).name
    'logreg'
    """

    classifier: Classifier = field(default_factory=FullyConnectedNetworkClassifier)
    chunk_size: int = 1024
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    resume: bool = False
    level: str = "clip"

    @property
    def name(self) -> str:
        """The classifier's name on the command line: logreg or mlp."""
        return next(name for name, kind in CLASSIFIERS.items() if isinstance(self.classifier, kind))

    def with_params(self, **params: object) -> TrainSettings:
        """These settings with some of the classifier's parameters changed, and checked."""
        copy = type(self.classifier)(**self.classifier.get_params())
        return replace(self, classifier=copy.set_params(**params))


# The classifier parameters cadence tune takes values to try for.
SEARCHED = ("l2_penalty", "hidden_unit_counts", "learning_rate", "dropout_probability")
# What it searches when given no values, by classifier.
DEFAULT_GRIDS = {
    "logreg": {"l2_penalty": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3]},
    "mlp": {"hidden_unit_counts": [(100,), (256,)], "learning_rate": [0.001, 0.003], "l2_penalty": [1e-4, 1e-3]},
}
