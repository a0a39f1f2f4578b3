"""``cadence count`` as a user runs it: a real process, real clips, real MediaPipe."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import cv2
import pytest

from .helpers import CADENCE, ROOT, cadence, video, write_video_without_people


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_help_explains_the_command():
    result = cadence("count", "--help")
    assert result.returncode == 0
    for word in ("--window", "--stride", "--strategy", "rightmost_joint_location", "--live", "--annotate", "--json"):
        assert word in result.stdout


@pytest.mark.mediapipe
@pytest.mark.parametrize("rate,posed", [("all", 75), ("15", 38)])
def test_json_counts_and_annotated_video(tmp_path, rate, posed):
    """Every frame of the source is written, also where only one in two was posed (--rate 15)."""
    out = tmp_path / "annotated.mp4"
    result = cadence("count", str(video("squat_correct_007.mp4")), "--json", "--annotate", str(out), "--rate", rate)
    assert result.returncode == 0, result.stderr
    (summary,) = json_lines(result.stdout)
    assert summary["source"].endswith("squat_correct_007.mp4")
    assert summary["count"] == pytest.approx(1, abs=0.5)
    assert summary["frames"] == 75 and summary["seconds"] == pytest.approx(2.5, abs=0.05)
    assert summary["frames_analysed"] == posed and summary["pose_coverage"] == 1.0
    (rep,) = summary["repetitions"]
    assert rep["index"] == 1 and 0 <= rep["start_frame"] < rep["end_frame"] < 75
    assert rep["duration"] == pytest.approx(rep["end_time"] - rep["start_time"], abs=1e-3) and 0 < rep["confidence"] <= 1
    annotated = cv2.VideoCapture(str(out))
    assert annotated.isOpened() and int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 75
    annotated.release()


@pytest.mark.ray
@pytest.mark.mediapipe
def test_running_counts_are_printed_as_they_come(tmp_path):
    import re

    import pyarrow.parquet as pq

    out = tmp_path / "counts.parquet"
    result = cadence("count", str(video("jumpingjack_correct_001.mp4")), "--stride", "45", "--out", str(out))
    assert result.returncode == 0, result.stderr
    running = [line for line in result.stdout.splitlines() if ": frame " in line]
    assert len(running) >= 3  # every 45 frames over 159 frames
    printed = [int(re.search(r": frame (\d+) ", line).group(1)) for line in running]
    assert printed == pq.read_table(out).column("frame_index").to_pylist()  # one numbering
    assert "Token authentication" not in result.stderr  # Ray's notice is left out (the mode stays on)
    assert "repetitions in 159 frames" in result.stdout


@pytest.mark.ray
@pytest.mark.mediapipe
def test_bad_inputs_are_named_and_good_videos_still_counted(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    nobody = write_video_without_people(tmp_path / "trees.avi")
    good = video("squat_correct_016.mp4")
    result = cadence("count", str(tmp_path / "missing.mp4"), str(text), str(good), str(empty), str(nobody), "--json")
    assert result.returncode == 2
    by_source = {Path(r["source"]).name: r for r in json_lines(result.stdout)}
    assert by_source["squat_correct_016.mp4"]["count"] == pytest.approx(1, abs=0.5)
    assert "no such file" in by_source["missing.mp4"]["error"]
    assert "not a video" in by_source["notes.mp4"]["error"]
    assert "empty" in by_source["empty.mp4"]["error"]
    assert "no person" in by_source["trees.avi"]["error"]
    for name in ("missing.mp4", "notes.mp4", "empty.mp4", "trees.avi"):
        assert name in result.stderr  # the message names the file
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("option", ["--out", "--annotate"])
def test_an_output_in_a_folder_that_does_not_exist_is_refused_before_counting(tmp_path, option):
    target = tmp_path / "no-such-folder" / ("counts.parquet" if option == "--out" else "annotated.mp4")
    result = cadence("count", str(video("squat_correct_016.mp4")), "--runner", "inline", option, str(target))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{target}" in result.stderr and "does not exist" in result.stderr
    assert ": frame " not in result.stdout  # refused before counting


@pytest.mark.ray
def test_a_camera_that_is_not_there_is_a_clear_error():
    result = cadence("count", "5", "--live")
    assert result.returncode == 2
    assert "camera 5: could not be opened" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.ray
def test_camera_index_without_live_is_explained():
    result = cadence("count", "0")
    assert result.returncode == 2 and "add --live" in result.stderr


@pytest.mark.ray
@pytest.mark.mediapipe
def test_live_file_is_paced_and_reports_drops():
    result = cadence("count", str(video("squat_correct_016.mp4")), "--live", "--json")
    assert result.returncode == 0, result.stderr
    (summary,) = json_lines(result.stdout)
    # every frame of the source is read; those the counter could not keep up with were dropped (none
    # on a fast machine, 19 of 29 on a slow one), and the rest posed
    assert summary["frames"] == 29 and summary["frames_analysed"] + summary["frames_dropped"] == 29, summary
    assert summary["processing_seconds"] >= 0.9  # 29 frames at 30 fps take about a second to film


@pytest.mark.ray
@pytest.mark.mediapipe
def test_ctrl_c_prints_the_count_so_far():
    import signal

    process = subprocess.Popen([*CADENCE, "count", str(video("pushup_incorrect_001.mp4")),
                                "--live", "--stride", "15"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               # as from a terminal: a shell's background job (CI) would inherit SIGINT ignored
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = process.stdout.readline()  # the first running count: the pipeline is up and counting
    assert ": frame " in first, first
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "repetitions so far" in err and "Traceback" not in err
    assert "repetitions in" not in out  # it stopped: no final summary


@pytest.mark.ray
@pytest.mark.mediapipe
@pytest.mark.parametrize("runner", ["inline", "ray"])
def test_sigterm_stops_like_ctrl_c_and_keeps_a_readable_table(tmp_path, runner):
    import signal

    import pyarrow.parquet as pq

    out = tmp_path / "counts.parquet"
    process = subprocess.Popen([*CADENCE, "count", str(video("pushup_incorrect_001.mp4")), "--live",
                                "--runner", runner, "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()
    assert ": frame " in first, first
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "repetitions so far" in err and "Traceback" not in err
    assert pq.read_table(out).num_rows >= 1 and not (tmp_path / "counts.parquet.parts").exists()


@pytest.mark.mediapipe
def test_after_sigkill_the_rows_written_so_far_are_readable(tmp_path):
    import signal
    import time

    import pyarrow.dataset as ds

    out = tmp_path / "counts.parquet"
    parts = tmp_path / "counts.parquet.parts"
    feeds = tmp_path / "feeds.txt"  # 30 s of video played live, one after another
    feeds.write_text(f"{video('pushup_incorrect_001.mp4')}\n" * 3)
    process = subprocess.Popen([*CADENCE, "count", "--feeds", str(feeds), "--live", "--runner", "inline",
                                "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert ": frame " in process.stdout.readline()
    deadline = time.monotonic() + 60
    while not list(parts.glob("part-*.parquet")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)  # the first batch of rows is written 2 s after it began
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    rows = ds.dataset(parts).to_table()
    assert rows.num_rows >= 1 and rows.schema.names == ["feed", "frame_index", "timestamp", "count", "people",
                                                          "pose_coverage", "reliability"]
    again = cadence("count", str(video("squat_correct_016.mp4")), "--runner", "inline", "--out", str(out))
    assert again.returncode == 2 and str(parts) in again.stderr and "killed" in again.stderr


NOISY = """
import os, sys, threading, time
from cadence.cluster.cli import main

def noise():  # as a native library or one of Ray's processes writing to file descriptor 1 while it runs,
    time.sleep(2)  # and as Ray's messages printed in this process (a worker that died, say)
    for _ in range(20):
        os.write(1, b"(raylet) something to say\\n")
        print("(raylet) printed here", flush=True)
        time.sleep(0.5)

threading.Thread(target=noise, daemon=True).start()
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.ray
@pytest.mark.mediapipe
def test_json_output_is_only_json_whatever_else_writes_to_stdout():
    run = subprocess.run([sys.executable, "-c", NOISY, "count", str(video("jumpingjack_correct_001.mp4")), "--json",
                          "--runner", "ray"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["count"] > 0
    assert "(raylet) something to say" in run.stderr and "(raylet) printed here" in run.stderr  # on stderr


@pytest.mark.ray
@pytest.mark.mediapipe
def test_a_count_killed_outright_leaves_no_ray_process_behind():
    import signal

    import psutil

    process = subprocess.Popen([*CADENCE, "count", str(video("pushup_incorrect_001.mp4")), "--live", "--runner", "ray"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert ": frame " in process.stdout.readline()  # Ray is up and counting
    ray_processes = [p for p in psutil.Process(process.pid).children(recursive=True)
                     if "ray" in p.name() or "ray" in " ".join(p.cmdline())]
    assert any("raylet" in p.name() for p in ray_processes)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    _, alive = psutil.wait_procs(ray_processes, timeout=60)
    assert not alive, [(p.pid, p.name()) for p in alive]


@pytest.mark.ray
def test_a_local_ray_listens_on_loopback_only():
    """Every socket that cadence's own Ray and its workers listen on, during a real count, is on 127.0.0.1."""
    import ipaddress
    import signal

    import psutil

    process = subprocess.Popen([*CADENCE, "count", str(video("pushup_incorrect_001.mp4")), "--live", "--runner", "ray"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert ": frame " in process.stdout.readline()  # Ray is up, every stage's actor is counting
        tree = {process.pid} | {p.pid for p in psutil.Process(process.pid).children(recursive=True)}
        listening = [(c.pid, c.laddr) for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.pid in tree]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    names = {psutil.Process(pid).name() for pid, _ in listening if psutil.pid_exists(pid)}
    assert len(listening) >= 4, listening  # the GCS, the raylet, the driver, the workers at least
    exposed = [(pid, address) for pid, address in listening
               if not ipaddress.ip_address(address.ip.removeprefix("::ffff:")).is_loopback]
    assert not exposed, (exposed, names)
    assert not any(address.port == 8265 for _, address in listening)  # no dashboard web page


@pytest.mark.ray
def test_a_ray_left_behind_by_an_earlier_run_does_not_stop_the_next():
    """Ray records the last cluster it started in a file; a local run must start its own Ray, not
    wait forever on a dead one that file names."""
    import os
    import shutil
    import tempfile

    temp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths are limited
    try:
        (temp / "ray").mkdir()
        (temp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")  # nothing listens there
        result = subprocess.run([*CADENCE, "count", str(video("squat_correct_016.mp4")), "--json", "--runner", "ray"], cwd=ROOT,
                                capture_output=True, text=True, timeout=180, env=os.environ | {"RAY_TMPDIR": str(temp)})
        assert result.returncode == 0, result.stderr
        assert json_lines(result.stdout)[0]["count"] == pytest.approx(1, abs=0.5)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.mediapipe
def test_one_local_source_is_counted_in_this_process_without_starting_ray():
    result = cadence("count", str(video("squat_correct_016.mp4")), "--json")
    assert result.returncode == 0, result.stderr
    (summary,) = json_lines(result.stdout)
    assert summary["count"] == pytest.approx(1, abs=0.5) and "node" not in summary  # no Ray node counted it


@pytest.mark.ray
@pytest.mark.mediapipe
def test_feeds_file_and_parquet_out(tmp_path):
    import pyarrow.parquet as pq

    feeds = tmp_path / "feeds.txt"
    clip = video("squat_correct_016.mp4")
    (tmp_path / "squat.mp4").symlink_to(clip)
    feeds.write_text(f"# one per line; relative paths are read from this file's folder\n\nsquat.mp4\n{clip}\n")
    out = tmp_path / "counts.parquet"
    result = cadence("count", "--feeds", str(feeds), "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    summaries = json_lines(result.stdout)
    assert len(summaries) == 2 and all(s["count"] == pytest.approx(1, abs=0.5) for s in summaries)
    assert all("frames_dropped" in s and "latency_p95_seconds" in s for s in summaries)
    assert all(s["node"] for s in summaries)  # two sources: counted at once, on Ray
    table = pq.read_table(out)
    assert table.num_rows == 2 and table.column("count").to_pylist()[0] == pytest.approx(summaries[0]["count"], abs=1e-3)
    repetitions = pq.read_table(tmp_path / "counts-repetitions.parquet")
    assert repetitions.num_rows == sum(len(s["repetitions"]) for s in summaries)
    assert sorted(repetitions.column("end_frame").to_pylist()) == sorted(
        r["end_frame"] for s in summaries for r in s["repetitions"])
    missing = cadence("count", "--feeds", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "nope.txt" in missing.stderr


def test_no_source_is_named_once():
    result = cadence("count")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == ("cadence count: error: VIDEO: none given (give at least one "
                                                      "video file, camera or stream URL, or --feeds FILE)")
