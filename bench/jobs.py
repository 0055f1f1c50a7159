#!/usr/bin/python3
"""jobs.py - end-to-end job throughput: N one-second `convert` jobs submitted
by C concurrent clients against a fresh voxd; prints jobs/s from the first
submit to the last success, and the median/p99 job latency (server-side,
created_at -> finished_at). Prints figures; asserts nothing.

usage: bench/jobs.py [--jobs 500] [--clients 16] [--workers 2] [--format wav]
(binary: $VOXD_BIN, default build/voxd)"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "api"))
import helpers  # noqa: E402


def ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--format", default="wav", choices=["wav", "flac", "opus", "mp3"])
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="voxd-bench-jobs.")
    srv = helpers.Server(os.path.join(work, "data"),
                         ["--workers", str(args.workers), "--signup-grant", "100000", "--no-access-log"])
    try:
        srv.start()
        user = helpers.make_user(srv)
        with open(helpers.make_audio(work, "wav", 1.0), "rb") as f:
            wav = f.read()
        params = {"format": args.format}
        next_i = iter(range(args.jobs))
        lock = threading.Lock()
        results, failures = [], []
        submitted_at = []

        def client():
            api = user.api.clone()
            mine = []
            while True:
                with lock:
                    i = next(next_i, None)
                if i is None:
                    break
                r = helpers.submit(api, wav, params=params, filename="j%d.wav" % i)
                if r.status_code != 202:
                    failures.append("submit %d: %d %s" % (i, r.status_code, r.text[:200]))
                    continue
                mine.append(r.json()["id"])
            with lock:
                submitted_at.append(time.monotonic())
            for jid in mine:
                job = helpers.wait_job(api, jid, timeout=600, interval=0.02)
                with lock:
                    (results if job["status"] == "succeeded" else failures).append(
                        job if job["status"] == "succeeded" else "%s %s" % (jid, job["error"]))

        t0 = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0

        submit_s = max(submitted_at) - t0 if submitted_at else 0
        lat = [ts(j["finished_at"]) - ts(j["created_at"]) for j in results]
        run = [ts(j["finished_at"]) - ts(j["started_at"]) for j in results]
        print("bench jobs: %d jobs (%s out), %d clients, %d workers" % (args.jobs, args.format, args.clients,
                                                                      args.workers))
        print("  succeeded %d, failed %d, wall %.2f s, %.1f jobs/s end to end"
              % (len(results), len(failures), wall, len(results) / wall if wall else 0))
        print("  all submitted after %.2f s (%.1f submits/s)" % (submit_s, args.jobs / submit_s if submit_s else 0))
        if lat:
            print("  latency (created -> finished): median %.1f ms, p99 %.1f ms"
                  % (statistics.median(lat) * 1000, pct(lat, 99) * 1000))
            print("  run time (started -> finished): median %.1f ms, p99 %.1f ms"
                  % (statistics.median(run) * 1000, pct(run, 99) * 1000))
        for f in failures[:5]:
            print("  failure:", f)
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
