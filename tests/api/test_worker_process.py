"""test_worker_process.py - `voxd worker` processes next to an API-only node
(`serve --workers 0`) on one shared SQLite database and blob directory: they
run jobs to success; SIGTERM mid-job gives the job back uncounted; SIGKILL
mid-job is retried once the lease expires; with --bus redis://... (a
redis-server started here) a feed on the API node sees the progress events
published by the separate worker process."""
import json
import os
import shutil
import signal
import subprocess
import time
import http.client

import pytest
import requests

from helpers import (assert_books, expect, free_port, job_entries, kinds, ledger, make_audio, make_user,
                     submit, voxd_bin, wait_job)

GRANT = ["--signup-grant", "1000"]


class Worker:
    """One `voxd worker` process on the shared backends of an API node."""

    def __init__(self, api_srv, data_dir, flags=()):
        self.data_dir = str(data_dir)
        base = api_srv.data_dir.rstrip("/")
        self.cmd = [voxd_bin(), "worker", "--db", "sqlite://%s/voxd.db" % base, "--blob",
                    "file://%s/blobs" % base, "--data", self.data_dir] + api_srv.extra_flags() + list(flags)
        self.log_path = self.data_dir.rstrip("/") + ".log"
        self.proc = None

    def start(self, ready=None, timeout=20.0):
        os.makedirs(self.data_dir, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOXD_")}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "worker exited: %s\n%s" % (self.proc.returncode, self.log_tail())
            if "worker " in self.log_tail() and " running" in self.log_tail():
                return self
            time.sleep(0.05)
        raise AssertionError("worker not up\n" + self.log_tail())

    def signal(self, sig, timeout=30.0):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self._log.close()
        return rc

    def stop(self):
        if self.proc and self.proc.poll() is None:
            return self.signal(signal.SIGTERM)
        return self.proc.returncode if self.proc else None

    def stop_and_check(self):
        """SIGTERM; fails unless it exits 0 with no sanitizer report in its log."""
        rc = self.stop()
        log = self.log_tail(100000)
        markers = [m for m in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:") if m in log]
        assert rc == 0 and not markers, "worker: exit %s %s\n%s" % (rc, markers, self.log_tail())

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture
def workers():
    started = []
    yield started
    for w in started:
        if w.proc and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def start_worker(workers, api_srv, tmp_path, flags=()):
    w = Worker(api_srv, tmp_path / ("worker%d" % len(workers)), flags)
    workers.append(w)
    return w.start()


def running_job(u, src):
    with open(src, "rb") as f:
        job = expect(submit(u.api, f.read(), params={"format": "mp3"}, filename="long.mp3"), 202)
    job = wait_job(u.api, job["id"], timeout=60, statuses=("running", "succeeded", "failed", "canceled"))
    assert job["status"] == "running", "the job was not caught running: %s" % job
    return job["id"]


def test_worker_processes_run_the_jobs_of_an_api_only_node(start_server, workers, tmp_path, audio):
    srv = start_server(["--workers", "0"] + GRANT)
    mport = free_port()
    w1 = start_worker(workers, srv, tmp_path,
                      ["--concurrency", "2", "--metrics-listen", "127.0.0.1:%d" % mport])
    start_worker(workers, srv, tmp_path, ["--concurrency", "1"])
    u = make_user(srv)
    ids = [expect(submit(u.api, audio["wav"], params={"format": "flac"}), 202)["id"] for _ in range(6)]
    for i in ids:
        job = wait_job(u.api, i, timeout=60)
        assert job["status"] == "succeeded" and job["attempts"] == 1, job
        r = u.api.get("/v1/jobs/%s/result" % i)
        assert r.status_code == 200 and r.content[:4] == b"fLaC"
    assert_books(srv.admin(), u)
    # the worker's own port answers health and metrics, and nothing else
    base = "http://127.0.0.1:%d" % mport
    assert requests.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
    m = requests.get(base + "/metrics", timeout=5).text
    assert "voxd_workers 2" in m and "voxd_queue_depth 0" in m, m
    assert requests.get(base + "/v1/models", timeout=5).status_code == 404
    # the worker took no data-dir lock: the API node's directory is shared
    assert not os.path.exists(os.path.join(w1.data_dir, "voxd.lock"))
    for w in workers:
        w.stop_and_check()
    srv.stop_and_check()


def test_sigterm_on_a_worker_mid_job_gives_the_job_back_uncounted(start_server, workers, tmp_path, audio_dir):
    srv = start_server(["--workers", "0"] + GRANT)
    w = start_worker(workers, srv, tmp_path, ["--concurrency", "1", "--shutdown-grace", "0"])
    u = make_user(srv)
    src = make_audio(audio_dir, "mp3", 1200.0, rate=44100, channels=2, name="shutdown-20min.mp3")
    job_id = running_job(u, src)
    assert w.signal(signal.SIGTERM) == 0, w.log_tail()
    job = expect(u.api.get("/v1/jobs/" + job_id), 200)
    assert job["status"] == "queued" and job["attempts"] == 0, job
    assert "given back" in w.log_tail()
    # another worker picks it up as a first attempt
    start_worker(workers, srv, tmp_path, ["--concurrency", "1", "--shutdown-grace", "0"])
    job = wait_job(u.api, job_id, timeout=60, statuses=("running", "succeeded"))
    assert job["attempts"] == 1, job
    expect(u.api.post("/v1/jobs/%s/cancel" % job_id), 200)
    job = wait_job(u.api, job_id, timeout=60)
    assert job["status"] == "canceled", job
    assert sorted(kinds(job_entries(ledger(u.api), job_id))) == ["hold", "release"]
    workers[-1].stop_and_check()
    srv.stop_and_check()


def test_sigkill_on_a_worker_mid_job_is_retried_after_the_lease_expires(start_server, workers, tmp_path,
                                                                         audio_dir):
    lease = ["--lease", "2", "--heartbeat", "1", "--retry-base", "0"]
    srv = start_server(["--workers", "0"] + lease + GRANT)
    w = start_worker(workers, srv, tmp_path, ["--concurrency", "1"] + lease)
    u = make_user(srv)
    src = make_audio(audio_dir, "mp3", 1200.0, rate=44100, channels=2, name="shutdown-20min.mp3")
    job_id = running_job(u, src)
    # a second worker on the same machine (same default node id) starting up
    # must not take the live lease of the first
    start_worker(workers, srv, tmp_path, ["--concurrency", "1"] + lease)
    time.sleep(3)  # > --lease: only heartbeats keep the first worker's lease alive
    job = expect(u.api.get("/v1/jobs/" + job_id), 200)
    assert job["status"] == "running" and job["attempts"] == 1, job
    assert "recovered" not in workers[1].log_tail()
    # once the first dies, its lease expires and the job is retried
    assert w.signal(signal.SIGKILL) == -signal.SIGKILL
    deadline = time.monotonic() + 60
    while True:
        job = expect(u.api.get("/v1/jobs/" + job_id), 200)
        if job["attempts"] >= 2:
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] in ("queued", "running") and job["attempts"] == 2, job
    expect(u.api.post("/v1/jobs/%s/cancel" % job_id), 200)
    job = wait_job(u.api, job_id, timeout=60)
    assert job["status"] == "canceled", job
    assert sorted(kinds(job_entries(ledger(u.api), job_id))) == ["hold", "release"]
    assert_books(srv.admin(), u)
    workers[-1].stop_and_check()
    srv.stop_and_check()


# ---- cross-process events over redis ----------------------------------------

@pytest.fixture
def redis_url(tmp_path):
    binary = shutil.which("redis-server")
    if not binary:
        pytest.skip("redis-server is not installed (Debian: redis-server)")
    port = free_port()
    d = tmp_path / "redis"
    d.mkdir()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "",
                             "--appendonly", "no", "--daemonize", "no", "--logfile", str(d / "redis.log")],
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            import socket
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
        time.sleep(0.05)
    yield "redis://127.0.0.1:%d" % port
    proc.terminate()
    proc.wait(timeout=10)


def sse_events(srv, path, key, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    conn.request("GET", path, headers={"Accept": "text/event-stream", "X-API-Key": key})
    resp = conn.getresponse()
    assert resp.status == 200
    return conn, resp


def read_sse(resp, stop):
    got, data = [], None
    while True:
        line = resp.readline()
        if not line:
            return got
        line = line.decode().rstrip("\r\n")
        if line.startswith("data:"):
            data = line[5:].strip()
        elif not line and data:
            ev = json.loads(data)
            got.append(ev)
            data = None
            if stop(ev):
                return got


def test_a_feed_on_the_api_node_sees_progress_published_by_a_worker_process(start_server, workers, tmp_path,
                                                                             audio_dir, redis_url):
    srv = start_server(["--workers", "0", "--bus", redis_url] + GRANT)
    w = start_worker(workers, srv, tmp_path, ["--concurrency", "1", "--bus", redis_url])
    u = make_user(srv)
    conn, resp = sse_events(srv, "/v1/events", u.key)
    src = make_audio(audio_dir, "wav", 120.0, name="worker-2min.wav")
    job = expect(submit(u.api, src, params={"format": "mp3"}), 202)
    got = read_sse(resp, lambda ev: ev["type"] in ("job.succeeded", "job.failed"))
    conn.close()
    types = [e["type"] for e in got]
    assert all(e["job_id"] == job["id"] for e in got), got
    assert types[-1] == "job.succeeded", types
    # started, progress and succeeded are emitted by the worker process only
    assert "job.started" in types and "job.progress" in types, types
    assert "redis" in w.log_tail(80)
    w.stop_and_check()
    srv.stop_and_check()
