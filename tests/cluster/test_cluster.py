"""test_cluster.py - what only a cluster shows, on real PostgreSQL, S3 and
Redis with 2 API nodes and 2 worker processes: a feed on one API node sees
every event, in order, of jobs submitted on the other and run by workers;
SIGKILL of the worker running a job (retried by the other, hold settled
once); a Redis restart mid-run (the live feed catches up from the store, a
resume loses nothing); PostgreSQL stopped for seconds (503
database_unavailable, recovery by itself, no job lost); S3 failing PUTs (a
failed upload leaves no job or hold; a failed output is retried and charged
once)."""
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
import types

import pytest
import requests

import helpers
from helpers import (Api, TERMINAL, assert_books, assert_error, expect, job_entries, kinds, ledger, make_audio,
                     make_user, micro, pages, submit, wait_job)

pytestmark = pytest.mark.skipif(not helpers.CLUSTER, reason="cluster-only: run through tests/cluster/run.sh")

GRANT = ["--signup-grant", "1000"]
FAST_LEASE = ["--lease", "3", "--heartbeat", "1", "--retry-base", "1"]


class Feed(threading.Thread):
    """An SSE client of /v1/events on one API node, in the background: keeps
    every event (parsed) until stop() or the stream ends."""

    def __init__(self, base, key, since=None):
        super().__init__(daemon=True)
        from test_events import Sse
        h = {"Authorization": "Bearer " + key}
        if since is not None:
            h["Last-Event-ID"] = since
        self.sse = Sse(types.SimpleNamespace(url=base), "/v1/events", h, timeout=120)
        assert self.sse.status == 200, self.sse.status
        self.events = []
        self.lock = threading.Lock()
        self.start()

    def run(self):
        try:
            for ev in self.sse.events():
                with self.lock:
                    self.events.append(json.loads(ev["data"]))
        except (OSError, ValueError, AttributeError):
            pass  # stop() closed the connection under the reader

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def wait_for(self, pred, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.snapshot()):
                return self.snapshot()
            time.sleep(0.1)
        raise AssertionError("feed condition not met in %ds; got %s" % (
            timeout, [(e["id"], e["type"], e["job_id"][-6:]) for e in self.snapshot()]))

    def stop(self):
        self.sse.close()


def stored_events(api, timeout=30):
    """Every stored event of the caller, replayed from the start (WebSocket
    ?since=0 would need a stop condition; the SSE replay ends on close)."""
    out = []
    body = None
    cursor = "0"
    from test_events import Sse
    feed = Sse(types.SimpleNamespace(url=api.bases[-1]), "/v1/events?since=" + cursor,
               {"Authorization": api.headers["Authorization"]}, timeout=2)
    try:
        for ev in feed.events():
            out.append(json.loads(ev["data"]))
    except OSError:
        pass  # the read timeout: the replay is over, only live events would follow
    feed.close()
    del body
    return out


def all_done(ids):
    return lambda evs: ids <= {e["job_id"] for e in evs if e["type"] in ("job.succeeded", "job.failed")}


def check_job_order(types_):
    assert types_[0] == "job.queued", types_
    assert types_[-1] == "job.succeeded", types_
    assert types_.count("job.succeeded") == 1, types_
    assert "job.started" in types_, types_
    assert types_.index("job.started") < types_.index("job.succeeded"), types_


def worker_of(srv, job_id, timeout=60):
    """Index of the worker process (node id wk<i>) running the job's last attempt."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(r"worker wk(\d+)/\S+: job %s attempt" % re.escape(job_id), srv.log_tail(100000))
        if found:
            return int(found[-1])
        time.sleep(0.05)
    raise AssertionError("no worker took job %s" % job_id)


@pytest.fixture(scope="module")
def long_mp3(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster-audio")
    return make_audio(d, "mp3", 25.0, rate=44100, channels=2, name="cluster-25s.mp3")


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster-short")
    return make_audio(d, "wav", 0.2, rate=8000, name="cluster-0.2s.wav")


def test_a_feed_on_one_api_node_sees_every_event_in_order_of_jobs_submitted_on_the_other(cluster, audio_wav):
    srv = cluster(["--workers", "4"] + GRANT)
    u = make_user(srv)
    feed = Feed(srv.urls[0], u.key)
    node2 = Api(srv.urls[1], {"Authorization": "Bearer " + u.key})
    ids = {expect(submit(node2, audio_wav, params={"format": "flac"}), 202)["id"] for _ in range(8)}
    live = feed.wait_for(all_done(ids))
    feed.stop()
    seen = [e["id"] for e in live]
    assert seen == sorted(set(seen)), "live ids out of order or repeated: %s" % seen
    stored = [e for e in stored_events(u.api) if e["job_id"] in ids]
    assert seen[:len(stored)] == [e["id"] for e in stored], "the live feed differs from the store"
    for j in ids:
        check_job_order([e["type"] for e in live if e["job_id"] == j])
    # both workers took part (8 jobs, 2 job threads each)
    log = srv.log_tail(100000)
    assert "worker wk0/" in log and "worker wk1/" in log


def test_sigkill_of_the_worker_running_a_job_retries_it_on_the_other_and_settles_once(cluster, long_mp3):
    srv = cluster(["--workers", "2", "--max-attempts", "3"] + FAST_LEASE + GRANT)
    u = make_user(srv)
    with open(long_mp3, "rb") as f:
        job = expect(submit(u.api, f.read(), params={"format": "mp3"}, filename="long.mp3"), 202)
    wait_job(u.api, job["id"], statuses=("running",) + TERMINAL)
    victim = worker_of(srv, job["id"])
    srv.kill_worker(victim)
    done = wait_job(u.api, job["id"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2, done
    assert worker_of(srv, job["id"]) == 1 - victim
    assert kinds(job_entries(ledger(u.api), job["id"])) == ["capture", "hold"]
    assert_books(srv.admin(), u)
    srv.restart_worker(victim)


def test_a_redis_restart_mid_run_loses_no_event_live_or_on_resume(cluster, long_mp3):
    srv = cluster(["--workers", "2"] + GRANT)
    u = make_user(srv)
    feed = Feed(srv.urls[0], u.key)
    with open(long_mp3, "rb") as f:
        mp3 = f.read()
    job = expect(submit(u.api, mp3, params={"format": "mp3"}, filename="a.mp3"), 202)
    feed.wait_for(lambda evs: any(e["type"] == "job.progress" for e in evs))
    pidfile = os.environ["VOXD_TEST_REDIS_PIDFILE"]
    with open(pidfile) as f:
        pid = int(f.read().split()[0])
    os.kill(pid, signal.SIGKILL)
    time.sleep(1.5)  # events published meanwhile are dropped by the bus
    redis = subprocess.Popen(shlex.split(os.environ["VOXD_TEST_REDIS_CMD"]), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port = int(os.environ["VOXD_TEST_BUS_URL"].rsplit(":", 1)[1])
    deadline = time.monotonic() + 20
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline and redis.poll() is None, "redis-server did not come back"
        time.sleep(0.1)
    # a second job after the restart: its events are news again
    job2 = expect(submit(u.api, mp3, params={"format": "mp3"}, filename="b.mp3"), 202)
    live = feed.wait_for(all_done({job["id"], job2["id"]}), timeout=120)
    feed.stop()
    stored = [e for e in stored_events(u.api)]
    ids = [e["id"] for e in live]
    assert ids == [e["id"] for e in stored][:len(ids)], "the live feed lost or reordered events"
    for j in (job["id"], job2["id"]):
        check_job_order([e["type"] for e in live if e["job_id"] == j])
    # a client that went away before the restart resumes with Last-Event-ID
    cut = live[1]["id"]
    again = Feed(srv.urls[1], u.key, since=cut)
    rest = again.wait_for(lambda evs: len(evs) >= len(live) - 2)
    again.stop()
    assert [e["id"] for e in rest][:len(live) - 2] == ids[2:]


def stop_postgres():
    """Fast shutdown of the test PostgreSQL; returns its restart command."""
    cmd = os.environ["VOXD_TEST_PG_RESTART"]
    data = shlex.split(cmd)[shlex.split(cmd).index("-D") + 1]
    with open(os.path.join(data, "postmaster.pid")) as f:
        pid = int(f.readline())
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while os.path.exists("/proc/%d" % pid):
        assert time.monotonic() < deadline, "PostgreSQL did not stop"
        time.sleep(0.05)
    return cmd


def start_postgres(cmd):
    port = re.search(r"-p (\d+)", cmd).group(1)
    subprocess.Popen(shlex.split(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    pg_isready = os.path.join(os.path.dirname(shlex.split(cmd)[shlex.split(cmd).index("--") + 1]
                                              if "--" in shlex.split(cmd) else shlex.split(cmd)[0]), "pg_isready")
    deadline = time.monotonic() + 30
    while subprocess.run([pg_isready, "-q", "-h", "127.0.0.1", "-p", port]).returncode != 0:
        assert time.monotonic() < deadline, "PostgreSQL did not come back"
        time.sleep(0.1)


def test_postgres_down_for_seconds_gives_503_then_recovers_by_itself_losing_no_job(cluster, long_mp3, audio_wav):
    srv = cluster(["--workers", "2", "--max-attempts", "5"] + FAST_LEASE + GRANT)
    u = make_user(srv)
    with open(long_mp3, "rb") as f:
        mp3 = f.read()
    ids = [expect(submit(u.api, mp3, params={"format": "mp3"}, filename="p%d.mp3" % i), 202)["id"]
           for i in range(3)]
    wait_job(u.api, ids[0], statuses=("running",) + TERMINAL)
    cmd = stop_postgres()
    try:
        for path in ("/v1/jobs/" + ids[0], "/v1/balance", "/v1/jobs"):
            for _ in srv.urls:  # each API node answers for itself
                assert_error(u.api.get(path), 503, "database_unavailable")
        r = submit(u.api, audio_wav)
        assert r.status_code == 503, r.text
        assert requests.get(srv.url + "/readyz", timeout=5).status_code == 503
        time.sleep(2)
    finally:
        start_postgres(cmd)
    # no restart of voxd: every node finds the database again
    deadline = time.monotonic() + 30
    while True:
        codes = {Api(b, u.api.headers).get("/v1/balance").status_code for b in srv.urls}
        if codes == {200}:
            break
        assert time.monotonic() < deadline, "the API did not recover: %s" % codes
        time.sleep(0.2)
    for i in ids:
        assert wait_job(u.api, i, timeout=180)["status"] == "succeeded"
    jobs = pages(u.api, "/v1/jobs")
    assert {j["id"] for j in jobs} == set(ids) and all(j["status"] == "succeeded" for j in jobs)
    assert_books(srv.admin(), u)


def s3_control(path, **params):
    r = requests.post(os.environ["VOXD_TEST_S3_URL"] + "/__control/" + path, params=params, timeout=5)
    assert r.status_code == 204, r.text


def test_s3_failing_puts_leave_no_orphaned_charge(cluster, audio_wav):
    srv = cluster(["--workers", "2", "--retry-base", "1"] + GRANT)
    u = make_user(srv)
    bal0, held0 = u.balance()
    try:
        # the input upload fails on every try: no job, no hold
        s3_control("fault", status=503, count=50, method="PUT")
        r = submit(u.api, audio_wav)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "storage_unavailable", r.text
    finally:
        s3_control("clear")
    assert pages(u.api, "/v1/jobs") == []
    assert u.balance() == (bal0, held0) and ledger(u.api) == [e for e in ledger(u.api) if e["kind"] == "grant"]
    # the output upload of the first attempt fails beyond the client's own
    # retries (3 + 1 tries); the job is retried and charged once
    job = expect(submit(u.api, audio_wav, params={"format": "flac"}), 202)
    s3_control("fault", status=500, count=4, method="PUT")
    try:
        done = wait_job(u.api, job["id"], timeout=120)
    finally:
        s3_control("clear")
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    assert kinds(job_entries(ledger(u.api), job["id"])) == ["capture", "hold"]
    r = u.api.get("/v1/jobs/%s/result" % job["id"])
    assert r.status_code == 200 and r.content[:4] == b"fLaC"
    bal, held = assert_books(srv.admin(), u)
    assert held == 0 and bal == bal0 - micro(done["cost"]["charged"])
