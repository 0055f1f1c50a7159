"""test_concurrency.py - a user funded for exactly 100 jobs submits 150 at
once: exactly 100 are accepted, 50 get 402, and the books end at exactly 0."""
from concurrent.futures import ThreadPoolExecutor

from helpers import (J, assert_books, expect, job_entries, kinds, ledger, make_audio, make_user, micro,
                     submit, wait_job)

M = 1000000


def test_150_concurrent_submits_with_credit_for_100_accept_exactly_100(start_server, audio_dir):
    srv = start_server(["--workers", "2", "--signup-grant", "0"])
    admin = srv.admin()
    expect(admin.put("/v1/admin/models/convert/price", json={"per_job": 1, "per_second": 0}), 200)
    u = make_user(srv)
    assert u.balance() == (0, 0)
    expect(admin.post("/v1/admin/users/%s/credits" % u.id, json={"amount": 100, "reason": "exactly 100 jobs"}), 200)
    assert u.balance() == (100 * M, 0)
    with open(make_audio(audio_dir, "wav", 0.25, rate=16000, name="quarter.wav"), "rb") as f:
        wav = f.read()

    def one(_):
        api = u.api.clone()
        r = submit(api, wav, filename="q.wav")
        return r.status_code, J(r)

    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(one, range(150)))

    accepted = [b for s, b in results if s == 202]
    refused = [b for s, b in results if s == 402]
    others = [(s, b) for s, b in results if s not in (202, 402)]
    assert others == [], others[:5]
    assert len(accepted) == 100 and len(refused) == 50, (len(accepted), len(refused))
    assert all(b["error"]["code"] == "insufficient_credits" for b in refused)
    assert len({b["id"] for b in accepted}) == 100
    assert all(micro(b["cost"]["held"]) == M for b in accepted)

    for b in accepted:
        done = wait_job(u.api, b["id"], timeout=120)
        assert done["status"] == "succeeded", done
        assert micro(done["cost"]["charged"]) == M
    assert u.balance() == (0, 0)
    entries = ledger(u.api)
    assert sum(micro(e["amount"]) for e in entries) == 0
    for b in accepted:
        assert kinds(job_entries(entries, b["id"])) == ["capture", "hold"]
    assert sum(1 for e in entries if e["kind"] == "hold") == 100
    assert_books(admin, u)
    # Out of credit now: the next one is refused too.
    r = submit(u.api, wav)
    assert r.status_code == 402 and J(r)["error"]["code"] == "insufficient_credits"
