"""test_crash.py - SIGKILL the server while 50 jobs are queued or running,
start it again on the same data: every job ends exactly once, every hold is
captured or released exactly once, the books stay consistent."""
import time
from concurrent.futures import ThreadPoolExecutor

from helpers import (TERMINAL, J, assert_books, expect, job_entries, kinds, ledger, make_audio, make_user,
                     micro, pages)

FLAGS = ["--workers", "2", "--lease", "3", "--heartbeat", "1", "--max-attempts", "3",
         "--signup-grant", "1000"]


def test_sigkill_mid_run_loses_nothing_and_settles_each_job_once(start_server, audio_dir):
    srv = start_server(FLAGS)
    u = make_user(srv)
    src = make_audio(audio_dir, "mp3", 25.0, rate=44100, channels=2, name="crash-25s.mp3")
    with open(src, "rb") as f:
        mp3 = f.read()
    params = {"format": "mp3", "sample_rate": 44100, "channels": 2}

    def one(i):
        from helpers import submit
        r = submit(u.api.clone(), mp3, params=params, filename="c%02d.mp3" % i)
        assert r.status_code == 202, r.text
        return J(r)["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(one, range(50)))
    assert len(set(ids)) == 50

    # Kill as soon as some work is in flight (running, and not everything finished).
    deadline = time.monotonic() + 60
    state = {}
    while time.monotonic() < deadline:
        jobs = pages(u.api, "/v1/jobs")
        state = {j["id"]: j["status"] for j in jobs}
        running = sum(1 for s in state.values() if s == "running")
        pending = sum(1 for s in state.values() if s in ("queued", "running"))
        if running >= 1 and pending >= 10:
            break
        time.sleep(0.02)
    pending = sum(1 for s in state.values() if s in ("queued", "running"))
    assert pending >= 10, "the crash came too late to prove anything: %s" % state
    print("at SIGKILL:", {s: list(state.values()).count(s) for s in set(state.values())})
    srv.kill()

    srv.restart(FLAGS)
    admin = srv.admin()
    deadline = time.monotonic() + 240
    while True:
        jobs = {j["id"]: j for j in pages(u.api, "/v1/jobs")}
        if all(jobs[i]["status"] in TERMINAL for i in ids):
            break
        assert time.monotonic() < deadline, "not all jobs finished after restart: %s" % {
            i: jobs[i]["status"] for i in ids if jobs[i]["status"] not in TERMINAL}
        time.sleep(0.25)

    print("attempts after restart:", sorted(jobs[i]["attempts"] for i in ids))
    statuses = [jobs[i]["status"] for i in ids]
    assert statuses.count("succeeded") == 50, statuses
    entries = ledger(u.api)
    for i in ids:
        k = kinds(job_entries(entries, i))
        assert k == ["capture", "hold"], (i, k, jobs[i])
        assert 1 <= jobs[i]["attempts"] <= 3, jobs[i]
        assert micro(jobs[i]["cost"]["charged"]) <= micro(jobs[i]["cost"]["held"])
    assert u.balance()[1] == 0
    assert_books(admin, u)
    # Each result is downloadable.
    for i in ids[:5]:
        r = u.api.get("/v1/jobs/%s/result" % i)
        assert r.status_code == 200 and len(r.content) == int(r.headers["Content-Length"]) > 0
    # The server came back with no stuck work.
    m = srv.api().get("/metrics").text
    assert "voxd_queue_depth 0" in m, [l for l in m.splitlines() if "queue_depth" in l]
    expect(srv.api().get("/readyz"), 200)
