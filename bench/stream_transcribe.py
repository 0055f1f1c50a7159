#!/usr/bin/python3
"""stream_transcribe.py - a small GET /v1/stream client: streams one audio
file (any format ffmpeg reads; converted to 16 kHz mono s16le) in 100 ms
frames, as fast as the server takes them, and prints the final transcript.
Used as the eval kit's --cmd by bench/stream_wer.sh; handy by hand too.

usage: VOXD_URL=http://127.0.0.1:8080 VOXD_KEY=... bench/stream_transcribe.py FILE"""
import asyncio
import json
import os
import subprocess
import sys

import websockets

RATE = 16000
FRAME = RATE // 10 * 2


async def transcribe(url, key, pcm):
    async with websockets.connect(url.replace("http", "ws", 1) + "/v1/stream?api_key=" + key,
                                  max_size=2 ** 24) as c:
        await c.send(json.dumps({"config": {"sample_rate": RATE, "partial": False, "words": False}}))
        for i in range(0, len(pcm), FRAME):
            await c.send(pcm[i:i + FRAME])
        await c.send('{"eof":1}')
        async for m in c:
            msg = json.loads(m)
            if "error" in msg:
                raise RuntimeError(msg["error"]["code"] + ": " + msg["error"]["message"])
            if msg.get("final"):
                return (msg["result"] or {}).get("text", "")
    raise RuntimeError("the stream closed without a final result")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[-1])
    pcm = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", sys.argv[1], "-ar",
                          str(RATE), "-ac", "1", "-f", "s16le", "-"], check=True, capture_output=True).stdout
    print(asyncio.run(transcribe(os.environ.get("VOXD_URL", "http://127.0.0.1:8080"), os.environ["VOXD_KEY"], pcm)))


if __name__ == "__main__":
    main()
