"""A stand-in IP camera for tests: serves a video file as MJPEG over HTTP on 127.0.0.1, paced at
its frame rate, then ends the stream.  Run it as its own process (OpenCV's HTTP reader stalls on
a server in its own process):

    python tests/mjpeg_server.py VIDEO [LOOPS]   # prints the port, then serves one client
"""

from __future__ import annotations

import socket
import sys
import time

import cv2


def serve(path: str, loops: int = 1) -> None:
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    frames *= loops
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    client, _ = listener.accept()
    client.recv(65536)  # the request
    client.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
    start = time.monotonic()
    for i, jpeg in enumerate(frames):
        time.sleep(max(0.0, start + i / fps - time.monotonic()))
        client.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n")
    client.close()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
