"""conftest.py - fixtures of the black-box API suite: a session-wide default
voxd (top-up disabled, default sign-up grant, 2 workers), extra servers with
custom flags per test, fresh users, an admin client, audio fixtures made once
with ffmpeg, and the voxd log tail attached to every failing test's report."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import helpers  # noqa: E402
from helpers import INPUT_FORMATS, Server, make_audio, make_user, wait_job  # noqa: E402,F401


def pytest_runtest_setup(item):
    helpers.CURRENT_TEST["id"] = item.nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    item.voxd_failed = True
    for srv in helpers.SERVERS:
        if srv.owner == item.nodeid or (srv.shared and srv.running()):
            rep.sections.append(("voxd %s log tail (%s)" % (srv.name, srv.log_path), srv.log_tail(60)))


@pytest.fixture(scope="session", autouse=True)
def _tools():
    if not helpers.have_ffmpeg():
        pytest.exit("ffmpeg/ffprobe are required by the API tests", returncode=2)
    path = helpers.voxd_bin()
    if not os.access(path, os.X_OK):
        pytest.exit("voxd binary not found: %s (set VOXD_BIN)" % path, returncode=2)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The default server: --workers 2, top-up disabled, sign-up grant default."""
    srv = Server(tmp_path_factory.mktemp("default") / "data", ["--workers", "2"],
                 name="default", shared=True)
    srv.start()
    yield srv
    srv.stop_and_check()


@pytest.fixture
def start_server(tmp_path, request):
    """Factory: start_server(flags, name=None, env=None) -> a started Server on
    its own data dir under tmp_path; all are stopped after the test and their
    data dirs removed if it passed (some hold hundreds of MB of blobs)."""
    started = []

    def _start(flags=(), name=None, env=None, data_dir=None):
        n = len(started)
        srv = Server(data_dir or (tmp_path / ("data%d" % n)), flags, env=env, name=name)
        started.append(srv)
        return srv.start()

    yield _start
    for srv in started:
        srv.stop()
    for srv in started:
        srv.stop_and_check()
    if not getattr(request.node, "voxd_failed", False):
        for srv in started:
            shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def admin(server):
    """Admin client (JWT) on the default server."""
    return server.admin()


@pytest.fixture
def user(server):
    """Factory: user(srv=None) signs up a fresh random user (default server
    unless given) and returns a helpers.User."""
    def _make(srv=None, **kw):
        return make_user(srv or server, **kw)
    return _make


@pytest.fixture(scope="session")
def audio(tmp_path_factory):
    """format -> path of a 1 s 44.1 kHz mono 440 Hz sine, for every input format."""
    d = tmp_path_factory.mktemp("audio")
    return {fmt: make_audio(d, fmt, 1.0) for fmt in INPUT_FORMATS}


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory):
    """A scratch directory for tests that make their own audio."""
    return tmp_path_factory.mktemp("audio-extra")


@pytest.fixture(scope="session")
def wav_bytes(audio):
    with open(audio["wav"], "rb") as f:
        return f.read()
