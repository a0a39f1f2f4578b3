"""A stand-in IP camera: serves a video file as MJPEG over HTTP on 127.0.0.1, paced at its frame
rate, for the tests and benchmarks (and for trying ``cadence serve`` without a camera).  Run it as
its own process (OpenCV's HTTP reader stalls on a server in its own process); it prints its port,
then serves:

    python -m cadence.cluster.bench.camera_server VIDEO [LOOPS]            # one client, LOOPS times, then ends
    python -m cadence.cluster.bench.camera_server VIDEO --port P --forever  # on port P, every client, looped

Killing the second form and starting it again on the same port is a camera that reboots.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

import cv2


def _jpegs(path: str) -> tuple[list[bytes], float]:
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return frames, fps


def _stream(client: socket.socket, frames: list[bytes], fps: float, forever: bool) -> None:
    try:
        client.recv(65536)  # the request
        client.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
        start, i = time.monotonic(), 0
        while i < len(frames) or forever:
            time.sleep(max(0.0, start + i / fps - time.monotonic()))
            jpeg = frames[i % len(frames)]
            client.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                           + jpeg + b"\r\n")
            i += 1
    except OSError:  # the client went away
        pass
    finally:
        client.close()


def serve(path: str, loops: int = 1, port: int = 0, forever: bool = False) -> None:
    frames, fps = _jpegs(path)
    frames *= loops
    listener = socket.create_server(("127.0.0.1", port))
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        if not forever:
            _stream(client, frames, fps, False)
            return
        threading.Thread(target=_stream, args=(client, frames, fps, True), daemon=True).start()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("video")
    parser.add_argument("loops", nargs="?", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--forever", action="store_true")
    args = parser.parse_args()
    serve(args.video, args.loops, args.port, args.forever)
