"""test_bad_input.py - every rejected upload answers a 4xx JSON error with the
documented code, and nothing is stored or charged: balance, held, ledger and
job list are unchanged and no blob or spool file is left behind."""
import json
import os
import select
import socket
import time

import pytest

from helpers import (USER_PASSWORD, J, Server, assert_books, assert_error, expect, ledger, make_user, pages,
                     submit, wav_header)


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("strict") / "data",
                 ["--workers", "0", "--max-upload", "1M", "--max-duration", "60"], name="strict", shared=True)
    srv.start()
    yield srv
    srv.stop_and_check()


def files_under(path):
    out = set()
    for root, _dirs, files in os.walk(path):
        for f in files:
            out.add(os.path.join(root, f))
    return out


class Snapshot:
    """What a rejected request must leave untouched."""

    def __init__(self, srv, u):
        self.srv, self.u = srv, u
        self.balance = u.balance()
        self.ledger = ledger(u.api)
        self.jobs = pages(u.api, "/v1/jobs")
        self.blobs = files_under(os.path.join(srv.data_dir, "blobs"))

    def assert_unchanged(self):
        assert self.u.balance() == self.balance, "balance changed"
        assert ledger(self.u.api) == self.ledger, "ledger changed"
        assert pages(self.u.api, "/v1/jobs") == self.jobs, "a job was created"
        assert files_under(os.path.join(self.srv.data_dir, "blobs")) == self.blobs, "a blob was stored"
        # Spool files of the rejected upload are removed (cleanup may trail the answer a little).
        tmp = os.path.join(self.srv.data_dir, "tmp")
        deadline = time.monotonic() + 3
        while files_under(tmp) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not files_under(tmp), "upload spool left behind: %s" % files_under(tmp)
        assert_books(self.srv.admin(), self.u)


@pytest.fixture
def strict_user(strict_server):
    u = make_user(strict_server)
    snap = Snapshot(strict_server, u)
    yield u
    snap.assert_unchanged()


@pytest.fixture(scope="module")
def good_wav(strict_server):
    import math
    import struct
    n = 44100
    pcm = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 44100))) for i in range(n))
    return wav_header(len(pcm)) + pcm


def test_control_a_good_upload_is_accepted(strict_server, good_wav):
    u = make_user(strict_server)
    expect(submit(u.api, good_wav, filename="ok.wav"), 202)


def test_empty_file_is_422_empty_file(strict_user):
    assert_error(submit(strict_user.api, b"", filename="empty.wav"), 422, "empty_file")


def test_truncated_wav_is_422_truncated_audio(strict_user, good_wav):
    cut = good_wav[:44 + 20000]  # header declares 88200 data bytes
    assert_error(submit(strict_user.api, cut, filename="cut.wav"), 422, "truncated_audio")


def test_text_file_named_wav_is_415_unsupported_format(strict_user):
    text = b"This is not audio, just a text file pretending to be a WAV.\n" * 50
    assert_error(submit(strict_user.api, text, filename="notes.wav", content_type="audio/wav"),
                 415, "unsupported_format")


def test_wav_header_claiming_ten_hours_is_422_duration_exceeded(strict_user):
    rate = 8000
    claimed = 10 * 3600 * rate * 2  # 10 h of 8 kHz mono 16-bit: fits the 32-bit size field
    body = wav_header(claimed, rate=rate) + b"\x01\x00" * 4000
    assert_error(submit(strict_user.api, body, filename="long.wav"), 422, "duration_exceeded")


def test_unknown_model_is_422(strict_user, good_wav):
    assert_error(submit(strict_user.api, good_wav, model="no_such_model"), 422, "unknown_model")


@pytest.mark.parametrize("params", [{"sample_rate": 1000}, {"sample_rate": 400000}, {"channels": 9},
                                    {"channels": -1}])
def test_param_out_of_bounds_is_422_param_out_of_range(strict_user, good_wav, params):
    assert_error(submit(strict_user.api, good_wav, params=params), 422, "param_out_of_range")


def test_unknown_param_is_422_unknown_param(strict_user, good_wav):
    assert_error(submit(strict_user.api, good_wav, params={"format": "wav", "bogus": 1}), 422, "unknown_param")


@pytest.mark.parametrize("params", [{"sample_rate": "fast"}, {"channels": 1.5}, {"format": 3}])
def test_wrong_param_type_is_422_invalid_param(strict_user, good_wav, params):
    assert_error(submit(strict_user.api, good_wav, params=params), 422, "invalid_param")


def test_enum_param_outside_its_choices_is_422(strict_user, good_wav):
    r = submit(strict_user.api, good_wav, params={"format": "aac"})
    assert r.status_code == 422, r.text
    # api.md lists both codes; either names the problem precisely.
    assert J(r)["error"]["code"] in ("param_out_of_range", "invalid_param"), r.text


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "\"wav\""])
def test_params_that_are_not_a_json_object_are_400(strict_user, good_wav, raw):
    assert_error(submit(strict_user.api, good_wav, params=raw), 400, "invalid_params_json")


def test_missing_file_is_400_missing_file(strict_user):
    r = strict_user.api.post("/v1/jobs", files={"model": (None, "convert")})
    assert_error(r, 400, "missing_file")


def test_missing_model_is_400_missing_model(strict_user, good_wav):
    assert_error(submit(strict_user.api, good_wav, model=None), 400, "missing_model")


def test_non_multipart_body_is_415_unsupported_media_type(strict_user):
    r = strict_user.api.post("/v1/jobs", data={"model": "convert"})  # a urlencoded form
    assert_error(r, 415, "unsupported_media_type")
    # JSON is accepted, but only naming a direct upload (test_uploads.py)
    r = strict_user.api.post("/v1/jobs", json={"model": "convert"})
    assert_error(r, 400, "missing_upload_id")
    r = strict_user.api.post("/v1/jobs", data=b"RIFF....", headers={"Content-Type": "audio/wav"})
    assert_error(r, 415, "unsupported_media_type")


def test_multipart_without_boundary_is_400_invalid_multipart(strict_user):
    r = strict_user.api.post("/v1/jobs", data=b"--x\r\n", headers={"Content-Type": "multipart/form-data"})
    assert_error(r, 400, "invalid_multipart")


def test_multipart_cut_off_before_its_closing_boundary_is_400_invalid_multipart(strict_user, good_wav):
    b = "XyZzY123"
    body = (("--%s\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nconvert\r\n"
             "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
             "Content-Type: audio/wav\r\n\r\n" % (b, b)).encode() + good_wav[:5000])
    r = strict_user.api.post("/v1/jobs", data=body, headers={"Content-Type": "multipart/form-data; boundary=" + b})
    assert_error(r, 400, "invalid_multipart")


def test_multipart_part_without_headers_end_is_400_invalid_multipart(strict_user):
    b = "AbC987"
    body = ("--%s\r\nContent-Disposition: form-data; name=\"model\"\r\nconvert--%s--\r\n" % (b, b)).encode()
    r = strict_user.api.post("/v1/jobs", data=body, headers={"Content-Type": "multipart/form-data; boundary=" + b})
    assert_error(r, 400, "invalid_multipart")


@pytest.mark.parametrize("name", ["../../etc/passwd.wav", "..\\x.wav", "a/../../b.wav", "/etc/evil.wav"])
def test_path_traversal_filename_is_400_invalid_filename(strict_user, good_wav, name):
    assert_error(submit(strict_user.api, good_wav, filename=name), 400, "invalid_filename")


def test_invalid_json_on_signup_is_400_invalid_json(strict_server):
    for body in (b'{"username": "abc", "password": ', b"not json at all", b"{\"a\":1}}"):
        r = strict_server.api().post("/v1/users", data=body, headers={"Content-Type": "application/json"})
        assert_error(r, 400, "invalid_json")


def test_json_body_over_limit_is_413_body_too_large(strict_server):
    big = json.dumps({"username": "a" * (1024 * 1024 + 65536), "password": USER_PASSWORD})
    r = strict_server.api().post("/v1/users", data=big, headers={"Content-Type": "application/json"})
    assert_error(r, 413, "body_too_large")


def _read_http_response(sock, first=b""):
    """Reads one HTTP response (status, headers, body) from a blocking socket."""
    data = first
    sock.settimeout(10)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        body += chunk
    return status, headers, body[:n]


def test_upload_over_the_limit_is_413_while_streaming(strict_user, strict_server, good_wav):
    """20 MB of chunked multipart against --max-upload 1M: the 413 arrives
    while most of the body is still unsent."""
    total = 20 * 1024 * 1024
    b = "StreamBoundary42"
    head = ("--%s\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nconvert\r\n"
            "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n" % (b, b)).encode()
    sock = socket.create_connection(("127.0.0.1", strict_server.port))
    try:
        sock.sendall(("POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-API-Key: %s\r\n"
                      "Content-Type: multipart/form-data; boundary=%s\r\nTransfer-Encoding: chunked\r\n\r\n"
                      % (strict_server.port, strict_user.key, b)).encode())
        payload = wav_header(total) + b"\x10\x00" * 32768
        sent = 0
        first = b""

        def frame(data):
            return b"%x\r\n" % len(data) + data + b"\r\n"

        pending = frame(head)
        sock.setblocking(False)
        deadline = time.monotonic() + 60
        got_response = False
        finished = False
        while time.monotonic() < deadline:
            if sent >= total and not pending and not finished:
                pending = frame(("\r\n--%s--\r\n" % b).encode()) + b"0\r\n\r\n"
                finished = True
            want_write = [sock] if pending or sent < total else []
            readable, writable, _ = select.select([sock], want_write, [], 1.0)
            if readable:
                try:
                    first = sock.recv(65536)
                except ConnectionResetError:
                    first = b""
                got_response = True
                break
            if writable:
                if not pending:
                    piece = payload[: min(len(payload), total - sent)]
                    pending = frame(piece)
                    sent += len(piece)
                try:
                    n = sock.send(pending)
                    pending = pending[n:]
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    got_response = True
                    break
        sent_at_answer = sent
        assert got_response, "no answer within 60 s (sent %d bytes)" % sent
        assert sent_at_answer < total // 2, "answer only after %d of %d bytes" % (sent_at_answer, total)
        sock.setblocking(True)
        if not first:
            sock.settimeout(5)
            try:
                first = sock.recv(65536)
            except (OSError, socket.timeout):
                first = b""
        assert first, "connection dropped without a 413 response (sent %d bytes)" % sent_at_answer
        status, headers, body = _read_http_response(sock, first)
        assert status == 413, (status, body[:300])
        assert json.loads(body)["error"]["code"] == "upload_too_large", body
        assert "x-request-id" in headers
    finally:
        sock.close()
