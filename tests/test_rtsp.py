"""RTSP, the protocol of IP cameras, read for real: a stand-in camera on loopback (RTSP with a user
name and password, Motion-JPEG over RTP made by ffmpeg), counted by ``cadence count --live`` and by
``cadence serve`` through a drop and a return; its password never shows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, RtspCamera, video

pytestmark = [pytest.mark.ray, pytest.mark.mediapipe]

CADENCE = [sys.executable, "-m", "cadence.cluster.cli"]


@pytest.fixture
def camera():
    pytest.importorskip("imageio_ffmpeg")  # its ffmpeg makes the camera's RTP
    camera = RtspCamera(video("squat_correct_007.mp4"), loops=3)
    camera.start()
    yield camera
    camera.kill()


def test_cadence_count_reads_an_rtsp_camera_and_never_shows_its_password(camera):
    password = camera.credentials[1]
    run = subprocess.run([*CADENCE, "count", camera.url, "--live", "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    (summary,) = [json.loads(line) for line in run.stdout.splitlines()]
    # the camera's frames reached the counter (how many it kept live depends on the machine)
    assert summary["frames_with_person"] > 0 and summary["frames"] + summary["frames_dropped"] > 100
    assert summary["source"] == f"rtsp://door:***@127.0.0.1:{camera.port}/live"
    assert password not in run.stdout + run.stderr
    wrong = subprocess.run([*CADENCE, "count", camera.url.replace(password, "guess"), "--live"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "could not be opened" in wrong.stderr and "user and password" in wrong.stderr
    assert "guess" not in wrong.stdout + wrong.stderr


def test_cadence_serve_follows_an_rtsp_camera_through_a_drop_and_never_shows_its_password(tmp_path, monkeypatch):
    from tests.test_serve import dropped_and_back, service

    pytest.importorskip("imageio_ffmpeg")
    camera = RtspCamera(video("pushup_incorrect_001.mp4"))  # looped: a camera that runs until it drops
    password = camera.credentials[1]
    ray_files = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # this service's Ray logs (a short path)
    monkeypatch.setenv("RAY_TMPDIR", str(ray_files))
    camera.start()
    try:
        with service(tmp_path / "store") as running:
            feed, back = dropped_and_back(running, camera, "door camera")
            shown = [running.http.get(path).text for path in
                     ("/feeds", f"/feeds/{feed}", f"/feeds/{feed}/history", "/metrics", "/")]
            with running.http.stream("GET", f"/feeds/{feed}/events", timeout=30) as events:
                seen = [line for _, line in zip(range(6), events.iter_lines())]
        logs = running.process.stderr.read()
    finally:
        camera.kill()
    assert back["source"] == f"rtsp://door:***@127.0.0.1:{camera.port}/live" and back["count"] >= 0
    assert not [text for text in shown + seen + [logs] if password in text]
    try:
        logged = [path for path in ray_files.rglob("*") if path.is_file() and path.suffix in (".log", ".out", ".err")]
        assert logged, f"no Ray log files under {ray_files}"
        leaked = [path for path in logged if password.encode() in path.read_bytes()]
        assert not leaked, leaked  # nor in any of Ray's log files (its workers' output included)
    finally:
        shutil.rmtree(ray_files, ignore_errors=True)
