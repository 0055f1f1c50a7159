"""test_webhooks.py - signed webhooks: endpoint CRUD with the secret shown
once, refusal of private destinations, a receiver on 127.0.0.1 (server
started with --webhook-allow 127.0.0.1) that verifies Standard Webhooks
signatures (and rejects a tampered body), sees retries after answering 500
twice, each event exactly once after success, the per-job webhook_url, the
delivery log with manual redelivery, a delivery that gives up, and a voxd
restart in the middle of retries that still delivers."""
import base64
import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest

from helpers import assert_error, expect, make_audio, make_user, submit, wait_job

ALL_TYPES = {"job.queued", "job.started", "job.progress", "job.succeeded"}


def verify(secret, headers, body):
    """Standard Webhooks check: any v1 signature over id.timestamp.body."""
    key = base64.b64decode(secret[len("whsec_"):])
    msg = ("%s.%s." % (headers["webhook-id"], headers["webhook-timestamp"])).encode() + body
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    sigs = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1,")]
    return any(hmac.compare_digest(s, want) for s in sigs)


class Receiver:
    """An HTTP receiver on 127.0.0.1: answers 500 to the first `fail_first`
    requests of each webhook-id (or always, when fail_first < 0), else 200;
    records (headers, body, answered status)."""

    def __init__(self, fail_first=0):
        self.fail_first = fail_first
        self.lock = threading.Lock()
        self.calls = []
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with recv.lock:
                    tries = sum(1 for h, _, _ in recv.calls if h.get("webhook-id") == headers.get("webhook-id"))
                    status = 500 if recv.fail_first < 0 or tries < recv.fail_first else 200
                    recv.calls.append((headers, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self):
        with self.lock:
            return list(self.calls)

    def delivered(self):
        """event id -> number of 2xx-answered deliveries."""
        out = {}
        for h, body, status in self.snapshot():
            if status == 200:
                ev = json.loads(body)
                out[ev["id"]] = out.get(ev["id"], 0) + 1
        return out

    def wait(self, cond, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond(self):
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    made = []

    def _make(fail_first=0):
        r = Receiver(fail_first)
        made.append(r)
        return r
    yield _make
    for r in made:
        r.close()


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    return make_audio(tmp_path_factory.mktemp("webhook-audio"), "wav", 5.0, name="webhook-5s.wav")


FLAGS = ["--webhook-allow", "127.0.0.1", "--webhook-retry-base", "0.2", "--workers", "1"]


def job_events(u, job_id):
    """The job's stored events, via a WebSocket-free path: the SSE replay."""
    from test_events import Sse
    feed = Sse(u.server, "/v1/jobs/%s/events?since=0" % job_id, {"X-API-Key": u.key})
    evs = [json.loads(e["data"]) for e in feed.events()]
    feed.close()
    return evs


def test_endpoints_show_the_secret_once_and_belong_to_their_user(start_server, receiver):
    srv = start_server(FLAGS)
    u, other = make_user(srv), make_user(srv)
    rc = receiver()
    ep = expect(u.api.post("/v1/webhooks", json={"url": rc.url + "/a", "event_types": ["job.succeeded"]}), 201)
    assert ep["secret"].startswith("whsec_") and len(base64.b64decode(ep["secret"][6:])) >= 24
    assert ep["event_types"] == ["job.succeeded"] and ep["url"] == rc.url + "/a" and ep["kind"] == "user"
    listed = expect(u.api.get("/v1/webhooks"), 200)["data"]
    assert [e["id"] for e in listed] == [ep["id"]]
    assert all("secret" not in e for e in listed)
    got = expect(u.api.get("/v1/webhooks/" + ep["id"]), 200)
    assert "secret" not in got and got["id"] == ep["id"]
    for path in ("/v1/webhooks/" + ep["id"], "/v1/webhooks/%s/deliveries" % ep["id"]):
        assert_error(other.api.get(path), 404, "not_found")
    assert_error(other.api.delete("/v1/webhooks/" + ep["id"]), 404, "not_found")
    assert_error(other.api.post("/v1/webhooks/%s/rotate-secret" % ep["id"]), 404, "not_found")
    rot = expect(u.api.post("/v1/webhooks/%s/rotate-secret" % ep["id"]), 200)
    assert rot["secret"].startswith("whsec_") and rot["secret"] != ep["secret"]
    assert rot["previous_secret_expires_at"]
    expect(u.api.delete("/v1/webhooks/" + ep["id"]), 204)
    assert_error(u.api.get("/v1/webhooks/" + ep["id"]), 404, "not_found")
    assert expect(u.api.get("/v1/webhooks"), 200)["data"] == []
    assert_error(server_api(srv).post("/v1/webhooks", json={"url": rc.url}), 401, "missing_credentials")


def server_api(srv):
    return srv.api()


def test_private_and_malformed_destinations_are_refused(server, user):
    """The default server has no allow-list: loopback, private, link-local and
    their disguises are refused after resolution."""
    u = user()
    for url in ("http://127.0.0.1:9/h", "http://localhost/h", "http://[::1]/h", "http://[::ffff:127.0.0.1]/h",
                "http://2130706433/h", "http://0x7f.1/h", "http://10.1.2.3/h", "http://169.254.169.254/latest",
                "http://[fd00::1]/h", "http://192.168.0.1/h"):
        assert_error(u.api.post("/v1/webhooks", json={"url": url}), 422, "webhook_url_refused")
    for url in ("ftp://example.com/", "file:///etc/passwd", "https://user:pw@example.com/", "http:///x", "x"):
        assert_error(u.api.post("/v1/webhooks", json={"url": url}), 400, "invalid_webhook_url")
    assert_error(u.api.post("/v1/webhooks", json={"url": "https://example.com/", "event_types": ["job.exploded"]}),
                 400, "invalid_event_types")
    assert_error(u.api.post("/v1/webhooks", json={"url": "https://example.com/", "event_types": "job.queued"}),
                 400, "invalid_event_types")
    assert_error(u.api.post("/v1/webhooks", json={}), 400, "invalid_request")


def test_signed_deliveries_retry_after_500s_and_arrive_exactly_once(start_server, receiver, wav):
    srv = start_server(FLAGS)
    u = make_user(srv)
    rc = receiver(fail_first=2)
    ep = expect(u.api.post("/v1/webhooks", json={"url": rc.url + "/hook"}), 201)
    job = expect(submit(u.api, wav), 202)
    wait_job(u.api, job["id"])
    events = job_events(u, job["id"])
    want = {e["id"] for e in events}
    assert {e["type"] for e in events} == ALL_TYPES
    assert rc.wait(lambda r: set(r.delivered()) >= want), (rc.delivered(), want)
    time.sleep(1.0)  # nothing more may come once delivered
    assert rc.delivered() == {i: 1 for i in want}
    by_id = {}
    for headers, body, status in rc.snapshot():
        assert verify(ep["secret"], headers, body), "bad signature"
        tampered = body.replace(b'"job.', b'"jOb.', 1)
        assert not verify(ep["secret"], headers, tampered), "a tampered body verified"
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 120
        assert headers["content-type"] == "application/json"
        by_id.setdefault(headers["webhook-id"], []).append(status)
        ev = json.loads(body)
        assert ev["job_id"] == job["id"] and ev["user_id"] == u.id and ev["type"] in ALL_TYPES
    # one webhook-id per event, kept across its retries: 500, 500, 200
    assert len(by_id) == len(want)
    assert all(s == [500, 500, 200] for s in by_id.values()), by_id
    log = expect(u.api.get("/v1/webhooks/%s/deliveries" % ep["id"]), 200)["data"]
    assert {d["id"] for d in log} == set(by_id)
    for d in log:
        assert d["status"] == "delivered" and d["attempts"] == 3 and d["status_code"] == 200
        assert isinstance(d["latency_ms"], int) and d["latency_ms"] >= 0 and d["delivered_at"]
        assert d["next_attempt_at"] is None and d["event_id"] in want


def test_event_type_filter_and_per_job_webhook_url(start_server, receiver, wav):
    srv = start_server(FLAGS)
    u = make_user(srv)
    user_rc, job_rc = receiver(), receiver()
    expect(u.api.post("/v1/webhooks", json={"url": user_rc.url, "event_types": ["job.succeeded"]}), 201)
    # the job-webhook secret: "job" names that endpoint; rotating shows a fresh secret once
    secret = expect(u.api.post("/v1/webhooks/job/rotate-secret"), 200)["secret"]
    job = expect(submit(u.api, wav, webhook_url=job_rc.url + "/job?x=1"), 202)
    wait_job(u.api, job["id"])
    want = {e["id"] for e in job_events(u, job["id"])}
    assert job_rc.wait(lambda r: set(r.delivered()) == want), (job_rc.delivered(), want)
    assert user_rc.wait(lambda r: len(r.delivered()) == 1)
    for headers, body, _ in job_rc.snapshot():
        assert verify(secret, headers, body)
    ((_, body, _),) = user_rc.snapshot()
    assert json.loads(body)["type"] == "job.succeeded"
    kinds = sorted(e["kind"] for e in expect(u.api.get("/v1/webhooks"), 200)["data"])
    assert kinds == ["job", "user"]
    log = expect(u.api.get("/v1/webhooks/job/deliveries"), 200)["data"]
    assert {d["url"] for d in log} == {job_rc.url + "/job?x=1"} and len(log) == len(want)


def test_redeliver_sends_the_same_message_again(start_server, receiver, wav):
    srv = start_server(FLAGS)
    u = make_user(srv)
    rc = receiver()
    ep = expect(u.api.post("/v1/webhooks", json={"url": rc.url, "event_types": ["job.succeeded"]}), 201)
    job = expect(submit(u.api, wav), 202)
    wait_job(u.api, job["id"])
    assert rc.wait(lambda r: len(r.snapshot()) == 1)
    (d,) = expect(u.api.get("/v1/webhooks/%s/deliveries" % ep["id"]), 200)["data"]
    again = expect(u.api.post("/v1/webhooks/%s/deliveries/%s/redeliver" % (ep["id"], d["id"])), 202)
    assert again["id"] == d["id"] and again["status"] == "pending"
    assert rc.wait(lambda r: len(r.snapshot()) == 2)
    (h1, b1, _), (h2, b2, _) = rc.snapshot()
    assert h1["webhook-id"] == h2["webhook-id"] == d["id"] and b1 == b2
    assert rc.wait(lambda r: expect(u.api.get("/v1/webhooks/%s/deliveries" % ep["id"]), 200)["data"][0]["attempts"] == 2)
    assert_error(u.api.post("/v1/webhooks/%s/deliveries/dlv_nope/redeliver" % ep["id"]), 404, "not_found")


def test_a_delivery_that_keeps_failing_is_marked_failed(start_server, receiver, wav):
    srv = start_server(FLAGS + ["--webhook-max-attempts", "2"])
    u = make_user(srv)
    rc = receiver(fail_first=-1)
    ep = expect(u.api.post("/v1/webhooks", json={"url": rc.url, "event_types": ["job.succeeded"]}), 201)
    job = expect(submit(u.api, wav), 202)
    wait_job(u.api, job["id"])

    def failed(_):
        log = expect(u.api.get("/v1/webhooks/%s/deliveries" % ep["id"]), 200)["data"]
        return len(log) == 1 and log[0]["status"] == "failed"
    assert rc.wait(failed)
    (d,) = expect(u.api.get("/v1/webhooks/%s/deliveries" % ep["id"]), 200)["data"]
    assert d["attempts"] == 2 and d["status_code"] == 500 and d["response_prefix"] == "ok"
    assert len(rc.snapshot()) == 2


def test_a_restart_in_the_middle_of_retries_still_delivers(start_server, receiver, wav):
    # Retries 3 s apart: time to stop voxd between the first failure and the next try.
    flags = ["--webhook-allow", "127.0.0.1", "--webhook-retry-base", "3", "--workers", "1"]
    srv = start_server(flags)
    u = make_user(srv)
    rc = receiver(fail_first=1)
    ep = expect(u.api.post("/v1/webhooks", json={"url": rc.url, "event_types": ["job.succeeded"]}), 201)
    job = expect(submit(u.api, wav), 202)
    wait_job(u.api, job["id"])
    assert rc.wait(lambda r: len(r.snapshot()) == 1)
    assert srv.stop() == 0
    assert rc.delivered() == {}
    srv.restart()
    assert rc.wait(lambda r: len(r.delivered()) == 1, timeout=30)
    (d,) = expect(u.api.get("/v1/webhooks/%s/deliveries" % ep["id"]), 200)["data"]
    assert d["status"] == "delivered" and d["attempts"] == 2
    time.sleep(0.5)
    assert len(rc.snapshot()) == 2
