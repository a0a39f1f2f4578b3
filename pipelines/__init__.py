"""cadence's components: plain Python, no Ray. Compose them with ``appending`` (or ``|``).

One small module per concept: ``base`` (the component model), ``temporal`` (Downsample,
SlidingWindow), ``video`` (readers, ``open_source``), ``pose`` (extraction, selection of a person and
of joints), ``counting`` (the counter), ``legs`` (its evidence of repetition), ``periods`` (tempo and
periodicity), ``repetitions`` (the counting job), ``drawing``, ``repcount`` (the RepCount format and
metrics), ``audio`` (AudioFeaturePrint), ``classifiers``, ``modelfile`` (pickle-free model files),
``files`` (atomic writes), ``events`` and ``errors``.
"""

from .audio import AudioBuffer, AudioFeature, AudioFeaturePrint, clip_vector, read_audio
from .base import (AnnotatedFeature, ComposedEstimator, ComposedTemporalTransformer, ComposedTransformer,
                   Component, Estimator, FunctionTransformer, Stream, StreamClassifier, TemporalSession,
                   TemporalTransformer, Transformer, compose)
from .classifier_models import Classification, ClassifierModel, TrainingProgress, TrainingState
from .classifiers import FullyConnectedNetworkClassifier, LogisticRegressionClassifier
from .counting import HumanBodyActionCounter
from .legs import CumulativeCount, Repetition
from .periods import HumanBodyActionPeriodPredictor, PeriodPrediction
from .errors import (AudioNotFoundError, CadenceError, CameraError, DataError, EmptyAudioError, EmptyVideoError, InputError,
                     InvalidAudioError, InvalidVideoError, ModelFileError, NoPersonError, ParameterError,
                     VideoNotFoundError)
from .events import Event, EventHandler
from .pose import JOINT_GROUPS, JOINT_NAMES, STRATEGIES, HumanBodyPoseExtractor, JointsSelector, Pose, PoseSelector
from .posetracking import TrackingPoseExtractor
from .repetitions import FeedCounting, PeopleInFrame, RepetitionCounting
from .results import CountResult, CountUpdate, FeedTally, RepetitionEvent
from .temporal import Downsample, SlidingWindow, Window
from .video import Frame, LiveStream, concatenate, is_camera, open_source, read_camera, read_video

__all__ = [
    # the component model
    "AnnotatedFeature", "Component", "ComposedEstimator", "ComposedTemporalTransformer", "ComposedTransformer",
    "Estimator", "FunctionTransformer", "Stream", "StreamClassifier", "TemporalSession", "TemporalTransformer",
    "Transformer", "compose",
    "Event", "EventHandler",
    # streams
    "Downsample", "SlidingWindow", "Window", "Frame", "LiveStream", "concatenate", "is_camera", "open_source",
    "read_camera", "read_video",
    # repetition counting
    "JOINT_GROUPS", "JOINT_NAMES", "STRATEGIES", "HumanBodyPoseExtractor", "TrackingPoseExtractor", "Pose",
    "PoseSelector", "JointsSelector",
    "HumanBodyActionCounter", "CumulativeCount", "Repetition", "HumanBodyActionPeriodPredictor", "PeriodPrediction",
    "RepetitionEvent", "CountResult", "CountUpdate", "FeedCounting", "FeedTally", "PeopleInFrame", "RepetitionCounting",
    # audio and classifiers
    "AudioBuffer", "AudioFeature", "AudioFeaturePrint", "clip_vector", "read_audio", "Classification",
    "ClassifierModel", "FullyConnectedNetworkClassifier", "LogisticRegressionClassifier", "TrainingProgress",
    "TrainingState",
    # errors
    "CadenceError", "InputError", "ParameterError", "DataError", "CameraError", "EmptyVideoError", "InvalidVideoError", "NoPersonError",
    "VideoNotFoundError", "AudioNotFoundError", "EmptyAudioError", "InvalidAudioError", "ModelFileError",
]
