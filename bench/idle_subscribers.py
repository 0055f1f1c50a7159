#!/usr/bin/python3
"""idle_subscribers.py - memory cost of idle live-event subscribers: opens N
idle feeds (GET /v1/events over SSE or WebSocket, raw sockets, one user)
against a fresh voxd and prints the server's RSS growth per subscriber,
then checks that one event still reaches the last subscriber. Prints
figures; asserts nothing.

usage: bench/idle_subscribers.py [--subscribers 2000] [--transport sse|ws]
(binary: $VOXD_BIN, default build/voxd)"""
import argparse
import base64
import os
import resource
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "api"))
import helpers  # noqa: E402


def open_feed(port, key, transport):
    s = socket.create_connection(("127.0.0.1", port))
    if transport == "ws":
        extra = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: %s\r\n" % base64.b64encode(os.urandom(16)).decode())
    else:
        extra = "Accept: text/event-stream\r\n"
    s.sendall(("GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: %s\r\n%s\r\n" % (key, extra)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed during the handshake")
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status and b" 101 " not in status:
        raise RuntimeError("feed refused: %r" % status)
    return s


def rss_kb(pid):
    return helpers.proc_status_kb(pid, "VmRSS")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--transport", choices=["sse", "ws"], default="sse")
    args = ap.parse_args()
    n = args.subscribers
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # voxd inherits it
    work = tempfile.mkdtemp(prefix="voxd-bench-subs.")
    srv = helpers.Server(os.path.join(work, "data"), ["--no-access-log", "--workers", "1",
                                                      "--max-connections", str(n + 64)], name="bench")
    try:
        srv.start()
        user = helpers.make_user(srv)
        warm = [open_feed(srv.port, user.key, args.transport) for _ in range(16)]  # first-use allocations
        for s in warm:
            s.close()
        time.sleep(0.5)
        before = rss_kb(srv.pid)
        t0 = time.monotonic()
        socks = [open_feed(srv.port, user.key, args.transport) for _ in range(n)]
        opened = time.monotonic() - t0
        time.sleep(1.0)
        after = rss_kb(srv.pid)
        per = (after - before) * 1024.0 / n
        print("transport            %s" % args.transport)
        print("idle subscribers     %d (opened in %.2f s)" % (n, opened))
        print("server RSS           %d KiB -> %d KiB" % (before, after))
        print("bytes per subscriber %.0f" % per)
        # an event still reaches the newest subscriber
        wav = helpers.make_audio(work, "wav", 1.0)
        t1 = time.monotonic()
        helpers.expect(helpers.submit(user.api, wav), 202)
        socks[-1].settimeout(10)
        got = b""
        while b"job.queued" not in got:
            chunk = socks[-1].recv(65536)
            if not chunk:
                break
            got += chunk
        print("first event to the last subscriber after %.1f ms" % ((time.monotonic() - t1) * 1000))
        for s in socks:
            s.close()
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
