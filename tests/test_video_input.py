"""Readers and every kind of bad input: a typed error naming the file and the problem."""

from __future__ import annotations

import asyncio
import os

import cv2
import numpy as np
import pytest

from cadence.pipelines import (CameraError, EmptyVideoError, InvalidVideoError, NoPersonError, VideoNotFoundError,
                       concatenate, read_camera, read_video)
from cadence.pipelines.repetitions import RepetitionCounting
from cadence.pipelines.shots import Shots
from cadence.pipelines.video import LiveStream

from .helpers import clip_images, filmed_handheld, video, write_video_cut_short, write_video_without_people


def test_read_video_yields_indexed_timestamped_frames():
    stream = read_video(video("squat_correct_007.mp4"))
    frames = list(stream)
    assert len(frames) == stream.frame_count == 75
    assert [f.index for f in frames[:3]] == [0, 1, 2]
    assert frames[30].timestamp == pytest.approx(30 / stream.fps)
    assert frames[0].image.shape == (stream.height, stream.width, 3) and frames[0].image.dtype == np.uint8
    assert len(list(stream)) == 75  # re-iterable


def test_async_for_over_a_video():
    async def count():
        return sum([1 async for _ in read_video(video("squat_correct_016.mp4"))])

    assert asyncio.run(count()) == 29


def test_concatenated_videos_are_one_continuous_stream():
    names = ["squat_correct_016.mp4", "squat_correct_013.mp4"]
    frames = list(concatenate(*(video(n) for n in names)))
    assert len(frames) == 29 + 48
    assert [f.index for f in frames] == list(range(77))
    assert np.all(np.diff([f.timestamp for f in frames]) > 0)
    assert [f.shot for f in frames] == [0] * 29 + [1] * 48  # another person in another place: a cut


@pytest.mark.parametrize("name", ["squat_correct_001.avi", "jumpingjack_correct_001.mp4", "pullup_correct_002.mp4",
                                  "pushup_incorrect_001.mp4"])
def test_a_clip_filmed_in_one_take_is_one_shot(name):
    """People moving, even jumping, change a frame's thumbnail far less than a cut does; the
    push-up take re-framed by its editor at frame 145 (its thumbnail changes by 22) is the same
    view moved."""
    assert {f.shot for f in read_video(video(name))} == {0}


@pytest.mark.parametrize("step", [1, 2, 3])
def test_a_handheld_camera_that_pans_zooms_and_shakes_films_one_shot(step):
    """The whole view moves between frames, by as much as a cut changes a thumbnail (here past
    ``Shots.CUT``), but it is the same view moved, every frame or one in two or three."""
    images = filmed_handheld(clip_images("pullup_correct_002.mp4"))[::step]
    thumbnails = [cv2.resize(image, (32, 18), interpolation=cv2.INTER_AREA).mean(axis=2) for image in images]
    assert max(np.abs(a - b).mean() for a, b in zip(thumbnails, thumbnails[1:])) > Shots.CUT
    shots = Shots()
    assert {shots.of(image) for image in images} == {0}


def test_a_cut_between_two_handheld_shots_is_still_a_cut():
    first, second = (filmed_handheld(clip_images(name), seed=seed)
                     for seed, name in enumerate(["squat_correct_013.mp4", "squat_correct_016.mp4"]))
    shots = Shots()
    assert [shots.of(image) for image in first + second] == [0] * len(first) + [1] * len(second)


def test_a_motion_jpeg_video_decodes_only_the_frames_kept(tmp_path, monkeypatch):
    """Every frame of Motion JPEG is a whole JPEG: the frames a step skips are never decoded, and
    the ones kept are the images FFmpeg's own decoder gives (within JPEG decoders' rounding)."""
    from cadence.pipelines import capture

    path = tmp_path / "squats.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 180))
    for frame in list(read_video(video("squat_correct_016.mp4")))[:12]:
        writer.write(cv2.resize(frame.image, (320, 180)))
    writer.release()
    decoded = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    by_ffmpeg = [decoded.read()[1] for _ in range(12)]
    decoded.release()
    decodes = []
    imdecode = cv2.imdecode
    monkeypatch.setattr(capture.cv2, "imdecode", lambda *a: decodes.append(1) or imdecode(*a))

    assert capture.Capture(str(path)).jpeg and not capture.Capture(video("squat_correct_016.mp4")).jpeg
    stream = read_video(path)  # (which decodes the first frame, to check the file)
    decodes.clear()
    frames = list(stream.frames(0, step=2))
    assert [f.index for f in frames] == [0, 2, 4, 6, 8, 10] and len(decodes) == 6
    for frame in frames:
        assert frame.image.shape == (180, 320, 3)
        assert np.abs(frame.image.astype(int) - by_ffmpeg[frame.index].astype(int)).mean() < 2


def test_shots_are_counted_at_each_cut_from_where_reading_starts():
    a, b = (next(iter(read_video(video(n)))).image for n in ("squat_correct_016.mp4", "pullup_correct_002.mp4"))
    shots = Shots()
    assert [shots.of(image) for image in (a, a, b, b, a)] == [0, 0, 1, 1, 2]
    names = ["squat_correct_016.mp4", "squat_correct_013.mp4"]
    assert {f.shot for f in concatenate(*(video(n) for n in names)).frames(start=40)} == {0}  # resumed in the second


def test_missing_file(tmp_path):
    with pytest.raises(VideoNotFoundError, match="nope.mp4: no such file"):
        read_video(tmp_path / "nope.mp4")


def test_a_folder_is_not_a_video(tmp_path):
    with pytest.raises(InvalidVideoError, match="is a folder"):
        read_video(tmp_path)


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(InvalidVideoError, match="notes.mp4: is not a video"):
        read_video(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_a_photo_named_mp4_is_not_a_video(tmp_path, suffix):
    """OpenCV opens a still image as a one-frame video: it is refused as what it is."""
    image = tmp_path / f"photo{suffix}"
    cv2.imwrite(str(image), np.full((120, 160, 3), 90, np.uint8))
    path = tmp_path / "photo.mp4"
    path.write_bytes(image.read_bytes())
    with pytest.raises(InvalidVideoError, match=f"still image \\({suffix[1:].upper().replace('JPG', 'JPEG')}\\)") as e:
        read_video(path)
    assert str(path) in str(e.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(EmptyVideoError, match="empty.mp4: is an empty file"):
        read_video(path)


def test_video_with_no_frames(tmp_path):
    path = tmp_path / "no_frames.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 64))
    writer.release()
    with pytest.raises(InvalidVideoError, match="no_frames.avi"):
        read_video(path)


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_corrupt_video(tmp_path, damage):
    data = video("squat_correct_007.mp4").read_bytes()
    n = len(data)
    broken = data[: n // 3] if damage == "truncated" else data[: n // 4] + bytes(n // 2) + data[3 * n // 4:]
    path = tmp_path / f"{damage}.mp4"
    path.write_bytes(broken)
    with pytest.raises(InvalidVideoError, match=f"{damage}.mp4"):
        read_video(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.mp4"
    path.write_bytes(video("squat_correct_016.mp4").read_bytes())
    path.chmod(0)
    with pytest.raises(InvalidVideoError, match="not readable"):
        read_video(path)


@pytest.mark.mediapipe
def test_video_with_no_person(tmp_path):
    path = write_video_without_people(tmp_path / "trees.avi")
    with pytest.raises(NoPersonError, match="trees.avi: no person was detected in any of its 20 frames"):
        RepetitionCounting().run(read_video(path), source=str(path))


def test_no_camera_on_this_machine():
    with pytest.raises(CameraError, match="camera 7: could not be opened"):
        read_camera(7)


def test_live_stream_drops_frames_a_slow_consumer_cannot_take_and_counts_them():
    import time
    from cadence.pipelines import Frame

    source = [Frame(np.zeros((2, 2, 3), np.uint8), i, i / 100) for i in range(50)]
    live = LiveStream(source, capacity=2, pace=True)
    got = []
    for frame in live:
        got.append(frame.index)
        time.sleep(0.03)  # three times slower than the 100 fps source
    assert live.dropped > 0 and live.dropped + live.delivered == 50
    assert got == sorted(got) and got[-1] == 49  # newest frames kept, in order


@pytest.mark.mediapipe
def test_a_video_cut_short_is_counted_as_far_as_it_decodes(tmp_path):
    """A container that promises more frames than decode: the frames there are counted, with a warning."""
    cut = write_video_cut_short(tmp_path / "cut.avi")
    stream = read_video(cut)
    result = RepetitionCounting().run(stream, source=str(cut))
    assert 0 < result.frames < stream.frame_count == 75
    (warning,) = result.warnings
    assert f"decoding stopped at frame {result.frames} of the 75" in warning and "cut.avi" in warning


@pytest.mark.parametrize("source, expected", [
    ("rtsp://admin:hunter2@10.0.0.7:554/stream1", "rtsp://admin:***@10.0.0.7:554/stream1"),
    ("http://cam:p%40ss@host/video.mjpg", "http://cam:***@host/video.mjpg"),
    ("rtsp://10.0.0.7/stream1", "rtsp://10.0.0.7/stream1"),  # nothing to hide
    ("rtsp://viewer@10.0.0.7/stream1", "rtsp://viewer@10.0.0.7/stream1"),  # a user without a password
    ("clips/me@gym.mp4", "clips/me@gym.mp4"), (0, 0),
    (["rtsp://a:b@h/x", "f.mp4"], ["rtsp://a:***@h/x", "f.mp4"]),
])
def test_a_source_is_shown_without_its_password(source, expected):
    from cadence.pipelines.video import shown

    assert shown(source) == expected
