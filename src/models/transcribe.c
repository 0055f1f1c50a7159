/* transcribe.c - the `transcribe` model: 16 kHz mono speech -> text, segments
 * and timed words through the shared engine (asr.h). A gate (vad.h, or an
 * energy detector) cuts utterances at pauses, so silence is never decoded and
 * memory is bounded for any length; `denoise` runs `enhance` first. Each
 * utterance is decoded whole (batch normalisation); on a live stream that
 * decode runs in the background (vx_asr_decode_later) and poll() reports the
 * results in order, so the stream's replies never wait for it.
 * Re-entrant: all state lives in what open() returns. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../audio/vad.h"
#include "../util/strbuf.h"
#include "asr.h"
#include "model.h"
#include "subtitles.h"

#define RATE 16000
#define HOP 160                      /* 10 ms frames */
/* Utterance gate, in frames: speech for START frames opens an utterance that
 * begins PREROLL frames earlier (onsets are quiet); PAUSE frames of non-speech
 * end it. Past SOFT_MAX a short pause is enough, and HARD_MAX cuts anyway: the
 * decoder's lattice grows with the utterance, this keeps it bounded. */
#define START 3
#define PREROLL 25
#define PAUSE 45
#define SHORT_PAUSE 15
#define SOFT_MAX 2000
#define HARD_MAX 3000
/* Energy detector: speech is ENERGY_MARGIN dB above the noise floor (the
 * minimum frame energy over the last ENERGY_BLOCKS blocks of ENERGY_BLOCK
 * frames) and above an absolute ENERGY_GATE. */
#define ENERGY_MARGIN 12.0
#define ENERGY_GATE (-55.0)
#define ENERGY_BLOCK 30
#define ENERGY_BLOCKS 10
#define VAD_THRESHOLD 0.5
/* Audio kept for the gate to reach back: pre-roll plus the detector's delay
 * plus one chunk. A power of two (index masks). */
#define HISTORY (1 << 15)
#define CHUNK 1024
/* Longest utterance buffer: the hard cut plus what precedes the trigger. */
#define UTT_CAP ((size_t)(HARD_MAX + START + PREROLL + 2) * HOP)
/* How long a job waits for a decoder when streams hold them all (a live
 * stream does not wait: it is refused with asr_busy). */
#define ACQUIRE_WAIT_MS 120000

static const char *const language_choices[] = {"en", NULL};

static const vx_param_spec transcribe_params[] = {
    {.name = "format", .type = VX_PARAM_ENUM,
     .description = "default rendering of the result: json, verbose_json (segments and words), text, srt or vtt",
     .default_choice = "json", .choices = vx_subtitles_formats},
    {.name = "language", .type = VX_PARAM_ENUM, .description = "spoken language (only en: US English)",
     .default_choice = "en", .choices = language_choices},
    {.name = "words", .type = VX_PARAM_BOOL, .description = "include word timings and confidences in the result",
     .default_bool = true},
    {.name = "denoise", .type = VX_PARAM_BOOL,
     .description = "clean the audio with the enhance model before recognition", .default_bool = false},
    {.name = "segment", .type = VX_PARAM_BOOL,
     .description = "find speech with the voice activity detector of the segment model instead of an energy gate",
     .default_bool = true},
};

/* The enhance pre-pass, when asked for: its model and validated defaults. */
static const vx_model *enhancer(void) { return vx_catalog_find("enhance"); }

static int enhance_plan(json_t **params, vx_model_plan *plan, vx_err *err) {
    const vx_model *e = enhancer();
    *params = NULL;
    if (!e)
        return vx_err_set(err, VX_E_UNPROCESSABLE, "denoise_unavailable",
                          "denoise needs the enhance model, which this server does not offer");
    vx_audio_info mono16 = {.sample_rate = RATE, .channels = 1};
    if (vx_catalog_validate_params(e, NULL, params, err) != 0) return -1;
    if (e->plan(*params, &mono16, plan, err) != 0) goto fail;
    if ((plan->in_rate && plan->in_rate != RATE) || (plan->in_channels && plan->in_channels != 1) ||
        (plan->out_rate && plan->out_rate != RATE) || (plan->out_channels && plan->out_channels != 1)) {
        vx_err_set(err, VX_E_UNPROCESSABLE, "denoise_unavailable", "the enhance model cannot run on 16 kHz mono");
        goto fail;
    }
    return 0;
fail:
    json_decref(*params);
    *params = NULL;
    return -1;
}

static int transcribe_plan(const json_t *params, const vx_audio_info *input, vx_model_plan *plan, vx_err *err) {
    const char *language = json_string_value(json_object_get(params, "language"));
    if (!language || strcmp(language, "en") != 0)
        return vx_err_set(err, VX_E_UNPROCESSABLE, "param_out_of_range", "language must be one of: en");
    if (json_is_true(json_object_get(params, "denoise"))) {
        json_t *ep;
        vx_model_plan eplan;
        if (enhance_plan(&ep, &eplan, err) != 0) return -1;
        json_decref(ep);
    }
    memset(plan, 0, sizeof *plan);
    plan->in_rate = RATE;
    plan->in_channels = 1;
    return 0;
}

/* An utterance decoding in the background (live streams). */
typedef struct final_pass {
    vx_asr_task *task;
    struct final_pass *next;
} final_pass;

typedef struct transcribe_state {
    vx_asr_model *model;
    vx_asr_decoder *dec;             /* taken when first needed; a live stream
                                        without partials decoding in the
                                        background never takes one */
    bool words_wanted;
    char format[16];
    /* audio history, indexed by absolute sample position */
    float *history;
    int64_t total;                   /* samples received */
    /* detectors */
    vx_vad *vad;                     /* `segment`; else the energy gate below */
    float frame[HOP];
    int frame_fill;
    int64_t energy_frames;
    double block_min[ENERGY_BLOCKS]; /* dBFS; 0 (full scale) until filled: no
                                        prior, the floor is the quietest frame seen */
    /* gate and the open utterance (decoded whole when it ends) */
    int16_t *utt;
    size_t utt_len;
    int64_t utt_start;               /* sample position of utt[0] */
    bool in_utt;
    int speech_run, silence_run, utt_frames;
    int64_t fed_to;                  /* next sample to feed the decoder */
    int64_t floor_sample;            /* an utterance never starts before this */
    /* result */
    json_t *segments, *words;
    vx_strbuf text;
    /* enhance pre-pass */
    const vx_model *enh;
    json_t *enh_params;              /* outlives enh_state, which may borrow from it */
    void *enh_state;
    /* live streams: utterances as they end; partials from feeding the open
     * utterance to the decoder as it grows (the final text still comes from
     * decoding it whole, as in batch, in the background when possible) */
    const vx_model_listener *listener;
    bool background;                 /* final passes go to vx_asr_decode_later */
    final_pass *finals, **finals_tail; /* in utterance order */
    bool flushed;                    /* finish() ran the input's tail through */
    bool live_open;                  /* an utterance is open on the decoder */
    size_t live_fed;                 /* utt samples fed to it */
    char *last_partial;
} transcribe_state;

static int oom(vx_err *err) { return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory"); }

/* The decoder of a batch run (or of a stream decoding in place). */
static int need_decoder(transcribe_state *s, vx_err *err) {
    if (!s->dec) s->dec = vx_asr_acquire(s->model, ACQUIRE_WAIT_MS, err);
    return s->dec ? 0 : -1;
}

static double round3(double x) { return round(x * 1000.0) / 1000.0; }

/* Adds a decoded utterance to the result document. */
static int keep_utterance(transcribe_state *s, const vx_asr_utterance *u, vx_err *err) {
    if (u->n_words == 0) return 0;
    double conf = 0;
    for (size_t i = 0; i < u->n_words; i++) {
        const vx_asr_word *w = &u->words[i];
        conf += w->confidence;
        if (s->words_wanted &&
            json_array_append_new(s->words, json_pack("{s:s, s:f, s:f, s:f}", "word", w->word, "start",
                                                      round3(w->start), "end", round3(w->end), "confidence",
                                                      round3(w->confidence))) != 0)
            return oom(err);
    }
    json_t *seg = json_pack("{s:I, s:f, s:f, s:s, s:f}", "id", (json_int_t)json_array_size(s->segments), "start",
                            round3(u->words[0].start), "end", round3(u->words[u->n_words - 1].end), "text", u->text,
                            "confidence", round3(conf / (double)u->n_words));
    if (json_array_append_new(s->segments, seg) != 0)
        return oom(err);
    vx_strbuf_printf(&s->text, "%s%s", s->text.len ? " " : "", u->text);
    if (s->listener) {
        json_t *e = json_pack("{s:s, s:f, s:f}", "text", u->text, "start", round3(u->words[0].start), "end",
                              round3(u->words[u->n_words - 1].end));
        if (e && s->words_wanted) {
            size_t from = json_array_size(s->words) - u->n_words, n = json_array_size(s->words);
            json_t *ws = json_array();
            for (size_t i = from; ws && i < n; i++) json_array_append(ws, json_array_get(s->words, i));
            json_object_set_new(e, "words", ws ? ws : json_array());
        }
        if (!e) return oom(err);
        s->listener->emit(s->listener->user, e);
        json_decref(e);
    }
    return 0;
}

/* Live partials: feeds the open utterance's new samples to the decoder. */
static int live_feed(transcribe_state *s, vx_err *err) {
    if (!s->listener || !s->listener->partials || !s->in_utt) return 0;
    if (!s->live_open) {
        if (vx_asr_begin(s->dec, (double)s->utt_start / RATE, err) != 0) return -1;
        s->live_open = true;
        s->live_fed = 0;
    }
    if (s->utt_len > s->live_fed &&
        vx_asr_feed_s16(s->dec, s->utt + s->live_fed, s->utt_len - s->live_fed, err) != 0)
        return -1;
    s->live_fed = s->utt_len;
    return 0;
}

/* Live partials: reports the hypothesis when it changed. */
static int live_partial(transcribe_state *s, vx_err *err) {
    if (!s->live_open) return 0;
    const char *p = vx_asr_partial(s->dec);
    if (s->last_partial && strcmp(p, s->last_partial) == 0) return 0;
    free(s->last_partial);
    if (!(s->last_partial = strdup(p))) return oom(err);
    json_t *e = json_pack("{s:s}", "partial", p);
    if (!e) return oom(err);
    s->listener->emit(s->listener->user, e);
    json_decref(e);
    return 0;
}

/* Appends history samples [s->fed_to, to) to the open utterance. */
static void feed_until(transcribe_state *s, int64_t to) {
    if (to > s->total) to = s->total;
    for (; s->fed_to < to && s->utt_len < UTT_CAP; s->fed_to++) {
        float x = s->history[s->fed_to & (HISTORY - 1)];
        x = x > 1.0f ? 1.0f : x < -1.0f ? -1.0f : x == x ? x : 0.0f;
        s->utt[s->utt_len++] = (int16_t)lrintf(x * 32767.0f);
    }
}

/* Reports the background decodes that are done, in utterance order; with
 * `wait`, all of them (the end of the stream). */
static int take_finals(transcribe_state *s, bool wait, vx_err *err) {
    while (s->finals && (wait || vx_asr_task_ready(s->finals->task))) {
        final_pass *f = s->finals;
        if (!(s->finals = f->next)) s->finals_tail = &s->finals;
        vx_asr_utterance u;
        int rc = vx_asr_task_take(f->task, &u, err);
        free(f);
        if (rc == 0) rc = keep_utterance(s, &u, err);
        vx_asr_utterance_clear(&u);
        if (rc != 0) return -1;
    }
    return 0;
}

static int end_utterance(transcribe_state *s, vx_err *err) {
    vx_asr_utterance u;
    s->in_utt = false;
    if (s->live_open) {
        /* the partial pass is over; the final text comes from the whole utterance */
        s->live_open = false;
        free(s->last_partial);
        s->last_partial = NULL;
        if (vx_asr_end(s->dec, &u, err) != 0) return -1;
        vx_asr_utterance_clear(&u);
    }
    s->floor_sample = s->fed_to;
    size_t n = s->utt_len;
    double offset = (double)s->utt_start / RATE;
    s->utt_len = 0;
    if (s->background) {
        final_pass *f = calloc(1, sizeof *f);
        if (!f) return oom(err);
        if (!(f->task = vx_asr_decode_later(s->model, s->utt, n, offset, s->listener->wake, s->listener->user, err))) {
            free(f);
            return -1;
        }
        *s->finals_tail = f;
        s->finals_tail = &f->next;
        return 0;
    }
    if (need_decoder(s, err) != 0 || vx_asr_decode_s16(s->dec, s->utt, n, offset, &u, err) != 0) return -1;
    int rc = keep_utterance(s, &u, err);
    vx_asr_utterance_clear(&u);
    return rc;
}

/* One 10 ms decision for frame `index` (samples [index*HOP, (index+1)*HOP)). */
static int on_decision(transcribe_state *s, int64_t index, bool speech, vx_err *err) {
    int64_t frame_end = (index + 1) * HOP;
    if (!s->in_utt) {
        s->speech_run = speech ? s->speech_run + 1 : 0;
        if (s->speech_run < START) return 0;
        int64_t start = (index + 1 - START - PREROLL) * HOP;
        int64_t oldest = s->total - HISTORY;
        if (start < s->floor_sample) start = s->floor_sample;
        if (start < oldest) start = oldest;
        if (start < 0) start = 0;
        s->in_utt = true;
        s->utt_start = s->fed_to = start;
        s->utt_len = 0;
        s->silence_run = 0;
        s->utt_frames = (int)((frame_end - start) / HOP);
        feed_until(s, frame_end);
        return 0;
    }
    feed_until(s, frame_end);
    s->utt_frames++;
    s->silence_run = speech ? 0 : s->silence_run + 1;
    if (s->silence_run >= PAUSE || (s->utt_frames >= SOFT_MAX && s->silence_run >= SHORT_PAUSE) ||
        s->utt_frames >= HARD_MAX) {
        s->speech_run = 0;
        return end_utterance(s, err);
    }
    return 0;
}

static int vad_frame(void *user, const vx_vad_frame *f, vx_err *err) {
    return on_decision(user, f->index, f->probability >= VAD_THRESHOLD, err);
}

/* The energy gate: minimum statistics over ~3 s give the noise floor. */
static int energy_frame(transcribe_state *s, const float *x, int n, vx_err *err) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (double)x[i] * x[i];
    double db = 10.0 * log10(sum / (n > 0 ? n : 1) + 1e-10);
    int64_t f = s->energy_frames++;
    int block = (int)((f / ENERGY_BLOCK) % ENERGY_BLOCKS);
    if (f % ENERGY_BLOCK == 0) s->block_min[block] = db;
    else if (db < s->block_min[block]) s->block_min[block] = db;
    double floor_db = s->block_min[0];
    for (int b = 1; b < ENERGY_BLOCKS; b++)
        if (s->block_min[b] < floor_db) floor_db = s->block_min[b];
    bool speech = db > floor_db + ENERGY_MARGIN && db > ENERGY_GATE;
    return on_decision(s, f, speech, err);
}

static int energy_process(transcribe_state *s, const float *pcm, size_t n, vx_err *err) {
    for (size_t i = 0; i < n;) {
        int k = HOP - s->frame_fill;
        if ((size_t)k > n - i) k = (int)(n - i);
        memcpy(s->frame + s->frame_fill, pcm + i, (size_t)k * sizeof *pcm);
        s->frame_fill += k;
        i += (size_t)k;
        if (s->frame_fill == HOP) {
            s->frame_fill = 0;
            if (energy_frame(s, s->frame, HOP, err) != 0) return -1;
        }
    }
    return 0;
}

/* 16 kHz mono PCM into history and the detector, in chunks small enough
 * that every decision still finds its audio in the history. */
static int gate_write(void *user, const float *pcm, size_t n, vx_err *err) {
    transcribe_state *s = user;
    while (n > 0) {
        size_t k = n < CHUNK ? n : CHUNK;
        for (size_t i = 0; i < k; i++) s->history[(s->total + (int64_t)i) & (HISTORY - 1)] = pcm[i];
        s->total += (int64_t)k;
        int rc = s->vad ? vx_vad_process(s->vad, pcm, k, vad_frame, s, err) : energy_process(s, pcm, k, err);
        if (rc != 0 || live_feed(s, err) != 0) return -1;
        pcm += k;
        n -= k;
    }
    return 0;
}

static void transcribe_close(void *state) {
    transcribe_state *s = state;
    if (!s) return;
    for (final_pass *f = s->finals, *next; f; f = next) {
        next = f->next;
        vx_asr_task_drop(f->task);
        free(f);
    }
    free(s->last_partial);
    if (s->enh_state) s->enh->close(s->enh_state);
    json_decref(s->enh_params);
    vx_asr_release(s->dec);
    vx_vad_free(s->vad);
    free(s->history);
    free(s->utt);
    json_decref(s->segments);
    json_decref(s->words);
    vx_strbuf_free(&s->text);
    free(s);
}

/* Returns state the runner frees with transcribe_close. */
static void *transcribe_open(const json_t *params, const vx_model_plan *plan, vx_err *err) {
    transcribe_state *s = calloc(1, sizeof *s);
    if (!s) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    s->words_wanted = json_is_true(json_object_get(params, "words"));
    const char *format = json_string_value(json_object_get(params, "format"));
    snprintf(s->format, sizeof s->format, "%s", format ? format : "json");
    s->history = malloc(HISTORY * sizeof *s->history);
    s->utt = malloc(UTT_CAP * sizeof *s->utt);
    s->segments = json_array();
    s->words = json_array();
    if (!s->history || !s->utt || !s->segments || !s->words) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        goto fail;
    }
    if (plan->in_rate != RATE || plan->in_channels != 1) {
        vx_err_set(err, VX_E_INTERNAL, "internal", "transcribe runs on 16 kHz mono only");
        goto fail;
    }
    if (json_is_true(json_object_get(params, "segment"))) {
        s->vad = vx_vad_new(RATE, err);
        if (!s->vad) goto fail;
        if (vx_vad_latency(s->vad) + (START + PREROLL + 1) * HOP + CHUNK > HISTORY) {
            vx_err_set(err, VX_E_INTERNAL, "internal", "the voice activity detector lags too far behind");
            goto fail;
        }
    }
    if (json_is_true(json_object_get(params, "denoise"))) {
        vx_model_plan eplan;
        if (enhance_plan(&s->enh_params, &eplan, err) != 0) goto fail;
        s->enh = enhancer();
        s->enh_state = s->enh->open(s->enh_params, &eplan, err);
        if (!s->enh_state) goto fail;
    }
    s->finals_tail = &s->finals;
    s->model = vx_asr_shared(err);
    if (!s->model) goto fail;
    return s;
fail:
    transcribe_close(s);
    return NULL;
}

static int transcribe_process(void *state, const float *pcm, size_t frames, const vx_pcm_out *out, vx_err *err) {
    transcribe_state *s = state;
    int rc;
    if (s->enh_state) {
        vx_pcm_out to_gate = {.write = gate_write, .user = s};
        rc = s->enh->process(s->enh_state, pcm, frames, &to_gate, err);
    } else {
        rc = gate_write(s, pcm, frames, err);
    }
    if (rc != 0 || live_partial(s, err) != 0) return -1;
    return take_finals(s, false, err);
}

/* A live stream: decodes in the background when the host can be woken and
 * the pool allows; holds a decoder from now on only for partials (or to
 * decode in place), and then does not wait for one. */
static int transcribe_listen(void *state, const vx_model_listener *listener, vx_err *err) {
    transcribe_state *s = state;
    s->listener = listener;
    s->background = listener->wake && vx_asr_background_ok(s->model);
    if ((listener->partials || !s->background) && !s->dec && !(s->dec = vx_asr_acquire(s->model, 0, err))) return -1;
    return 0;
}

static int transcribe_poll(void *state, vx_err *err) { return take_finals(state, false, err); }

/* The end of the input: what the enhancer and the detector still hold, and
 * the open utterance. */
static int flush_input(transcribe_state *s, vx_err *err) {
    if (s->enh_state) {
        vx_pcm_out to_gate = {.write = gate_write, .user = s};
        json_t *enh_doc = NULL;
        int rc = s->enh->finish(s->enh_state, &to_gate, &enh_doc, err);
        json_decref(enh_doc);
        if (rc != 0) return -1;
    }
    int rc = 0;
    if (s->vad) rc = vx_vad_flush(s->vad, vad_frame, s, err);
    else if (s->frame_fill > 0) rc = energy_frame(s, s->frame, s->frame_fill, err);
    if (rc != 0) return -1;
    if (s->in_utt) {
        feed_until(s, s->total);
        if (end_utterance(s, err) != 0) return -1;
    }
    return 0;
}

static int transcribe_finish(void *state, const vx_pcm_out *out, json_t **result, vx_err *err) {
    transcribe_state *s = state;
    *result = NULL;
    if (!s->flushed) {
        s->flushed = true;
        if (flush_input(s, err) != 0) return -1;
    }
    /* a live stream does not wait: it is called again after the wake */
    if (take_finals(s, !s->background, err) != 0) return -1;
    if (s->finals) return 1;
    json_t *doc = json_pack("{s:s, s:s, s:f, s:s, s:s, s:b, s:O}", "text", s->text.data ? s->text.data : "",
                            "language", "en", "duration", round3((double)s->total / RATE), "engine",
                            vx_asr_model_engine(s->model), "format", s->format, "denoise", s->enh_state != NULL,
                            "segments", s->segments);
    if (doc && s->words_wanted) json_object_set(doc, "words", s->words);
    if (!doc) return oom(err);
    *result = doc;
    return 0;
}

static int transcribe_render(const json_t *result, const char *format, char **out, size_t *len,
                             const char **content_type, vx_err *err) {
    return vx_subtitles_render(result, format, out, len, content_type, err);
}

const vx_model vx_model_transcribe = {
    .name = "transcribe",
    .kind = "transcription",
    .description = "Speech to text (US English, PocketSphinx): text, utterance segments and timed words; "
                   "renders as json, verbose_json, text, srt or vtt.",
    .inputs = vx_audio_input_formats,
    .params = transcribe_params,
    .n_params = sizeof transcribe_params / sizeof transcribe_params[0],
    .price_per_job = 0,
    .price_per_second = 5000,
    .plan = transcribe_plan,
    .open = transcribe_open,
    .process = transcribe_process,
    .finish = transcribe_finish,
    .close = transcribe_close,
    .render = transcribe_render,
    .listen = transcribe_listen,
    .poll = transcribe_poll,
};
