"""test_stream.py - GET /v1/stream (docs/streaming.md): speech synthesized
here with espeak-ng streamed in 100 ms frames gives the batch job's
transcript (and the OpenAI-compatible endpoint's), with partials on the way; segment and enhance streams; every
protocol error with its error frame and close code; billing: one capture per
stream for the seconds streamed, also when credits run out, the client just
drops the connection, or the node dies mid-stream; keepalive and idle
timeout."""
import asyncio
import difflib
import json
import subprocess
import time

import pytest
import websockets

from helpers import (assert_books, assert_error, expect, job_entries, kinds, ledger, make_user, micro, submit,
                     wait_job)
from test_openai import transcribe as openai_transcribe

SENTENCES = [
    "one two three four five six seven eight nine ten",
    "the weather is nice today and we will go to the park",
    "please call me tomorrow morning",
]
RATE = 16000
FRAME = RATE // 10 * 2  # 100 ms of pcm_s16le


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Three sentences with 1.5 s pauses: (16 kHz mono wav bytes, raw s16le
    samples of the same audio, the 22050 Hz float samples espeak made)."""
    d = tmp_path_factory.mktemp("stream-speech")
    wav, wav16, raw16, rawf = d / "speech.wav", d / "speech16.wav", d / "speech.s16", d / "speech.f32"
    ssml = '<speak>%s</speak>' % ' <break time="1500ms"/> '.join(SENTENCES)
    subprocess.run(["espeak-ng", "-m", "-v", "en-us+f2", "-s", "140", "-w", str(wav), ssml], check=True)
    ff = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav)]
    subprocess.run(ff + ["-ar", str(RATE), "-ac", "1", "-c:a", "pcm_s16le", str(wav16)], check=True)
    subprocess.run(ff + ["-ar", str(RATE), "-ac", "1", "-f", "s16le", str(raw16)], check=True)
    subprocess.run(ff + ["-ar", "22050", "-ac", "1", "-f", "f32le", str(rawf)], check=True)
    return wav16.read_bytes(), raw16.read_bytes(), rawf.read_bytes()


def ws_url(server, query):
    return "ws://" + server.url[len("http://"):] + "/v1/stream" + query


def stream(server, key, config=None, audio=b"", frame=FRAME, tail=('{"eof":1}',), headers=None, query=None,
           pace=0.0, timeout=60):
    """Runs one stream: the config (a dict, or raw text), audio cut in
    frames, then the `tail` messages. Returns (texts, binaries, close code,
    close reason); texts are parsed JSON."""
    async def run():
        texts, bins = [], []
        q = query if query is not None else "?api_key=" + key
        async with websockets.connect(ws_url(server, q), extra_headers=headers or {}, close_timeout=3,
                                      open_timeout=10, max_size=2 ** 22) as c:
            async def reader():
                try:
                    while True:
                        m = await c.recv()
                        (texts.append(json.loads(m)) if isinstance(m, str) else bins.append(m))
                except websockets.ConnectionClosed:
                    pass
            task = asyncio.ensure_future(reader())
            try:
                if config is not None:
                    await c.send(config if isinstance(config, (str, bytes)) else json.dumps({"config": config}))
                for i in range(0, len(audio), frame):
                    await c.send(audio[i:i + frame])
                    if pace:
                        await asyncio.sleep(pace)
                for m in tail:
                    await c.send(m)
            except websockets.ConnectionClosed:
                pass
            await asyncio.wait_for(task, timeout)
            return texts, bins, c.close_code, c.close_reason
    return asyncio.run(run())


def words(text):
    return text.split()


def stream_job(user, job_id, timeout=30):
    job = wait_job(user.api, job_id, timeout=timeout)
    assert job["source"] == "stream", job
    return job


def test_stream_transcript_matches_the_batch_job_with_partials_and_one_capture(server, admin, speech):
    wav16, raw16, _ = speech
    user = make_user(server)
    texts, bins, code, reason = stream(server, user.key, {"model": "transcribe", "sample_rate": RATE,
                                                          "encoding": "pcm_s16le", "words": True,
                                                          "partial": True}, raw16)
    assert code == 1000, (code, reason, texts[-3:])
    assert not bins
    final = texts[-1]
    assert final.get("final") is True, final
    frames = (len(raw16) + FRAME - 1) // FRAME
    # every frame is answered by exactly one message carrying "seconds": a partial or an ack
    progress = [m for m in texts if "seconds" in m and ("partial" in m or "ack" in m)]
    assert len(progress) == frames, (len(progress), frames)
    assert [m["seconds"] for m in progress] == sorted(m["seconds"] for m in progress)
    partials = [m["partial"] for m in texts if "partial" in m and m["partial"]]
    assert len(partials) >= 10, partials
    utterances = [m for m in texts if "text" in m and "start" in m]
    assert len(utterances) == 3, utterances
    for u in utterances:
        assert u["words"] and u["start"] <= u["words"][0]["start"] <= u["words"][-1]["end"] <= u["end"] + 1e-6
    streamed = " ".join(u["text"] for u in utterances)
    assert final["result"]["text"] == streamed

    # the batch job on the same samples
    job = wait_job(user.api, expect(submit(user.api, wav16, model="transcribe", filename="speech16.wav"), 202)["id"],
                   timeout=120)
    assert job["status"] == "succeeded", job
    batch = job["result"]["text"]
    # same samples, same utterance cuts, each decoded whole: the same words
    assert words(streamed) == words(batch), (batch, streamed)
    assert len(words(streamed)) >= 20
    # and the OpenAI-compatible endpoint, as openai-python sends it: the third transcript
    oa = openai_transcribe(server, user.key, [("model", "whisper-1"), ("response_format", "json")],
                           ("speech16.wav", wav16, "audio/x-wav"))
    assert oa.status == 200, oa.body[:300]
    assert words(oa.json()["text"]) == words(batch), (batch, oa.json()["text"])

    # history and books: one stream job, charged for the seconds streamed
    sj = stream_job(user, final["job_id"])
    assert sj["status"] == "succeeded" and sj["model"] == "transcribe"
    seconds = len(raw16) / 2 / RATE
    assert abs(float(sj["input"]["duration_s"]) - seconds) < 1e-3
    assert abs(float(final["duration"]) - seconds) < 2e-3
    assert micro(sj["cost"]["charged"]) == micro(final["charged"]) == -(-5000 * len(raw16) // 2 // RATE)
    assert sj["result"]["end_reason"] == "eof" and sj["result"]["text"] == streamed
    listed = [j for j in expect(user.api.get("/v1/jobs"), 200)["data"] if j["id"] == sj["id"]]
    assert listed and listed[0]["source"] == "stream"
    entries = job_entries(ledger(user.api), sj["id"])
    assert kinds(entries) == ["capture", "hold"], kinds(entries)
    assert [e["kind"] for e in entries].count("capture") == 1
    assert_books(admin, user)


def test_other_rates_and_float_samples_are_resampled(server, speech):
    _, raw16, rawf = speech
    user = make_user(server)
    texts, _, code, _ = stream(server, user.key, {"sample_rate": 22050, "encoding": "pcm_f32le", "partial": False},
                               rawf, frame=2205 * 4)
    assert code == 1000, texts[-2:]
    final = texts[-1]
    assert not [m for m in texts if "partial" in m]
    assert abs(final["duration"] - len(rawf) / 4 / 22050) < 2e-3
    ref = " ".join(SENTENCES)
    ratio = difflib.SequenceMatcher(None, words(ref), words(final["result"]["text"])).ratio()
    assert ratio >= 0.6, final["result"]["text"]


def test_segment_stream_reports_alternating_speech_events(server, speech):
    _, raw16, _ = speech
    user = make_user(server)
    texts, _, code, _ = stream(server, user.key, {"model": "segment", "sample_rate": RATE}, raw16)
    assert code == 1000
    events = [m for m in texts if "event" in m]
    kinds_seen = [e["event"] for e in events]
    assert kinds_seen == ["speech_start", "speech_end"] * (len(events) // 2) and len(events) >= 6, kinds_seen
    for a, b in zip(events[::2], events[1::2]):
        assert a["start"] <= b["start"] + 0.5 and b["start"] < b["end"]
    final = texts[-1]
    assert final["result"]["count"] == len(events) // 2
    assert stream_job(user, final["job_id"])["model"] == "segment"


def test_enhance_stream_returns_as_many_samples_as_it_got(server, speech):
    _, raw16, _ = speech
    user = make_user(server)
    audio = raw16[:RATE * 2 * 3]
    texts, bins, code, _ = stream(server, user.key, {"model": "enhance", "sample_rate": RATE}, audio)
    assert code == 1000, texts
    frames = (len(audio) + FRAME - 1) // FRAME
    assert len(bins) >= frames  # one binary reply per frame, the tail after eof
    assert sum(len(b) for b in bins) == len(audio)
    assert texts[-1]["final"] is True


@pytest.mark.parametrize("config, frames, code, close", [
    ({"model": "transcribe", "colour": "blue"}, [], "invalid_config", 1008),
    ({"sample_rate": 4000}, [], "unsupported_sample_rate", 1008),
    ({"sample_rate": 96000}, [], "unsupported_sample_rate", 1008),
    ({"encoding": "mulaw"}, [], "unsupported_encoding", 1008),
    ({"model": "convert"}, [], "unknown_model", 1008),
    ("hello there", [], "invalid_message", 1003),
    ('{"eof":1,"keepalive":1}', [], "invalid_message", 1003),
    ({"sample_rate": RATE}, [b"\0" * (RATE + 2)], "frame_too_large", 1009),
    ({"sample_rate": RATE}, [b"\0" * 3201], "invalid_audio_frame", 1007),
    ({"encoding": "pcm_f32le"}, [b"\0" * 6], "invalid_audio_frame", 1007),
    ({"sample_rate": RATE}, [b"\0" * 3200, json.dumps({"config": {"sample_rate": 8000}})], "config_after_audio",
     1008),
])
def test_protocol_errors_send_an_error_frame_then_close(server, config, frames, code, close):
    user = make_user(server)
    before = user.balance()
    texts, _, got, reason = stream(server, user.key, config, tail=frames)
    assert got == close, (got, reason, texts)
    assert texts[-1] == {"error": {"code": code, "message": texts[-1]["error"]["message"]}}
    assert texts[-1]["error"]["message"]
    time.sleep(0.3)
    if code != "config_after_audio":
        assert user.balance() == before  # nothing was streamed, nothing held or charged


def test_unauthenticated_and_plain_http_are_refused(server):
    with pytest.raises(websockets.InvalidStatusCode) as e:
        stream(server, "nope", {"sample_rate": RATE}, query="")
    assert e.value.status_code == 401
    user = make_user(server)
    assert_error(user.api.get("/v1/stream"), 400, "websocket_required")


def test_credits_running_out_stop_the_stream_and_the_books_balance(start_server, speech):
    _, raw16, _ = speech
    srv = start_server(["--signup-grant", "0.015", "--stream-hold", "1"])  # 3 s at 0.005 credits/s
    admin, user = srv.admin(), make_user(srv)
    texts, _, code, reason = stream(srv, user.key, {"sample_rate": RATE}, raw16)
    assert code == 4402, (code, reason, texts[-3:])
    assert texts[-1]["error"]["code"] == "insufficient_credits"
    final = [m for m in texts if m.get("final")]
    assert final and final[0]["duration"] <= 3.0 + 1e-9
    job = stream_job(user, final[0]["job_id"])
    assert job["result"]["end_reason"] == "insufficient_credits"
    assert micro(job["cost"]["charged"]) == 15000
    bal, held = assert_books(admin, user)
    assert (bal, held) == (0, 0)
    assert [e["kind"] for e in job_entries(ledger(user.api), job["id"])].count("capture") == 1
    # a user who cannot pay even one second is refused at the first frame
    texts, _, code, _ = stream(srv, user.key, {"sample_rate": RATE}, raw16[:FRAME * 3])
    assert code == 4402 and texts[-1]["error"]["code"] == "insufficient_credits"
    assert assert_books(admin, user) == (0, 0)


def test_client_disconnect_without_eof_still_settles(server, admin, speech):
    _, raw16, _ = speech
    user = make_user(server)

    async def run():
        async with websockets.connect(ws_url(server, "?api_key=" + user.key)) as c:
            await c.send(json.dumps({"config": {"sample_rate": RATE}}))
            for i in range(0, RATE * 2 * 2, FRAME):
                await c.send(raw16[i:i + FRAME])
                await c.recv()
            c.transport.abort()  # no close frame: the TCP connection just drops
    asyncio.run(run())
    deadline, jobs = time.time() + 20, []
    while time.time() < deadline:
        jobs = [j for j in expect(user.api.get("/v1/jobs"), 200)["data"] if j["status"] == "succeeded"]
        if jobs:
            break
        time.sleep(0.1)
    assert len(jobs) == 1 and jobs[0]["source"] == "stream", jobs
    assert jobs[0]["result"]["end_reason"] == "client_closed"
    assert abs(float(jobs[0]["input"]["duration_s"]) - 2.0) < 1e-6
    assert micro(jobs[0]["cost"]["charged"]) == 10000
    assert kinds(job_entries(ledger(user.api), jobs[0]["id"])) == ["capture", "hold"]
    assert_books(admin, user)


def test_keepalive_holds_an_idle_stream_open_until_the_idle_timeout(start_server):
    srv = start_server(["--stream-idle-timeout", "1"])
    user = make_user(srv)

    async def run():
        async with websockets.connect(ws_url(srv, "?api_key=" + user.key), close_timeout=3) as c:
            await c.send(json.dumps({"config": {"sample_rate": RATE}}))
            for _ in range(6):  # 2.4 s, longer than the timeout
                await asyncio.sleep(0.4)
                await c.send('{"keepalive":1}')
            assert c.open
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(c.recv(), 10)
            except websockets.ConnectionClosed:
                pass
            return c.close_code, c.close_reason, time.monotonic() - t0
    code, reason, waited = asyncio.run(run())
    assert code == 1001 and "idle" in reason, (code, reason)
    assert waited < 5
    assert expect(user.api.get("/v1/jobs"), 200)["data"] == []  # no audio, no job, nothing held
    assert user.balance()[1] == 0


def test_a_node_dying_mid_stream_leaves_no_hold_behind(start_server, speech):
    _, raw16, _ = speech
    srv = start_server(["--heartbeat", "1", "--lease", "3"])
    admin, user = srv.admin(), make_user(srv)

    async def run():
        async with websockets.connect(ws_url(srv, "?api_key=" + user.key)) as c:
            await c.send(json.dumps({"config": {"sample_rate": RATE, "partial": False}}))
            for i in range(0, RATE * 2 * 2, FRAME):
                await c.send(raw16[i:i + FRAME])
                await c.recv()
            await asyncio.sleep(1.5)  # a heartbeat records the seconds
            await c.send('{"keepalive":1}')
            await asyncio.sleep(0.3)
            srv.kill()
    try:
        asyncio.run(run())
    except (websockets.ConnectionClosed, OSError):
        pass
    srv.restart()
    job = None
    deadline = time.time() + 20
    while time.time() < deadline:
        data = expect(user.api.get("/v1/jobs"), 200)["data"]
        if data and data[0]["status"] == "failed":
            job = data[0]
            break
        time.sleep(0.2)
    assert job and job["source"] == "stream", data
    assert job["error"]["code"] == "lease_expired"
    assert micro(job["cost"]["charged"]) == 10000  # the 2 s it last recorded
    assert kinds(job_entries(ledger(user.api), job["id"])) == ["capture", "hold"]
    assert assert_books(admin, user)[1] == 0


def test_concurrent_streams_get_the_same_transcript_while_rest_answers(server, speech):
    _, raw16, _ = speech
    user = make_user(server)
    url = ws_url(server, "?api_key=" + user.key)

    async def one():
        out = []
        async with websockets.connect(url, close_timeout=3) as c:
            await c.send(json.dumps({"config": {"sample_rate": RATE, "partial": False}}))
            for i in range(0, len(raw16), FRAME):
                await c.send(raw16[i:i + FRAME])
            await c.send('{"eof":1}')
            try:
                while True:
                    out.append(json.loads(await c.recv()))
            except websockets.ConnectionClosed:
                pass
            return out[-1], c.close_code

    async def rest():
        codes = []
        for _ in range(10):
            r = await asyncio.get_running_loop().run_in_executor(None, user.api.get, "/v1/balance")
            codes.append(r.status_code)
            await asyncio.sleep(0.05)
        return codes

    async def run():
        return await asyncio.gather(one(), one(), one(), rest())
    *streams, codes = asyncio.run(run())
    assert codes == [200] * 10
    texts = {final["result"]["text"] for final, code in streams}
    assert all(code == 1000 and final["final"] for final, code in streams)
    assert len(texts) == 1 and len(words(texts.pop())) >= 20


def test_streams_with_partials_leave_a_decoder_for_the_final_passes(start_server, speech):
    """--asr-decoders 2: a stream with partials holds one decoder, the other
    is kept for the whole-utterance decodes. A second stream with partials is
    refused (asr_busy, 1013, nothing held); one without partials holds none
    and still gets every utterance, as does the first."""
    _, raw16, _ = speech
    srv = start_server(["--asr-decoders", "2"])
    user = make_user(srv)
    srv_admin = srv.admin()
    url = ws_url(srv, "?api_key=" + user.key)

    async def run():
        first_out = []
        async with websockets.connect(url, close_timeout=3) as first:
            await first.send(json.dumps({"config": {"sample_rate": RATE, "partial": True}}))
            await first.send(raw16[:FRAME])
            first_out.append(json.loads(await first.recv()))  # its decoder is taken now
            refused = await asyncio.get_running_loop().run_in_executor(
                None, lambda: stream(srv, user.key, {"sample_rate": RATE, "partial": True}, raw16[:FRAME * 5]))
            quiet = await asyncio.get_running_loop().run_in_executor(
                None, lambda: stream(srv, user.key, {"sample_rate": RATE, "partial": False}, raw16))
            for i in range(FRAME, len(raw16), FRAME):
                await first.send(raw16[i:i + FRAME])
            await first.send('{"eof":1}')
            try:
                while True:
                    first_out.append(json.loads(await first.recv()))
            except websockets.ConnectionClosed:
                pass
            return first_out, first.close_code, refused, quiet
    first_out, first_code, refused, quiet = asyncio.run(run())
    texts, _, code, reason = refused
    assert code == 1013 and reason == "asr_busy", (code, reason, texts)
    assert texts[-1]["error"]["code"] == "asr_busy"
    texts, _, code, _ = quiet
    assert code == 1000 and texts[-1]["final"] is True
    assert not [m for m in texts if "partial" in m]
    assert len([m for m in texts if "text" in m and "start" in m]) == 3
    assert first_code == 1000 and first_out[-1]["final"] is True
    assert [m for m in first_out if "partial" in m and m["partial"]]
    assert words(first_out[-1]["result"]["text"]) == words(texts[-1]["result"]["text"])
    assert len(words(texts[-1]["result"]["text"])) >= 20
    # two streams billed, the refused one never opened a job
    data = expect(user.api.get("/v1/jobs"), 200)["data"]
    assert sorted(j["status"] for j in data) == ["succeeded", "succeeded"], data
    assert assert_books(srv_admin, user)[1] == 0
