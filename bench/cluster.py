#!/usr/bin/python3
"""cluster.py - cluster throughput on this machine: PostgreSQL + the S3 test
server + Redis on loopback (scripts/with_cluster.sh, started by this script
when they are not already), 1 API node (`serve --workers 0`) and 1, 2 and 4
`voxd worker` processes (one job thread each). For each worker count, on a
fresh schema and S3 prefix:
  * throughput: N short `convert` jobs from C concurrent clients, jobs/s from
    the first submit to the last success, and the claim latency under that
    load (job created_at -> started_at, p50/p99);
  * idle claim latency: jobs submitted one at a time to idle workers, so the
    figure is the wake-up path (LISTEN/NOTIFY, else polling), p50/p99.
Prints figures; asserts nothing.

usage: bench/cluster.py [--jobs 300] [--clients 8] [--idle-jobs 20] [--workers 1,2,4] [--seconds 0.5]
(binary: $VOXD_BIN, default build/voxd)"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "api"))
import helpers  # noqa: E402


def ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))]


def backend_flags(tag):
    return ["--db", "%s?schema=%s" % (os.environ["VOXD_TEST_STORE_URL"], tag),
            "--blob", "%s&prefix=%s/" % (os.environ["VOXD_TEST_BLOB_URL"], tag),
            "--bus", os.environ["VOXD_TEST_BUS_URL"], "--no-access-log"]


def start_workers(n, work, flags):
    procs = []
    for i in range(n):
        log = open(os.path.join(work, "worker%d.log" % i), "ab")
        procs.append(subprocess.Popen([helpers.voxd_bin(), "worker", "--data", os.path.join(work, "w%d" % i),
                                       "--concurrency", "1", "--node-id", "bench%d" % i] + flags,
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 20
    for i in range(n):
        path = os.path.join(work, "worker%d.log" % i)
        while b" running" not in open(path, "rb").read():
            if time.monotonic() > deadline or procs[i].poll() is not None:
                raise SystemExit("worker %d did not start: %s" % (i, open(path, "rb").read()[-500:]))
            time.sleep(0.05)
    return procs


def latencies(user, ids):
    out = []
    for i in ids:
        j = helpers.expect(user.api.get("/v1/jobs/" + i), 200)
        out.append((ts(j["started_at"]) - ts(j["created_at"])) * 1000.0)
    return out


def run(nworkers, args, wav):
    work = tempfile.mkdtemp(prefix="voxd-bench-cluster.")
    tag = "bench%d_%d" % (nworkers, os.getpid())
    flags = backend_flags(tag)
    srv = helpers.Server(os.path.join(work, "api"), ["--workers", "0", "--signup-grant", "100000"] + flags)
    procs = []
    try:
        srv.start()
        procs = start_workers(nworkers, work, flags)
        user = helpers.make_user(srv)
        params = {"format": "wav"}
        # idle claim latency: one job at a time
        idle_ids = []
        for _ in range(args.idle_jobs):
            time.sleep(0.2)  # let every worker go idle
            j = helpers.expect(helpers.submit(user.api, wav, params=params), 202)
            helpers.wait_job(user.api, j["id"], timeout=60, interval=0.02)
            idle_ids.append(j["id"])
        idle = latencies(user, idle_ids)
        # throughput
        next_i = iter(range(args.jobs))
        lock = threading.Lock()
        ids, failures = [], []

        def client():
            api = user.api.clone()
            mine = []
            while True:
                with lock:
                    i = next(next_i, None)
                if i is None:
                    break
                r = helpers.submit(api, wav, params=params)
                if r.status_code != 202:
                    failures.append(r.status_code)
                    continue
                mine.append(r.json()["id"])
            for i in mine:
                j = helpers.wait_job(api, i, timeout=600, interval=0.05)
                if j["status"] != "succeeded":
                    failures.append(j["status"])
            with lock:
                ids.extend(mine)

        t0 = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        loaded = latencies(user, ids)
        print("%d worker(s): %6.1f jobs/s (%d jobs, %d failed, %.1f s) | claim under load p50 %6.1f ms p99 %7.1f ms"
              " | idle claim p50 %6.1f ms p99 %7.1f ms" % (
                  nworkers, len(ids) / elapsed, len(ids), len(failures), elapsed, pct(loaded, 50), pct(loaded, 99),
                  pct(idle, 50), pct(idle, 99)), flush=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        srv.stop()
        if not os.environ.get("BENCH_KEEP"):
            subprocess.run(["rm", "-rf", work])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--idle-jobs", type=int, default=20)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--seconds", type=float, default=0.5, help="length of each job's audio")
    args = ap.parse_args()
    if "VOXD_TEST_BUS_URL" not in os.environ:
        os.execv(os.path.join(ROOT, "scripts", "with_cluster.sh"),
                 [os.path.join(ROOT, "scripts", "with_cluster.sh"), sys.executable] + sys.argv)
    print("cluster bench on %d CPU(s): 1 API node, PostgreSQL + S3 test server + Redis on loopback, %g s WAV "
          "-> convert" % (os.cpu_count(), args.seconds), flush=True)
    work = tempfile.mkdtemp(prefix="voxd-bench-audio.")
    with open(helpers.make_audio(work, "wav", args.seconds), "rb") as f:
        wav = f.read()
    subprocess.run(["rm", "-rf", work])
    for n in (int(x) for x in args.workers.split(",")):
        run(n, args, wav)


if __name__ == "__main__":
    main()
