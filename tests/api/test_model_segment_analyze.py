"""test_model_segment_analyze.py - the `segment` and `analyze` models through
the whole job cycle: submit, poll, fetch the JSON result, and for segment the
CSV and Audacity renderings (other formats are refused); billing captured."""
import io
import math
import struct
import wave

from helpers import J, assert_error, expect, micro, submit, wait_job

RATE = 16000


def speech_like(seconds):
    """Harmonic complex (f0 ~120 Hz) under formant-like peaks, in 200 ms
    syllables with 100 ms pauses."""
    out = []
    phase = 0.0
    for i in range(int(seconds * RATE)):
        t = i / RATE
        f0 = 120 + 20 * math.sin(2 * math.pi * 0.8 * t)
        phase += 2 * math.pi * f0 / RATE
        u = t % 0.3
        env = math.sin(math.pi * u / 0.2) if u < 0.2 else 0.0
        s = 0.0
        h = 1
        while h * f0 < 3800:
            f = h * f0
            s += (math.exp(-((f - 600) / 200) ** 2) + 0.5 * math.exp(-((f - 1700) / 300) ** 2) + 0.03) * math.sin(h * phase)
            h += 1
        out.append(0.05 * env * s)
    return out


def wav_bytes(samples):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(struct.pack("<h", max(-32768, min(32767, int(round(x * 32767))))) for x in samples))
    return buf.getvalue()


def speech_between_silences():
    """1.5 s silence, 2 s speech-like, 1.5 s silence (5 s)."""
    return wav_bytes([0.0] * int(1.5 * RATE) + speech_like(2.0) + [0.0] * int(1.5 * RATE))


def result_doc(u, job_id):
    """The result document with floats as floats (expect() keeps Decimals for credits)."""
    r = u.api.get("/v1/jobs/%s/result" % job_id)
    expect(r, 200, "result")
    return r.json()


def run_job(u, model, data, params=None):
    job = expect(submit(u.api, data, model=model, params=params, filename="a.wav", content_type="audio/wav"),
                 202, "submit " + model)
    done = wait_job(u.api, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert 0 < micro(done["cost"]["charged"]) <= micro(done["cost"]["held"])
    return done


def test_segment_job_finds_the_speech_and_renders_csv_and_audacity(server, user):
    u = user()
    done = run_job(u, "segment", speech_between_silences(), {"pad_ms": 0})
    doc = result_doc(u, done["id"])
    segs = doc["segments"]
    assert len(segs) == 1, doc
    assert abs(segs[0]["start_s"] - 1.5) < 0.1 and abs(segs[0]["end_s"] - 3.45) < 0.15, segs
    assert 0.5 < segs[0]["confidence"] <= 1
    assert abs(doc["duration_s"] - 5.0) < 1e-6

    csv = u.api.get("/v1/jobs/%s/result" % done["id"], params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv"), csv.text
    lines = csv.text.splitlines()
    assert lines[0] == "start,end,confidence"
    start, end, conf = (float(x) for x in lines[1].split(","))
    assert (start, end) == (segs[0]["start_s"], segs[0]["end_s"]) and len(lines) == 2

    aud = u.api.get("/v1/jobs/%s/result" % done["id"], params={"format": "audacity"})
    assert aud.status_code == 200 and aud.headers["Content-Type"].startswith("text/plain"), aud.text
    a, b, label = aud.text.rstrip("\n").split("\t")
    assert (float(a), float(b), label) == (segs[0]["start_s"], segs[0]["end_s"], "speech")

    assert_error(u.api.get("/v1/jobs/%s/result" % done["id"], params={"format": "srt"}), 400, "invalid_format")


def test_segment_params_are_validated_at_submission(server, user):
    u = user()
    r = submit(u.api, speech_between_silences(), model="segment", params={"threshold": 1.5})
    assert_error(r, 422, "param_out_of_range")
    r = submit(u.api, speech_between_silences(), model="segment", params={"pad": 10})
    assert_error(r, 422, "unknown_param")


def test_analyze_job_returns_chunks_and_summary(server, user):
    u = user()
    data = wav_bytes([0.0] * int(4 * RATE) + speech_like(4.0) + [0.0] * int(2.3 * RATE))  # 10.3 s
    done = run_job(u, "analyze", data)
    doc = result_doc(u, done["id"])
    chunks = doc["chunks"]
    assert [c["chunk_id"] for c in chunks] == [0, 1, 2]
    assert [(c["start_s"], c["end_s"]) for c in chunks] == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.3)]
    assert chunks[0]["speech_probability"] < 0.1 and chunks[2]["speech_probability"] < 0.1
    assert chunks[1]["speech_probability"] > 0.5
    for c in chunks:
        for key in ("loudness_lufs", "short_term_max_lufs", "peak_dbfs", "true_peak_dbtp", "clipping_ratio",
                    "snr_db", "spectral_flatness", "quality", "speech_ratio"):
            assert key in c, (key, c)
        assert 0 <= c["quality"] <= 1
    assert chunks[0]["loudness_lufs"] is None and chunks[1]["loudness_lufs"] < -20
    s = doc["summary"]
    assert s["chunk_count"] == 3 and abs(s["duration_s"] - 10.3) < 1e-6
    assert s["sample_rate"] == 16000 and s["channels"] == 1
    assert s["integrated_lufs"] < -20 and s["loudness_range_lu"] >= 0
    assert s["format"] == "wav" and s["codec"] == "pcm_s16le" and s["input_channels"] == 1
    # Only JSON: no renderer for analyze.
    assert_error(u.api.get("/v1/jobs/%s/result" % done["id"], params={"format": "csv"}), 400, "invalid_format")


def test_analyze_chunk_size_param_and_catalog_prices(server, user):
    u = user()
    models = {m["name"]: m for m in J(u.api.get("/v1/models"))["data"]}
    for name in ("segment", "analyze"):
        assert name in models and models[name]["kind"] == "analysis"
        assert micro(models[name]["price"]["per_second"]) > 0
    done = run_job(u, "analyze", wav_bytes(speech_like(3.0)), {"chunk_s": 1.0, "sample_rate": 0})
    chunks = done["result"]["chunks"]
    assert len(chunks) == 3 and chunks[-1]["end_s"] == 3.0
