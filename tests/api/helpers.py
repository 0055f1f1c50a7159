"""helpers.py - shared pieces of the black-box API tests (and the benches):
start/stop a real voxd process, a small HTTP client bound to one server,
credit arithmetic in exact micro-credits, job/ledger helpers and audio
fixture generation with ffmpeg. No test logic lives here.
Cluster mode (VOXD_CLUSTER=1, see tests/cluster/run.sh): each Server is two
`serve --workers 0` API nodes plus two `voxd worker` processes on the shared
backends of VOXD_EXTRA_FLAGS; its clients alternate between the API nodes
request by request, and stop/kill/restart act on all four processes."""
import itertools
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from decimal import Decimal

import requests

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ADMIN_PASSWORD = "Adm1n-Test-Pass-7f3c9e-Quokka"
USER_PASSWORD = "Correct-Horse-9-Battery-Staple"
TERMINAL = ("succeeded", "failed", "canceled")

# Flags added to every voxd the suite starts (e.g. --blob s3://...), so the
# whole suite can run against other backends; a test's own flags come after.
# "{data}" in them becomes a tag unique to the server's data dir (e.g.
# --db 'postgres://...?schema={data}' gives each server its own schema).
EXTRA_FLAGS = shlex.split(os.environ.get("VOXD_EXTRA_FLAGS", ""))
CLUSTER = os.environ.get("VOXD_CLUSTER") == "1"
# Worker processes per cluster-mode Server (when its flags ask for workers).
CLUSTER_WORKERS = 2

# Every server started by this process, so a failing test can show their logs.
SERVERS = []
# Node id of the test being run (set by conftest), recorded by each server.
CURRENT_TEST = {"id": None}


def voxd_bin():
    """The voxd binary under test: $VOXD_BIN (relative to the repo root
    unless absolute), default build/voxd."""
    path = os.environ.get("VOXD_BIN", "build/voxd")
    if not os.path.isabs(path):
        path = os.path.join(REPO_ROOT, path)
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerStartError(RuntimeError):
    pass


class Server:
    """One voxd process on 127.0.0.1:<free port> with its own data dir.
    stdout and stderr go to <data>/../voxd-<n>.log."""

    _seq = itertools.count(1)

    def __init__(self, data_dir, flags=(), env=None, name=None, shared=False, port=None):
        self.data_dir = str(data_dir)
        self.flags = list(flags)
        self.extra_env = dict(env or {})
        self.seq = next(Server._seq)
        self.name = name or "voxd-%d" % self.seq
        self.shared = shared
        self.owner = CURRENT_TEST["id"]
        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        # Cluster mode: the second API node's port; every API node's URL.
        self.port2 = free_port() if CLUSTER else None
        self.urls = [self.url] + (["http://127.0.0.1:%d" % self.port2] if CLUSTER else [])
        self.procs = []          # every process of this server (proc is the first API node)
        self.cmds = []
        self.log_path = os.path.join(os.path.dirname(self.data_dir.rstrip("/")) or ".",
                                     "%s-%d.log" % (os.path.basename(self.data_dir.rstrip("/")), self.seq))
        self.proc = None
        self._log = None
        SERVERS.append(self)

    # -- lifecycle --------------------------------------------------------
    def extra_flags(self):
        """EXTRA_FLAGS for this server ("{data}" filled in); a worker process
        sharing this server's backends passes the same."""
        tag = "d" + uuid.uuid5(uuid.NAMESPACE_URL, self.data_dir).hex[:16]
        return [f.replace("{data}", tag) for f in EXTRA_FLAGS]

    def start(self, ready_timeout=20.0):
        binary = voxd_bin()
        if not os.access(binary, os.X_OK):
            raise ServerStartError("voxd binary not found or not executable: %s" % binary)
        os.makedirs(self.data_dir, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOXD_")}
        env["VOXD_FAST_PASSWORD_HASH"] = "1"
        env["VOXD_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")
        self._env = env
        self.cmds = self.commands(binary)
        self.procs = [self._spawn(cmd) for cmd in self.cmds]
        self.proc = self.procs[0]
        deadline = time.monotonic() + ready_timeout
        last = None
        pending = list(self.urls)
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    self.kill()
                    raise ServerStartError("voxd exited with %s during start-up\n%s"
                                           % (p.returncode, self.log_tail()))
            try:
                r = requests.get(pending[0] + "/readyz", timeout=2)
                if r.status_code == 200:
                    pending.pop(0)
                    if not pending:
                        return self
                    continue
                last = "readyz %d" % r.status_code
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        self.kill()
        raise ServerStartError("voxd not ready after %.0fs (%s)\n%s" % (ready_timeout, last, self.log_tail()))

    def _spawn(self, cmd):
        self._log.write(("\n==== start: %s\n" % " ".join(cmd)).encode())
        self._log.flush()
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=self._env)

    @property
    def worker_procs(self):
        """Cluster mode: the worker processes (node ids wk0, wk1, ...)."""
        return self.procs[len(self.urls):]

    def kill_worker(self, i):
        """Cluster mode: SIGKILL worker process i (its jobs wait for their leases)."""
        p = self.procs[len(self.urls) + i]
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    def restart_worker(self, i, timeout=20.0):
        """Cluster mode: starts worker process i again (after kill_worker) and
        waits until it runs (its signal handling is set up by then)."""
        k = len(self.urls) + i
        assert self.procs[k].poll() is not None, "worker %d still runs" % i
        line = "worker wk%d running" % i
        before = self.log_tail(1000000).count(line)
        self.procs[k] = self._spawn(self.cmds[k])
        deadline = time.monotonic() + timeout
        while self.log_tail(1000000).count(line) == before:
            assert self.procs[k].poll() is None, "worker %d exited at start-up\n%s" % (i, self.log_tail())
            assert time.monotonic() < deadline, "worker %d not up\n%s" % (i, self.log_tail())
            time.sleep(0.05)

    def workers_asked(self):
        """The value of the last --workers in the flags (voxd's default 2 if none)."""
        n = 2
        for i, f in enumerate(self.flags):
            if f == "--workers" and i + 1 < len(self.flags):
                n = int(self.flags[i + 1])
            elif f.startswith("--workers="):
                n = int(f.split("=", 1)[1])
        return n

    def commands(self, binary):
        """The command lines of this server's processes: one `serve`, or in
        cluster mode two API-only nodes, then (if the flags ask for workers)
        CLUSTER_WORKERS worker processes splitting the asked job threads."""
        first = [binary, "serve", "--listen", "127.0.0.1:%d" % self.port, "--data", self.data_dir]
        if not CLUSTER:
            return [first + self.extra_flags() + self.flags]
        node2 = os.path.join(self.data_dir, "node2")
        cmds = [first + self.extra_flags() + self.flags + ["--workers", "0"],
                [binary, "serve", "--listen", "127.0.0.1:%d" % self.port2, "--data", node2]
                + self.extra_flags() + self.flags + ["--workers", "0"]]
        n = self.workers_asked()
        if n > 0:
            per = max(1, n // CLUSTER_WORKERS)
            for i in range(CLUSTER_WORKERS):
                cmds.append([binary, "worker", "--data", os.path.join(self.data_dir, "worker%d" % i)]
                            + self.extra_flags() + self.flags
                            + ["--concurrency", str(per), "--node-id", "wk%d" % i])
        return cmds

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0):
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code
        (cluster mode: the first non-zero one of its processes)."""
        if self.proc is None:
            return None
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return self._closed()

    def stop_and_check(self):
        """Graceful stop; fails if voxd did not exit 0 on SIGTERM or its log
        holds a sanitizer report (the suite also runs against ASan builds)."""
        rc = self.stop()
        problems = []
        if rc not in (0, None):
            problems.append("exit code %s after SIGTERM" % rc)
        try:
            with open(self.log_path, "rb") as f:
                log = f.read().decode("utf-8", "replace")
        except OSError:
            log = ""
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "ThreadSanitizer"):
            if marker in log:
                problems.append("sanitizer report (%s)" % marker)
        assert not problems, "voxd %s: %s\n%s" % (self.name, "; ".join(problems), self.log_tail(80))

    def kill(self):
        """SIGKILL at once (crash simulation)."""
        if self.proc is None:
            return None
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        return self._closed()

    def _closed(self):
        rc = self.proc.returncode
        for p in self.procs:
            if p.returncode not in (0, None):
                rc = p.returncode
                break
        if self._log:
            self._log.write(("==== exit %s\n" % rc).encode())
            self._log.close()
            self._log = None
        return rc

    def restart(self, flags=None, ready_timeout=20.0):
        """Starts again on the same data dir and port (after stop/kill)."""
        if flags is not None:
            self.flags = list(flags)
        return self.start(ready_timeout)

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(data.splitlines()[-lines:])

    def rss_kb(self):
        return proc_status_kb(self.pid, "VmRSS")

    # -- clients ----------------------------------------------------------
    def api(self, headers=None):
        return Api(self.urls if CLUSTER else self.url, headers)

    def admin(self):
        return login(self, "admin", ADMIN_PASSWORD)


def proc_status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


# ---- HTTP client -----------------------------------------------------------
class Api:
    """requests.Session bound to one server's base URL, or to a list of API
    nodes' URLs used in turn, request by request (not thread-safe: use
    clone() per thread)."""

    def __init__(self, base, headers=None):
        self.bases = list(base) if isinstance(base, (list, tuple)) else [base]
        self.base = self.bases[0]
        self._turn = itertools.count()
        self.headers = dict(headers or {})
        self.s = requests.Session()
        self.s.headers.update(self.headers)

    def clone(self, headers=None):
        h = dict(self.headers)
        h.update(headers or {})
        return Api(self.bases, h)

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 30)
        base = self.bases[next(self._turn) % len(self.bases)]
        return self.s.request(method, base + path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def J(r):
    """JSON body with decimals kept exact (credits)."""
    try:
        return json.loads(r.content, parse_float=Decimal)
    except ValueError:
        raise AssertionError("not JSON (%d %s): %r" % (r.status_code, r.headers.get("Content-Type"), r.content[:300]))


def micro(x):
    """Credits (JSON number) -> integer micro-credits, exactly."""
    if isinstance(x, float):
        x = Decimal(repr(x))
    d = Decimal(x) * 1000000
    assert d == d.to_integral_value(), "credit amount %r has more than 6 decimals" % (x,)
    return int(d)


def expect(r, status, what=""):
    """Asserts the status and returns the JSON body (or None for empty)."""
    assert r.status_code == status, "%s%s %s -> %d, expected %d: %s" % (
        what + ": " if what else "", r.request.method, r.request.path_url, r.status_code, status, r.text[:500])
    assert r.headers.get("X-Request-Id"), "no X-Request-Id on %s %s" % (r.request.method, r.request.path_url)
    if not r.content:
        return None
    if "json" in r.headers.get("Content-Type", ""):
        return J(r)
    return None


def assert_error(r, status, code):
    """The documented error envelope {"error":{"code","message"}} with status."""
    assert r.status_code == status, "%s %s -> %d, expected %d %s: %s" % (
        r.request.method, r.request.path_url, r.status_code, status, code, r.text[:500])
    assert r.headers.get("X-Request-Id"), "no X-Request-Id on error response"
    assert "application/json" in r.headers.get("Content-Type", ""), r.headers.get("Content-Type")
    body = J(r)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    assert body["error"].get("code") == code, "expected code %s, got %s" % (code, body)
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"], body
    return body


# ---- accounts --------------------------------------------------------------
def random_username(prefix="u"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:14])


def login(server, username, password):
    r = server.api().post("/v1/auth/login", json={"username": username, "password": password})
    body = expect(r, 200, "login %s" % username)
    return server.api({"Authorization": "Bearer " + body["access_token"]})


class User:
    """A signed-up user: `api` authenticates with the API key as Bearer,
    `key_api` with X-API-Key, `jwt_api` with the login JWT."""

    def __init__(self, server, username, password, info, jwt, key_info):
        self.server = server
        self.username = username
        self.password = password
        self.id = info["id"]
        self.info = info
        self.jwt = jwt
        self.key = key_info["key"]
        self.key_id = key_info["id"]
        self.api = server.api({"Authorization": "Bearer " + self.key})
        self.key_api = server.api({"X-API-Key": self.key})
        self.jwt_api = server.api({"Authorization": "Bearer " + jwt})

    def balance(self):
        b = expect(self.api.get("/v1/balance"), 200)
        return micro(b["balance"]), micro(b["held"])


def make_user(server, username=None, password=USER_PASSWORD):
    username = username or random_username()
    api = server.api()
    info = expect(api.post("/v1/users", json={"username": username, "password": password}), 201, "sign-up")
    token = expect(api.post("/v1/auth/login", json={"username": username, "password": password}), 200)
    jwt = token["access_token"]
    key = expect(server.api({"Authorization": "Bearer " + jwt}).post(
        "/v1/api-keys", json={"name": "test"}), 201, "create key")
    return User(server, username, password, info, jwt, key)


# ---- pagination, ledger, books ---------------------------------------------
def pages(api, path, params=None, limit=200):
    """Every item of a cursor-paginated list."""
    params = dict(params or {})
    params["limit"] = limit
    out, seen = [], set()
    while True:
        body = expect(api.get(path, params=params), 200, "page " + path)
        assert isinstance(body.get("data"), list), body
        out.extend(body["data"])
        cur = body.get("next_cursor")
        if cur is None:
            return out
        assert cur not in seen, "pagination loops on cursor %r" % cur
        seen.add(cur)
        params["cursor"] = cur


def ledger(api):
    return pages(api, "/v1/ledger")


def job_entries(entries, job_id):
    return [e for e in entries if e.get("job_id") == job_id]


def kinds(entries):
    return sorted(e["kind"] for e in entries)


def assert_books(admin, user):
    """balance/held equal the ledger sums (paged by the user) and the admin
    audit says consistent. Returns (balance, held) in micro-credits."""
    bal, held = user.balance()
    entries = ledger(user.api)
    assert sum(micro(e["amount"]) for e in entries) == bal, "ledger amount sum != balance"
    assert sum(micro(e["held_delta"]) for e in entries) == held, "ledger held_delta sum != held"
    audit = expect(admin.get("/v1/admin/users/%s/audit" % user.id), 200, "audit")
    assert audit["consistent"] is True, audit
    assert audit["user_id"] == user.id, audit
    assert micro(audit["balance"]) == bal and micro(audit["held"]) == held, audit
    # The sums' presence is checked by test_credits' audit-shape test; here they must agree when present.
    if "ledger_sum" in audit:
        assert micro(audit["ledger_sum"]) == bal, audit
    if "held_sum" in audit:
        assert micro(audit["held_sum"]) == held, audit
    assert bal >= 0 and held >= 0
    return bal, held


# ---- jobs ------------------------------------------------------------------
def submit(api, file, model="convert", params=None, filename=None, headers=None,
           content_type="application/octet-stream", webhook_url=None):
    """POST /v1/jobs with `file` (a path or bytes). params: dict or raw text."""
    if isinstance(file, (bytes, bytearray)):
        content = bytes(file)
        filename = filename or "audio.wav"
    else:
        with open(file, "rb") as f:
            content = f.read()
        filename = filename or os.path.basename(file)
    data = {}
    if model is not None:
        data["model"] = model
    if params is not None:
        data["params"] = params if isinstance(params, str) else json.dumps(params)
    if webhook_url is not None:
        data["webhook_url"] = webhook_url
    files = {"file": (filename, content, content_type)}
    return api.post("/v1/jobs", data=data, files=files, headers=headers or {})


def wait_job(client, job_id, timeout=60.0, statuses=TERMINAL, interval=0.05):
    """Polls GET /v1/jobs/{id} until its status is in `statuses`."""
    deadline = time.monotonic() + timeout
    job = None
    while True:
        job = expect(client.get("/v1/jobs/" + job_id), 200, "poll job")
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError("job %s still %s after %.0fs: %s" % (job_id, job["status"], timeout, job))
        time.sleep(interval)


def ffprobe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=sample_rate,channels,codec_name:format=duration,format_name",
                          "-of", "json", path], check=True, capture_output=True).stdout
    return json.loads(out)


# ---- audio fixtures ----------------------------------------------------------
# format -> (file extension, ffmpeg codec args)
INPUT_FORMATS = {
    "wav": ("wav", ["-c:a", "pcm_s16le"]),
    "flac": ("flac", ["-c:a", "flac"]),
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-b:a", "96k"]),
    "ogg": ("ogg", ["-c:a", "libvorbis"]),
    "opus": ("opus", ["-c:a", "libopus", "-b:a", "48k"]),
    "webm": ("webm", ["-c:a", "libopus", "-b:a", "48k"]),
    "m4a": ("m4a", ["-c:a", "aac", "-b:a", "96k"]),
}


def make_audio(out_dir, fmt="wav", seconds=1.0, rate=44100, channels=1, freq=440, name=None):
    """A sine of `seconds` encoded as `fmt` (a key of INPUT_FORMATS) by ffmpeg."""
    ext, codec = INPUT_FORMATS[fmt]
    path = os.path.join(str(out_dir), name or "sine-%gs-%s.%s" % (seconds, fmt, ext))
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", "sine=frequency=%d:sample_rate=%d:duration=%g" % (freq, rate, seconds),
           "-ac", str(channels)] + codec + [path]
    subprocess.run(cmd, check=True)
    return path


def wav_header(data_bytes, rate=44100, channels=1, bits=16):
    """A canonical 44-byte PCM WAV header declaring `data_bytes` of samples."""
    import struct
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", (36 + data_bytes) & 0xFFFFFFFF) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
            + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF))


def write_big_wav(path, total_bytes, rate=8000):
    """A mono 16-bit WAV of about total_bytes, written in 1 MiB chunks (never
    held in memory). The samples are a quiet repeating ramp (not silence)."""
    import struct
    data_bytes = (total_bytes - 44) // 2 * 2
    chunk = b"".join(struct.pack("<h", ((i * 37) % 2000) - 1000) for i in range(512 * 1024))
    with open(path, "wb") as f:
        f.write(wav_header(data_bytes, rate=rate))
        left = data_bytes
        while left > 0:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
    return path


def have_ffmpeg():
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def token():
    return secrets.token_hex(8)
