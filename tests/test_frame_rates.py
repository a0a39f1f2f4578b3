"""Counts do not depend on the frame rate a motion was filmed at: each shared clip, re-encoded here by
ffmpeg at 15, 24, 30 and 60 fps (frames dropped or repeated by time, as a camera set to that rate
would film them), counts within 0.25 of its 30 fps re-encoding, with every frame posed (the
default) and with 15 posed a second: every time span of the counter is in seconds.  (The reference is
re-encoded too: re-encoding alone moves MediaPipe's landmarks a little, and the single pull-up's
count with them, from 1.0 to 0.01.)"""

from __future__ import annotations

import subprocess

import pytest

from cadence import read_video

from .helpers import DATA, cores, job_count, video

pytestmark = [pytest.mark.mediapipe, pytest.mark.slow]

# one clip of each exercise, and a second squat from another container (AVI): the other single
# squats are the same case again, each costing minutes of the pose model on a slow CI machine
CLIPS = ["jumpingjack_correct_001.mp4", "plank_correct_005.mp4", "pullup_correct_002.mp4",
         "pushup_incorrect_001.mp4", "squat_correct_001.avi", "squat_correct_010.mp4"]
RATES = (15, 24, 30, 60)


def reencoded(source, fps: int, folder) -> str:
    """``source`` re-encoded at ``fps`` (MJPEG in AVI, high quality: the pose model sees the same images),
    once per ``folder``."""
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    out = folder / f"{source.stem}-{fps}fps.avi"
    if out.exists():
        return str(out)
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(source), "-filter:v", f"fps={fps}",
                    "-c:v", "mjpeg", "-q:v", "2", str(out)], check=True, timeout=120)
    return str(out)


@pytest.fixture(scope="module")
def encodings(tmp_path_factory):
    """A folder for the re-encoded clips, shared by both rates."""
    return tmp_path_factory.mktemp("encodings")


@pytest.mark.skipif(not (DATA / "videos").is_dir(), reason="shared clips absent")
@pytest.mark.parametrize("rate", [15.0, None])
@pytest.mark.parametrize("name", CLIPS)
def test_a_clip_counts_the_same_at_15_24_30_and_60_fps(name, rate, encodings):
    paths = [reencoded(video(name), fps, encodings) for fps in RATES]
    assert [read_video(path).fps for path in paths] == pytest.approx(RATES, rel=0.01)
    counts = dict(zip(RATES, cores().map(job_count, paths, [rate] * len(paths))))  # each posed on a core of its own
    assert all(abs(count - counts[30]) <= 0.25 for count in counts.values()), counts
