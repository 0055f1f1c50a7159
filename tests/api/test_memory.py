"""test_memory.py - a 200 MB upload streams to storage: the server's resident
memory grows by less than 32 MB (VmRSS/VmHWM from /proc)."""
import os
import threading
import time

import pytest

from helpers import J, make_user, proc_status_kb, write_big_wav

SIZE = 200 * 1024 * 1024
LIMIT_KB = 32 * 1024


class MultipartFile:
    """A multipart/form-data body streamed from a file, with a known length
    (so requests sends Content-Length and reads the file piece by piece)."""

    def __init__(self, path, boundary, fields):
        self.path = path
        pre = b""
        for k, v in fields.items():
            pre += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary, k, v)).encode()
        pre += ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                "Content-Type: audio/wav\r\n\r\n" % (boundary, os.path.basename(path))).encode()
        self.pre = pre
        self.post = ("\r\n--%s--\r\n" % boundary).encode()
        self.size = len(pre) + os.path.getsize(path) + len(self.post)

    def __len__(self):
        return self.size

    def __iter__(self):
        yield self.pre
        with open(self.path, "rb") as f:
            while True:
                chunk = f.read(256 * 1024)
                if not chunk:
                    break
                yield chunk
        yield self.post


@pytest.mark.skipif(os.environ.get("VOXD_SANITIZED") == "1",
                    reason="VOXD_SANITIZED=1: ASan's allocator and quarantine distort RSS")
def test_200mb_upload_grows_rss_by_less_than_32mb(start_server, tmp_path):
    wav = write_big_wav(str(tmp_path / "big.wav"), SIZE)
    srv = start_server(["--workers", "0", "--max-upload", "300M", "--max-duration", "4h",
                        "--signup-grant", "100000"])
    u = make_user(srv)
    # Warm up the request path so one-time allocations are not counted.
    small = tmp_path / "small.wav"
    write_big_wav(str(small), 64 * 1024)
    body = MultipartFile(str(small), "WarmUpBoundary", {"model": "convert"})
    r = u.api.post("/v1/jobs", data=body, headers={"Content-Type": "multipart/form-data; boundary=WarmUpBoundary"})
    assert r.status_code == 202, r.text

    rss0 = proc_status_kb(srv.pid, "VmRSS")
    hwm0 = proc_status_kb(srv.pid, "VmHWM")
    peak = [rss0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], proc_status_kb(srv.pid, "VmRSS"))
            except (OSError, KeyError):
                return
            time.sleep(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        body = MultipartFile(wav, "BigUploadBoundary", {"model": "convert", "params": '{"format":"flac"}'})
        r = u.api.post("/v1/jobs", data=body, timeout=300,
                       headers={"Content-Type": "multipart/form-data; boundary=BigUploadBoundary"})
    finally:
        stop.set()
        t.join()
    assert r.status_code == 202, r.text[:500]
    job = J(r)
    assert job["input"]["bytes"] == os.path.getsize(wav)
    rss1 = proc_status_kb(srv.pid, "VmRSS")
    hwm1 = proc_status_kb(srv.pid, "VmHWM")
    growth = max(peak[0], rss1) - rss0
    hwm_growth = hwm1 - hwm0
    os.unlink(wav)
    print("rss before %d kB, peak %d kB, after %d kB; hwm %d -> %d kB" % (rss0, peak[0], rss1, hwm0, hwm1))
    assert growth < LIMIT_KB, "RSS grew by %d kB during a 200 MB upload" % growth
    assert hwm_growth < LIMIT_KB, "peak RSS grew by %d kB during a 200 MB upload" % hwm_growth
