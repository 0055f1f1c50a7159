"""test_model_enhance.py - the `enhance` model through the whole job cycle:
a noisy, hummy speech-like WAV is submitted, polled to success, the cleaned
file downloaded and checked (format, rate, channels, length), and the result
document carries the promised report fields; bad params are refused up front."""
import io
import math
import random
import struct
import wave

from helpers import assert_error, expect, ffprobe, micro, submit, wait_job

RATE = 16000


def noisy_wav(seconds=3.0, channels=1):
    """Speech-like harmonics + 50 Hz hum + white noise, 16-bit WAV bytes."""
    rnd = random.Random(3)
    n = int(seconds * RATE)
    frames = bytearray()
    ph = 0.0
    for i in range(n):
        t = i / RATE
        f0 = 140 + 25 * math.sin(2 * math.pi * 0.8 * t)
        ph += 2 * math.pi * f0 / RATE
        env = 0.5 + 0.5 * math.sin(2 * math.pi * 3 * t)
        v = 0.1 * env * sum(math.sin(k * ph) / k for k in range(1, 8))
        v += sum(0.04 / k * math.sin(2 * math.pi * 50 * k * t + k) for k in (1, 2, 3, 5, 7))
        v += 0.01 * rnd.gauss(0, 1)
        s = max(-32768, min(32767, int(v * 32767)))
        frames += struct.pack("<h", s) * channels
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def test_enhance_is_listed_with_params_and_price(server):
    models = expect(server.api().get("/v1/models"), 200, "models")["data"]
    m = next(x for x in models if x["name"] == "enhance")
    names = {p["name"] for p in m["params"]}
    for p in ("format", "sample_rate", "highpass_hz", "dehum", "denoise", "strength", "max_attenuation_db",
              "declip", "normalize", "target_lufs", "true_peak_dbtp"):
        assert p in names, p
    assert micro(m["price"]["per_second"]) > 0


def test_enhance_job_cycle_returns_clean_audio_and_report(server, user, tmp_path):
    u = user()
    upload = noisy_wav()
    # -16 LUFS reached by limiting peaks where the crest factor needs it (max_limiting_db; the
    # default 0 lets the true-peak ceiling cap the gain instead).
    job = expect(submit(u.api, upload, model="enhance", params={"format": "flac", "max_limiting_db": 20},
                        filename="noisy.wav",
                        content_type="audio/wav"), 202, "submit")
    done = wait_job(u.api, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert 0 < micro(done["cost"]["charged"]) <= micro(done["cost"]["held"])
    res = done["result"]
    for key in ("format", "sample_rate", "channels", "duration_s", "input", "processed", "stages", "stages_acted",
                "output"):
        assert key in res, key
    assert res["format"] == "flac" and res["sample_rate"] == RATE and res["channels"] == 1
    # The API client parses JSON numbers as Decimal.
    assert float(res["input"]["loudness_lufs"]) < -20, res["input"]
    assert float(res["input"]["snr_db"]) < 20, res["input"]
    assert abs(float(res["processed"]["loudness_lufs"]) + 16) < 0.5, res["processed"]
    assert float(res["processed"]["true_peak_dbtp"]) <= -1.0, res["processed"]
    assert res["output"]["url"] == "/v1/jobs/%s/result" % job["id"]
    for stage in ("dc_removal", "highpass", "dehum", "denoise", "declip", "loudness", "limiter"):
        assert set(res["stages"][stage]) >= {"enabled", "acted"}, stage
    assert res["stages"]["dehum"]["acted"] and res["stages"]["dehum"]["mains_hz"] == 50
    assert res["stages"]["denoise"]["bursts"] >= 0
    assert res["stages"]["denoise"]["acted"]
    assert "denoise" in res["stages_acted"]

    r = u.api.get("/v1/jobs/%s/result" % job["id"])
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"].split(";")[0].strip() in ("audio/flac", "audio/x-flac")
    path = tmp_path / "clean.flac"
    path.write_bytes(r.content)
    probe = ffprobe(str(path))
    st = probe["streams"][0]
    assert st["codec_name"] == "flac" and int(st["sample_rate"]) == RATE and int(st["channels"]) == 1
    assert abs(float(probe["format"]["duration"]) - 3.0) < 0.02, probe


def test_enhance_keeps_stereo_and_resamples_on_request(server, user, tmp_path):
    u = user()
    job = expect(submit(u.api, noisy_wav(1.5, channels=2), model="enhance",
                        params={"format": "wav", "sample_rate": 48000}, filename="st.wav",
                        content_type="audio/wav"), 202, "submit")
    done = wait_job(u.api, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["result"]["channels"] == 2 and done["result"]["sample_rate"] == 48000
    r = u.api.get("/v1/jobs/%s/result" % job["id"])
    path = tmp_path / "st.wav"
    path.write_bytes(r.content)
    st = ffprobe(str(path))["streams"][0]
    assert int(st["channels"]) == 2 and int(st["sample_rate"]) == 48000


def test_enhance_refuses_bad_params_before_queueing(server, user):
    u = user()
    assert_error(submit(u.api, noisy_wav(0.5), model="enhance", params={"strength": 99}), 422,
                 "param_out_of_range")
    assert_error(submit(u.api, noisy_wav(0.5), model="enhance", params={"dehum": "55hz"}), 422,
                 "param_out_of_range")
    assert_error(submit(u.api, noisy_wav(0.5), model="enhance", params={"loudness": True}), 422,
                 "unknown_param")
