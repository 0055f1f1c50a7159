"""test_ops.py - operational endpoints and cross-cutting response rules:
health, readiness, metrics, OpenAPI, request ids, unknown routes, 405."""
import json

from helpers import J, assert_error, expect


def test_healthz_and_readyz_answer_200(server):
    api = server.api()
    assert expect(api.get("/healthz"), 200) == {"status": "ok"}
    assert expect(api.get("/readyz"), 200) == {"status": "ready"}


def test_metrics_expose_request_counter_and_job_gauges(server, user):
    u = user()
    expect(u.api.get("/v1/balance"), 200)
    r = server.api().get("/metrics")
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers.get("Content-Type")
    text = r.text
    assert "voxd_http_requests_total{" in text, text[:2000]
    assert "voxd_jobs{" in text or "voxd_jobs " in text, text[:2000]
    for name in ("voxd_queue_depth", "voxd_workers_busy", "voxd_workers", "voxd_http_request_duration_seconds"):
        assert name in text, "metric %s missing" % name
    # The request just made is counted with a 200 status label.
    assert any(line.startswith("voxd_http_requests_total{") and 'status="200"' in line
               for line in text.splitlines()), "no counted 200 request"


def test_openapi_is_json_and_lists_the_jobs_endpoint(server):
    r = server.api().get("/openapi.json")
    body = expect(r, 200)
    assert body is not None, "openapi.json must be served as JSON"
    assert str(body.get("openapi", "")).startswith("3."), body.get("openapi")
    paths = body.get("paths", {})
    for p in ("/v1/jobs", "/v1/jobs/{id}", "/v1/users", "/v1/balance", "/v1/ledger", "/v1/models"):
        assert p in paths, "openapi lacks %s" % p


def test_every_response_carries_a_distinct_request_id(server):
    api = server.api()
    ids = set()
    for path in ("/healthz", "/v1/balance", "/nope", "/v1/models"):
        r = api.get(path)
        rid = r.headers.get("X-Request-Id")
        assert rid, "no X-Request-Id on %s" % path
        ids.add(rid)
    assert len(ids) == 4, ids


def test_unknown_route_is_a_404_json_envelope(server, user):
    assert_error(server.api().get("/v1/definitely-not-here"), 404, "not_found")
    assert_error(user().api.get("/v1/jobs/job_doesnotexist"), 404, "not_found")


def test_wrong_method_on_a_known_route_is_405(server, user):
    assert_error(user().api.delete("/v1/balance"), 405, "method_not_allowed")


def test_models_catalog_describes_convert(server, user):
    body = expect(user().api.get("/v1/models"), 200)
    models = {m["name"]: m for m in body["data"]}
    assert "convert" in models, body
    conv = models["convert"]
    params = {p["name"]: p for p in conv["params"]}
    assert params["format"]["type"] == "enum"
    assert sorted(params["format"]["choices"]) == ["flac", "mp3", "opus", "wav"]
    assert params["format"]["default"] == "wav"
    assert params["sample_rate"]["type"] == "integer" and params["channels"]["type"] == "integer"
    assert set(conv["price"]) >= {"per_job", "per_second"}
    one = expect(user().api.get("/v1/models/convert"), 200)
    assert one["name"] == "convert"
    assert_error(user().api.get("/v1/models/nope"), 404, "not_found")


def test_error_bodies_leak_no_paths_or_sql(server, user):
    u = user()
    r = u.api.post("/v1/jobs", data=b"--x\r\n", headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert 400 <= r.status_code < 500
    text = json.dumps(J(r)).lower()
    for leak in ("sqlite", "select ", "/tmp/", "insert into", ".c:"):
        assert leak not in text, text


def test_a_second_server_on_the_same_data_dir_is_refused(start_server):
    import subprocess
    from helpers import free_port, voxd_bin
    srv = start_server(["--workers", "0"])
    r = subprocess.run([voxd_bin(), "serve", "--listen", "127.0.0.1:%d" % free_port(), "--data",
                        str(srv.data_dir), "--workers", "1"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert "in use by another voxd" in r.stderr, r.stderr
    expect(srv.api().get("/readyz"), 200)  # the first one is untouched


def test_help_documents_every_option_with_its_variable():
    import re
    import subprocess
    from helpers import voxd_bin
    out = subprocess.run([voxd_bin(), "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    flags = set(re.findall(r"^  --([a-z][a-z0-9-]+)", out, re.M))
    assert {"listen", "data", "workers", "allow-self-top-up", "max-upload", "max-duration"} <= flags, out
    for flag in flags:
        if flag.startswith("no-"):
            continue
        assert "VOXD_" + flag.upper().replace("-", "_") in out, "no variable shown for --%s" % flag
    r = subprocess.run([voxd_bin(), "serve", "--no-such-flag"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "no-such-flag" in r.stderr
