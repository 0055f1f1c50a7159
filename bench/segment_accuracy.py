#!/usr/bin/python3
"""segment_accuracy.py - frame accuracy of `voxd run segment` against the
evaluation kit's clean-speech alignment (speech_start..speech_end of each
utterance), per noise type and SNR, printed as a Markdown table.

  /usr/bin/python3 /work/shared/eval/make_corpus.py --out /tmp/voxd-eval/data
  /usr/bin/python3 bench/segment_accuracy.py --data /tmp/voxd-eval/data --voxd build/voxd

Frames are 10 ms; a frame is speech in the truth when its centre lies in
[speech_start, speech_end), and detected when its centre lies in a returned
segment. Columns: accuracy over all frames; speech recall (detected share of
speech frames); false alarms (detected share of the lead/tail silence, which
holds the noise alone); and noise-only false alarms: the same model on the
noise by itself (mixture minus the scaled clean speech), where every frame
detected is wrong. "all speech" is the accuracy of answering speech always.
"""
import argparse
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf

FRAME = 0.01
NOISES = ["white", "pink", "brown", "babble", "hum", "traffic", "bursts"]


def run_segment(voxd, path, params):
    cmd = [voxd, "run", "segment", path]
    for k, v in params.items():
        cmd += ["--param", "%s=%s" % (k, v)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["segments"]


def detected(segments, n):
    centre = (np.arange(n) + 0.5) * FRAME
    d = np.zeros(n, bool)
    for s in segments:
        d |= (centre >= s["start_s"]) & (centre < s["end_s"])
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/voxd-eval/data")
    ap.add_argument("--voxd", default="build/voxd")
    ap.add_argument("--snrs", default="0,5,10")
    ap.add_argument("--param", action="append", default=[], help="key=value passed to the model")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    params = dict(p.split("=", 1) for p in a.param)
    split = os.path.join(a.data, "dev")
    utts = {u["uid"]: u for u in map(json.loads, open(os.path.join(split, "utterances.jsonl")))}
    snrs = [int(s) for s in a.snrs.split(",")]
    rows = [r for r in map(json.loads, open(os.path.join(split, "manifest.jsonl")))
            if r["cond"] in ("clean", "lowvol") or (r["noise"] in NOISES and r["snr"] in snrs)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp, cf.ThreadPoolExecutor(a.jobs) as pool:
        jobs = {}
        for r in rows:
            jobs[pool.submit(run_segment, a.voxd, os.path.join(split, r["path"]), params)] = (r, False)
            if r["snr"] is not None:
                y, fs = sf.read(os.path.join(split, r["path"]))
                x, _ = sf.read(os.path.join(split, r["clean"]))
                npath = os.path.join(tmp, "%s_%s.wav" % (r["cond"], r["uid"]))
                sf.write(npath, y - x * r["gain"], fs, subtype="PCM_16")
                jobs[pool.submit(run_segment, a.voxd, npath, params)] = (r, True)
        for fut in cf.as_completed(jobs):
            r, noise_only = jobs[fut]
            u = utts[r["uid"]]
            n = int(round(u["dur"] / FRAME))
            centre = (np.arange(n) + 0.5) * FRAME
            truth = (centre >= u["speech_start"]) & (centre < u["speech_end"])
            det = detected(fut.result(), n)
            key = (r["noise"], r["snr"])
            acc = results.setdefault(key, {"tp": 0, "fn": 0, "fp": 0, "tn": 0, "nfa": 0, "nn": 0})
            if noise_only:
                acc["nfa"] += int(det.sum())
                acc["nn"] += n
            else:
                acc["tp"] += int((det & truth).sum())
                acc["fn"] += int((~det & truth).sum())
                acc["fp"] += int((det & ~truth).sum())
                acc["tn"] += int((~det & ~truth).sum())

    def line(name, snr, c):
        tot = c["tp"] + c["fn"] + c["fp"] + c["tn"]
        nfa = "%.1f" % (100.0 * c["nfa"] / c["nn"]) if c["nn"] else "-"
        return "| %s | %s | %.1f | %.1f | %.1f | %s | %.1f |" % (
            name, snr, 100.0 * (c["tp"] + c["tn"]) / tot, 100.0 * c["tp"] / (c["tp"] + c["fn"]),
            100.0 * c["fp"] / (c["fp"] + c["tn"]), nfa, 100.0 * (c["tp"] + c["fn"]) / tot)

    print("params: %s" % (json.dumps(params) if params else "defaults"))
    print()
    print("| noise | SNR dB | accuracy % | speech recall % | false alarm % (silences) | noise-only false alarm % | all speech % |")
    print("|---|---|---|---|---|---|---|")
    total = {"tp": 0, "fn": 0, "fp": 0, "tn": 0, "nfa": 0, "nn": 0}
    per_snr = {s: dict(total) for s in snrs}
    for nt in NOISES:
        for s in snrs:
            c = results[(nt, s)]
            print(line(nt, s, c))
            for k in total:
                total[k] += c[k]
                per_snr[s][k] += c[k]
    for s in snrs:
        print(line("**all noises**", s, per_snr[s]))
    print(line("**all noises**", "/".join(map(str, snrs)), total))
    print(line("clean", "-", results[("none", None)]))
    print(line("low volume (-35 LUFS)", "-", results[("gain", None)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
