"""test_events.py - live job events: a WebSocket client and an SSE client each
see queued -> started -> progress... -> succeeded in order for a real job; a
job feed opens with the job's current state and ends after the terminal
event; resume (Last-Event-ID / ?since=) after a disconnect loses nothing and
repeats nothing; another user's feed, a missing credential and a plain GET
are refused."""
import asyncio
import http.client
import json
import threading
import time
from urllib.parse import urlparse

import pytest
import websockets

from helpers import assert_error, expect, make_audio, make_user, submit, wait_job

ORDER = ["job.queued", "job.started", "job.progress", "job.succeeded"]


class Sse:
    """A minimal EventSource: GET with Accept: text/event-stream, yields
    {"id","event","data"} dicts until the stream ends or a timeout."""

    def __init__(self, server, path, headers=None, timeout=30):
        u = urlparse(server.url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        h = {"Accept": "text/event-stream"}
        h.update(headers or {})
        self.conn.request("GET", path, headers=h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def events(self):
        ev = {}
        while True:
            line = self.resp.readline()
            if not line:
                return
            line = line.decode().rstrip("\r\n")
            if not line:
                if "data" in ev:
                    yield ev
                ev = {}
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                ev["data"] = (ev["data"] + "\n" + value) if "data" in ev else value
            elif field in ("id", "event", "retry"):
                ev[field] = value

    def close(self):
        self.conn.close()


def ws_url(server, path):
    return "ws://" + server.url[len("http://"):] + path


def ws_collect(server, path, headers=None, limit=1000, timeout=30):
    """Every message of a WebSocket feed until the server closes it: (messages, code, reason)."""
    async def run():
        out = []
        async with websockets.connect(ws_url(server, path), extra_headers=headers or {}, close_timeout=2,
                                      open_timeout=10) as c:
            try:
                while len(out) < limit:
                    out.append(json.loads(await asyncio.wait_for(c.recv(), timeout)))
            except websockets.ConnectionClosed:
                pass
            return out, c.close_code, c.close_reason
    return asyncio.run(run())


def check_order(types):
    """queued, started, one or more progress, succeeded - nothing else."""
    assert types[:2] == ORDER[:2], types
    assert types[-1] == "job.succeeded", types
    middle = types[2:-1]
    assert middle and all(t == "job.progress" for t in middle), types


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    return make_audio(tmp_path_factory.mktemp("events-audio"), "wav", 20.0, name="events-20s.wav")


def test_websocket_client_sees_the_job_events_in_order(server, long_wav):
    u = make_user(server)
    job = expect(submit(u.api, long_wav), 202)
    # ?since=0 replays what happened before the connection, then goes live.
    msgs, code, reason = ws_collect(server, "/v1/jobs/%s/events?since=0" % job["id"],
                                    {"Authorization": "Bearer " + u.key})
    check_order([m["type"] for m in msgs])
    ids = [m["id"] for m in msgs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    for m in msgs:
        assert m["job_id"] == job["id"] and m["user_id"] == u.id
        assert set(m) == {"id", "type", "job_id", "user_id", "at", "data"}, m
    fractions = [m["data"]["fraction"] for m in msgs if m["type"] == "job.progress"]
    assert all(0 <= f < 1 for f in fractions) and fractions == sorted(fractions), fractions
    assert all(m["data"]["stage"] for m in msgs if m["type"] == "job.progress")
    assert msgs[-1]["data"]["status"] == "succeeded" and msgs[-1]["data"]["result"]["output"]["url"]
    assert code == 1000, (code, reason)


def test_browser_style_websocket_authenticates_with_a_query_token(server, long_wav):
    u = make_user(server)
    job = expect(submit(u.api, long_wav), 202)
    wait_job(u.api, job["id"])
    msgs, code, _ = ws_collect(server, "/v1/jobs/%s/events?access_token=%s" % (job["id"], u.jwt))
    assert [m["type"] for m in msgs] == ["job.succeeded"] and msgs[0]["data"]["snapshot"] is True
    msgs, code, _ = ws_collect(server, "/v1/jobs/%s/events?api_key=%s&since=0" % (job["id"], u.key))
    check_order([m["type"] for m in msgs])


def test_sse_client_sees_the_job_events_in_order(server, long_wav):
    u = make_user(server)
    feed = Sse(server, "/v1/events", {"X-API-Key": u.key})
    assert feed.status == 200 and feed.resp.getheader("Content-Type").startswith("text/event-stream")
    job = expect(submit(u.api, long_wav), 202)
    got = []
    for ev in feed.events():
        data = json.loads(ev["data"])
        assert ev["event"] == data["type"] and ev["id"] == data["id"]
        got.append(data)
        if data["type"] == "job.succeeded":
            break
    feed.close()
    assert all(d["job_id"] == job["id"] for d in got)
    check_order([d["type"] for d in got])


def test_job_feed_starts_with_the_current_state_and_ends_after_the_terminal_event(server, long_wav):
    u = make_user(server)
    job = expect(submit(u.api, long_wav), 202)
    done = wait_job(u.api, job["id"])
    assert done["status"] == "succeeded"
    feed = Sse(server, "/v1/jobs/%s/events" % job["id"], {"Authorization": "Bearer " + u.key})
    assert feed.status == 200
    events = list(feed.events())  # the stream ends by itself
    feed.close()
    assert len(events) == 1, events
    data = json.loads(events[0]["data"])
    assert data["type"] == "job.succeeded" and data["data"]["snapshot"] is True
    # Its id is the job's newest stored event: resuming from it gives nothing more.
    full, _, _ = ws_collect(server, "/v1/jobs/%s/events?since=0" % job["id"], {"X-API-Key": u.key})
    assert data["id"] == full[-1]["id"]
    # An EventSource reconnecting after the end gets a short, empty answer.
    feed = Sse(server, "/v1/jobs/%s/events" % job["id"], {"X-API-Key": u.key, "Last-Event-ID": data["id"]},
               timeout=10)
    assert feed.status == 200 and list(feed.events()) == []
    feed.close()


def test_resume_after_a_disconnect_loses_nothing_and_repeats_nothing(server, long_wav):
    u = make_user(server)
    hdr = {"Authorization": "Bearer " + u.key}
    feed = Sse(server, "/v1/events", hdr)
    a = expect(submit(u.api, long_wav), 202)
    first = []
    for ev in feed.events():
        first.append(json.loads(ev["data"]))
        if len(first) == 2:
            break
    feed.close()  # the client goes away mid-job
    wait_job(u.api, a["id"])
    b = expect(submit(u.api, long_wav), 202)
    wait_job(u.api, b["id"])
    # SSE resume with Last-Event-ID
    feed = Sse(server, "/v1/events", dict(hdr, **{"Last-Event-ID": first[-1]["id"]}))
    rest = []
    for ev in feed.events():
        rest.append(json.loads(ev["data"]))
        if rest[-1]["type"] == "job.succeeded" and rest[-1]["job_id"] == b["id"]:
            break
    feed.close()
    seen = first + rest
    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids)), "duplicates after resume"
    assert ids == sorted(ids)
    # exactly the stored sequence: compare with a full replay over WebSocket
    async def replay():
        out = []
        async with websockets.connect(ws_url(server, "/v1/events?since=0"), extra_headers=hdr, close_timeout=2) as c:
            while True:
                m = json.loads(await asyncio.wait_for(c.recv(), 10))
                out.append(m)
                if m["type"] == "job.succeeded" and m["job_id"] == b["id"]:
                    return out
    full = asyncio.run(replay())
    assert [e["id"] for e in full] == ids
    for job_id in (a["id"], b["id"]):
        check_order([e["type"] for e in seen if e["job_id"] == job_id])


def test_live_events_follow_a_replay_without_a_gap(server, long_wav):
    """A WebSocket resumed with ?since= while a job runs: stored events, then
    the live ones, ids strictly increasing, ending with succeeded."""
    u = make_user(server)
    hdr = {"X-API-Key": u.key}
    job = expect(submit(u.api, long_wav), 202)
    msgs, code, _ = ws_collect(server, "/v1/jobs/%s/events?since=0" % job["id"], hdr)
    check_order([m["type"] for m in msgs])
    mid = msgs[1]["id"]
    again, _, _ = ws_collect(server, "/v1/jobs/%s/events?since=%s" % (job["id"], mid), hdr)
    assert [m["id"] for m in again] == [m["id"] for m in msgs[2:]]


def test_another_users_feed_is_refused(server, long_wav):
    owner, other = make_user(server), make_user(server)
    job = expect(submit(owner.api, long_wav), 202)
    path = "/v1/jobs/%s/events" % job["id"]
    r = other.api.get(path, headers={"Accept": "text/event-stream"}, stream=True)
    assert_error(r, 404, "not_found")
    with pytest.raises(websockets.InvalidStatusCode) as e:
        ws_collect(server, path, {"Authorization": "Bearer " + other.key})
    assert e.value.status_code == 404
    assert_error(server.api().get(path, headers={"Accept": "text/event-stream"}), 401, "missing_credentials")
    assert_error(server.api().get("/v1/events", headers={"Accept": "text/event-stream"}), 401,
                 "missing_credentials")
    # the other user's own feed never carries the owner's events
    feed = Sse(server, "/v1/events?since=0", {"X-API-Key": other.key}, timeout=2)
    got = []
    try:
        for ev in feed.events():
            got.append(ev)
    except (TimeoutError, OSError):
        pass
    feed.close()
    assert got == []
    wait_job(owner.api, job["id"])


def test_an_admin_may_watch_any_job(server, admin, long_wav):
    u = make_user(server)
    job = expect(submit(u.api, long_wav), 202)
    wait_job(u.api, job["id"])
    token = admin.headers["Authorization"]
    msgs, _, _ = ws_collect(server, "/v1/jobs/%s/events?since=0" % job["id"], {"Authorization": token})
    check_order([m["type"] for m in msgs])


def test_a_feed_needs_a_streaming_transport_and_a_valid_cursor(server):
    u = make_user(server)
    assert_error(u.api.get("/v1/events"), 400, "unsupported_transport")
    assert_error(u.api.get("/v1/events?since=banana", headers={"Accept": "text/event-stream"}), 400,
                 "invalid_event_id")
