"""conftest.py - fixtures of the cluster-only tests (run by tests/cluster/run.sh
after the API suite, in the same pytest session): they reuse tests/api's
helpers and need cluster mode (VOXD_CLUSTER=1 with the services of
scripts/with_cluster.sh); outside it each test module skips itself."""
import os
import sys

import pytest

API_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "api")
sys.path.insert(0, API_DIR)
import helpers  # noqa: E402


@pytest.fixture
def cluster(tmp_path, request):
    """Factory: cluster(flags) -> a started cluster-mode Server (2 API nodes,
    2 worker processes) on its own schema and S3 prefix; stopped and checked
    after the test."""
    started = []

    def _start(flags=(), name=None):
        srv = helpers.Server(tmp_path / ("data%d" % len(started)), flags, name=name)
        started.append(srv)
        return srv.start()

    yield _start
    for srv in started:
        srv.stop_and_check()


@pytest.fixture(scope="session")
def audio_wav(tmp_path_factory):
    """A 1 s 44.1 kHz mono sine as WAV."""
    return helpers.make_audio(tmp_path_factory.mktemp("cluster-wav"), "wav", 1.0)
