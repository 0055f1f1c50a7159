#!/usr/bin/python3
"""vad_fit.py - fits the logistic weights that combine the voice activity
detector's frame features (src/audio/vad.c, W_*) on a corpus made by the
evaluation kit with a seed other than the one accuracy is reported on, and
prints them as C. Frames are labelled from the clean reference (speech =
within the utterance and within 40 dB of its loudest 20 ms), plus noise-only
files (the noisy mixture minus the scaled clean speech) labelled non-speech.

  make BUILD=/tmp/b /tmp/b/libvoxd.a
  /usr/bin/python3 /work/shared/eval/make_corpus.py --out /tmp/vad-tune --dev-seed 2222 --n-dev 16
  /usr/bin/python3 bench/vad_fit.py --data /tmp/vad-tune --build /tmp/b
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOP = 160
FS = 16000
PKGS = "libmicrohttpd jansson sqlite3 libsodium libavformat libavcodec libswresample libavutil libebur128"
FEATURES = ["llr", "voicing", "snr", "flatness", "mod", "ltsv", "voicing_lt", "llr_lt", "voicing_rel", "llr_rel"]


def build_dumper(build, out):
    libs = subprocess.run(["pkg-config", "--libs"] + PKGS.split(), check=True, capture_output=True,
                          text=True).stdout.split()
    subprocess.run(["cc", "-std=c17", "-D_GNU_SOURCE", "-O2", "-I" + os.path.join(ROOT, "src"),
                    os.path.join(HERE, "vad_dump.c"), os.path.join(build, "libvoxd.a")] + libs +
                   ["-lwslay", "-lm", "-pthread", "-o", out], check=True)


def dump(tool, paths):
    """path -> array (frames x columns: probability raw power noise snr flatness llr voicing modulation
    ltsv voicing_lt llr_lt voicing_rel llr_rel)."""
    out = {}
    for i in range(0, len(paths), 64):
        text = subprocess.run([tool] + paths[i:i + 64], check=True, capture_output=True, text=True).stdout
        rows = {}
        for line in text.splitlines():
            f = line.split("\t")
            rows.setdefault(f[0], []).append([float(x) for x in f[2:]])
        for p, r in rows.items():
            out[p] = np.array(r)
    return out


def design(cols):
    """The model's inputs, exactly as vad.c computes them."""
    llr = np.minimum(cols[:, 6], 6.0)
    snr = np.clip(cols[:, 4], -10.0, 30.0)
    mod = np.minimum(cols[:, 8], 20.0)
    ltsv = np.log(cols[:, 9] + 1e-4)
    return np.column_stack([llr, cols[:, 7], snr, cols[:, 5], mod, ltsv, cols[:, 10], cols[:, 11], cols[:, 12],
                            cols[:, 13]])


def clean_labels(x, start, end, nframes):
    n = nframes * HOP
    x = np.pad(x, (0, max(0, n + 320 - len(x))))
    p = np.array([np.mean(x[max(0, t * HOP - 80):t * HOP + 240] ** 2) for t in range(nframes)])
    lab = p > p.max() * 1e-4
    t = (np.arange(nframes) + 0.5) * HOP / FS
    return lab & (t >= start) & (t < end)


def fit_logistic(X, y, w8, l2=1e-3, iters=50):
    Xb = np.column_stack([np.ones(len(X)), X])
    w = np.zeros(Xb.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-Xb @ w))
        g = Xb.T @ (w8 * (p - y)) + l2 * np.r_[0, w[1:]]
        H = (Xb * (w8 * p * (1 - p))[:, None]).T @ Xb + l2 * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="corpus root made by make_corpus.py (not the reported one)")
    ap.add_argument("--build", required=True, help="voxd build dir holding libvoxd.a")
    ap.add_argument("--snrs", default="0,5,10,20")
    a = ap.parse_args()
    split = os.path.join(a.data, "dev")
    utts = {u["uid"]: u for u in map(json.loads, open(os.path.join(split, "utterances.jsonl")))}
    rows = [r for r in map(json.loads, open(os.path.join(split, "manifest.jsonl")))
            if r["cond"] in ("clean", "lowvol") or (r["snr"] is not None and str(r["snr"]) in a.snrs.split(","))]
    with tempfile.TemporaryDirectory() as tmp:
        tool = os.path.join(tmp, "vad_dump")
        build_dumper(a.build, tool)
        items = []
        for r in rows:
            items.append((os.path.join(split, r["path"]), r, False))
            if r["snr"] is not None:
                y, _ = sf.read(os.path.join(split, r["path"]))
                x, _ = sf.read(os.path.join(split, r["clean"]))
                noise = y - x * r["gain"]
                npath = os.path.join(tmp, "noise_%s_%s.wav" % (r["cond"], r["uid"]))
                sf.write(npath, noise, FS, subtype="PCM_16")
                items.append((npath, r, True))
        feats = dump(tool, [p for p, _, _ in items])
        Xs, ys, conds = [], [], []
        for path, r, noise_only in items:
            cols = feats[path]
            u = utts[r["uid"]]
            if noise_only:
                lab = np.zeros(len(cols), bool)
            else:
                x, _ = sf.read(os.path.join(split, r["clean"]))
                lab = clean_labels(x, u["speech_start"], u["speech_end"], len(cols))
            Xs.append(design(cols))
            ys.append(lab.astype(float))
            conds += [(r["noise"] + ("-only" if noise_only else ""))] * len(cols)
    X, y, conds = np.vstack(Xs), np.concatenate(ys), np.array(conds)
    # Every noise type weighs the same, speech and non-speech frames too.
    w8 = np.ones(len(y))
    for c in set(conds):
        m = conds == c
        w8[m] = 1.0 / m.sum()
    for lab in (0, 1):
        m = y == lab
        w8[m] *= 0.5 / w8[m].sum()
    w8 *= len(y)
    w = fit_logistic(X, y, w8)
    names = ["W_BIAS"] + ["W_" + n.upper().replace("FLATNESS", "FLAT") for n in FEATURES]
    print("static const double " + ", ".join("%s = %.3f" % (n, v) for n, v in zip(names, w)) + ";")
    p = 1 / (1 + np.exp(-np.column_stack([np.ones(len(X)), X]) @ w))
    print("frame accuracy of the raw posterior (threshold 0.5) on the fitting corpus:")
    for c in sorted(set(conds)):
        m = conds == c
        print("  %-14s acc %.3f  speech recall %.3f  non-speech kept %.3f" % (
            c, np.mean((p[m] > 0.5) == (y[m] > 0.5)),
            np.mean(p[m][y[m] > 0.5] > 0.5) if np.any(y[m] > 0.5) else float("nan"),
            np.mean(p[m][y[m] < 0.5] <= 0.5) if np.any(y[m] < 0.5) else float("nan")))


if __name__ == "__main__":
    sys.exit(main())
