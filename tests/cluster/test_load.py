"""test_load.py - 1,000 short jobs over the cluster (2 API nodes, 2 worker
processes of 2 threads) while worker processes are SIGKILLed and started
again at random: every job ends once with exactly one terminal event (the
keepers repair one a kill left unstored); every hold is captured or released once and each user's balance equals the
ledger sum; no object is left in the S3 server's data without its job."""
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import helpers
from helpers import TERMINAL, J, assert_books, job_entries, kinds, ledger, make_audio, make_user, pages, submit
from test_cluster import stored_events

pytestmark = pytest.mark.skipif(not helpers.CLUSTER, reason="cluster-only: run through tests/cluster/run.sh")

USERS = 20
JOBS_PER_USER = 50
FLAGS = ["--workers", "4", "--lease", "3", "--heartbeat", "1", "--retry-base", "1", "--max-attempts", "10",
         "--signup-grant", "1000"]


def objects_under(prefix_dir):
    """(user_id, job_id, name) of every object the S3 test server holds under a prefix."""
    out = []
    for root, _, files in os.walk(prefix_dir):
        for f in files:
            if not f.endswith("._S3rver_object"):
                continue
            rel = os.path.relpath(os.path.join(root, f[:-len("._S3rver_object")]), prefix_dir).split(os.sep)
            out.append(tuple(rel[1:4]) if rel[0] == "users" and len(rel) == 4 else tuple(rel))
    return out


def test_a_thousand_jobs_with_random_worker_kills_settle_exactly_once(cluster, tmp_path):
    srv = cluster(FLAGS)
    wav = make_audio(tmp_path, "wav", 0.2, rate=8000, name="load-0.2s.wav")
    with open(wav, "rb") as f:
        data = f.read()
    users = [make_user(srv) for _ in range(USERS)]

    def one(k):
        u = users[k % USERS]
        r = submit(u.api.clone(), data, params={"format": "wav"}, filename="l%04d.wav" % k)
        assert r.status_code == 202, r.text
        return u, J(r)["id"]

    stop = threading.Event()
    kills = []

    def killer():
        rng = random.Random(6)
        while not stop.wait(rng.uniform(1.5, 3.0)):
            i = rng.randrange(2)
            srv.kill_worker(i)
            kills.append(i)
            time.sleep(rng.uniform(0.2, 1.0))
            srv.restart_worker(i)

    t0 = time.monotonic()
    k = threading.Thread(target=killer, daemon=True)
    k.start()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            submitted = list(pool.map(one, range(USERS * JOBS_PER_USER)))
        deadline = time.monotonic() + 240
        while True:
            jobs = {j["id"]: j for u in users for j in pages(u.api, "/v1/jobs")}
            open_ = [j for j in jobs.values() if j["status"] not in TERMINAL]
            if not open_:
                break
            assert time.monotonic() < deadline, "%d jobs still open, e.g. %s" % (len(open_), open_[0])
            time.sleep(1)
    finally:
        stop.set()
        k.join()
    elapsed = time.monotonic() - t0
    print("1000 jobs in %.1fs with %d worker kills" % (elapsed, len(kills)))
    assert len(kills) >= 3, "too few kills to mean anything"
    ids = {i for _, i in submitted}
    assert len(ids) == USERS * JOBS_PER_USER and set(jobs) == ids
    failed = [j for j in jobs.values() if j["status"] != "succeeded"]
    assert not failed, "jobs did not succeed: %s" % failed[:3]

    admin = srv.admin()

    def terminal_counts(u):
        counts = {}
        for e in stored_events(u.api):
            if e["type"] in ("job.succeeded", "job.failed", "job.canceled"):
                counts[e["job_id"]] = counts.get(e["job_id"], 0) + 1
        return counts

    # A worker killed between settling a job and storing its event leaves the
    # event to the keepers' repair pass (jobs finished > 5 s ago, every 5 s).
    deadline = time.monotonic() + 30
    for u in users:
        mine = {i for v, i in submitted if v is u}
        while True:
            terminal = terminal_counts(u)
            if set(terminal) == mine or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert set(terminal) == mine, "jobs without a terminal event: %s" % sorted(mine - set(terminal))[:5]
        assert all(n == 1 for n in terminal.values()), "a terminal event repeated"
        entries = ledger(u.api)
        for i in mine:
            assert kinds(job_entries(entries, i)) == ["capture", "hold"], job_entries(entries, i)
        assert_books(admin, u)

    # every object under this server's prefix belongs to one of its jobs
    blob = next(f for f in srv.extra_flags() if f.startswith("s3://"))
    prefix = re.search(r"prefix=([^&/]+)", blob).group(1)
    bucket = re.match(r"s3://([^?/]+)", blob).group(1)
    objs = objects_under(os.path.join(os.environ["VOXD_TEST_S3_DATA"], bucket, prefix))
    assert objs, "no objects found: wrong S3 data layout?"
    owners = {u.id for u in users}
    strays = [o for o in objs if len(o) != 3 or o[0] not in owners or o[1] not in ids]
    assert not strays, "objects without a job: %s" % strays[:5]
    outputs = {o[1] for o in objs if o[2].startswith("output.")}
    assert outputs == ids, "%d jobs without exactly their output object" % len(ids ^ outputs)
