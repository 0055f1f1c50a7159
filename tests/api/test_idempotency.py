"""test_idempotency.py - Idempotency-Key on POST /v1/jobs: a replay returns
the first job and charges once; the same key on a different request is 409."""
import pytest

from helpers import (assert_books, assert_error, expect, job_entries, kinds, ledger, micro, pages,
                     submit, token, wait_job)


def test_same_key_same_request_replays_the_job_and_charges_once(server, admin, user, audio):
    u = user()
    bal0, _ = u.balance()
    h = {"Idempotency-Key": "job-" + token()}
    params = {"format": "flac", "sample_rate": 0, "channels": 0}
    first = expect(submit(u.api, audio["wav"], params=params, headers=h), 202, "first")
    # requests draws a new multipart boundary each time, as a real client retry does.
    again = expect(submit(u.api, audio["wav"], params=params, headers=h), 202, "replay")
    assert again["id"] == first["id"]
    jobs = pages(u.api, "/v1/jobs")
    assert [j["id"] for j in jobs] == [first["id"]]
    done = wait_job(u.api, first["id"])
    assert done["status"] == "succeeded", done
    # A replay after completion still answers with the same job.
    third = expect(submit(u.api, audio["wav"], params=params, headers=h), 202, "late replay")
    assert third["id"] == first["id"]
    entries = ledger(u.api)
    assert kinds(job_entries(entries, first["id"])) == ["capture", "hold"]
    assert sum(1 for e in entries if e["kind"] == "hold") == 1
    assert u.balance() == (bal0 - micro(done["cost"]["charged"]), 0)
    assert_books(admin, u)


@pytest.mark.parametrize("change", ["file", "params", "model_filename"])
def test_same_key_different_request_is_409(change, server, admin, user, audio):
    u = user()
    h = {"Idempotency-Key": "job-" + token()}
    first = expect(submit(u.api, audio["wav"], params={"format": "wav"}, headers=h), 202)
    assert wait_job(u.api, first["id"])["status"] == "succeeded"
    bal1 = u.balance()
    if change == "file":
        r = submit(u.api, audio["flac"], params={"format": "wav"}, headers=h)
    elif change == "params":
        r = submit(u.api, audio["wav"], params={"format": "mp3"}, headers=h)
    else:
        r = submit(u.api, audio["wav"], params={"format": "wav"}, headers=h, filename="other-name.wav")
    assert_error(r, 409, "idempotency_key_reused")
    assert [j["id"] for j in pages(u.api, "/v1/jobs")] == [first["id"]]
    assert u.balance() == bal1
    assert_books(admin, u)


def test_idempotency_keys_are_per_user(server, user, audio):
    a, b = user(), user()
    h = {"Idempotency-Key": "shared-" + token()}
    ja = expect(submit(a.api, audio["wav"], headers=h), 202)
    jb = expect(submit(b.api, audio["wav"], headers=h), 202)
    assert ja["id"] != jb["id"]
    wait_job(a.api, ja["id"])
    wait_job(b.api, jb["id"])


def test_invalid_idempotency_key_is_400(server, user, audio):
    u = user()
    for bad in ("x" * 256, "tab\there"):
        assert_error(submit(u.api, audio["wav"], headers={"Idempotency-Key": bad}), 400, "invalid_idempotency_key")
    assert pages(u.api, "/v1/jobs") == []
    assert u.balance() == (10 * 1000000, 0)
