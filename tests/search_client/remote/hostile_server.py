"""A real HTTP server on loopback that answers like a broken or malicious profiler: too much, for ever, too
slowly, elsewhere, or tables whose numbers are no latencies. Raw sockets, so it can lie in its headers."""

from __future__ import annotations

import socketserver
import threading
import time
import zlib

MB = 2**20
BLOCK = b"x" * (64 * 1024)


def _gzip_bomb(unpacked: int) -> bytes:
    """gzip of ``unpacked`` zero bytes: about a thousandth of that on the wire."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MB)
    return b"".join(packer.compress(zeros) for _ in range(unpacked // MB)) + packer.flush()


class _Handler(socketserver.BaseRequestHandler):
    server: HostileServer

    def handle(self) -> None:
        sock = self.request
        sock.settimeout(120)
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            if not data:
                return
            head += data
        try:
            self.server.answer(sock, self.server.mode)
        except OSError:  # the client hung up: what a bounded client does
            pass


class HostileServer(socketserver.ThreadingTCPServer):
    """Serves ``mode`` to every request: ``huge`` (declares 2 GB and sends fast), ``endless`` (a chunked
    stream that never ends), ``trickle`` (one byte per second), ``away`` (302 to another host),
    ``moved`` (301 with a JSON body), ``bomb`` (a gzip body that unpacks to 200 MB), ``down`` (503),
    ``body`` (200 with ``self.body`` as JSON text: a table with NaN, strings, ...)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "huge"
        self.body = "{}"
        self._bomb: bytes | None = None
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, sock, mode: str) -> None:
        if mode == "huge":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2000000000\r\n\r\n")
            for _ in range(2000000000 // len(BLOCK)):
                sock.sendall(BLOCK)
        elif mode == "endless":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = f"{len(BLOCK):x}\r\n".encode() + BLOCK + b"\r\n"
            while True:
                sock.sendall(chunk)
        elif mode == "trickle":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):
                sock.sendall(b" ")
                time.sleep(1)
        elif mode == "away":
            sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://evil.example/v1/tables\r\nContent-Length: 0\r\n\r\n")
        elif mode == "moved":
            body = b'{"id": "t", "device": "d", "backend": "b", "entries": {}}'
            sock.sendall(b"HTTP/1.1 301 Moved Permanently\r\nLocation: /v2/tables\r\nContent-Type: application/json"
                         b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        elif mode == "bomb":
            if self._bomb is None:
                self._bomb = _gzip_bomb(200 * MB)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                         b"Content-Length: " + str(len(self._bomb)).encode() + b"\r\n\r\n" + self._bomb)
        elif mode == "down":
            sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        elif mode == "body":
            body = self.body.encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"e\"\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
        else:
            raise ValueError(mode)
