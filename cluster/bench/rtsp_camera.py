"""A stand-in RTSP camera on 127.0.0.1, as IP cameras serve their video: RTSP for the session, the
frames as Motion-JPEG over RTP (RFC 2435), made by ffmpeg (the static build of the imageio-ffmpeg
wheel) paced at the clip's frame rate and looped, and sent inside the RTSP connection (interleaved,
what OpenCV asks for) or to the client's UDP ports; optionally behind a user name and password
(HTTP Basic, as many cameras ask).  It prints its port, then serves:

    python -m cadence.cluster.bench.rtsp_camera VIDEO [--port P] [--user U --password W] [--loops N]

and its stream is ``rtsp://[U:W@]127.0.0.1:P/live``.  Killing it and starting it again on the same
port is a camera that reboots; with ``--loops N`` each client gets the clip N times, then the
connection closes (a stream that ends).  Only what a client such as FFmpeg's (OpenCV's) needs is answered:
OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import socket
import subprocess
import threading

SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cadence stand-in camera\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=video 0 RTP/AVP 26\r\na=control:track0\r\n")


class _Session:
    """One client's connection: its requests answered in order, its ffmpeg sender while playing."""

    sessions = itertools.count(1)

    def __init__(self, client: socket.socket, video: str, credentials: str | None, loops: int | None):
        self.client, self.video, self.credentials, self.loops = client, video, credentials, loops
        self.sender: subprocess.Popen | None = None
        self.client_ports: tuple[int, int] | None = None  # UDP; None: interleaved in this connection
        self.interleaved = False
        self.writing = threading.Lock()  # responses and relayed packets share the connection
        self.id = f"{next(self.sessions):08d}"

    def run(self) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer and not _whole_packet(buffer):
                    data = self.client.recv(65536)
                    if not data:
                        return
                    buffer += data
                if buffer.startswith(b"$"):  # the client's RTCP report, interleaved: not needed
                    buffer = buffer[4 + int.from_bytes(buffer[2:4], "big"):]
                    continue
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                self._answer(head.decode("latin-1"))
        except OSError:
            pass
        finally:
            self._stop()
            self.client.close()

    def _answer(self, head: str) -> None:
        lines = head.split("\r\n")
        method = lines[0].split(" ")[0]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        cseq = headers.get("cseq", "0")
        if self.credentials and headers.get("authorization") != f"Basic {self.credentials}":
            self._send(401, cseq, 'WWW-Authenticate: Basic realm="cadence camera"\r\n')
        elif method == "OPTIONS":
            self._send(200, cseq, "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n")
        elif method == "DESCRIBE":
            self._send(200, cseq, f"Content-Type: application/sdp\r\nContent-Base: {lines[0].split(' ')[1]}/\r\n", SDP)
        elif method == "SETUP":
            self._setup(cseq, headers.get("transport", ""))
        elif method == "PLAY":
            self._play()
            self._send(200, cseq, f"Session: {self.id}\r\n")
        elif method == "TEARDOWN":
            self._stop()
            self._send(200, cseq, f"Session: {self.id}\r\n")
        else:
            self._send(405, cseq)

    def _setup(self, cseq: str, transport: str) -> None:
        fields = dict(f.partition("=")[::2] for f in transport.split(";"))
        if "TCP" in transport:
            self.interleaved = True
            self._send(200, cseq, f"Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: {self.id}\r\n")
            return
        if "client_port" not in fields:
            self._send(461, cseq)
            return
        low, _, high = fields["client_port"].partition("-")
        self.client_ports = (int(low), int(high or int(low) + 1))
        self._send(200, cseq, f"Transport: RTP/AVP;unicast;client_port={low}-{self.client_ports[1]}\r\n"
                              f"Session: {self.id}\r\n")

    def _play(self) -> None:
        import imageio_ffmpeg

        if self.sender is not None or not (self.client_ports or self.interleaved):
            return
        if self.interleaved:  # ffmpeg sends to a port of ours, whose packets go down the connection
            relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            relay.bind(("127.0.0.1", 0))
            rtp = relay.getsockname()[1]
            rtcp = rtp + 1
            threading.Thread(target=self._relay, args=(relay,), daemon=True).start()
        else:
            rtp, rtcp = self.client_ports
        self.sender = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", str(-1 if self.loops is None else self.loops - 1),
             "-i", self.video, "-an", "-vf", "scale=640:-2", "-c:v", "mjpeg", "-huffman", "default", "-force_duplicated_matrix", "1", "-pix_fmt", "yuvj420p", "-q:v", "5",
             "-f", "rtp", f"rtp://127.0.0.1:{rtp}?rtcpport={rtcp}&pkt_size=1400"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def _relay(self, relay: socket.socket) -> None:
        try:
            while self.sender is None or self.sender.poll() is None:
                relay.settimeout(1.0)
                try:
                    packet = relay.recv(65536)
                except socket.timeout:
                    continue
                with self.writing:
                    self.client.sendall(b"$\x00" + len(packet).to_bytes(2, "big") + packet)
            self.client.shutdown(socket.SHUT_RDWR)  # the clip played its loops: the stream ends
        except OSError:  # the client went away
            pass
        finally:
            relay.close()

    def _stop(self) -> None:
        if self.sender is not None:
            self.sender.kill()
            self.sender.wait()
            self.sender = None

    def _send(self, status: int, cseq: str, headers: str = "", body: str = "") -> None:
        reasons = {200: "OK", 401: "Unauthorized", 405: "Method Not Allowed", 461: "Unsupported Transport"}
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        with self.writing:
            self.client.sendall(f"RTSP/1.0 {status} {reasons[status]}\r\nCSeq: {cseq}\r\n{headers}{length}\r\n"
                                f"{body}".encode("latin-1"))


def _whole_packet(buffer: bytes) -> bool:
    """An interleaved packet ($, channel, length, data) is all in ``buffer``."""
    return buffer.startswith(b"$") and len(buffer) >= 4 and len(buffer) >= 4 + int.from_bytes(buffer[2:4], "big")


def serve(video: str, port: int = 0, user: str | None = None, password: str | None = None,
          loops: int | None = None) -> None:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode() if user else None
    listener = socket.create_server(("127.0.0.1", port))
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_Session(client, video, credentials, loops).run, daemon=True).start()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--loops", type=int, help="times each client gets the clip (default: forever)")
    args = parser.parse_args()
    serve(args.video, args.port, args.user, args.password, args.loops)
