"""test_shutdown.py - SIGTERM is graceful: a running job either finishes
within the grace period or goes back to the queue without counting the
attempt; the process exits 0; after a restart the job ends exactly once."""
import time

from helpers import J, assert_books, expect, job_entries, kinds, ledger, make_audio, make_user, submit, wait_job


def _running_job(srv, u, src, params):
    with open(src, "rb") as f:
        r = submit(u.api, f.read(), params=params, filename="long.mp3")
    assert r.status_code == 202, r.text
    job_id = J(r)["id"]
    wait_job(u.api, job_id, timeout=60, statuses=("running", "succeeded", "failed", "canceled"))
    job = expect(u.api.get("/v1/jobs/" + job_id), 200)
    assert job["status"] == "running", "the job was not caught running: %s" % job
    return job_id


def test_sigterm_without_grace_gives_the_running_job_back_uncounted(start_server, audio_dir):
    flags = ["--workers", "1", "--shutdown-grace", "0", "--signup-grant", "100"]
    srv = start_server(flags)
    u = make_user(srv)
    src = make_audio(audio_dir, "mp3", 1200.0, rate=44100, channels=2, name="shutdown-20min.mp3")
    job_id = _running_job(srv, u, src, {"format": "mp3"})
    held_before = u.balance()[1]
    t0 = time.monotonic()
    rc = srv.stop(timeout=20)
    assert rc == 0, srv.log_tail(40)
    assert time.monotonic() - t0 < 10, "shutdown waited for the job although the grace is 0"

    srv.restart(["--workers", "0", "--signup-grant", "100"])
    job = expect(u.api.get("/v1/jobs/" + job_id), 200)
    assert job["status"] == "queued", job
    assert job["attempts"] == 0, "an interrupted attempt must not count: %s" % job
    assert u.balance()[1] == held_before  # the hold is still in place
    srv.stop_and_check()

    srv.restart(["--workers", "1", "--signup-grant", "100"])
    job = wait_job(u.api, job_id, timeout=180)
    assert job["status"] == "succeeded" and job["attempts"] == 1, job
    assert kinds(job_entries(ledger(u.api), job_id)) == ["capture", "hold"]
    assert_books(srv.admin(), u)


def test_sigterm_lets_a_running_job_finish_within_the_grace(start_server, audio_dir):
    flags = ["--workers", "1", "--shutdown-grace", "60", "--signup-grant", "100"]
    srv = start_server(flags)
    u = make_user(srv)
    src = make_audio(audio_dir, "mp3", 240.0, rate=44100, channels=2, name="shutdown-4min.mp3")
    job_id = _running_job(srv, u, src, {"format": "mp3"})
    rc = srv.stop(timeout=90)
    assert rc == 0, srv.log_tail(40)
    srv.restart(["--workers", "0", "--signup-grant", "100"])
    job = expect(u.api.get("/v1/jobs/" + job_id), 200)
    assert job["status"] == "succeeded" and job["attempts"] == 1, job
    assert_books(srv.admin(), u)
