"""test_cancel.py - canceling a queued job releases its hold at once; a
finished job cannot be canceled (409 job_finished)."""
import pytest

from helpers import (assert_books, assert_error, expect, job_entries, kinds, ledger, make_user, micro,
                     submit, wait_job)


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory):
    """A server with no workers: jobs stay queued."""
    from helpers import Server
    srv = Server(tmp_path_factory.mktemp("idle") / "data", ["--workers", "0"], name="idle", shared=True)
    srv.start()
    yield srv
    srv.stop_and_check()


def test_cancel_of_a_queued_job_releases_its_hold(idle_server):
    admin = idle_server.admin()
    u = make_user(idle_server)
    from helpers import make_audio
    bal0, held0 = u.balance()
    assert held0 == 0
    wav = make_audio(idle_server.data_dir + "/..", "wav", 2.0, name="cancel-2s.wav")
    job = expect(submit(u.api, wav), 202)
    hold = micro(job["cost"]["held"])
    assert hold > 0
    assert u.balance() == (bal0 - hold, hold)
    assert expect(u.api.get("/v1/jobs/" + job["id"]), 200)["status"] == "queued"

    c = expect(u.api.post("/v1/jobs/%s/cancel" % job["id"]), 200)
    assert c["id"] == job["id"] and c["status"] == "canceled"
    assert micro(c["cost"]["charged"]) == 0
    assert u.balance() == (bal0, 0)
    entries = job_entries(ledger(u.api), job["id"])
    assert kinds(entries) == ["hold", "release"], entries
    rel = next(e for e in entries if e["kind"] == "release")
    assert micro(rel["amount"]) == hold and micro(rel["held_delta"]) == -hold
    assert_books(admin, u)

    # Twice: the job is finished.
    assert_error(u.api.post("/v1/jobs/%s/cancel" % job["id"]), 409, "job_finished")
    assert_error(u.api.get("/v1/jobs/%s/result" % job["id"]), 409, "result_not_ready")
    assert u.balance() == (bal0, 0)
    assert kinds(job_entries(ledger(u.api), job["id"])) == ["hold", "release"]
    got = expect(u.api.get("/v1/jobs/" + job["id"]), 200)
    assert got["status"] == "canceled" and got["finished_at"]
    assert_books(admin, u)


def test_cancel_of_one_job_leaves_the_others_held(idle_server, wav_bytes):
    admin = idle_server.admin()
    u = make_user(idle_server)
    a = expect(submit(u.api, wav_bytes), 202)
    b = expect(submit(u.api, wav_bytes), 202)
    ha, hb = micro(a["cost"]["held"]), micro(b["cost"]["held"])
    expect(u.api.post("/v1/jobs/%s/cancel" % a["id"]), 200)
    bal, held = u.balance()
    assert held == hb and bal == 10 * 1000000 - hb
    assert ha > 0
    assert_books(admin, u)


def test_cancel_of_a_succeeded_job_is_409_job_finished(server, admin, user, audio):
    u = user()
    job = expect(submit(u.api, audio["wav"]), 202)
    done = wait_job(u.api, job["id"])
    assert done["status"] == "succeeded"
    before = u.balance()
    assert_error(u.api.post("/v1/jobs/%s/cancel" % job["id"]), 409, "job_finished")
    assert u.balance() == before
    assert kinds(job_entries(ledger(u.api), job["id"])) == ["capture", "hold"]
    assert_books(admin, u)
