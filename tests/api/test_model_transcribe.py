"""test_model_transcribe.py - the `transcribe` model through the whole job
cycle: speech synthesized here with espeak-ng is submitted, transcribed into
text/segments/words, billed per second of audio, and rendered by
GET /v1/jobs/{id}/result?format=srt|vtt|text|json|verbose_json; bad params
are refused before anything is charged."""
import re
import subprocess

import pytest

from helpers import J, assert_books, assert_error, expect, job_entries, kinds, ledger, micro, submit, wait_job

SENTENCES = [
    "one two three four five six seven eight nine ten",
    "the weather is nice today and we will go to the park",
    "please call me tomorrow morning",
]
SRT_TIME = r"\d\d:\d\d:\d\d,\d\d\d"
VTT_TIME = r"\d\d:\d\d:\d\d\.\d\d\d"


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Three sentences with 1.5 s pauses (the en-us+f2 voice, which
    PocketSphinx recognises well), as an MP3 so the decoder resamples."""
    d = tmp_path_factory.mktemp("speech")
    wav, mp3 = d / "speech.wav", d / "speech.mp3"
    ssml = '<speak>%s</speak>' % ' <break time="1500ms"/> '.join(SENTENCES)
    subprocess.run(["espeak-ng", "-m", "-v", "en-us+f2", "-s", "140", "-w", str(wav), ssml], check=True)
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav),
                    "-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k", str(mp3)], check=True)
    return mp3.read_bytes()


def overlap(ref, hyp):
    """Fraction of the reference words found in the hypothesis (each once)."""
    left = hyp.split()
    found = 0
    for w in ref.split():
        if w in left:
            left.remove(w)
            found += 1
    return found / len(ref.split())


def test_transcribe_is_in_the_catalog_priced_per_second(server):
    models = expect(server.api().get("/v1/models"), 200)["data"]
    m = next(x for x in models if x["name"] == "transcribe")
    assert m["kind"] == "transcription"
    params = {p["name"]: p for p in m["params"]}
    assert params["format"]["choices"] == ["json", "verbose_json", "text", "srt", "vtt"]
    assert params["format"]["default"] == "json"
    assert params["language"]["choices"] == ["en"]
    assert params["words"]["default"] is True and params["denoise"]["default"] is False
    assert micro(m["price"]["per_second"]) > 0


def test_speech_job_cycle_and_every_rendering(server, admin, user, speech):
    u = user()
    bal0, _ = u.balance()
    job = expect(submit(u.api, speech, model="transcribe", params={"format": "srt"}, filename="speech.mp3",
                        content_type="audio/mpeg"), 202, "submit")
    hold = micro(job["cost"]["held"])
    done = wait_job(u.api, job["id"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["progress"] == 1
    doc = done["result"]

    # The document: text, one segment per sentence, timed words.
    assert doc["language"] == "en" and doc["format"] == "srt" and "output" not in doc
    assert 9 < doc["duration"] < 15
    assert len(doc["segments"]) == 3, doc["segments"]
    assert overlap(" ".join(SENTENCES), doc["text"]) >= 0.75, doc["text"]
    assert doc["text"] == " ".join(s["text"] for s in doc["segments"])
    prev = 0
    for seg, ref in zip(doc["segments"], SENTENCES):
        assert overlap(ref, seg["text"]) >= 0.5, (ref, seg["text"])
        assert prev <= seg["start"] < seg["end"] <= doc["duration"]
        prev = seg["end"]
        words = [w for w in doc["words"] if seg["start"] <= w["start"] and w["end"] <= seg["end"]]
        assert " ".join(w["word"] for w in words) == seg["text"]
    starts = [w["start"] for w in doc["words"]]
    assert starts == sorted(starts)
    assert all(w["start"] <= w["end"] and 0 <= w["confidence"] <= 1 for w in doc["words"])

    # Billing: per second of audio, captured once.
    charged = micro(done["cost"]["charged"])
    assert 0 < charged <= hold
    bal1, held1 = u.balance()
    assert held1 == 0 and bal0 - bal1 == charged
    assert kinds(job_entries(ledger(u.api), job["id"])) == ["capture", "hold"]
    assert_books(admin, u)

    base = "/v1/jobs/%s/result" % job["id"]
    srt = u.api.get(base, params={"format": "srt"})
    assert srt.status_code == 200 and "subrip" in srt.headers["Content-Type"]
    cues = srt.text.strip().split("\n\n")
    assert len(cues) >= 3
    for i, cue in enumerate(cues, 1):
        lines = cue.split("\n")
        assert lines[0] == str(i)
        assert re.fullmatch(SRT_TIME + " --> " + SRT_TIME, lines[1]), lines[1]
        assert 1 <= len(lines[2:]) <= 2 and all(len(l) <= 42 for l in lines[2:]), lines

    vtt = u.api.get(base, params={"format": "vtt"})
    assert vtt.status_code == 200 and vtt.headers["Content-Type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT\n\n")
    times = re.findall("(" + VTT_TIME + ") --> (" + VTT_TIME + ")", vtt.text)
    assert len(times) == len(cues) and times == sorted(times)

    text = u.api.get(base, params={"format": "text"})
    assert text.status_code == 200 and text.headers["Content-Type"].startswith("text/plain")
    assert text.text == doc["text"] + "\n"

    verbose = J(u.api.get(base, params={"format": "verbose_json"}))
    assert verbose["task"] == "transcribe" and verbose["language"] == "english"
    assert verbose["text"] == doc["text"]
    assert [s["text"] for s in verbose["segments"]] == [s["text"] for s in doc["segments"]]
    assert [w["word"] for w in verbose["words"]] == [w["word"] for w in doc["words"]]

    full = J(u.api.get(base, params={"format": "json"}))
    assert full["segments"] == doc["segments"]
    default = u.api.get(base)  # the job asked for srt: that is the default rendering
    assert default.status_code == 200 and default.text == srt.text

    assert_error(u.api.get(base, params={"format": "docx"}), 400, "invalid_format")


def test_words_false_and_bad_params(server, user, speech):
    u = user()
    bal0, _ = u.balance()
    assert_error(submit(u.api, speech, model="transcribe", params={"language": "fr"}, filename="s.mp3"),
                 422, "param_out_of_range")
    assert_error(submit(u.api, speech, model="transcribe", params={"format": "docx"}, filename="s.mp3"),
                 422, "param_out_of_range")
    assert_error(submit(u.api, speech, model="transcribe", params={"words": "yes"}, filename="s.mp3"),
                 422, "invalid_param")
    assert u.balance() == (bal0, 0)  # nothing held or charged for refusals

    job = expect(submit(u.api, speech, model="transcribe", params={"words": False, "format": "vtt"},
                        filename="s.mp3"), 202)
    done = wait_job(u.api, job["id"], timeout=120)
    assert done["status"] == "succeeded", done
    assert "words" not in done["result"] and len(done["result"]["segments"]) == 3
    vtt = u.api.get("/v1/jobs/%s/result" % job["id"], params={"format": "vtt"})
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT") and "-->" in vtt.text


def test_the_format_param_is_the_default_rendering_of_the_result(server, user, speech):
    u = user()
    job = J(submit(u.api, speech, model="transcribe", params={"format": "srt"}, filename="speech.mp3"))
    done = wait_job(u.api, job["id"], timeout=180)
    assert done["status"] == "succeeded", done
    r = u.api.get("/v1/jobs/%s/result" % job["id"])
    assert r.status_code == 200 and re.search(SRT_TIME + " --> " + SRT_TIME, r.text), r.text[:300]
    doc = expect(u.api.get("/v1/jobs/%s/result" % job["id"], params={"format": "json"}), 200)
    assert doc["text"] and doc["segments"]
