"""test_result_formats.py - GET /v1/jobs/{id}/result?format=: json gives the
result document for any model; a format the model cannot render is 400."""
from helpers import J, assert_error, expect, make_user, submit, wait_job


def test_format_json_returns_the_document_and_unknown_formats_are_refused(server, wav_bytes):
    u = make_user(server)
    job = J(submit(u.api, wav_bytes, params={"format": "flac"}))
    done = wait_job(u.api, job["id"])
    assert done["status"] == "succeeded", done
    doc = expect(u.api.get("/v1/jobs/%s/result" % job["id"], params={"format": "json"}), 200)
    assert doc["format"] == "flac" and doc["output"]["bytes"] > 0
    assert_error(u.api.get("/v1/jobs/%s/result" % job["id"], params={"format": "srt"}), 400, "invalid_format")
    raw = u.api.get("/v1/jobs/%s/result" % job["id"])
    assert raw.status_code == 200 and raw.headers["Content-Type"] == "audio/flac"
