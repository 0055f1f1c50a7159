"""test_credits.py - balance, self top-up (off by default), admin grants and
adjustments, and the books invariant (balance == sum of ledger amounts,
audit consistent) after each scenario."""
import pytest

from helpers import assert_books, assert_error, expect, ledger, make_user, micro

M = 1000000


@pytest.fixture(scope="module")
def topup_server(tmp_path_factory):
    from helpers import Server
    srv = Server(tmp_path_factory.mktemp("topup") / "data",
                 ["--workers", "1", "--allow-self-top-up", "--signup-grant", "2.5"], name="topup", shared=True)
    srv.start()
    yield srv
    srv.stop_and_check()


def test_new_user_gets_the_default_signup_grant(server, admin, user):
    u = user()
    b = expect(u.api.get("/v1/balance"), 200)
    assert b["currency"] == "credits"
    assert micro(b["balance"]) == 10 * M and micro(b["held"]) == 0
    entries = ledger(u.api)
    assert [e["kind"] for e in entries] == ["grant"]
    assert micro(entries[0]["amount"]) == 10 * M and micro(entries[0]["balance_after"]) == 10 * M
    assert entries[0]["id"].startswith("led_")
    assert_books(admin, u)


def test_admin_audit_reports_balance_held_and_ledger_sums(server, admin, user):
    u = user()
    audit = expect(admin.get("/v1/admin/users/%s/audit" % u.id), 200)
    assert set(audit) >= {"user_id", "balance", "held", "ledger_sum", "held_sum", "consistent"}, audit
    assert micro(audit["ledger_sum"]) == micro(audit["balance"]) == 10 * M
    assert micro(audit["held_sum"]) == micro(audit["held"]) == 0
    assert audit["consistent"] is True
    assert_error(admin.get("/v1/admin/users/usr_nope/audit"), 404, "not_found")


def test_top_up_is_403_when_disabled(server, admin, user):
    u = user()
    assert_error(u.api.post("/v1/balance/top-up", json={"amount": 5}), 403, "top_up_disabled")
    assert u.balance() == (10 * M, 0)
    assert_books(admin, u)


def test_top_up_adds_exactly_the_amount_when_enabled(topup_server):
    admin = topup_server.admin()
    u = make_user(topup_server)
    assert u.balance() == (2500000, 0)
    b = expect(u.api.post("/v1/balance/top-up", json={"amount": 5.25}), 200)
    assert micro(b["balance"]) == 7750000 and b["currency"] == "credits"
    b = expect(u.api.post("/v1/balance/top-up", json={"amount": 0.000001}), 200)
    assert micro(b["balance"]) == 7750001
    entries = ledger(u.api)
    assert sorted(e["kind"] for e in entries) == ["grant", "top_up", "top_up"]
    # Newest first.
    assert micro(entries[0]["amount"]) == 1 and micro(entries[0]["balance_after"]) == 7750001
    assert_books(admin, u)


@pytest.mark.parametrize("amount", [0, -1, "abc", 0.0000001, 1e12])
def test_top_up_with_invalid_amount_is_400_and_changes_nothing(topup_server, amount):
    admin = topup_server.admin()
    u = make_user(topup_server)
    assert_error(u.api.post("/v1/balance/top-up", json={"amount": amount}), 400, "invalid_amount")
    assert u.balance() == (2500000, 0)
    assert len(ledger(u.api)) == 1
    assert_books(admin, u)


def test_top_up_with_invalid_json_is_400_invalid_json(topup_server):
    u = make_user(topup_server)
    r = u.api.post("/v1/balance/top-up", data=b'{"amount": 5', headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_json")
    assert u.balance() == (2500000, 0)


def test_top_up_is_idempotent_with_a_key(topup_server):
    admin = topup_server.admin()
    u = make_user(topup_server)
    h = {"Idempotency-Key": "topup-" + u.id}
    a = expect(u.api.post("/v1/balance/top-up", json={"amount": 1}, headers=h), 200)
    b = expect(u.api.post("/v1/balance/top-up", json={"amount": 1}, headers=h), 200)
    assert a == b and micro(b["balance"]) == 3500000
    assert u.balance() == (3500000, 0)
    assert_error(u.api.post("/v1/balance/top-up", json={"amount": 2}, headers=h), 409, "idempotency_key_reused")
    assert_books(admin, u)


def test_admin_grant_with_reason_credits_the_user(server, admin, user):
    u = user()
    b = expect(admin.post("/v1/admin/users/%s/credits" % u.id, json={"amount": 3.5, "reason": "welcome bonus"}), 200)
    assert micro(b["balance"]) == 13500000
    assert u.balance() == (13500000, 0)
    e = ledger(u.api)[0]
    assert e["kind"] in ("grant", "adjust") and micro(e["amount"]) == 3500000
    assert "welcome bonus" in (e["note"] or "")
    # A negative adjustment within the balance works too.
    b = expect(admin.post("/v1/admin/users/%s/credits" % u.id, json={"amount": -1.5, "reason": "correction"}), 200)
    assert micro(b["balance"]) == 12000000
    assert_books(admin, u)


def test_admin_grant_without_reason_is_400(server, admin, user):
    u = user()
    assert_error(admin.post("/v1/admin/users/%s/credits" % u.id, json={"amount": 1}), 400, "invalid_request")
    assert_error(admin.post("/v1/admin/users/%s/credits" % u.id, json={"amount": 1, "reason": ""}),
                 400, "invalid_request")
    assert_error(admin.post("/v1/admin/users/%s/credits" % u.id, json={"amount": 1, "reason": "r" * 201}),
                 400, "invalid_request")
    assert u.balance() == (10 * M, 0)
    assert_books(admin, u)


def test_admin_debit_beyond_balance_is_402_and_changes_nothing(server, admin, user):
    u = user()
    before = ledger(u.api)
    assert_error(admin.post("/v1/admin/users/%s/credits" % u.id, json={"amount": -10.000001, "reason": "too much"}),
                 402, "insufficient_credits")
    assert u.balance() == (10 * M, 0)
    assert ledger(u.api) == before
    # Exactly the balance is allowed and leaves zero.
    b = expect(admin.post("/v1/admin/users/%s/credits" % u.id, json={"amount": -10, "reason": "all"}), 200)
    assert micro(b["balance"]) == 0
    assert_books(admin, u)


def test_admin_grant_to_unknown_user_is_404(server, admin):
    assert_error(admin.post("/v1/admin/users/usr_nope/credits", json={"amount": 1, "reason": "x"}), 404, "not_found")


def test_ledger_pagination_walks_every_entry_once(server, admin, user):
    u = user()
    for i in range(7):
        expect(admin.post("/v1/admin/users/%s/credits" % u.id, json={"amount": i + 1, "reason": "r%d" % i}), 200)
    seen, cursor = [], None
    while True:
        params = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = expect(u.api.get("/v1/ledger", params=params), 200)
        assert len(page["data"]) <= 3
        seen.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 8 and len({e["id"] for e in seen}) == 8
    # Newest first: the balance_after values decrease along the pages.
    after = [micro(e["balance_after"]) for e in seen]
    assert after == sorted(after, reverse=True)
    assert_error(u.api.get("/v1/ledger", params={"limit": 0}), 400, "invalid_limit")
    assert_error(u.api.get("/v1/ledger", params={"limit": 201}), 400, "invalid_limit")
    assert_error(u.api.get("/v1/ledger", params={"cursor": "garbage!!"}), 400, "invalid_cursor")
    assert_books(admin, u)


def test_admin_sets_a_model_price(start_server):
    srv = start_server(["--workers", "0"])
    admin = srv.admin()
    m = expect(admin.put("/v1/admin/models/convert/price", json={"per_job": 0.25, "per_second": 0.5}), 200)
    assert micro(m["price"]["per_job"]) == 250000 and micro(m["price"]["per_second"]) == 500000
    got = expect(make_user(srv).api.get("/v1/models/convert"), 200)
    assert micro(got["price"]["per_job"]) == 250000
    assert_error(admin.put("/v1/admin/models/convert/price", json={"per_job": -1, "per_second": 0}),
                 400, "invalid_amount")
    assert_error(admin.put("/v1/admin/models/nope/price", json={"per_job": 1, "per_second": 0}), 404, "not_found")
