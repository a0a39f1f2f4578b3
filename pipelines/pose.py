"""Human body poses: the :class:`Pose` record, MediaPipe extraction, and :class:`PoseSelector`."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from .base import Transformer
from .errors import ParameterError
from .params import Interval, Names, OneOf
from .video import Frame

if os.environ.get("CADENCE_VERBOSE") != "1":  # MediaPipe 0.10.14 reads every result with a deprecated protobuf call
    warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated", category=UserWarning)

# MediaPipe BlazePose's 33 landmarks, in model order.
JOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

# Bones drawn between joints (MediaPipe's body connections, face left out).
SKELETON: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_hip", "right_hip"), ("left_hip", "left_knee"),
    ("left_knee", "left_ankle"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"), ("right_ankle", "right_heel"),
    ("right_heel", "right_foot_index"),
)


@dataclass(frozen=True, eq=False)
class Pose:
    """One person's 33 joints: ``keypoints[j] = (x, y, z, confidence)``.

    x and y are normalised to the image (0..1, y downwards), z is MediaPipe's relative depth, and
    confidence is the landmark's visibility (0..1).  ``shot`` is the shot of the frame it was seen
    in (:attr:`~.video.Frame.shot`): poses of two shots are of two views, maybe two people.
    """

    keypoints: np.ndarray
    shot: int = 0

    def __post_init__(self) -> None:
        k = np.asarray(self.keypoints, dtype=np.float32)
        if k.shape != (len(JOINT_NAMES), 4):
            raise ValueError(f"Pose: keypoints must have shape (33, 4), got {k.shape}")
        object.__setattr__(self, "keypoints", k)

    def joint(self, name: str) -> np.ndarray:
        """``(x, y, z, confidence)`` of one joint by name (see ``JOINT_NAMES``)."""
        return self.keypoints[JOINT_INDEX[name]]

    @property
    def confidence(self) -> float:
        return float(self.keypoints[:, 3].mean())

    def confident(self, threshold: float = 0.2) -> np.ndarray:
        """Mask of the joints whose confidence reaches ``threshold``."""
        return self.keypoints[:, 3] >= threshold

    def bounding_box(self, threshold: float = 0.0) -> tuple[float, float, float, float] | None:
        """``(x0, y0, x1, y1)`` around the confident joints, or None if no joint is confident."""
        mask = self.confident(threshold)
        if not mask.any():
            return None
        xy = self.keypoints[mask, :2]
        return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pose) and self.shot == other.shot and np.array_equal(self.keypoints, other.keypoints)

    __hash__ = None  # type: ignore[assignment]


def box_overlap(a: tuple, b: tuple) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def deduplicated(poses: list[Pose], overlap: float = 0.6) -> list[Pose]:
    """Drop near-duplicate detections of one person, keeping the most confident of each group."""
    kept: list[Pose] = []
    for pose in sorted(poses, key=lambda p: -p.confidence):
        box = pose.bounding_box()
        if box is None or all(box_overlap(box, k.bounding_box()) < overlap for k in kept):
            kept.append(pose)
    return kept


@functools.cache
def _pose_landmarker_bundle() -> bytes:
    """A MediaPipe Tasks bundle built in memory from the two models the mediapipe wheel ships.

    The wheel's ``.tflite`` files lack the image-normalisation metadata ``PoseLandmarker`` needs,
    so it is added here with MediaPipe's own metadata writer: nothing is downloaded.
    """
    import mediapipe
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, model_asset_bundle_utils
    from mediapipe.tasks.python.metadata.metadata_writers import writer_utils

    root = os.path.dirname(mediapipe.__file__)
    models = {
        "pose_detector.tflite": (f"{root}/modules/pose_detection/pose_detection.tflite", 127.5, 127.5),
        "pose_landmarks_detector.tflite": (f"{root}/modules/pose_landmark/pose_landmark_full.tflite", 0.0, 255.0),
    }
    out = io.BytesIO()
    with model_asset_bundle_utils.AlignZipFile(out, mode="w", alignment=4) as bundle:
        for name, (path, mean, std) in models.items():
            if not os.path.exists(path):
                raise RuntimeError(f"the mediapipe wheel has no {path}: install mediapipe==0.10.14, "
                                   "whose wheel ships the pose models (newer releases do not)")
            with open(path, "rb") as f:
                model = f.read()
            writer = metadata_writer.MetadataWriter.create(bytearray(model))
            writer.add_general_info(name, "BlazePose, from the mediapipe wheel")
            writer.add_image_input(norm_mean=[mean], norm_std=[std])
            for output in writer_utils.get_output_tensor_names(model):
                writer.add_feature_output(name=output)
            bundle.writestr(name, bytes(writer.populate()[0]))
    return out.getvalue()


def new_landmarker(mode: str, people: int, minimum_confidence: float) -> Any:
    """A ``PoseLandmarker`` on the bundle above in ``mode`` ("IMAGE" or "VIDEO"), made without
    MediaPipe's start-up chatter on stderr (see :func:`_native_chatter_hidden`)."""
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    with _native_chatter_hidden():
        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=_pose_landmarker_bundle()),
            running_mode=getattr(vision.RunningMode, mode), num_poses=people,
            min_pose_detection_confidence=minimum_confidence, min_pose_presence_confidence=minimum_confidence)
        return vision.PoseLandmarker.create_from_options(options)


_STDERR_SWAP = threading.Lock()  # one swap at a time: two threads interleaving would lose stderr


@contextlib.contextmanager
def _native_chatter_hidden() -> Iterator[None]:
    """While a landmarker is made (a tenth of a second), what C++ writes to file descriptor 2 is
    dropped: MediaPipe, absl and TensorFlow Lite print eight lines of INFO and warnings there that
    no setting reaches ("GPU support is not available", "Created TensorFlow Lite XNNPACK delegate",
    "Feedback manager requires ...").  Python's ``sys.stderr`` keeps the real stderr meanwhile, so
    nothing this process means to say is lost, and threads making landmarkers at once take turns.
    With ``CADENCE_VERBOSE=1`` (the CLI's ``--verbose``) it is all kept.  (Protobuf's deprecation
    warning, which MediaPipe's result reading raises on every frame, is filtered at import.)"""
    import sys

    if os.environ.get("CADENCE_VERBOSE") == "1":
        yield
        return
    with _STDERR_SWAP:
        try:
            sys.stderr.flush()
            saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        except (OSError, ValueError, AttributeError):  # no descriptor 2 (an embedding host): leave it
            yield
            return
        python_stderr = sys.stderr
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, closefd=True)
        os.dup2(devnull, 2)
        os.close(devnull)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sys.stderr.close()
            sys.stderr = python_stderr


def rgb_image(frame: Frame | np.ndarray, owner: str) -> np.ndarray:
    """The frame's BGR uint8 image as RGB, or a ValueError naming ``owner``."""
    image = frame.image if isinstance(frame, Frame) else frame
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{owner}: expected a Frame or a BGR uint8 image (H, W, 3)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # 6x faster than a reversed numpy view copied


def mediapipe_image(rgb: np.ndarray) -> Any:
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)


def poses_found(result: Any) -> list[Pose]:
    """A ``PoseLandmarkerResult`` as poses, near-duplicates dropped."""
    return deduplicated([Pose(np.array([(p.x, p.y, p.z, p.visibility) for p in person], dtype=np.float32))
                         for person in result.pose_landmarks])


def in_shot(poses: list[Pose], frame: Frame | np.ndarray) -> list[Pose]:
    """The poses found in ``frame``, given its shot (a bare image has none: shot 0)."""
    shot = frame.shot if isinstance(frame, Frame) else 0
    return [replace(pose, shot=shot) for pose in poses] if shot else poses


# Defaults shared by the components that take them, declared here once.
MAXIMUM_PERSON_COUNT = 4  # people posed in a frame
MINIMUM_CONFIDENCE = 0.5  # MediaPipe's detection, presence and tracking confidence
CONFIDENCE_THRESHOLD = 0.2  # a joint counts towards choosing and tracking people at this confidence


class PerThread:
    """A component's MediaPipe graphs, one set per thread that uses it (graphs must not be shared
    across threads): made by ``make`` on a thread's first use, and closed by ``close`` once that
    thread has ended, so a pipeline runs with ``for`` and ``async for`` (a new worker thread each
    run) any number of times, and threads come and go without leaking graphs."""

    def __init__(self, make: Callable[[], Any], close: Callable[[Any], None]):
        self._make, self._close = make, close
        self._values: dict[int, tuple[threading.Thread, Any]] = {}
        self._lock = threading.Lock()

    def get(self) -> Any:
        me = threading.current_thread()
        with self._lock:
            ended = [k for k, (thread, _) in self._values.items() if not thread.is_alive() or k == me.ident
                     and thread is not me]
            gone = [self._values.pop(k)[1] for k in ended]
            known = self._values.get(me.ident)
        for value in gone:
            self._close(value)
        if known is not None:
            return known[1]
        value = self._make()
        with self._lock:
            self._values[me.ident] = (me, value)
        return value

    def close(self) -> None:
        """Close every thread's graphs (a thread that uses the component again makes new ones)."""
        with self._lock:
            values, self._values = [v for _, v in self._values.values()], {}
        for value in values:
            self._close(value)


class HumanBodyPoseExtractor(Transformer):
    """Finds every person in a frame: a list of :class:`Pose`, possibly empty.

    MediaPipe's ``PoseLandmarker`` runs in IMAGE mode: the person detector runs on every frame, so
    people entering the scene are found at once, there are no timestamps to keep increasing, and
    ``applied`` gives the same output for the same frame whatever came before.  Each extractor owns
    landmarker per thread that uses it, created on first use there.
    """

    _parameter_constraints = {"maximum_person_count": [Interval(int, 1, 16)],
                              "minimum_confidence": [Interval(float, 0, 1)]}

    def __init__(self, *, maximum_person_count: int = MAXIMUM_PERSON_COUNT,
                 minimum_confidence: float = MINIMUM_CONFIDENCE):
        self.maximum_person_count = maximum_person_count
        self.minimum_confidence = minimum_confidence
        self._landmarkers = PerThread(self._new_landmarker, lambda landmarker: landmarker.close())

    def _new_landmarker(self) -> Any:
        self.check_params()
        return new_landmarker("IMAGE", self.maximum_person_count, self.minimum_confidence)

    def applied(self, frame: Frame | np.ndarray) -> list[Pose]:
        return in_shot(self.poses_in(rgb_image(frame, type(self).__name__)), frame)

    def poses_in(self, rgb: np.ndarray) -> list[Pose]:
        """Everyone in an RGB image (a frame already converted by :func:`rgb_image`)."""
        return poses_found(self._landmarkers.get().detect(mediapipe_image(rgb)))

    def close(self) -> None:
        self._landmarkers.close()

    def __getstate__(self) -> dict:
        # A landmarker cannot travel to another process; the copy makes its own on first use.
        return {k: v for k, v in self.__dict__.items() if k != "_landmarkers"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._landmarkers = PerThread(self._new_landmarker, lambda landmarker: landmarker.close())


def _bounding_box_area(xy: np.ndarray) -> float:
    return float(np.prod(xy.max(axis=0) - xy.min(axis=0)))


# Each strategy scores a pose from its confident joints' (x, y); the highest score is selected.
_STRATEGIES = {
    "maximum_bounding_box_area": _bounding_box_area,
    "highest_joint_location": lambda xy: -float(xy[:, 1].min()),  # image y grows downwards
    "lowest_joint_location": lambda xy: float(xy[:, 1].max()),
    "leftmost_joint_location": lambda xy: -float(xy[:, 0].min()),
    "rightmost_joint_location": lambda xy: float(xy[:, 0].max()),
}
STRATEGIES: tuple[str, ...] = tuple(_STRATEGIES)  # the first is the default


class PoseSelector(Transformer):
    """Picks one person's pose out of the people in a frame, or None when nobody qualifies.

    Only joints at or above ``confidence_threshold`` count towards a strategy.

    >>> import numpy as np
    >>> near, far = (Pose(np.c_[np.random.default_rng(0).uniform(0, size, (33, 2)), np.ones((33, 2))])
    ...              for size in (0.6, 0.2))
    >>> PoseSelector().applied([far, near]) is near  # the largest bounding box
    True
    """

    _parameter_constraints = {"strategy": [OneOf(STRATEGIES)], "confidence_threshold": [Interval(float, 0, 1)]}

    def __init__(self, *, strategy: str = STRATEGIES[0], confidence_threshold: float = CONFIDENCE_THRESHOLD):
        self.strategy = strategy
        self.confidence_threshold = confidence_threshold

    def applied(self, poses: list[Pose]) -> Pose | None:
        score = _STRATEGIES.get(self.strategy)
        if score is None:
            self.check_params()
        best, best_score = None, -np.inf
        for pose in poses:
            mask = pose.confident(self.confidence_threshold)
            if not mask.any():
                continue
            s = score(pose.keypoints[mask, :2])
            if s > best_score:
                best, best_score = pose, s
        return best


# Groups of joints the command line accepts besides single names (``--joints arms``).
JOINT_GROUPS: dict[str, tuple[str, ...]] = {
    "face": JOINT_NAMES[:11],  # nose, eyes, ears, mouth
    "arms": JOINT_NAMES[11:23],  # shoulders, elbows, wrists and hands
    "legs": JOINT_NAMES[25:],  # knees, ankles, heels and feet
    "torso": ("left_shoulder", "right_shoulder", "left_hip", "right_hip"),
    "upper_body": JOINT_NAMES[:23],  # above the hips: face and arms
    "lower_body": JOINT_NAMES[23:],  # the hips and the legs
}


def joint_names(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Joint names from names and group names (``"arms,nose"`` or ``["arms", "nose"]``)."""
    items = [part.strip() for part in spec.split(",")] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in filter(None, items):
        if item in JOINT_GROUPS:
            names += JOINT_GROUPS[item]
        elif item in JOINT_INDEX:
            names.append(item)
        else:
            raise ValueError(f"unknown joint or group {item!r}: choose from the groups {', '.join(JOINT_GROUPS)} "
                             f"or the joints {', '.join(JOINT_NAMES)}")
    return tuple(dict.fromkeys(names))


class JointsSelector(Transformer):
    """Keeps some joints of a pose and leaves the others out of what comes after it.

    Give ``selected_joints`` (only these count) or ``ignored_joints`` (all but these), as joint or
    group names (see ``JOINT_GROUPS``): an arm exercise counted on the arms alone, or a jittering
    face left out.  A joint left out has NaN coordinates and confidence, so the counter and the
    period predictor see no motion in it and drawing skips it.  ``None`` passes through, and so
    does every joint when neither list is given.

    >>> import numpy as np
    >>> arms = JointsSelector(selected_joints=["arms"]).applied(Pose(np.ones((33, 4), np.float32)))
    >>> int(np.isnan(arms.keypoints[:, 0]).sum())  # 33 joints, 12 of them the arms'
    21
    """

    _parameter_constraints = {"selected_joints": [Names(), None], "ignored_joints": [Names(), None]}

    def __init__(self, *, selected_joints: Sequence[str] | None = None,
                 ignored_joints: Sequence[str] | None = None):
        self.selected_joints = selected_joints
        self.ignored_joints = ignored_joints

    def _check_relations(self) -> None:
        if self.selected_joints is not None and self.ignored_joints is not None:
            raise ParameterError(type(self).__name__, "selected_joints", "and ignored_joints cannot both be given",
                                 "give the joints to keep or those to leave out")
        try:
            left_out = self._left_out()
        except ValueError as e:
            given = "selected_joints" if self.selected_joints is not None else "ignored_joints"
            raise ParameterError(type(self).__name__, given, f"must be joint or group names: {e}") from None
        if left_out.all():
            raise ParameterError(type(self).__name__, "selected_joints" if self.selected_joints is not None
                                 else "ignored_joints", "leaves no joint to count on")

    def _mask(self) -> np.ndarray:
        """The joints left out, checked and worked out once per selection (not once per pose)."""
        key = tuple(tuple(v) if isinstance(v, (list, tuple)) else v
                    for v in (self.selected_joints, self.ignored_joints))
        cached = self.__dict__.get("_cached_mask")
        if cached is None or cached[0] != key:
            self.check_params()
            cached = self._cached_mask = (key, self._left_out())
        return cached[1]

    def _left_out(self) -> np.ndarray:
        if self.selected_joints is None and self.ignored_joints is None:
            return np.zeros(len(JOINT_NAMES), bool)
        names = joint_names(self.selected_joints if self.selected_joints is not None else self.ignored_joints)
        listed = np.isin(np.arange(len(JOINT_NAMES)), [JOINT_INDEX[n] for n in names])
        return ~listed if self.selected_joints is not None else listed

    def applied(self, pose: Pose | None) -> Pose | None:
        if pose is None:
            return None
        keypoints = pose.keypoints.copy()
        keypoints[self._mask()] = np.nan
        return replace(pose, keypoints=keypoints)
