"""test_cycle.py - the whole job cycle through the public API: sign-up, key,
submit, poll, download (with ranges), billing in the ledger, history, input
download; and every input format accepted by `convert`."""
import pytest

from helpers import (assert_books, assert_error, expect, ffprobe, job_entries, kinds, ledger,
                     micro, pages, submit, wait_job)

# output format -> (params, accepted Content-Types, codec check)
OUTPUTS = {
    "wav": ({"format": "wav", "sample_rate": 16000, "channels": 1},
            {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"}, lambda c: c.startswith("pcm_")),
    "flac": ({"format": "flac", "sample_rate": 44100, "channels": 2},
             {"audio/flac", "audio/x-flac"}, lambda c: c == "flac"),
    "opus": ({"format": "opus", "sample_rate": 48000, "channels": 2},
             {"audio/ogg", "audio/opus"}, lambda c: c == "opus"),
    "mp3": ({"format": "mp3", "sample_rate": 22050, "channels": 1},
            {"audio/mpeg"}, lambda c: c == "mp3"),
}


@pytest.mark.parametrize("fmt", sorted(OUTPUTS))
def test_full_cycle_produces_downloadable_output_and_bills_exactly(fmt, server, admin, user, audio, tmp_path):
    params, ctypes, codec_ok = OUTPUTS[fmt]
    u = user()
    bal0, held0 = u.balance()
    assert held0 == 0 and bal0 > 0

    with open(audio["mp3"], "rb") as f:
        upload = f.read()
    r = submit(u.api, upload, params=params, filename="tone.mp3", content_type="audio/mpeg")
    job = expect(r, 202, "submit")
    jid = job["id"]
    assert jid.startswith("job_")
    assert r.headers.get("Location") == "/v1/jobs/" + jid
    assert job["status"] == "queued" and job["model"] == "convert"
    assert job["params"] == params, job["params"]
    assert job["input"]["filename"] == "tone.mp3" and job["input"]["bytes"] == len(upload)
    assert job["input"]["format"] == "mp3"
    assert job["result"] is None and job["error"] is None and job["errors"] == []
    hold = micro(job["cost"]["held"])
    assert hold > 0

    done = wait_job(u.api, jid, timeout=60)
    assert done["status"] == "succeeded", done
    assert done["progress"] == 1
    assert done["started_at"] and done["finished_at"] and done["attempts"] >= 1
    charged = micro(done["cost"]["charged"])
    assert 0 < charged <= hold
    out = done["result"]["output"]
    assert out["url"] == "/v1/jobs/%s/result" % jid

    # Download: headers and content.
    res = u.api.get("/v1/jobs/%s/result" % jid)
    assert res.status_code == 200, res.text[:300]
    ctype = res.headers["Content-Type"].split(";")[0].strip()
    assert ctype in ctypes, ctype
    assert ctype == out["content_type"].split(";")[0].strip()
    assert int(res.headers["Content-Length"]) == len(res.content) == out["bytes"]
    assert res.headers.get("Accept-Ranges") == "bytes"
    assert res.headers.get("Content-Disposition", "").startswith("attachment")
    path = tmp_path / ("out." + fmt)
    path.write_bytes(res.content)
    probe = ffprobe(str(path))
    streams = probe["streams"]
    assert len(streams) == 1, probe
    assert int(streams[0]["sample_rate"]) == params["sample_rate"], probe
    assert int(streams[0]["channels"]) == params["channels"], probe
    assert codec_ok(streams[0]["codec_name"]), probe
    assert abs(float(probe["format"]["duration"]) - 1.0) < 0.15, probe

    # Billing: balance down by exactly what was charged; hold + capture.
    bal1, held1 = u.balance()
    assert held1 == 0
    assert bal0 - bal1 == charged
    entries = job_entries(ledger(u.api), jid)
    assert kinds(entries) == ["capture", "hold"], entries
    h = next(e for e in entries if e["kind"] == "hold")
    c = next(e for e in entries if e["kind"] == "capture")
    assert micro(h["amount"]) == -hold and micro(h["held_delta"]) == hold
    assert micro(c["amount"]) == hold - charged and micro(c["held_delta"]) == -hold
    assert_books(admin, u)

    # History lists it, and the filters work.
    assert jid in [j["id"] for j in pages(u.api, "/v1/jobs")]
    assert jid in [j["id"] for j in pages(u.api, "/v1/jobs", {"status": "succeeded", "model": "convert"})]
    assert jid not in [j["id"] for j in pages(u.api, "/v1/jobs", {"status": "failed"})]

    # Ranges.
    full = res.content
    r206 = u.api.get("/v1/jobs/%s/result" % jid, headers={"Range": "bytes=10-109"})
    assert r206.status_code == 206, r206.text[:200]
    assert r206.headers.get("Content-Range") == "bytes 10-109/%d" % len(full)
    assert int(r206.headers["Content-Length"]) == 100
    assert r206.content == full[10:110]
    tail = u.api.get("/v1/jobs/%s/result" % jid, headers={"Range": "bytes=%d-" % (len(full) - 7)})
    assert tail.status_code == 206 and tail.content == full[-7:]
    assert tail.headers.get("Content-Range") == "bytes %d-%d/%d" % (len(full) - 7, len(full) - 1, len(full))
    assert_error(u.api.get("/v1/jobs/%s/result" % jid, headers={"Range": "bytes=%d-" % (len(full) + 10)}),
                 416, "range_not_satisfiable")

    # The input comes back byte for byte.
    inp = u.api.get("/v1/jobs/%s/input" % jid)
    assert inp.status_code == 200
    assert inp.content == upload
    assert int(inp.headers["Content-Length"]) == len(upload)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "opus", "webm", "m4a"])
def test_convert_accepts_every_input_format(fmt, server, user, audio):
    u = user()
    job = expect(submit(u.api, audio[fmt], params={"format": "wav"}), 202, "submit " + fmt)
    assert float(job["input"]["duration_s"]) == pytest.approx(1.0, abs=0.15), job["input"]
    done = wait_job(u.api, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    res = u.api.get("/v1/jobs/%s/result" % job["id"])
    assert res.status_code == 200 and res.content[:4] == b"RIFF"


def test_result_is_not_ready_while_job_is_queued(start_server, audio):
    from helpers import make_user
    srv = start_server(["--workers", "0"])
    u = make_user(srv)
    job = expect(submit(u.api, audio["wav"]), 202)
    assert_error(u.api.get("/v1/jobs/%s/result" % job["id"]), 409, "result_not_ready")
    # Input is already downloadable.
    assert u.api.get("/v1/jobs/%s/input" % job["id"]).status_code == 200


def test_job_price_is_per_job_plus_per_second_of_audio(server, admin, user, audio):
    # Read the catalog price rather than changing the shared server's price.
    model = expect(user().api.get("/v1/models/convert"), 200)
    per_job, per_sec = micro(model["price"]["per_job"]), micro(model["price"]["per_second"])
    u = user()
    job = expect(submit(u.api, audio["wav"]), 202)
    dur = float(job["input"]["duration_s"])
    expected = per_job + per_sec * dur
    assert micro(job["cost"]["held"]) == pytest.approx(expected, abs=1 + per_sec * 0.01)
    assert micro(job["price"]["per_job"]) == per_job and micro(job["price"]["per_second"]) == per_sec
