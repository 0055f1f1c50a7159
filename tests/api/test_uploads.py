"""test_uploads.py - direct uploads and downloads: POST /v1/uploads hands out a
URL a plain HTTP client PUTs to (presigned S3 with the s3 backend, voxd's own
signed PUT with the file backend), POST /v1/jobs takes the upload_id (JSON or
multipart) exactly once, every refusal is a clear 4xx with nothing charged,
?redirect=1 sends a plain client to a short-lived URL (presigned S3, or voxd's
signed /v1/downloads), and the orphan sweeper removes expired uploads.
Runs on whatever backend VOXD_EXTRA_FLAGS selects."""
import json
import os
import shlex
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from helpers import EXTRA_FLAGS, assert_books, assert_error, expect, wait_job

ON_S3 = any(f.startswith("s3://") for f in EXTRA_FLAGS)


def plain_put(url, body, headers=None):
    """PUT with the standard library only, as any client could; -> (status, body)."""
    req = urllib.request.Request(url, data=body, method="PUT", headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def plain_get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.read()


def new_upload(api, **body):
    r = api.post("/v1/uploads", json=body)
    up = expect(r, 201, "create upload")
    assert r.headers.get("Location") == "/v1/uploads/" + up["id"]
    return up


def uploaded(api, data, **body):
    up = new_upload(api, **body)
    status, text = plain_put(up["url"], data, up["headers"])
    assert status == 200, (status, text[:300])
    return up


def submit_json(api, upload_id, model="convert", params=None, headers=None):
    body = {"model": model, "upload_id": upload_id}
    if params is not None:
        body["params"] = params
    return api.post("/v1/jobs", json=body, headers=headers or {})


def submit_form(api, upload_id, model="convert", params=None):
    fields = {"model": (None, model), "upload_id": (None, upload_id)}
    if params is not None:
        fields["params"] = (None, json.dumps(params))
    return api.post("/v1/jobs", files=fields)


def no_jobs_and_nothing_held(u, balance_before):
    assert expect(u.api.get("/v1/jobs"), 200)["data"] == []
    assert u.balance() == balance_before


def test_direct_upload_end_to_end_with_a_plain_http_client(server, admin, user, wav_bytes):
    u = user()
    up = new_upload(u.api, filename="tone.wav", content_type="audio/wav", size=len(wav_bytes))
    assert up["id"].startswith("upl_") and up["method"] == "PUT" and up["state"] == "pending"
    assert up["max_bytes"] > len(wav_bytes) and up["expires_at"] and isinstance(up["headers"], dict)
    assert up["filename"] == "tone.wav" and up["size"] == len(wav_bytes) and up["job_id"] is None
    if ON_S3:
        assert "X-Amz-Signature=" in up["url"], up["url"]
    else:
        assert up["url"].startswith(server.url + "/v1/uploads/" + up["id"] + "?"), up["url"]

    status, _ = plain_put(up["url"], wav_bytes, up["headers"])
    assert status == 200
    seen = expect(u.api.get("/v1/uploads/" + up["id"]), 200)
    assert seen["state"] == "uploaded" and seen["bytes"] == len(wav_bytes), seen

    params = {"format": "flac", "sample_rate": 16000}
    r = submit_json(u.api, up["id"], params=params)
    job = expect(r, 202, "submit with upload_id")
    assert r.headers.get("Location") == "/v1/jobs/" + job["id"]
    assert job["input"]["bytes"] == len(wav_bytes) and job["input"]["filename"] == "tone.wav"
    assert job["input"]["format"] == "wav" and job["params"]["format"] == "flac"
    done = wait_job(u.api, job["id"])
    assert done["status"] == "succeeded", done
    seen = expect(u.api.get("/v1/uploads/" + up["id"]), 200)
    assert seen["state"] == "used" and seen["job_id"] == job["id"], seen

    direct = u.api.get("/v1/jobs/%s/result" % job["id"])
    assert direct.status_code == 200 and direct.content[:4] == b"fLaC"
    for part, want in (("result", direct.content), ("input", wav_bytes)):
        r = u.api.get("/v1/jobs/%s/%s?redirect=1" % (job["id"], part), allow_redirects=False)
        assert r.status_code == 302, r.text
        location = r.headers["Location"]
        assert expect(r, 302)["url"] == location and r.headers.get("Cache-Control") == "no-store"
        if ON_S3:
            assert "X-Amz-Signature=" in location, location
        else:
            assert location.startswith(server.url + "/v1/downloads/%s/%s?" % (job["id"], part)), location
        # no credentials: the URL itself authorises
        assert plain_get(location) == (200, want)
    assert u.api.get("/v1/jobs/%s/input" % job["id"]).content == wav_bytes
    assert_books(admin, u)


def test_multipart_form_takes_upload_id_instead_of_file(user, wav_bytes):
    u = user()
    up = uploaded(u.api, wav_bytes)
    job = expect(submit_form(u.api, up["id"], params={"format": "wav"}), 202)
    assert job["input"]["filename"] == "upload" and job["input"]["bytes"] == len(wav_bytes)
    assert wait_job(u.api, job["id"])["status"] == "succeeded"


def test_unknown_malformed_and_foreign_uploads_are_404(user, wav_bytes):
    u, other = user(), user()
    before = u.balance()
    theirs = uploaded(other.api, wav_bytes)
    for uid in ("upl_" + "a" * 26, "nope", theirs["id"]):
        assert_error(submit_json(u.api, uid), 404, "upload_not_found")
        assert_error(u.api.get("/v1/uploads/" + uid), 404, "upload_not_found")
    assert_error(submit_form(u.api, theirs["id"]), 404, "upload_not_found")
    no_jobs_and_nothing_held(u, before)
    # still usable by its owner
    assert expect(submit_json(other.api, theirs["id"]), 202)["status"] == "queued"


def test_upload_never_put_is_409_upload_incomplete(user):
    u = user()
    before = u.balance()
    up = new_upload(u.api)
    assert_error(submit_json(u.api, up["id"]), 409, "upload_incomplete")
    assert expect(u.api.get("/v1/uploads/" + up["id"]), 200)["state"] == "pending"
    no_jobs_and_nothing_held(u, before)


def test_second_job_with_the_same_upload_is_409_upload_used(user, wav_bytes):
    u = user()
    up = uploaded(u.api, wav_bytes)
    first = expect(submit_json(u.api, up["id"]), 202)
    assert wait_job(u.api, first["id"])["status"] == "succeeded"  # the balance stays put from here
    held = u.balance()
    assert_error(submit_json(u.api, up["id"]), 409, "upload_used")
    assert_error(submit_form(u.api, up["id"]), 409, "upload_used")
    assert u.balance() == held
    assert [j["id"] for j in expect(u.api.get("/v1/jobs"), 200)["data"]] == [first["id"]]


def test_concurrent_submits_of_one_upload_give_one_job_and_conflicts(admin, user, wav_bytes):
    u = user()
    up = uploaded(u.api, wav_bytes)
    results = []
    barrier = threading.Barrier(8)

    def go():
        barrier.wait()
        r = submit_json(u.api.clone(), up["id"])
        results.append((r.status_code, r.json()))

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(code for code, _ in results)
    assert codes == [202] + [409] * 7, results
    assert all(body["error"]["code"] == "upload_used" for code, body in results if code == 409)
    jobs = expect(u.api.get("/v1/jobs"), 200)["data"]
    assert len(jobs) == 1
    assert wait_job(u.api, jobs[0]["id"])["status"] == "succeeded"
    assert_books(admin, u)


def test_idempotent_retry_with_an_upload_replays_the_first_job(user, wav_bytes):
    u = user()
    up = uploaded(u.api, wav_bytes)
    key = {"Idempotency-Key": "upl-" + uuid.uuid4().hex}
    first = expect(submit_json(u.api, up["id"], headers=key), 202)
    again = submit_json(u.api, up["id"], headers=key)
    assert expect(again, 202)["id"] == first["id"] and again.headers.get("Idempotent-Replayed") == "true"
    other = uploaded(u.api, wav_bytes)
    assert_error(submit_json(u.api, other["id"], headers=key), 409, "idempotency_key_reused")


def test_expired_upload_is_410_and_its_url_refuses_late_bytes(start_server, user, wav_bytes):
    srv = start_server(["--upload-url-ttl", "2"])
    u = user(srv)
    before = u.balance()
    put_in_time = uploaded(u.api, wav_bytes)
    late = new_upload(u.api)
    time.sleep(3.2)
    assert_error(submit_json(u.api, put_in_time["id"]), 410, "upload_expired")
    status, _ = plain_put(late["url"], wav_bytes, late["headers"])
    assert status in (403, 410), status  # S3: expired signature; voxd: 410 upload_expired
    assert expect(u.api.get("/v1/uploads/" + late["id"]), 200)["state"] == "expired"
    no_jobs_and_nothing_held(u, before)


def test_size_limits_declared_streamed_and_stored(start_server, user, wav_bytes):
    limit = 4096
    srv = start_server(["--max-upload", str(limit)])
    u = user(srv)
    before = u.balance()
    assert_error(u.api.post("/v1/uploads", json={"size": limit + 1}), 413, "upload_too_large")
    assert_error(u.api.post("/v1/uploads", json={"size": -5}), 400, "invalid_size")
    up = new_upload(u.api)
    assert up["max_bytes"] == limit
    status, text = plain_put(up["url"], wav_bytes[:limit + 100], up["headers"])
    if ON_S3:  # the store takes it; the job refuses it
        assert status == 200
        assert_error(submit_json(u.api, up["id"]), 413, "upload_too_large")
    else:  # voxd stops the body as it arrives
        assert status == 413 and json.loads(text)["error"]["code"] == "upload_too_large"
        assert_error(submit_json(u.api, up["id"]), 409, "upload_incomplete")
    no_jobs_and_nothing_held(u, before)


def test_not_audio_and_empty_uploads_are_refused_like_file_uploads(user):
    u = user()
    before = u.balance()
    text = uploaded(u.api, b"This is not audio, just text pretending to be a WAV.\n" * 50, filename="notes.wav")
    assert_error(submit_json(u.api, text["id"]), 415, "unsupported_format")
    empty = uploaded(u.api, b"")
    assert_error(submit_json(u.api, empty["id"]), 422, "empty_file")
    no_jobs_and_nothing_held(u, before)
    # a refused submission leaves the upload usable (e.g. with another model)
    assert expect(u.api.get("/v1/uploads/" + text["id"]), 200)["state"] == "uploaded"


def test_bad_requests_are_400(user, wav_bytes):
    u = user()
    up = uploaded(u.api, wav_bytes)
    assert_error(u.api.post("/v1/jobs", json={"model": "convert"}), 400, "missing_upload_id")
    assert_error(u.api.post("/v1/jobs", json={"upload_id": up["id"]}), 400, "missing_model")
    assert_error(u.api.post("/v1/jobs", json={"model": "convert", "upload_id": up["id"], "params": 5}),
                 400, "invalid_params_json")
    both = {"model": (None, "convert"), "upload_id": (None, up["id"]), "file": ("a.wav", wav_bytes, "audio/wav")}
    assert_error(u.api.post("/v1/jobs", files=both), 400, "invalid_request")
    assert_error(u.api.post("/v1/uploads", json={"filename": "../etc/passwd"}), 400, "invalid_filename")
    assert_error(u.api.post("/v1/uploads", data="{", headers={"Content-Type": "application/json"}),
                 400, "invalid_json")
    assert_error(u.server.api().post("/v1/uploads", json={}), 401, "missing_credentials")
    assert_error(u.api.post("/v1/jobs", data="x", headers={"Content-Type": "text/plain"}),
                 415, "unsupported_media_type")
    assert expect(u.api.get("/v1/uploads/" + up["id"]), 200)["state"] == "uploaded"


@pytest.mark.skipif(ON_S3, reason="voxd serves the upload URL only with the file backend")
def test_voxd_served_upload_url_needs_its_exact_signature(server, user, wav_bytes):
    u = user()
    up = new_upload(u.api)
    url = urllib.parse.urlsplit(up["url"])
    q = dict(urllib.parse.parse_qsl(url.query))
    base = server.url + url.path
    bad_sig = dict(q, signature=("0" if q["signature"][0] != "0" else "1") + q["signature"][1:])
    longer = dict(q, expires=str(int(q["expires"]) + 3600))
    for query in (bad_sig, longer, {}, {"expires": q["expires"]}):
        status, text = plain_put(base + "?" + urllib.parse.urlencode(query), wav_bytes)
        assert status == 403 and json.loads(text)["error"]["code"] == "invalid_signature", (status, text)
    other = new_upload(u.api)  # a signature is bound to its upload id
    status, _ = plain_put(server.url + "/v1/uploads/" + other["id"] + "?" + url.query, wav_bytes)
    assert status == 403
    assert_error(u.api.post("/v1/jobs", json={"model": "convert", "upload_id": up["id"]}), 409,
                 "upload_incomplete")
    status, _ = plain_put(up["url"], wav_bytes)
    assert status == 200
    job = expect(submit_json(u.api, up["id"]), 202)
    status, text = plain_put(up["url"], wav_bytes)  # a used upload takes no new bytes
    assert status == 409 and json.loads(text)["error"]["code"] == "upload_used"
    assert wait_job(u.api, job["id"])["status"] == "succeeded"


def metric(srv, name):
    """The metric summed over the server's API nodes (in cluster mode one of
    two nodes holds the sweeper's lease)."""
    total = 0
    for url in srv.urls:
        text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        lines = [line for line in text.splitlines() if line.startswith(name + " ")]
        assert lines, "no metric %s" % name
        total += int(lines[0].split()[1])
    return total


def test_sweeper_removes_expired_uploads_and_keeps_job_inputs(start_server, user, wav_bytes):
    flags = ["--upload-url-ttl", "3", "--sweep-interval", "1", "--sweep-grace", "0"]
    blob = [f for f in EXTRA_FLAGS if f.startswith("s3://")]
    if blob and "prefix=" not in blob[0]:  # a prefix of its own: other servers share the bucket, not this database
        flags += ["--blob", blob[0] + "&prefix=sweep-%s/" % uuid.uuid4().hex[:12]]
    srv = start_server(flags)
    u = user(srv)
    kept = uploaded(u.api, wav_bytes)
    job = expect(submit_json(u.api, kept["id"]), 202)
    gone = uploaded(u.api, wav_bytes)
    assert wait_job(u.api, job["id"])["status"] == "succeeded"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and metric(srv, "voxd_sweep_expired_uploads_total") < 1:
        time.sleep(0.2)
    assert metric(srv, "voxd_sweep_expired_uploads_total") >= 1
    seen = expect(u.api.get("/v1/uploads/" + gone["id"]), 200)
    assert seen["state"] == "expired" and seen["bytes"] is None
    time.sleep(1.5)  # at least one more full sweep
    assert u.api.get("/v1/jobs/%s/input" % job["id"]).content == wav_bytes
    assert u.api.get("/v1/jobs/%s/result" % job["id"]).status_code == 200
    assert expect(u.api.get("/v1/uploads/" + kept["id"]), 200)["state"] == "used"
    assert metric(srv, "voxd_sweeps_total") >= 2
    if not ON_S3:  # an object no row refers to, put there behind voxd's back
        orphan = os.path.join(srv.data_dir, "blobs", "users", u.id, "job_" + "b" * 26, "input.wav")
        os.makedirs(os.path.dirname(orphan))
        with open(orphan, "wb") as f:
            f.write(b"x")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and os.path.exists(orphan):
            time.sleep(0.2)
        assert not os.path.exists(orphan)
        assert metric(srv, "voxd_sweep_removed_total") >= 1
        assert u.api.get("/v1/jobs/%s/input" % job["id"]).content == wav_bytes


def test_redirect_urls_are_bound_to_their_job_part_and_signature(server, user, wav_bytes):
    u = user()
    job = expect(submit_json(u.api, uploaded(u.api, wav_bytes)["id"]), 202)
    assert wait_job(u.api, job["id"])["status"] == "succeeded"
    r = u.api.get("/v1/jobs/%s/input?redirect=true" % job["id"], allow_redirects=False)
    assert r.status_code == 302
    location = r.headers["Location"]
    if ON_S3:
        return  # the store checks its own signatures (tests/unit/test_s3.c)
    url = urllib.parse.urlsplit(location)
    q = dict(urllib.parse.parse_qsl(url.query))
    tampered = dict(q, signature=("0" if q["signature"][0] != "0" else "1") + q["signature"][1:])
    other_part = url.path.replace("/input", "/result")
    for path, query in ((url.path, tampered), (url.path, dict(q, expires=str(int(q["expires"]) + 60))),
                        (other_part, q), (url.path, {})):
        r = server.api().get(path + "?" + urllib.parse.urlencode(query))
        assert_error(r, 403, "invalid_signature")
    assert plain_get(location) == (200, wav_bytes)
    # redirect=1 checks visibility first, like any download
    assert_error(u.api.get("/v1/jobs/%s/result?redirect=1" % ("job_" + "c" * 26), allow_redirects=False),
                 404, "not_found")
