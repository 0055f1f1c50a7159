"""test_openai.py - POST /v1/audio/transcriptions, the OpenAI-compatible
synchronous endpoint. Requests are built byte for byte the way the official
openai-python client (httpx multipart) sends them and answers are read the
way it parses them; speech is synthesized here with espeak-ng. Every format
answers with OpenAI's shape and the same text as an ordinary transcribe job;
each call is an ordinary job in the history, held and captured once; bad
input is refused in OpenAI's error shape with nothing charged; an API-only
node answers from the events of a worker process (redis bus); a client that
leaves, or a wait that times out, leaves the job to finish and be billed once;
a job canceled meanwhile answers 409 with its hold released; a server stop
answers a waiting request 503 in OpenAI's shape."""
import http.client
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from urllib.parse import urlparse

import pytest

from helpers import assert_books, expect, job_entries, kinds, ledger, make_user, micro, submit, wait_job
from test_worker_process import redis_url, start_worker, workers  # noqa: F401 (fixtures)

SENTENCES = ["the weather is nice today and we will go to the park", "please call me tomorrow morning"]
PATH = "/v1/audio/transcriptions"
GRANT = ["--signup-grant", "1000"]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Two sentences with a pause, as WAV (the en-us+f2 voice PocketSphinx
    recognises well)."""
    d = tmp_path_factory.mktemp("oa-speech")
    wav = d / "speech.wav"
    ssml = "<speak>%s</speak>" % ' <break time="1200ms"/> '.join(SENTENCES)
    subprocess.run(["espeak-ng", "-m", "-v", "en-us+f2", "-s", "140", "-w", str(wav), ssml], check=True)
    return wav.read_bytes()


def multipart(fields, file):
    """The body httpx (openai-python) makes: data fields first, then the
    file part with its filename and guessed content type; a boundary of 32
    hex characters. fields: list of (name, str value); repeated names are
    repeated parts (timestamp_granularities[])."""
    boundary = os.urandom(16).hex()
    out = b""
    for name, value in fields:
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                % (boundary.encode(), name.encode(), value.encode()))
    if file is not None:
        filename, content, ctype = file
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                b"Content-Type: %s\r\n\r\n" % (boundary.encode(), filename.encode(), ctype.encode()))
        out += content + b"\r\n"
    out += b"--%s--\r\n" % boundary.encode()
    return "multipart/form-data; boundary=%s" % boundary, out


def openai_headers(key, ctype, length):
    h = {"Accept": "application/json", "Content-Type": ctype, "Content-Length": str(length),
         "User-Agent": "OpenAI/Python 1.54.0", "X-Stainless-Lang": "python",
         "X-Stainless-Package-Version": "1.54.0", "X-Stainless-Retry-Count": "0"}
    if key is not None:
        h["Authorization"] = "Bearer %s" % key
    return h


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return json.loads(self.body)

    def text(self):
        """What the client returns for text/srt/vtt: the body as text."""
        return self.body.decode("utf-8")


def transcribe(server, key, fields, file, timeout=180):
    ctype, body = multipart(fields, file)
    u = urlparse(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("POST", PATH, body=body, headers=openai_headers(key, ctype, len(body)))
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def wav_file(speech):
    return ("speech.wav", speech, "audio/x-wav")


def assert_openai_error(a, status, param, code, message_has=None):
    """OpenAI's error object: message, type, param, code."""
    assert a.status == status, (a.status, a.body[:400])
    err = a.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    assert err["param"] == param and err["code"] == code, err
    assert err["type"] == ("insufficient_quota" if status == 429 else "invalid_request_error"), err
    if message_has:
        assert message_has in err["message"], err
    return err


def same_words(a, b):
    return a.split() == b.split()


def check_billed_once(admin, u, job_id):
    assert kinds(job_entries(ledger(u.api), job_id)) == ["capture", "hold"]
    assert_books(admin, u)


def test_every_format_in_openai_shape_same_text_as_a_job_and_billed_once(server, admin, user, speech):
    u = user()
    ref = expect(submit(u.api, speech, model="transcribe", filename="speech.wav"), 202)
    ref = wait_job(u.api, ref["id"], timeout=120)
    assert ref["status"] == "succeeded", ref
    doc = ref["result"]
    assert doc["text"]

    # json (whisper-1): {"text", "usage"}
    a = transcribe(server, u.key, [("model", "whisper-1")], wav_file(speech))
    assert a.status == 200, a.body
    body = a.json()
    assert set(body) == {"text", "usage"}
    assert body["text"] == doc["text"]
    assert body["usage"]["type"] == "duration" and abs(body["usage"]["seconds"] - float(doc["duration"])) < 0.01
    job_id = a.headers["x-voxd-job-id"]
    job = expect(u.api.get("/v1/jobs/" + job_id), 200)
    assert job["model"] == "transcribe" and job["status"] == "succeeded"
    assert job["result"]["text"] == doc["text"] and job["params"]["format"] == "json"
    assert job_id in [j["id"] for j in expect(u.api.get("/v1/jobs", params={"model": "transcribe"}), 200)["data"]]
    assert 0 < micro(job["cost"]["charged"]) <= micro(job["cost"]["held"])
    check_billed_once(admin, u, job_id)

    # text (gpt-4o-transcribe alias): plain text
    a = transcribe(server, u.key, [("model", "gpt-4o-transcribe"), ("response_format", "text"),
                                   ("language", "en"), ("prompt", "Weather talk."), ("temperature", "0.0")],
                   wav_file(speech))
    assert a.status == 200 and a.headers["content-type"].startswith("text/plain"), (a.status, a.headers)
    assert a.text().strip() == doc["text"]

    # srt and vtt: plain text bodies with cues
    a = transcribe(server, u.key, [("model", "gpt-4o-mini-transcribe"), ("response_format", "srt")],
                   wav_file(speech))
    assert a.status == 200 and a.headers["content-type"].startswith("text/plain")
    srt = a.text()
    assert srt.startswith("1\n00:00:") and " --> " in srt
    assert same_words(" ".join(l for l in srt.split("\n") if l and "-->" not in l and not l.isdigit()),
                      doc["text"])
    a = transcribe(server, u.key, [("model", "transcribe"), ("response_format", "vtt"),
                                   ("language", "en-US")], wav_file(speech))
    assert a.status == 200 and a.headers["content-type"].startswith("text/plain")
    assert a.text().startswith("WEBVTT\n\n00:00:")

    # verbose_json with both granularities
    a = transcribe(server, u.key, [("model", "whisper-1"), ("response_format", "verbose_json"),
                                   ("timestamp_granularities[]", "word"), ("timestamp_granularities[]", "segment")],
                   wav_file(speech))
    assert a.status == 200, a.body
    v = a.json()
    assert v["task"] == "transcribe" and v["language"] == "english"
    assert v["text"] == doc["text"] and abs(v["duration"] - float(doc["duration"])) < 0.01
    assert v["usage"] == {"type": "duration", "seconds": v["usage"]["seconds"]}
    assert [s["text"] for s in v["segments"]] == [s["text"] for s in doc["segments"]]
    for i, s in enumerate(v["segments"]):
        assert set(s) == {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                          "compression_ratio", "no_speech_prob"}, s
        assert s["id"] == i and s["tokens"] == [] and s["temperature"] == 0 and s["start"] < s["end"]
        assert isinstance(s["seek"], int) and s["avg_logprob"] <= 0 and s["no_speech_prob"] == 0
        assert s["compression_ratio"] > 0
    assert [w["word"] for w in v["words"]] == [w["word"] for w in doc["words"]]
    assert all(set(w) == {"word", "start", "end"} and w["start"] <= w["end"] for w in v["words"])

    # verbose_json defaults to segment granularity; word alone gives words only
    v = transcribe(server, u.key, [("model", "whisper-1"), ("response_format", "verbose_json")],
                   wav_file(speech)).json()
    assert "segments" in v and "words" not in v
    v = transcribe(server, u.key, [("model", "whisper-1"), ("response_format", "verbose_json"),
                                   ("timestamp_granularities[]", "word")], wav_file(speech)).json()
    assert "words" in v and "segments" not in v and same_words(" ".join(w["word"] for w in v["words"]), doc["text"])

    # Seven transcriptions, each its own job, each held and captured once.
    jobs = [j for j in expect(u.api.get("/v1/jobs"), 200)["data"]]
    assert len(jobs) == 8 and all(j["status"] == "succeeded" for j in jobs)
    entries = ledger(u.api)
    for j in jobs:
        assert kinds(job_entries(entries, j["id"])) == ["capture", "hold"]
    assert_books(admin, u)


BAD = [
    # (fields, file, status, param, code, message fragment)
    ([], "wav", 400, "model", "missing_model", None),
    ([("model", "whisper-2")], "wav", 400, "model", "model_not_found", None),
    ([("model", "whisper-1"), ("language", "de")], "wav", 400, "language", "unsupported_language", None),
    ([("model", "whisper-1"), ("language", "eng")], "wav", 400, "language", "unsupported_language", None),
    ([("model", "whisper-1"), ("response_format", "xml")], "wav", 400, "response_format",
     "unsupported_response_format", None),
    ([("model", "whisper-1"), ("temperature", "1.5")], "wav", 400, "temperature", "invalid_temperature", None),
    ([("model", "whisper-1"), ("temperature", "hot")], "wav", 400, "temperature", "invalid_temperature", None),
    ([("model", "whisper-1"), ("temperature", "-0.1")], "wav", 400, "temperature", "invalid_temperature", None),
    ([("model", "whisper-1"), ("response_format", "verbose_json"), ("timestamp_granularities[]", "char")],
     "wav", 400, "timestamp_granularities[]", "invalid_timestamp_granularity", None),
    ([("model", "whisper-1"), ("stream", "true")], "wav", 400, "stream", "stream_not_supported", None),
    ([("model", "whisper-1"), ("stream", "maybe")], "wav", 400, "stream", "invalid_stream", None),
    ([("model", "whisper-1"), ("chunking_strategy", "auto")], "wav", 400, None, "unknown_parameter",
     "Unrecognized request argument supplied: chunking_strategy"),
    ([("model", "whisper-1")], None, 400, "file", "missing_file", None),
    ([("model", "whisper-1")], "empty", 400, "file", "empty_file", None),
    ([("model", "whisper-1")], "text", 400, "file", None, None),
    ([("model", "whisper-1")], "badname", 400, "file", "invalid_filename", None),
]


def test_bad_requests_are_refused_in_openai_shape_with_nothing_charged(server, admin, user, speech):
    u = user()
    bal0, _ = u.balance()
    files = {"wav": wav_file(speech), "empty": ("a.wav", b"", "audio/x-wav"),
             "text": ("notes.wav", b"these are not audio bytes at all\n" * 50, "audio/x-wav"),
             "badname": ("../a.wav", speech, "audio/x-wav"), None: None}
    for fields, f, status, param, code, fragment in BAD:
        a = transcribe(server, u.key, fields, files[f])
        if code is None:  # the probe's own code for a non-audio file
            assert a.status == 400, (fields, f, a.status, a.body)
            code = a.json()["error"]["code"]
            assert code in ("unsupported_format", "invalid_audio", "no_audio_stream"), a.body
        assert_openai_error(a, status, param, code, fragment)
    # OpenAI's 401s: bad key, no key; both before the body is read.
    assert_openai_error(transcribe(server, "vx_" + "0" * 40, [("model", "whisper-1")], wav_file(speech)),
                        401, None, "invalid_api_key")
    err = assert_openai_error(transcribe(server, None, [("model", "whisper-1")], wav_file(speech)), 401, None,
                              "missing_credentials")
    assert expect(u.api.get("/v1/jobs"), 200)["data"] == []
    assert u.balance() == (bal0, 0)
    assert kinds(ledger(u.api)) == ["grant"]
    assert_books(admin, u)


def test_not_multipart_is_refused_in_openai_shape(server, user):
    u = user()
    r = u.api.post(PATH, json={"model": "whisper-1"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_insufficient_credits_is_429_insufficient_quota_and_nothing_is_held(server, admin, user, speech):
    u = user()
    bal, _ = u.balance()
    expect(admin.post("/v1/admin/users/%s/credits" % u.id,
                      json={"amount": -(bal - 1) / 1e6, "reason": "test: almost empty"}), 200)
    a = transcribe(server, u.key, [("model", "whisper-1")], wav_file(speech))
    err = assert_openai_error(a, 429, None, "insufficient_quota")
    assert err["type"] == "insufficient_quota"
    assert expect(u.api.get("/v1/jobs"), 200)["data"] == []
    assert u.balance() == (1, 0)
    assert_books(admin, u)


def test_an_api_only_node_answers_from_a_worker_process_over_the_redis_bus(start_server, workers, tmp_path,
                                                                           speech, redis_url):
    srv = start_server(["--workers", "0", "--bus", redis_url] + GRANT)
    start_worker(workers, srv, tmp_path, ["--concurrency", "1", "--bus", redis_url])
    u = make_user(srv)
    a = transcribe(srv, u.key, [("model", "whisper-1"), ("response_format", "text")], wav_file(speech))
    assert a.status == 200, a.body
    job = expect(u.api.get("/v1/jobs/" + a.headers["x-voxd-job-id"]), 200)
    assert job["status"] == "succeeded" and a.text().strip() == job["result"]["text"]
    check_billed_once(srv.admin(), u, job["id"])


def raw_request(srv, key, fields, file):
    """Sends the whole request on a plain socket and returns the socket."""
    ctype, body = multipart(fields, file)
    head = "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (PATH, srv.port)
    head += "".join("%s: %s\r\n" % kv for kv in openai_headers(key, ctype, len(body)).items())
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s.sendall(head.encode() + b"\r\n" + body)
    return s


def only_job(u, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = expect(u.api.get("/v1/jobs"), 200)["data"]
        if data:
            assert len(data) == 1
            return data[0]
        time.sleep(0.05)
    raise AssertionError("no job appeared")


def test_a_client_that_leaves_still_gets_its_job_finished_and_billed_once(start_server, workers, tmp_path, speech):
    srv = start_server(["--workers", "0"] + GRANT)
    u = make_user(srv)
    s = raw_request(srv, u.key, [("model", "whisper-1")], wav_file(speech))
    job = only_job(u)
    assert job["status"] == "queued"  # nobody runs it yet: the answer is still pending
    s.close()
    deadline = time.monotonic() + 10
    while "before job %s finished" % job["id"] not in srv.log_tail(200):
        assert time.monotonic() < deadline, srv.log_tail(40)
        time.sleep(0.05)
    start_worker(workers, srv, tmp_path, ["--concurrency", "1"])
    done = wait_job(u.api, job["id"], timeout=120)
    assert done["status"] == "succeeded" and done["result"]["text"]
    check_billed_once(srv.admin(), u, job["id"])
    expect(srv.api().get("/readyz"), 200)


def test_a_wait_over_sync_timeout_answers_504_and_the_job_goes_on(start_server, workers, tmp_path, speech):
    srv = start_server(["--workers", "0", "--sync-timeout", "1"] + GRANT)
    u = make_user(srv)
    t0 = time.monotonic()
    a = transcribe(srv, u.key, [("model", "whisper-1")], wav_file(speech), timeout=30)
    assert a.status == 504, a.body
    assert time.monotonic() - t0 < 20
    err = a.json()["error"]
    job_id = a.headers["x-voxd-job-id"]
    assert err["type"] == "server_error" and err["code"] == "timeout" and job_id in err["message"]
    start_worker(workers, srv, tmp_path, ["--concurrency", "1"])
    done = wait_job(u.api, job_id, timeout=120)
    assert done["status"] == "succeeded"
    check_billed_once(srv.admin(), u, job_id)


def test_an_upload_over_the_limit_is_413_in_openai_shape_with_nothing_charged(start_server, speech):
    srv = start_server(["--max-upload", "64K"] + GRANT)
    u = make_user(srv)
    bal0, _ = u.balance()
    assert len(speech) > 64 * 1024
    assert_openai_error(transcribe(srv, u.key, [("model", "whisper-1")], wav_file(speech)), 413, "file",
                        "upload_too_large")
    assert expect(u.api.get("/v1/jobs"), 200)["data"] == []
    assert u.balance() == (bal0, 0)


def test_server_stop_answers_a_waiting_request_503_in_openai_shape(start_server, speech):
    srv = start_server(["--workers", "0"] + GRANT)
    u = make_user(srv)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("a", transcribe(srv, u.key, [("model", "whisper-1")],
                                                                       wav_file(speech), timeout=60)))
    t.start()
    job = only_job(u)
    assert job["status"] == "queued"
    srv.stop()
    t.join(60)
    a = got["a"]
    assert a.status == 503, a.body
    err = a.json()["error"]
    assert err["type"] == "server_error" and err["code"] == "shutting_down", err
    assert a.headers["x-voxd-job-id"] == job["id"]


def test_a_job_canceled_while_the_request_waits_answers_409_and_releases_the_hold(start_server, speech):
    srv = start_server(["--workers", "0"] + GRANT)
    u = make_user(srv)
    bal0, _ = u.balance()
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("a", transcribe(srv, u.key, [("model", "whisper-1")],
                                                                       wav_file(speech), timeout=60)))
    t.start()
    job = only_job(u)
    assert u.balance()[1] > 0  # held while it waits
    expect(u.api.post("/v1/jobs/%s/cancel" % job["id"]), 200)
    t.join(60)
    a = got["a"]
    assert_openai_error(a, 409, None, "job_canceled")
    assert kinds(job_entries(ledger(u.api), job["id"])) == ["hold", "release"]
    assert u.balance() == (bal0, 0)
    assert_books(srv.admin(), u)
