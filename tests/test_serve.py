"""``cadence serve`` end to end: a real service (Ray, MediaPipe, SQLite, uvicorn) started as a user
starts it, on loopback, driven over HTTP; cameras are MJPEG servers in processes of their own."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cadence.cluster.bench.serve import listening_port
from tests.helpers import ROOT, Camera, video, wait_for, write_video_played_again

pytestmark = [pytest.mark.ray, pytest.mark.mediapipe]

CADENCE = [sys.executable, "-m", "cadence.cluster.cli"]



class Service:
    """A ``cadence serve`` process and a client for it."""

    def __init__(self, store: Path, *options: str, host: str = "127.0.0.1", token: str | None = None):
        # --port 0: the service takes a free port before Ray starts and prints it (a port picked
        # here could be taken by one of Ray's processes in between: seen once in CI)
        command = [*CADENCE, "serve", "--store", str(store), "--port", "0", "--host", host, *options]
        self.process = subprocess.Popen(command + (["--token", token] if token else []), cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.port = listening_port(self.process)
        except RuntimeError as error:
            raise AssertionError(f"{error}: {self.process.stderr.read()}") from None
        self.url = f"http://127.0.0.1:{self.port}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=60)
        wait_for(self._healthy, 180, "the service to answer /health")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"cadence serve exited {self.process.returncode}: {self.process.stderr.read()}")
        try:
            return self.http.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def add(self, **body) -> str:
        response = self.http.post("/feeds", json=body)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def feed(self, feed_id: str) -> dict:
        return self.http.get(f"/feeds/{feed_id}").json()

    def wait_state(self, feed_id: str, states: tuple[str, ...], seconds: float = 240) -> dict:
        return wait_for(lambda: (f := self.feed(feed_id))["state"] in states and f, seconds,
                        f"feed {feed_id} to be {' or '.join(states)}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def service(store: Path, *options: str, **kwargs) -> Iterator[Service]:
    running = Service(store, *options, **kwargs)
    try:
        yield running
    finally:
        running.stop()


def dropped_and_back(running: Service, camera, name: str) -> tuple[str, dict]:
    """A feed of ``camera`` (started) read, the camera killed and started again: the feed's id,
    and its view once it reads again."""
    feed = running.add(source=camera.url, name=name)
    wait_for(lambda: running.feed(feed)["frames"] > 30, 180, "the camera to be read")
    camera.kill()
    running.wait_state(feed, ("reconnecting",), 60)
    time.sleep(2)
    camera.start()
    back = wait_for(lambda: (f := running.feed(feed))["state"] == "running" and f["reconnections"] == 1 and f,
                    120, "the camera to be read again")
    return feed, back


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Service]:
    video("pushup_incorrect_001.mp4")  # skips when the shared clips are absent
    with service(tmp_path_factory.mktemp("serve") / "store") as running:
        yield running


def counted(*paths: Path) -> dict[str, float]:
    """``cadence count --json``: each file's count, as the command line reports it."""
    run = subprocess.run([*CADENCE, "count", *map(str, paths), "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return {json.loads(line)["source"]: json.loads(line)["count"] for line in run.stdout.splitlines()}


def test_feeds_are_added_listed_followed_and_deleted_and_count_as_cadence_count_does(served):
    pushup, squat = video("pushup_incorrect_001.mp4"), video("squat_correct_007.mp4")
    camera = Camera(video("jumpingjack_correct_001.mp4"))
    camera.start()
    try:
        files = {served.add(source=str(pushup)): pushup, served.add(source=str(squat), name="squat"): squat}
        bad = served.add(source=str(pushup.with_name("no-such-clip.mp4")))
        live = served.add(source=camera.url, name="camera")
        listed = {f["id"]: f for f in served.http.get("/feeds").json()}
        assert set(files) | {bad, live} <= set(listed)
        assert listed[live]["live"] is True and listed[live]["name"] == "camera"

        # follow one file feed over Server-Sent Events until it ends
        first = next(iter(files))
        events = []
        with served.http.stream("GET", f"/feeds/{first}/events", timeout=240) as stream:
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    events.append((kind, json.loads(line[5:])))
                    if kind == "state" and events[-1][1]["state"] in ("ended", "failed"):
                        break
        counts = [data["count"] for kind, data in events if kind == "count"]
        assert counts and counts == sorted(counts), counts

        finals = {feed_id: served.wait_state(feed_id, ("ended", "failed")) for feed_id in files}
        expected = counted(pushup, squat)
        for feed_id, path in files.items():
            assert finals[feed_id]["state"] == "ended", finals[feed_id]
            assert finals[feed_id]["count"] == pytest.approx(expected[str(path)], abs=1e-3)
            assert finals[feed_id]["frames"] > 0
            assert finals[feed_id]["pose_coverage"] > 0.9 and 0 < finals[feed_id]["reliability"] <= 1
        assert counts[-1] == pytest.approx(finals[first]["count"], abs=1e-3)
        repetitions = served.http.get(f"/feeds/{first}/repetitions").json()
        assert len(repetitions) == int(finals[first]["count"])

        failed = served.wait_state(bad, ("failed",), 60)
        assert "no-such-clip.mp4" in failed["error"] and "no such file" in failed["error"]

        # the camera: counted while the files ran; deleting it keeps its count
        camera_feed = wait_for(lambda: (f := served.feed(live))["frames"] > 150 and f["people"] and f, 180,
                               "the camera feed to count")
        assert set(camera_feed["people"]) == {"1", "2"}  # the two people of the jumping-jack clip
        jpeg = served.http.get(f"/feeds/{live}/frame.jpg")
        assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
        deleted = served.http.delete(f"/feeds/{live}").json()
        assert deleted["state"] == "ended"
        time.sleep(1)
        assert served.feed(live)["count"] == deleted["count"] and served.feed(live)["state"] == "ended"

        metrics = served.http.get("/metrics").text
        assert f'cadence_feed_count{{feed="{first}",name=' in metrics
        assert f'cadence_feed_frames_total{{feed="{live}",name="camera"}}' in metrics
        assert 'cadence_feeds{state="failed"} 1.0' in metrics or 'cadence_feeds{state="failed"}' in metrics
    finally:
        camera.kill()


def test_a_feed_stored_before_analysis_rates_resumes_as_it_was_counted():
    """Its windows were frames at 30 fps and every frame was posed: its snapshot is of that job."""
    from cadence.cluster.serve.service import FeedSpec

    old = FeedSpec.stored("cam.mp4", "cam", {"live": False, "strategy": "maximum_bounding_box_area", "window": 90,
                                             "stride": 15, "per_person": True})
    assert (old.window_seconds, old.stride_seconds, old.rate) == (3.0, 0.5, None)
    assert old.job().windows(30.0) == (90, 15)
    new = FeedSpec.stored("cam.mp4", "cam", {"live": False, "rate": 15.0, "window_seconds": 3.0,
                                             "stride_seconds": None})
    assert new.job().windows(30.0) == (48, 8)


def test_bad_requests_name_the_field(served):
    response = served.http.post("/feeds", json={"source": "x.mp4", "window_seconds": 0, "strateg": "lowest",
                                                 "rate": "fast"})
    assert response.status_code == 422
    fields = {tuple(d["loc"])[:2] for d in response.json()["detail"]}
    assert {("body", "window_seconds"), ("body", "strateg"), ("body", "rate")} <= fields
    response = served.http.post("/feeds", json={"source": "x.mp4", "window_seconds": 1, "stride_seconds": 2})
    assert response.status_code == 422 and "stride_seconds" in response.json()["detail"]
    assert served.http.get("/feeds/nope").status_code == 404


def test_a_camera_that_reboots_is_reconnected_and_its_count_carries_on(served):
    camera = Camera(video("pushup_incorrect_001.mp4"))
    camera.start()
    try:
        feed = served.add(source=camera.url, name="reboots")
        before = wait_for(lambda: (f := served.feed(feed))["count"] >= 1 and f, 180, "a first count")
        camera.kill()
        down = served.wait_state(feed, ("reconnecting",), 60)
        assert down["count"] >= before["count"]
        time.sleep(2)
        camera.start()
        back = wait_for(lambda: (f := served.feed(feed))["state"] == "running" and f["frames"] > down["frames"] + 30
                        and f, 120, "the feed to run again")
        assert back["reconnections"] == 1 and back["downtime_seconds"] > 1
        assert back["count"] >= down["count"]
        later = wait_for(lambda: (f := served.feed(feed))["count"] > down["count"] and f, 180,
                         "the count to carry on past the outage")
        assert later["state"] == "running"
        served.http.delete(f"/feeds/{feed}")
    finally:
        camera.kill()


def test_a_camera_down_when_added_is_tried_until_it_comes_up(served):
    camera = Camera(video("pushup_incorrect_001.mp4"))  # not started: nothing listens on its port yet
    try:
        feed = served.add(source=camera.url, name="still booting")
        waiting = served.wait_state(feed, ("reconnecting", "failed"), 60)
        assert waiting["state"] == "reconnecting", waiting  # it used to fail at once, never tried again
        time.sleep(2)
        camera.start()
        up = wait_for(lambda: (f := served.feed(feed))["state"] == "running" and f["frames"] > 30 and f, 120,
                      "the camera to be read once it is up")
        assert up["error"] is None
        served.http.delete(f"/feeds/{feed}")
    finally:
        camera.kill()


def test_a_restart_brings_back_the_running_feeds_with_their_counts(tmp_path):
    from cadence import RepetitionCounting, concatenate

    pushup = video("pushup_incorrect_001.mp4")
    playlist = [str(pushup)] * 3
    store = tmp_path / "store"
    with service(store) as running:
        feed = running.add(source=playlist, name="three sets")
        wait_for(lambda: running.feed(feed)["count"] >= 1, 240, "a first count")
        running.stop()  # SIGTERM: the service snapshots its running feeds before it exits
        assert running.process.returncode == 0, running.process.stderr.read()  # a supervisor's normal stop
    with sqlite3.connect(store / "counts.sqlite") as db:
        state, stored = db.execute("SELECT state, count FROM feeds WHERE id = ?", (feed,)).fetchone()
    assert state == "running" and stored >= 1

    with service(store) as restarted:
        again = restarted.feed(feed)
        assert again["count"] == stored  # exactly where it was
        final = restarted.wait_state(feed, ("ended", "failed"))
        rows = restarted.http.get(f"/feeds/{feed}/history").json()
    assert final["state"] == "ended", final
    uninterrupted = RepetitionCounting().run(concatenate(*playlist)).count
    assert final["count"] == pytest.approx(uninterrupted, abs=1e-3)
    history = [r["count"] for r in rows]
    assert history == sorted(history) and history[-1] == pytest.approx(final["count"], abs=1e-3)


def test_a_port_in_use_is_refused_before_ray_starts(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        refused = subprocess.run([*CADENCE, "serve", "--port", str(port), "--store", str(tmp_path / "s")], cwd=ROOT,
                                 capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert f"--port {port}: cannot listen there" in refused.stderr and "--port 0" in refused.stderr
    assert "Ray" not in refused.stdout + refused.stderr  # refused before it started


def test_beyond_loopback_a_token_is_required(tmp_path):
    refused = subprocess.run([*CADENCE, "serve", "--host", "0.0.0.0", "--store", str(tmp_path / "s")], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--token" in refused.stderr
    with service(tmp_path / "store", host="0.0.0.0", token="s3cret") as running:
        plain = httpx.get(f"{running.url}/feeds")
        assert plain.status_code == 401
        assert httpx.get(f"{running.url}/feeds", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert running.http.get("/feeds").status_code == 200
        page = httpx.get(f"{running.url}/?token=s3cret")
        assert page.status_code == 200 and "cadence_token" in page.headers["set-cookie"]
        assert httpx.get(f"{running.url}/feeds", cookies=page.cookies).status_code == 200


def _chromium() -> tuple[str, str]:
    import shutil

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (`make test` installs them as root)")
    return browser, driver


def test_the_page_lists_the_feeds_and_a_running_count_changes_on_screen(served, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    browser, driver_path = _chromium()
    short = served.add(source=str(video("squat_correct_016.mp4")), name="over already")  # one update, at its end
    assert served.wait_state(short, ("ended",))["count"] > 0
    pushups = write_video_played_again(tmp_path / "pushups.avi", "pushup_incorrect_001.mp4")  # six, 29 s
    feed = served.add(source=str(pushups), live=True, name="page test")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.get(f"{served.url}/")
        card = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, f'.feed[data-id="{feed}"]'), 60,
                        "the feed's card on the page")[0]
        assert card.find_element(By.CSS_SELECTOR, ".name").text == "page test"
        shown: list[str] = []

        def count_changed() -> bool:
            text = card.find_element(By.CSS_SELECTOR, ".count").text
            if not shown or shown[-1] != text:
                shown.append(text)
            return len(shown) >= 3

        ended = driver.find_element(By.CSS_SELECTOR, f'.feed[data-id="{short}"] canvas')
        wait_for(lambda: driver.execute_script(  # a feed's chart shows its count, even a single update
            "const c = arguments[0]; return c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
            ".some(v => v !== 0)", ended), 30, "the ended feed's chart to show its count")
        figures = driver.find_element(By.CSS_SELECTOR, f'.feed[data-id="{short}"] .figures')
        wait_for(lambda: "reliability" in figures.text, 30, "the ended feed's reliability to show")
        wait_for(count_changed, 180, "the count on screen to change twice")
        assert [float(t) for t in shown] == sorted(float(t) for t in shown)  # live, and never down
        wait_for(lambda: driver.execute_script(
            "return arguments[0].naturalWidth", card.find_element(By.CSS_SELECTOR, ".frame")), 60,
            "a frame with the skeleton drawn to show")
        assert card.find_element(By.CSS_SELECTOR, ".state").text in ("running", "ended")
        # the form adds a feed, which gets a card of its own
        clip = video("squat_correct_016.mp4")
        driver.find_element(By.ID, "source").send_keys(str(clip))
        driver.find_element(By.CSS_SELECTOR, "#add button").click()
        added = wait_for(lambda: [c for c in driver.find_elements(By.CSS_SELECTOR, ".feed")
                                  if c.find_element(By.CSS_SELECTOR, ".name").text == clip.name], 60,
                         "the feed added with the form to show")[0]
        assert driver.find_element(By.ID, "add-error").text == ""
        listed = [f for f in served.http.get("/feeds").json() if f["id"] == added.get_attribute("data-id")]
        assert listed and listed[0]["source"] == str(clip) and listed[0]["live"] is True
        screenshot = tmp_path / "cadence-serve-page.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        print(f"screenshot: {screenshot}")
    finally:
        driver.quit()


def test_a_restart_keeps_a_camera_s_reconnections_and_downtime(tmp_path):
    camera = Camera(video("pushup_incorrect_001.mp4"))
    camera.start()
    store = tmp_path / "store"
    try:
        with service(store) as running:
            feed, back = dropped_and_back(running, camera, "door")
        with service(store) as restarted:
            again = wait_for(lambda: (f := restarted.feed(feed))["state"] == "running" and f["frames"] > 0 and f,
                             180, "the camera to be read after the restart")
            assert again["reconnections"] == 1  # a restart used to set both back to 0
            assert again["downtime_seconds"] >= back["downtime_seconds"] > 1
    finally:
        camera.kill()
