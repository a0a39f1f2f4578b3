"""The actor pipeline on real Ray, real MediaPipe and real clips: same counts as inline, order,
backpressure, faults."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import cloudpickle
import numpy as np
import pyarrow as pa
import pytest
import ray

from cadence.actors import schemas
from cadence.actors.queues import BoundedQueue, QueueFullError
from cadence.cluster.runtime.connect import start_local
from cadence.cluster.counting.node import NodePipeline
from cadence.cluster.counting.pipeline import CountingPipeline, PipelineSettings, count_feeds
from cadence.pipelines import HumanBodyActionCounter, Pose
from cadence.pipelines.repetitions import RepetitionCounting
from cadence.pipelines.results import CountUpdate
from cadence.pipelines.video import Frame, read_video

from . import test_actors as this_module
from .helpers import inline_count, video, write_video_cut_short, write_video_without_people

pytestmark = [pytest.mark.ray, pytest.mark.mediapipe]

cloudpickle.register_pickle_by_value(this_module)  # Ray workers get the test's own components by value


# -- without Ray ------------------------------------------------------------------------------
def _pose(seed: int) -> Pose:
    return Pose(np.random.default_rng(seed).random((33, 4), dtype=np.float32))


def test_frame_batches_round_trip_images_exactly():
    rng = np.random.default_rng(0)
    frames = [Frame(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), i, i / 30, "cam", 1.0 + i, shot=i // 2)
              for i, (h, w) in enumerate([(48, 64), (30, 40), (48, 64)])]
    batch = schemas.frames_to_batch("cam", frames)
    assert batch.schema == schemas.FRAMES and batch.num_rows == 3
    back = schemas.batch_to_frames(batch)
    for a, b in zip(frames, back):
        assert np.array_equal(a.image, b.image)
        assert (a.index, a.timestamp, a.captured_at, a.shot) == (b.index, b.timestamp, b.captured_at, b.shot)


def test_pose_batches_keep_people_nobody_and_nulls():
    frames = schemas.frames_to_batch("f", [Frame(np.zeros((2, 2, 3), np.uint8), i, i / 30, "f", 5.0 + i, shot=i // 2)
                                           for i in range(3)])
    people = [[_pose(1), _pose(2)], [], [replace(_pose(3), shot=1)]]  # a pose carries its frame's shot
    back = schemas.batch_to_people(schemas.people_to_batch(frames, people))
    assert [len(p.people) for p in back] == [2, 0, 1] and back[0].people[1] == people[0][1]
    assert [(p.index, p.timestamp, p.captured_at) for p in back] == [(i, i / 30, 5.0 + i) for i in range(3)]
    # a slice of a batch (as Arrow hands out) decodes the right rows
    sliced = schemas.batch_to_people(schemas.people_to_batch(frames, people).slice(1, 2))
    assert [p.people for p in sliced] == people[1:] and sliced[1].index == 2 and sliced[1].people[0].shot == 1
    updates = [CountUpdate("f", 89, 2.9, 0.5, 1.0), CountUpdate("f", 179, 5.9, 1.5, 4.0)]
    assert schemas.batch_to_updates(schemas.updates_to_batch("f", updates)) == updates


def test_bounded_queue_refuses_past_its_bound():
    queue = BoundedQueue(2, "q")
    queue.put(1), queue.put(2)
    assert queue.full()
    with pytest.raises(QueueFullError, match="q: full"):
        queue.put(3)
    assert queue.pop() == 1 and queue.max_depth == 2


# -- on a local Ray ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    start_local(num_cpus=2, log_to_driver=False, configure_logging=False)  # as cadence starts it: loopback only
    yield
    ray.shutdown()




def test_three_feeds_at_once_count_as_the_inline_path(local_ray):
    clips = {name: video(name) for name in ("squat_correct_016.mp4", "squat_correct_001.avi", "pullup_correct_002.mp4")}
    results = count_feeds({name: str(path) for name, path in clips.items()})
    for result in results:
        assert result.error is None
        assert result.frames == read_video(clips[result.feed]).frame_count
        assert result.count == pytest.approx(inline_count(clips[result.feed]), abs=1e-9)


def test_order_is_kept_with_a_pool_of_two_pose_actors(local_ray):
    path = video("jumpingjack_correct_001.mp4")
    updates = []
    settings = PipelineSettings(RepetitionCounting(window_seconds=1.0, stride_seconds=0.5), batch_size=2, pose_actors=2)
    (result,) = count_feeds({"jj": str(path)}, settings, on_update=updates.append)
    indexes = [u.frame_index for u in updates]
    assert indexes == sorted(indexes) and indexes[-1] == 158
    expected = RepetitionCounting(window_seconds=1.0, stride_seconds=0.5)
    counts: list[float] = []
    expected.run(read_video(path), on_update=lambda u: counts.append(u.count))
    assert [u.count for u in updates] == pytest.approx(counts, abs=1e-9)


def test_live_feeds_each_keep_to_one_pose_actor_spread_over_the_pool(local_ray):
    """A live feed's tracking lives in one pose actor: each live feed gets a home, the least used,
    and gives it back when it ends."""
    from cadence.actors.queues import ActorPool

    pool = ActorPool(["a", "b"])
    assert [pool.home(), pool.home(), pool.home()] == [0, 1, 0]
    pool.leave(1)
    assert pool.home() == 1 and pool.homed == [2, 1]

    clips = {"pushup": video("pushup_incorrect_001.mp4"), "squat": video("squat_correct_010.mp4")}
    pipeline = NodePipeline({k: str(v) for k, v in clips.items()},
                                PipelineSettings(RepetitionCounting(live=True, rate=15.0), pose_actors=2))
    try:
        pipeline.start()
        homes = sorted(pipeline.feed(name).pose_home for name in clips)
        results = pipeline.run()
        assert homes == [0, 1] and pipeline._pool.homed == [0, 0]
    finally:
        pipeline.close()
    # every frame was read, and one in two posed or dropped (how many of each depends on the machine's speed)
    assert {r.feed: (r.error, r.frames, r.frames_analysed + r.frames_dropped) for r in results} == \
        {"pushup": (None, 290, 145), "squat": (None, 90, 45)}


def _before_push(session, before):
    """The session, with ``before(window)`` run ahead of each push."""
    push = session.push

    def pushed(window):
        before(window)
        return push(window)
    session.push = pushed
    return session


class SlowCounter(HumanBodyActionCounter):
    """The real counter, slowed down: a consumer that cannot keep up."""

    def session(self):
        return _before_push(super().session(), lambda window: time.sleep(0.3))


def test_a_slow_consumer_holds_the_capture_back(local_ray):
    path = video("jumpingjack_correct_001.mp4")
    settings = PipelineSettings(RepetitionCounting(window_seconds=0.5, stride_seconds=0.5, counter=SlowCounter()),
                                batch_size=4, queue_size=2)
    captured, lead = [0], []

    def on_update(update):  # how far capture ran ahead of the count when this count arrived
        lead.append(captured[0] - (update.frame_index + 1))

    pipeline = CountingPipeline({"jj": str(path)}, settings)
    try:
        (result,) = pipeline.run(on_update, on_frames=lambda _, n: captured.__setitem__(0, captured[0] + n))
    finally:
        pipeline.close()
    assert result.frames == 159
    assert all(depth <= settings.queue_size for depth in result.max_queue_depth.values())
    # frames in flight never exceed the two queues' worth of batches (of whole one-second tracking
    # segments: 30 frames of the source, 15 of them posed), though pose extraction is far faster
    window, _ = settings.job.windows(30.0)
    assert max(lead) <= 2 * settings.queue_size * 30 + 2 * window


def run_killing(pipeline: NodePipeline, victim, after_frames: int = 60) -> list:
    """Run the pipeline; once ``after_frames`` frames are read, kill ``victim(pipeline)`` (Ray restarts it)."""
    killed = []

    def kill_once(_, n):
        if not killed and sum(r.frames for r in pipeline.results) >= after_frames:
            killed.append(True)
            ray.kill(victim(pipeline), no_restart=False)

    try:
        results = pipeline.run(on_frames=kill_once)
    finally:
        pipeline.close()
    assert killed
    return results


def test_a_killed_pose_actor_is_restarted_and_the_count_is_unchanged(local_ray):
    path = video("pushup_incorrect_001.mp4")
    pipeline = NodePipeline({"pushup": str(path)}, PipelineSettings(pose_actors=2, batch_size=4))
    (result,) = run_killing(pipeline, lambda p: p.pose_actors[0])
    assert result.error is None and result.frames == 290
    assert result.count == pytest.approx(inline_count(path), abs=1e-9)


def test_a_killed_counting_host_resumes_every_feed_from_its_state(local_ray):
    clips = {"jj": video("jumpingjack_correct_001.mp4"), "squat": video("squat_correct_007.mp4")}
    settings = PipelineSettings(RepetitionCounting(window_seconds=1.0, stride_seconds=0.5), batch_size=4)
    pipeline = NodePipeline({name: str(path) for name, path in clips.items()}, settings)
    updates, killed = [], []

    def on_update(update):
        updates.append(update)
        if len(updates) == 3 and not killed:
            killed.append(True)
            # the one process holding both feeds' windows and counters, mid-stream, state and all
            ray.kill(pipeline.counting_hosts[0], no_restart=False)

    try:
        results = pipeline.run(on_update)
    finally:
        pipeline.close()
    assert killed and len(pipeline.counting_hosts) == 1
    for result in results:
        expected: list[float] = []
        RepetitionCounting(window_seconds=1.0, stride_seconds=0.5).run(read_video(clips[result.feed]),
                                                                       on_update=lambda u: expected.append(u.count))
        assert result.error is None
        counted = [u.count for u in updates if u.feed == result.feed]
        assert counted == pytest.approx(expected, abs=1e-9)  # nothing lost or counted twice
    assert sum(r.recoveries for r in results) >= 1


def test_a_killed_capture_host_reopens_its_feeds_where_they_were(local_ray):
    path = video("jumpingjack_correct_001.mp4")
    pipeline = NodePipeline({"a": str(path), "b": str(path)}, PipelineSettings(batch_size=4))
    results = run_killing(pipeline, lambda p: p.capture_hosts[0])
    assert sum(r.recoveries for r in results) >= 1
    for result in results:
        assert result.error is None and result.frames == 159
        assert result.count == pytest.approx(inline_count(path), abs=1e-9)


class DeadlyCounter(HumanBodyActionCounter):
    """The real counter, except that a window reaching frame 60 kills the process it runs in
    (as a native library crashing on some input would): every restart dies on it again."""

    def session(self):
        return _before_push(super().session(), _die_past_frame_60)


def _die_past_frame_60(window) -> None:
    if window.stop > 60:
        import os

        os._exit(1)


def test_hosts_killed_many_times_each_after_progress_are_survived(local_ray):
    from cadence.cluster.counting.feed import MAX_RECOVERIES

    path = video("jumpingjack_correct_001.mp4")
    # stall_seconds 0: the feed would fail at once after MAX_RECOVERIES deaths in a row with no progress;
    # every frame posed, in batches of a few (tracking segments of 4 frames), so that counts come in many batches
    job = RepetitionCounting(rate=None, window_seconds=1.0, stride_seconds=0.5, detection_seconds=4 / 30)
    settings = PipelineSettings(job, batch_size=4, stall_seconds=0.0)
    pipeline = NodePipeline({"jj": str(path)}, settings)
    updates, kills = [], MAX_RECOVERIES + 5

    def kill_after_each_update(update):  # each death comes after progress: a count delivered
        updates.append(update)
        if len(updates) <= kills:
            ray.kill(pipeline.counting_hosts[0], no_restart=False)

    try:
        (result,) = pipeline.run(kill_after_each_update)
    finally:
        pipeline.close()
    expected: list[float] = []
    job.run(read_video(path), on_update=lambda u: expected.append(u.count))
    assert result.error is None and result.recoveries > MAX_RECOVERIES  # (two kills may land on one incarnation)
    assert [u.count for u in updates] == pytest.approx(expected, abs=1e-9)


def test_a_feed_whose_host_dies_again_on_every_restart_fails_with_a_message(local_ray):
    from cadence.cluster.counting.feed import MAX_RECOVERIES

    settings = PipelineSettings(RepetitionCounting(window_seconds=1.0, stride_seconds=0.5, counter=DeadlyCounter()),
                                batch_size=4, stall_seconds=3.0)
    (result,) = count_feeds({"deadly": str(video("jumpingjack_correct_001.mp4"))}, settings)
    assert result.recoveries > MAX_RECOVERIES
    assert "times in a row over" in str(result.error) and "with no progress; giving up" in str(result.error)
    assert "jumpingjack_correct_001.mp4" in str(result.error)


def test_many_feeds_share_few_host_processes(local_ray):
    clips = ["squat_correct_016.mp4", "squat_correct_013.mp4", "squat_correct_001.avi"]
    feeds = {f"feed{k}": str(video(name)) for k, name in enumerate(clips + clips)}
    pipeline = NodePipeline(feeds, PipelineSettings(feeds_per_host=4))
    try:
        results = pipeline.run()
    finally:
        pipeline.close()
    assert len(pipeline.capture_hosts) == len(pipeline.counting_hosts) == 2  # six feeds, four at most per host
    for result in results:
        assert result.error is None
        assert result.count == pytest.approx(inline_count(feeds[result.feed]), abs=1e-9)


def test_bad_feeds_end_with_their_error_while_the_others_are_counted(local_ray, tmp_path):

    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    nobody = write_video_without_people(tmp_path / "trees.avi")
    # a real clip cut short: it opens, then decoding stops part way
    cut = write_video_cut_short(tmp_path / "cut.avi")
    good = video("squat_correct_016.mp4")
    results = {r.feed: r for r in count_feeds({"notes": str(notes), "nobody": str(nobody), "cut": str(cut),
                                               "good": str(good)})}
    assert results["good"].error is None and results["good"].count == pytest.approx(inline_count(good), abs=1e-9)
    assert "not a video" in str(results["notes"].error) and "notes.mp4" in str(results["notes"].error)
    assert "no person" in str(results["nobody"].error)
    # a video cut short is counted as far as it decodes, and says where decoding stopped
    cut_summary = results["cut"].summary()
    assert results["cut"].error is None and 0 < results["cut"].frames < 75 and cut_summary["count"] >= 0
    assert any("decoding stopped at frame" in w and "cut.avi" in w for w in cut_summary["warnings"])


def test_live_file_feed_is_paced_and_reports_latency(local_ray):
    path = video("squat_correct_007.mp4")  # 75 frames, 2.5 s
    started = time.perf_counter()
    (result,) = count_feeds({"live": str(path)}, PipelineSettings(RepetitionCounting(live=True, rate=15.0)))
    assert time.perf_counter() - started >= 2.4  # paced at the clip's frame rate
    summary = result.summary()
    assert result.frames == 75 and result.frames_analysed + result.frames_dropped == 38  # one in two posed
    assert 0 < summary["latency_p50_seconds"] <= summary["latency_p95_seconds"]  # measured (bench reports them)


def test_parquet_out_has_every_update(local_ray, tmp_path):
    import pyarrow.parquet as pq

    from cadence.cluster.counting.count import CountTable

    table = CountTable(tmp_path / "counts.parquet")
    updates = []

    def on_update(update):
        updates.append(update)
        table.write([update])

    count_feeds({"a": str(video("squat_correct_016.mp4")), "b": str(video("squat_correct_001.avi"))},
                PipelineSettings(RepetitionCounting(window_seconds=1.0, stride_seconds=0.5)), on_update=on_update)
    table.close()
    written = pq.read_table(tmp_path / "counts.parquet")
    assert written.num_rows == len(updates) > 2
    assert set(written.column("feed").to_pylist()) == {"a", "b"}
    assert written.schema.names == ["feed", "frame_index", "timestamp", "count", "people", "pose_coverage",
                                    "reliability"]
    assert all(0 <= r <= 1 for r in written.column("reliability").to_pylist())  # each feed's so far
    assert set(written.column("people").to_pylist()) == {None}  # a count per person only with --per-person
    assert isinstance(written, pa.Table)
    repetitions = pq.read_table(tmp_path / "counts-repetitions.parquet").to_pylist()
    reported = [r for u in updates for r in u.repetitions]
    assert len(repetitions) == len(reported) >= 1  # squat_correct_016 counts 0.9: no whole repetition
    assert {(r["feed"], r["index"], r["end_frame"]) for r in repetitions} == {
        (r.feed, r.index, r.end_frame) for r in reported}


def test_a_host_restarted_between_calls_refuses_work_until_restored(local_ray):
    from cadence.actors.stages import CountingHost, StateLost

    counting = RepetitionCounting(window_seconds=1.0, stride_seconds=1.0, rate=15.0).feed_counting("f")
    host = CountingHost.remote()
    ray.get(host.open.remote("f", counting))
    frames = schemas.frames_to_batch("f", [Frame(np.zeros((2, 2, 3), np.uint8), i, i / 30, "f") for i in range(30)])
    poses = schemas.people_to_batch(frames, [[_pose(i)] for i in range(30)])
    counts, state = host.push.remote("f", poses)
    assert ray.get(counts).num_rows == 1
    ray.kill(host, no_restart=False)  # nothing in flight: no call would see the death
    deadline, refusal = time.time() + 30, None
    while refusal is None and time.time() < deadline:  # the kill lands asynchronously
        try:
            ray.get(host.push.remote("f", poses)[0])
        except ray.exceptions.RayTaskError as e:
            refusal = e
        except ray.exceptions.RayActorError:
            pass  # dying or restarting
        time.sleep(0.1)
    assert refusal is not None and isinstance(refusal.cause, StateLost)
    assert ray.get(host.open.remote("f", counting, state))  # the driver's copy of the state after batch 0
    # the stream goes on from its 30th pose: windows of 16 (a second at 15 poses a second) end at 31 and 47
    assert ray.get(host.push.remote("f", poses)[0]).num_rows == 2


class RecordingCounter(HumanBodyActionCounter):
    """The real counter, writing every window it is given to a file (it runs in a counting host)."""

    def __init__(self, record_to: str = "", *, rate: float = 30.0):
        super().__init__(rate=rate)
        self.record_to = record_to

    def session(self):
        real = super().session()
        push = real.push

        def recording_push(window):
            with open(self.record_to, "a") as f:
                f.write(json.dumps({"start": window.start, "rate": self.rate,
                                    "poses": [None if p is None else p.keypoints.tolist() for p in window]}) + "\n")
            return push(window)
        real.push = recording_push
        return real


def recorded_windows(path) -> tuple[float, list[tuple[int, int]]]:
    """The counter's rate, and each recorded window's (start, poses held)."""
    windows = [json.loads(line) for line in open(path)]
    return windows[0]["rate"], [(window["start"], len(window["poses"])) for window in windows]


def recorded_poses(path) -> list:
    """The stream of selected poses the recorded windows held, in order."""
    stream: dict[int, Pose | None] = {}
    for line in open(path):
        window = json.loads(line)
        for i, keypoints in enumerate(window["poses"]):
            stream[window["start"] + i] = None if keypoints is None else Pose(np.array(keypoints, np.float32))
    assert sorted(stream) == list(range(len(stream)))
    return [stream[i] for i in range(len(stream))]


def test_a_stream_url_is_a_live_feed(local_ray, tmp_path):
    import subprocess
    import sys

    from cadence import SlidingWindow

    path = video("squat_correct_007.mp4")  # one squat in 75 frames, served three times over: 7.5 s
    server = subprocess.Popen([sys.executable, "-m", "cadence.cluster.bench.camera_server", str(path), "3"],
                              stdout=subprocess.PIPE, text=True)
    record = tmp_path / "windows.jsonl"
    job = RepetitionCounting(window_seconds=3.0, stride_seconds=0.5, live=True, rate=15.0,
                             counter=RecordingCounter(str(record)))
    try:
        port = int(server.stdout.readline())
        (result,) = count_feeds({"camera": f"http://127.0.0.1:{port}/stream.mjpg"}, PipelineSettings(job))
    finally:
        server.kill()
    summary = result.summary()
    # however fast this machine is: every frame served was read, and every other one counted or
    # reported dropped ...
    assert result.error is None and result.frames == 225, summary
    assert result.frames_analysed >= 1 and result.frames_analysed + result.frames_dropped == 113, summary  # 1 in 2
    # ... and the count is the counter's own on exactly the frames kept
    kept = recorded_poses(record)
    assert len(kept) == result.frames_analysed
    rate, recorded = recorded_windows(record)  # the camera's 25 frames a second posed at 12.5
    length, stride = job.windows(2 * rate)
    # the job's windows, however few frames a busy machine kept: one every stride, each whole but the last
    assert rate <= 15 and [start for start, _ in recorded] == [i * stride for i in range(len(recorded))]
    assert all(held == length for _, held in recorded[:-1]) and recorded[-1][1] <= length
    windows = SlidingWindow(length=length, stride=stride).applied(kept)
    offline = list(HumanBodyActionCounter(rate=rate).applied(windows))[-1]
    assert result.count == pytest.approx(offline, abs=1e-9), summary
