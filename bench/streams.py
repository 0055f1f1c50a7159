#!/usr/bin/python3
"""streams.py - how many real-time transcribe streams (GET /v1/stream) a
machine keeps up with. For each N, N concurrent streams send speech
synthesized with espeak-ng at real-time pace in 100 ms frames; a stream
keeps up when every reply comes less than 1 s after the audio it covers was
"captured" (lag = reply time - (start + seconds replied to)); the count with
a 95th-percentile lag under 1 s is printed too. Prints per N: streams
keeping up, p50/max lag, the latency of utterance results (result received
- capture time of the utterance's end: includes the ~0.45 s pause that ends
an utterance and its whole-utterance decode), of the final message (eof
sent -> final received), and of REST calls (GET /v1/balance, 20 per second)
made meanwhile. Then the server memory per
idle stream connection (connected and configured, no audio: no decoder is
held). Prints figures; asserts nothing.

Streams start within one frame of each other (their utterances end at the
same moments: the worst case for the decode queue) unless --stagger S
spreads their starts over S seconds.

usage: bench/streams.py [--streams 1,2,4,8] [--seconds 30] [--stream-threads 2]
                        [--idle 500] [--partial | --no-partial] [--stagger S]
(binary: $VOXD_BIN, default build/voxd)"""
import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "api"))
import helpers  # noqa: E402

RATE = 16000
FRAME_S = 0.1
FRAME = int(RATE * FRAME_S) * 2
SENTENCES = ["one two three four five six seven eight nine ten",
             "the weather is nice today and we will go to the park",
             "please call me tomorrow morning"]


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))] if v else float("nan")


def speech(work, seconds):
    """16 kHz mono s16le speech of about `seconds` (the sentences repeated)."""
    wav, raw = os.path.join(work, "s.wav"), os.path.join(work, "s.raw")
    ssml = "<speak>%s</speak>" % ' <break time="1000ms"/> '.join(SENTENCES)
    subprocess.run(["espeak-ng", "-m", "-v", "en-us+f2", "-s", "140", "-w", wav, ssml], check=True)
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", wav, "-ar", str(RATE),
                    "-ac", "1", "-f", "s16le", raw], check=True)
    with open(raw, "rb") as f:
        one = f.read()
    out = one
    while len(out) < seconds * RATE * 2:
        out += one
    n = int(seconds * RATE) * 2
    return out[:n]


async def one_stream(url, pcm, partial, delay):
    """Returns (max lag, list of lags, final latency, error or None,
    utterance result latencies)."""
    await asyncio.sleep(delay)
    lags, utterances = [], []
    final_latency, error = None, None
    async with websockets.connect(url, max_size=2 ** 22, close_timeout=5) as c:
        await c.send(json.dumps({"config": {"sample_rate": RATE, "partial": partial}}))
        t0 = time.monotonic()
        done = asyncio.get_running_loop().create_future()
        eof_at = [None]

        async def reader():
            try:
                async for m in c:
                    now = time.monotonic()
                    msg = json.loads(m)
                    if "seconds" in msg:
                        lags.append(now - (t0 + msg["seconds"]))
                    if "text" in msg and "end" in msg:
                        utterances.append(now - (t0 + msg["end"]))
                    if msg.get("final"):
                        done.set_result(now - eof_at[0])
                    if "error" in msg:
                        done.set_exception(RuntimeError(msg["error"]["code"]))
            except websockets.ConnectionClosed:
                pass
            if not done.done():
                done.set_exception(RuntimeError("closed without a final result"))

        task = asyncio.ensure_future(reader())
        for k, i in enumerate(range(0, len(pcm), FRAME)):
            # frame k holds audio [k*0.1, (k+1)*0.1): it exists from t0 + (k+1)*0.1
            wait = t0 + (k + 1) * FRAME_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await c.send(pcm[i:i + FRAME])
        eof_at[0] = time.monotonic()
        await c.send('{"eof":1}')
        try:
            final_latency = await asyncio.wait_for(done, 120)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            error = str(e) or type(e).__name__
        await task
    return (max(lags) if lags else float("inf")), lags, final_latency, error, utterances


def rest_prober(api, stop, out):
    while not stop.is_set():
        t = time.monotonic()
        r = api.get("/v1/balance")
        if r.status_code == 200:
            out.append(time.monotonic() - t)
        time.sleep(0.05)


def warm_up(srv, user, pcm, n):
    """n short streams at once, unpaced: the pool then holds n speech
    decoders (creating one takes about a second), so no measured stream
    pays for it."""
    url = "ws://" + srv.url[len("http://"):] + "/v1/stream?api_key=" + user.key

    async def one():
        async with websockets.connect(url, max_size=2 ** 22) as c:
            await c.send(json.dumps({"config": {"sample_rate": RATE}}))
            await c.send(pcm[:FRAME])
            await c.send('{"eof":1}')
            async for _ in c:
                pass

    async def all_of_them():
        await asyncio.gather(*[one() for _ in range(n)])
    asyncio.run(all_of_them())


def run_n(srv, user, pcm, n, partial, stagger):
    url = "ws://" + srv.url[len("http://"):] + "/v1/stream?api_key=" + user.key
    stop, rest = threading.Event(), []
    prober = threading.Thread(target=rest_prober, args=(user.api.clone(), stop, rest))
    prober.start()

    async def all_streams():
        spread = stagger if stagger > 0 else FRAME_S
        return await asyncio.gather(*[one_stream(url, pcm, partial, spread * i / max(n, 1)) for i in range(n)],
                                    return_exceptions=True)
    try:
        results = asyncio.run(all_streams())
    finally:
        stop.set()
        prober.join()
    ok = [r for r in results if not isinstance(r, BaseException) and r[3] is None]
    errors = [str(r) if isinstance(r, BaseException) else r[3] for r in results if r not in ok]
    keeping = sum(1 for r in ok if r[0] < 1.0)
    steady = sum(1 for r in ok if pct(r[1], 95) < 1.0)
    lags = [lag for r in ok for lag in r[1]]
    finals = [r[2] for r in ok]
    utts = [u for r in ok for u in r[4]]
    print("%4d  %6d/%-4d %6d/%-4d %8.3f %8.3f %8.3f %8.3f %9.3f %9.3f %9.1f %9.1f  %s" % (
        n, keeping, n, steady, n, pct(lags, 50), max(lags) if lags else float("nan"), pct(utts, 50),
        max(utts) if utts else float("nan"), pct(finals, 50),
        max(finals) if finals else float("nan"), pct(rest, 50) * 1000, pct(rest, 99) * 1000,
        ("errors: %s" % ", ".join(errors)) if errors else ""), flush=True)


def idle_bytes(srv, user, m):
    url = "ws://" + srv.url[len("http://"):] + "/v1/stream?api_key=" + user.key

    async def hold():
        conns = []
        before = srv.rss_kb()
        for _ in range(m):
            c = await websockets.connect(url, close_timeout=2, ping_interval=None)
            await c.send(json.dumps({"config": {"sample_rate": RATE}}))
            conns.append(c)
        await asyncio.sleep(1.0)
        after = srv.rss_kb()
        for c in conns:
            await c.close()
        return before, after
    before, after = asyncio.run(hold())
    print("idle stream connections: %d, server RSS %d -> %d KiB: %.1f KiB per connection" % (
        m, before, after, (after - before) / m))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="1,2,4,8", help="comma-separated N to try")
    ap.add_argument("--seconds", type=float, default=30.0, help="audio per stream")
    ap.add_argument("--stream-threads", type=int, default=2)
    ap.add_argument("--idle", type=int, default=500, help="idle connections for the memory figure (0: skip)")
    ap.add_argument("--partial", dest="partial", action="store_true", default=True)
    ap.add_argument("--no-partial", dest="partial", action="store_false")
    ap.add_argument("--stagger", type=float, default=0.0, help="spread the stream starts over this many seconds")
    args = ap.parse_args()
    ns = [int(x) for x in args.streams.split(",") if x.strip()]

    work = tempfile.mkdtemp(prefix="voxd-bench-streams.")
    # a decoder per stream with partials, and two for the background decodes
    flags = ["--signup-grant", "100000", "--no-access-log", "--asr-decoders", str(max(ns) + 2),
             "--stream-threads", str(args.stream_threads), "--max-streams", str(max(max(ns), args.idle) + 8),
             "--max-connections", str(args.idle + 256)]
    srv = helpers.Server(os.path.join(work, "data"), flags)
    try:
        srv.start()
        user = helpers.make_user(srv)
        pcm = speech(work, args.seconds)
        print("voxd %s, nproc %d, %.0f s of speech per stream in 100 ms frames at real-time pace, "
              "--stream-threads %d, partials %s, starts spread over %.1f s" % (
                  helpers.voxd_bin(), os.cpu_count(), len(pcm) / 2 / RATE, args.stream_threads,
                  "on" if args.partial else "off", args.stagger if args.stagger > 0 else FRAME_S))
        warm_up(srv, user, pcm, max(ns))
        print("   N  max lag<1s  p95 lag<1s  lag p50  lag max  utt p50  utt max  final p50  final max"
              "  REST p50  REST p99 (ms)")
        for n in ns:
            run_n(srv, user, pcm, n, args.partial, args.stagger)
        if args.idle > 0:
            idle_bytes(srv, user, args.idle)
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
