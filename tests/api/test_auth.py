"""test_auth.py - accounts and authorization: sign-up rules, login, API keys
(Bearer and X-API-Key, revocation), JWT expiry, job visibility between users,
and the admin role."""
import time

import pytest

from helpers import (USER_PASSWORD, assert_error, expect, make_user, pages, random_username,
                     submit, wait_job)


def test_no_credentials_is_401_missing_credentials(server):
    for path in ("/v1/me", "/v1/balance", "/v1/jobs", "/v1/ledger", "/v1/api-keys"):
        assert_error(server.api().get(path), 401, "missing_credentials")


def test_bad_api_key_is_401(server):
    assert_error(server.api({"X-API-Key": "vx_notarealkey0000000000000000"}).get("/v1/me"), 401, "invalid_api_key")
    assert_error(server.api({"Authorization": "Bearer vx_notarealkey0000000000000"}).get("/v1/me"),
                 401, "invalid_api_key")


def test_bad_jwt_and_bad_authorization_header_are_401(server, user):
    u = user()
    forged = u.jwt[:-4] + ("AAAA" if not u.jwt.endswith("AAAA") else "BBBB")
    assert_error(server.api({"Authorization": "Bearer " + forged}).get("/v1/me"), 401, "invalid_token")
    assert_error(server.api({"Authorization": "Bearer a.b.c"}).get("/v1/me"), 401, "invalid_token")
    assert_error(server.api({"Authorization": "Basic dXNlcjpwYXNz"}).get("/v1/me"), 401, "invalid_authorization")


def test_api_key_works_as_bearer_and_as_x_api_key_and_jwt_works_too(server, user):
    u = user()
    for api in (u.api, u.key_api, u.jwt_api):
        me = expect(api.get("/v1/me"), 200)
        assert me["id"] == u.id and me["username"] == u.username and me["role"] == "user"
    assert u.key.startswith("vx_")


def test_api_key_is_shown_once_and_listed_without_secret(server, user):
    u = user()
    keys = expect(u.api.get("/v1/api-keys"), 200)["data"]
    assert [k["id"] for k in keys] == [u.key_id]
    assert "key" not in keys[0] and keys[0]["revoked_at"] is None
    assert u.key.startswith(keys[0]["prefix"])


def test_revoked_key_is_refused_right_after_delete(server, user):
    u = user()
    k2 = expect(u.jwt_api.post("/v1/api-keys", json={"name": "second"}), 201)
    k2api = server.api({"X-API-Key": k2["key"]})
    assert expect(k2api.get("/v1/balance"), 200)
    r = u.jwt_api.delete("/v1/api-keys/" + k2["id"])
    assert r.status_code == 204, r.text
    assert_error(k2api.get("/v1/balance"), 401, "invalid_api_key")
    assert_error(server.api({"Authorization": "Bearer " + k2["key"]}).get("/v1/balance"), 401, "invalid_api_key")
    listed = {k["id"]: k for k in expect(u.api.get("/v1/api-keys"), 200)["data"]}
    assert listed[k2["id"]]["revoked_at"] is not None
    # The first key still works.
    expect(u.api.get("/v1/balance"), 200)


def test_deleting_another_users_key_is_404(server, user):
    a, b = user(), user()
    assert_error(b.api.delete("/v1/api-keys/" + a.key_id), 404, "not_found")
    expect(a.api.get("/v1/me"), 200)


def test_expired_jwt_is_401_token_expired(start_server):
    srv = start_server(["--jwt-ttl", "10"])  # the server's smallest accepted TTL
    u = make_user(srv)
    tok = expect(srv.api().post("/v1/auth/login", json={"username": u.username, "password": u.password}), 200)
    assert tok["token_type"] == "bearer" and tok["expires_in"] == 10
    api = srv.api({"Authorization": "Bearer " + tok["access_token"]})
    expect(api.get("/v1/me"), 200)
    time.sleep(11.5)
    assert_error(api.get("/v1/me"), 401, "token_expired")
    # API keys do not expire with the JWT.
    expect(u.api.get("/v1/me"), 200)


def test_other_users_job_is_invisible(server, user, audio):
    owner, other = user(), user()
    job = expect(submit(owner.api, audio["wav"]), 202)
    jid = job["id"]
    assert wait_job(owner.api, jid)["status"] == "succeeded"
    for method, path in (("GET", "/v1/jobs/%s"), ("GET", "/v1/jobs/%s/result"),
                         ("GET", "/v1/jobs/%s/input"), ("POST", "/v1/jobs/%s/cancel")):
        assert_error(other.api.request(method, path % jid), 404, "not_found")
    assert jid not in [j["id"] for j in pages(other.api, "/v1/jobs")]
    # The owner still sees it all.
    assert owner.api.get("/v1/jobs/%s/result" % jid).status_code == 200


def test_admin_sees_any_job_and_its_files(server, admin, user, audio):
    u = user()
    jid = expect(submit(u.api, audio["wav"]), 202)["id"]
    assert wait_job(u.api, jid)["status"] == "succeeded"
    assert expect(admin.get("/v1/jobs/" + jid), 200)["id"] == jid
    assert admin.get("/v1/jobs/%s/result" % jid).status_code == 200
    inp = admin.get("/v1/jobs/%s/input" % jid)
    assert inp.status_code == 200 and inp.content == open(audio["wav"], "rb").read()
    listed = pages(admin, "/v1/admin/jobs", {"user_id": u.id})
    assert [j["id"] for j in listed] == [jid]
    assert listed[0]["user_id"] == u.id
    users = {x["id"]: x for x in pages(admin, "/v1/admin/users")}
    assert users[u.id]["username"] == u.username and "balance" in users[u.id]


def test_admin_endpoints_are_403_for_users(server, user):
    u = user()
    cases = [("GET", "/v1/admin/users", None), ("GET", "/v1/admin/jobs", None),
             ("GET", "/v1/admin/users/%s/audit" % u.id, None),
             ("POST", "/v1/admin/users/%s/credits" % u.id, {"amount": 5, "reason": "self"}),
             ("PUT", "/v1/admin/models/convert/price", {"per_job": 0, "per_second": 0})]
    for method, path, body in cases:
        assert_error(u.api.request(method, path, json=body), 403, "forbidden")
    # None of it took effect.
    assert u.balance()[0] == 10 * 1000000


def test_admin_me_has_role_admin(admin):
    assert expect(admin.get("/v1/me"), 200)["role"] == "admin"


@pytest.mark.parametrize("password", ["short", "aaaaaaaaaaaa", "x" * 300])
def test_signup_with_weak_password_is_422(server, password):
    r = server.api().post("/v1/users", json={"username": random_username(), "password": password})
    assert_error(r, 422, "weak_password")


@pytest.mark.parametrize("name", ["ab", "-leadingdash", "has space", "x" * 33, "emoji\u00e9"])
def test_signup_with_invalid_username_is_422(server, name):
    assert_error(server.api().post("/v1/users", json={"username": name, "password": USER_PASSWORD}),
                 422, "invalid_username")


def test_signup_with_taken_username_is_409(server):
    name = random_username()
    body = expect(server.api().post("/v1/users", json={"username": name, "password": USER_PASSWORD,
                                                       "email": "a@example.org"}), 201)
    assert body["role"] == "user" and body["username"] == name and body["email"] == "a@example.org"
    assert body["id"].startswith("usr_") and "password" not in body
    assert_error(server.api().post("/v1/users", json={"username": name, "password": USER_PASSWORD + "x"}),
                 409, "username_taken")


def test_signup_with_missing_field_is_400_invalid_request(server):
    assert_error(server.api().post("/v1/users", json={"username": random_username()}), 400, "invalid_request")
    assert_error(server.api().post("/v1/users", json={"username": 12, "password": USER_PASSWORD}),
                 400, "invalid_request")


def test_login_with_wrong_password_or_unknown_user_is_401_invalid_credentials(server, user):
    u = user()
    assert_error(server.api().post("/v1/auth/login", json={"username": u.username, "password": "Wrong-pass-123456"}),
                 401, "invalid_credentials")
    assert_error(server.api().post("/v1/auth/login", json={"username": random_username(), "password": USER_PASSWORD}),
                 401, "invalid_credentials")


def test_signup_can_be_disabled(start_server):
    srv = start_server(["--no-signup"])
    assert_error(srv.api().post("/v1/users", json={"username": random_username(), "password": USER_PASSWORD}),
                 403, "signup_disabled")
