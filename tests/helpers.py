"""Helpers the tests share: the real data in ../shared/data (a test skips when it is absent), clips
and corpora made from it, and running the ``cadence`` command as a user does."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CADENCE_DATA", ROOT.parent / "shared" / "data"))
VIDEOS = DATA / "videos"
REPCOUNT = DATA / "repcount-dev"
FSDD = DATA / "fsdd" / "recordings"


@functools.cache
def cores() -> ProcessPoolExecutor:
    """A process on each core, for a test whose work is many parts of one thread each (counting
    each dev sequence, posing each re-encoding of a clip): half the wall time on CI's two cores.
    Spawned, not forked: by then this process may hold Ray's or MediaPipe's threads.  Shut down
    at the end of the session (conftest.py)."""
    return ProcessPoolExecutor(os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn"))


def job_count(path: str, rate: float | None) -> float:
    """The counting job's count of a video file posed at ``rate`` (a function a pool of processes can run)."""
    from cadence import RepetitionCounting, read_video

    return RepetitionCounting(rate=rate).run(read_video(path)).count


def video(name: str) -> Path:
    path = VIDEOS / name
    if not path.exists():
        pytest.skip(f"shared clip {path} is absent")
    return path


@functools.cache
def selected_poses(name: str, strategy: str = "maximum_bounding_box_area", step: int = 1) -> tuple:
    """The selected pose per frame posed of a shared clip (one in ``step``, as the job poses at its
    rate), from real MediaPipe with the job's default extractor (people tracked between
    detections), extracted once per run."""
    from cadence import PoseSelector, RepetitionCounting, read_video

    extractor, selector = RepetitionCounting().extractor(), PoseSelector(strategy=strategy)
    try:
        frames = read_video(video(name)).frames(0, step)
        return tuple(selector.applied(people) for people in extractor.applied(frames))
    finally:
        extractor.close()


@functools.cache
def inline_count(path) -> float:
    """The count of the default job on a video in this process, to compare the actor pipeline's with."""
    from cadence import RepetitionCounting

    return job_count(path, RepetitionCounting.rate)


def write_video_cut_short(path: Path) -> Path:
    """A real squat clip re-encoded as MJPG and cut at 60 % of its bytes: it opens, then decoding
    stops part way while its header still promises every frame."""
    import cv2

    from cadence import read_video

    whole = path.with_name(f"whole-{path.name}")
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for frame in read_video(video("squat_correct_007.mp4")):
        writer.write(cv2.resize(frame.image, (640, 360)))
    writer.release()
    path.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    return path


def write_video_played_again(path: Path, name: str, times: int = 3) -> Path:
    """A real clip played ``times`` times over in one video (MJPG at 30 fps): a set long enough
    for a live count to climb while it plays (the counter shows a set's first repetition with
    its second)."""
    return write_video(path, clip_images(name, times), codec="MJPG")


def clip_images(name: str, times: int = 1) -> list[np.ndarray]:
    """A shared clip's images, played ``times`` over (the same view: one shot, a set of its reps)."""
    from cadence import read_video

    return [frame.image for frame in read_video(video(name))] * times


def filmed_handheld(images: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """The images as a handheld camera would film them: a crop of 71 to 85 % of the view (a slow
    zoom) that drifts across it over seconds (a pan) and shakes by about 0.4 % of the frame from one
    frame to the next, stretched back to the frame's size."""
    rng = np.random.default_rng(seed)
    filmed = []
    for i, image in enumerate(images):
        height, width = image.shape[:2]
        t = i / 30
        share = 0.78 + 0.07 * np.sin(2 * np.pi * t / 7.0)
        centre = (0.5 + 0.08 * np.sin(2 * np.pi * t / 5.3) + 0.004 * rng.normal(),
                  0.5 + 0.05 * np.sin(2 * np.pi * t / 6.1) + 0.004 * rng.normal())
        left = np.clip(centre[0] * width - share * width / 2, 0, width - share * width)
        top = np.clip(centre[1] * height - share * height / 2, 0, height - share * height)
        crop = np.float32([[1 / share, 0, -left / share], [0, 1 / share, -top / share]])
        filmed.append(cv2.warpAffine(image, crop, (width, height)))
    return filmed


def write_video(path: Path, images: list[np.ndarray], fps: float = 30.0, codec: str = "mp4v") -> Path:
    """Images as a video (by default MPEG-4 part 2 in MP4, which OpenCV writes everywhere)."""
    height, width = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    for image in images:
        writer.write(image)
    writer.release()
    return path


def write_video_without_people(path: Path, frames: int = 20) -> Path:
    """A real video of trees: the left edge of the jumping-jack clip, where nobody stands."""
    from cadence import read_video

    background = next(iter(read_video(video("jumpingjack_correct_001.mp4")))).image[:, :240]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (240, 720))
    for i in range(frames):
        writer.write(np.ascontiguousarray(np.roll(background, i, axis=0)))
    writer.release()
    return path


def corpus(folder: Path, names: list[str], extra: str = "") -> Path:
    """A manifest over shared FSDD files (by relative path from a folder beside them)."""
    if not FSDD.exists():
        pytest.skip(f"{FSDD} is absent")
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = folder / name
        if not target.exists():
            target.symlink_to(FSDD / name)
    manifest = folder / "manifest.csv"
    lines = ["path,label,split"] + [f"{n},{n.split('_')[0]},{'test' if int(n.split('_')[2][:-4]) < 5 else 'train'}"
                                    for n in names]
    manifest.write_text("\n".join(lines) + "\n" + extra)
    return manifest


def names(count: int, start: int = 0) -> list[str]:
    """FSDD file names: ``count // 10`` recordings of each digit, spread over the six speakers."""
    speakers = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    return [f"{d}_{speakers[(d + i) % 6]}_{i}.wav" for i in range(start, start + count // 10) for d in range(10)]


def squatting_person(phase: np.ndarray, noise: float = 0.01, seed: int = 7, arms: np.ndarray | None = None) -> list:
    """A stick figure seen from the side squatting with ``cos(phase)``, one rep per 2*pi: ankles
    fixed, shins leaning forward, thighs going back toward level, the torso leaning in and the arms
    rising to the front (with ``cos(arms)`` instead, if given: another exercise at another tempo);
    every joint jittered by ``noise`` (about 1 % of the body's size, as MediaPipe's landmarks on a
    clear view)."""
    from cadence import Pose

    rng = np.random.default_rng(seed)
    poses = []
    for p, q in zip(phase, phase if arms is None else arms, strict=True):
        depth = 0.5 * (1 - np.cos(p))  # 0 standing, 1 at the bottom
        raised = 0.5 * (1 - np.cos(q))  # 0 arms down, 1 to the front

        def towards(start, length, degrees):  # a limb from ``start`` at an angle from straight up
            a = np.radians(degrees)
            return start + length * np.array([np.sin(a), -np.cos(a)])

        ankle = np.array([0.5, 0.9])
        knee = towards(ankle, 0.22, 35 * depth)
        hip = towards(knee, 0.22, -80 * depth)
        shoulder = towards(hip, 0.3, 35 * depth)
        elbow = towards(shoulder, 0.15, 180 - 90 * raised)
        wrist = towards(elbow, 0.14, 180 - 90 * raised)
        head = towards(shoulder, 0.1, 20 * depth)
        k = np.zeros((33, 4), np.float32)
        k[:, 3] = 1.0
        k[0:11, :2] = head + rng.normal(0, 0.01, (11, 2))  # the face's points around the head
        for side in (0, 1):  # left and right, one behind the other
            shift = np.array([0.01 * side, 0.0])
            k[11 + side, :2], k[13 + side, :2], k[15 + side, :2] = shoulder + shift, elbow + shift, wrist + shift
            k[17 + side:23:2, :2] = wrist + shift  # pinky, index, thumb
            k[23 + side, :2], k[25 + side, :2], k[27 + side, :2] = hip + shift, knee + shift, ankle + shift
            k[29 + side, :2], k[31 + side, :2] = ankle + shift + [-0.03, 0.02], ankle + shift + [0.06, 0.02]
        k[:, :2] += rng.normal(0, noise, (33, 2))
        poses.append(Pose(k))
    return poses


CADENCE = [sys.executable, "-m", "cadence"]  # the command line, as the installed `cadence` script runs it


def cadence(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CADENCE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], object], seconds: float, what: str, every: float = 0.25) -> object:
    """``check()``'s first truthy value within ``seconds`` (a generous bound: it only fails a stuck run)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


class RtspCamera:
    """A stand-in RTSP camera on a fixed loopback port (``cluster/bench/rtsp_camera.py``), behind a
    user name and password; ``loops`` times the clip for each client (None: forever); restartable.
    Killed, it goes down whole: the server and the ffmpeg sending each client's frames (its own
    process group), as a camera that loses power stops sending; an ffmpeg left behind would loop
    its clip, and take a core's share, until the machine stops."""

    def __init__(self, clip: Path, user: str = "door", password: str = "s3cret-Pa55", loops: int | None = None):
        self.clip, self.port, self.loops = clip, free_port(), loops
        self.credentials = (user, password)
        self.url = f"rtsp://{user}:{password}@127.0.0.1:{self.port}/live"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        user, password = self.credentials
        loops = [] if self.loops is None else ["--loops", str(self.loops)]
        self.process = subprocess.Popen([sys.executable, "-m", "cadence.cluster.bench.rtsp_camera", str(self.clip),
                                         "--port", str(self.port), "--user", user, "--password", password, *loops],
                                        stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert int(self.process.stdout.readline()) == self.port

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # the server and its ffmpeg senders
            self.process.wait()


class Camera:
    """An MJPEG camera on a fixed loopback port, looping a clip for every client; restartable."""

    def __init__(self, clip: Path):
        self.clip, self.port = clip, free_port()
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "cadence.cluster.bench.camera_server", str(self.clip), "--port", str(self.port),
                                         "--forever"], stdout=subprocess.PIPE, text=True)
        assert int(self.process.stdout.readline()) == self.port

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
