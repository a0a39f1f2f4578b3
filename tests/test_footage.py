"""Real clips changed the ways footage is filmed, counted end to end by the real job (MediaPipe
included): the causes of the counter's misses on real videos kept apart (issue 33) that can be
made from the shared clips.  ``test_counter_stress.py`` changes dev poses the same ways; here the
pose model sees the change too, and so do the readers (a moving camera once read as cuts)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from .helpers import clip_images, cores, filmed_handheld, job_count, selected_poses, write_video

pytestmark = pytest.mark.mediapipe

RATES = [15.0, None]  # --rate 15, and every frame (the default)


def counts(tmp_path, images: list[np.ndarray]) -> dict:
    """The job's count of ``images`` filmed at 30 fps, at each of :data:`RATES` (counted at once, a core each)."""
    path = str(write_video(tmp_path / "filmed.mp4", images))
    return dict(zip(RATES, cores().map(job_count, [path] * len(RATES), RATES)))


def each_rate(expected: float) -> dict:
    return {rate: pytest.approx(expected, abs=0.5) for rate in RATES}


def against_the_light(images: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """A bright window behind the person: what is darker than the window turns to a near-black
    silhouette (15 % of its light), the rest to glare, with a camera's noise in poor light."""
    rng = np.random.default_rng(seed)
    lit = []
    for image in images:
        x = image.astype(np.float32) / 255
        x = 0.15 * x + 0.75 * (x.mean(axis=2, keepdims=True) > 0.55) + rng.normal(0, 0.02, x.shape)
        lit.append(np.clip(x * 255, 0, 255).astype(np.uint8))
    return lit


def plate_at_the_bottom(name: str, images: list[np.ndarray]) -> list[np.ndarray]:
    """A dark disc (a barbell plate, 1.2 torso lengths across) over the hips and knees while they
    are in the lowest 40 % of their travel: the body hidden at the bottom of each squat."""
    posed = selected_poses(name)
    poses = posed * (len(images) // len(posed))
    height, width = images[0].shape[:2]
    size = np.array([width, height])
    hips = np.array([np.nan if p is None else p.keypoints[23:25, 1].mean() for p in poses])
    low, high = np.nanmin(hips), np.nanmax(hips)
    torso = np.nanmedian([np.linalg.norm((p.keypoints[11:13, :2].mean(0) - p.keypoints[23:25, :2].mean(0)) * size)
                          for p in poses if p is not None])
    hidden = []
    for image, pose, hip in zip(images, poses, hips, strict=True):
        image = image.copy()
        if pose is not None and hip > high - 0.4 * (high - low):  # image y grows downward
            centre = tuple(int(v) for v in pose.keypoints[23:27, :2].mean(0) * size)
            cv2.circle(image, centre, int(0.6 * torso), (40, 40, 40), -1)
        hidden.append(image)
    return hidden


def test_push_ups_filmed_by_a_handheld_camera_count_as_from_a_tripod(tmp_path):
    """The two push-ups played three times over (six) through a camera that pans, zooms and shakes:
    the whole view moves from frame to frame, which once read as cuts that cut the set in pieces
    (4.6 at 15 poses a second).  Measured 6.0 at both rates."""
    handheld = filmed_handheld(clip_images("pushup_incorrect_001.mp4", 3))
    assert counts(tmp_path, handheld) == each_rate(6)


def test_push_ups_against_the_light_count_as_in_daylight(tmp_path):
    """A silhouette: measured 4.0 at both rates (4.0 and 4.1 in daylight)."""
    silhouette = against_the_light(clip_images("pushup_incorrect_001.mp4", 2))
    assert counts(tmp_path, silhouette) == each_rate(4)


def test_squats_with_the_hips_and_knees_hidden_at_the_bottom_count_as_seen(tmp_path):
    """The single squat played three times over with a plate over the hips and knees at each
    bottom: measured 3.0 at both rates (3.0 seen whole)."""
    name = "squat_correct_007.mp4"
    assert counts(tmp_path, plate_at_the_bottom(name, clip_images(name, 3))) == each_rate(3)
