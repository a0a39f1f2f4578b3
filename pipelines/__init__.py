"""cadence components: plain Python, no Ray. Compose them with ``appending`` (or ``|``)."""

from .audio import AudioBuffer, AudioFeature, AudioFeaturePrint, read_audio
from .base import (AnnotatedFeature, ComposedEstimator, ComposedTemporalTransformer, ComposedTransformer,
                   Component, Estimator, FunctionTransformer, Stream, TemporalSession, TemporalTransformer,
                   Transformer, compose)
from .classifiers import (Classification, ClassifierModel, FullyConnectedNetworkClassifier,
                          LogisticRegressionClassifier)
from .counting import HumanBodyActionCounter
from .errors import (CadenceError, CameraError, EmptyVideoError, InputError, InvalidVideoError, NoPersonError,
                     VideoNotFoundError)
from .events import Event, EventHandler
from .pose import JOINT_NAMES, STRATEGIES, HumanBodyPoseExtractor, Pose, PoseSelector
from .temporal import Downsample, SlidingWindow, Window
from .video import Frame, concatenate, read_camera, read_video

__all__ = [
    "AnnotatedFeature", "AudioBuffer", "AudioFeature", "AudioFeaturePrint", "Classification", "ClassifierModel",
    "FullyConnectedNetworkClassifier", "LogisticRegressionClassifier", "read_audio", "CadenceError", "CameraError", "Component", "ComposedEstimator",
    "ComposedTemporalTransformer", "ComposedTransformer", "Downsample", "EmptyVideoError", "Estimator", "Event",
    "EventHandler", "Frame", "FunctionTransformer", "HumanBodyActionCounter", "HumanBodyPoseExtractor",
    "InputError", "InvalidVideoError", "JOINT_NAMES", "NoPersonError", "Pose", "PoseSelector", "STRATEGIES",
    "SlidingWindow", "Stream", "TemporalSession", "TemporalTransformer", "Transformer", "VideoNotFoundError",
    "Window", "compose", "concatenate", "read_camera", "read_video",
]
