/* asr.c - asr.h: engine table, decoder pool, utterance calls, the shared
 * model, and the PocketSphinx engine. PocketSphinx 5prealpha keeps acoustic
 * model, dictionary and LM inside each ps_decoder_t (its LM caches are written
 * while scoring: not shareable between threads), so the pool bound is what
 * bounds memory. Model and pool: any thread; a decoder: its one holder. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pocketsphinx.h>
#include <sphinxbase/cmn.h>
#include <sphinxbase/err.h>
#include <sphinxbase/feat.h>
#include "../util/log.h"
#include "../util/strbuf.h"
#include "asr.h"

static int oom(vx_err *err) { return vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory"); }

void vx_asr_utterance_clear(vx_asr_utterance *u) {
    if (!u) return;
    for (size_t i = 0; i < u->n_words; i++) free(u->words[i].word);
    free(u->words);
    free(u->text);
    memset(u, 0, sizeof *u);
}

/* ------------------------------------------------------------------------ */
/* PocketSphinx engine                                                      */
/* ------------------------------------------------------------------------ */

#define PS_DEFAULT_MODEL_DIR "/usr/share/pocketsphinx/model/en-us"

typedef struct ps_model {
    char hmm[PATH_MAX];
    char lm[PATH_MAX];
    char dict[PATH_MAX];
} ps_model;

/* The running normalisation's whole state (sphinxbase's cmn_t). */
typedef struct cmn_snapshot {
    mfcc_t *mean, *sum;
    int32 nframe;
} cmn_snapshot;

static void cmn_save(const cmn_t *c, cmn_snapshot *to) {
    memcpy(to->mean, c->cmn_mean, (size_t)c->veclen * sizeof *to->mean);
    memcpy(to->sum, c->sum, (size_t)c->veclen * sizeof *to->sum);
    to->nframe = c->nframe;
}

static void cmn_restore(cmn_t *c, const cmn_snapshot *from) {
    memcpy(c->cmn_mean, from->mean, (size_t)c->veclen * sizeof *from->mean);
    memcpy(c->sum, from->sum, (size_t)c->veclen * sizeof *from->sum);
    c->nframe = from->nframe;
}

typedef struct ps_dec {
    ps_decoder_t *ps;
    int frame_rate;       /* feature frames per second (-frate) */
    int64_t fed;          /* samples since start */
    uint32_t noise;       /* dither state, reset per utterance (repeatable results) */
    /* PocketSphinx switches a decoder to live cepstral mean normalisation
     * for good once it is fed in pieces (live partials), and keeps the mean
     * it learnt. A whole-utterance decode runs with the model's own type
     * (normalised over itself, whatever came before) and leaves the live
     * state as it found it; reset (a new user of the pooled decoder) puts
     * the initial mean back, so live decoding adapts within one user only. */
    cmn_type_t cmn_type;
    cmn_snapshot cmn_init, cmn_live;
} ps_dec;

/* Exact digital silence makes PocketSphinx's log filterbank produce garbage
 * words ("dog" out of one second of zeros), so zero samples get +-1 LSB of
 * noise; every other sample passes unchanged. Deterministic per utterance. */
static void dither_zeros(ps_dec *d, int16_t *dst, const int16_t *src, size_t n) {
    uint32_t x = d->noise;
    for (size_t i = 0; i < n; i++) {
        if (src[i]) {
            dst[i] = src[i];
            continue;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        dst[i] = (int16_t)((int)(x % 3) - 1);
    }
    d->noise = x;
}

/* Sphinxbase logs through one process-wide hook. Only PocketSphinx uses
 * sphinxbase in voxd, so routing it here changes nothing else: errors go to
 * voxd's log at debug level, the rest (model dumps, timings) is dropped. */
static void sphinx_log(void *user, err_lvl_t level, const char *fmt, ...) {
    if (level < ERR_ERROR || !fmt) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    if (n) vx_debug("pocketsphinx: %s", line);
}

static pthread_once_t sphinx_log_once = PTHREAD_ONCE_INIT;
static void sphinx_log_setup(void) {
    err_set_callback(sphinx_log, NULL);
    err_set_logfp(NULL); /* the configuration dump bypasses the callback */
}

static bool readable(const char *path) { return access(path, R_OK) == 0; }

static void *ps_load(const vx_asr_options *opt, vx_err *err) {
    pthread_once(&sphinx_log_once, sphinx_log_setup);
    const char *dir = opt && opt->model_dir && opt->model_dir[0] ? opt->model_dir : PS_DEFAULT_MODEL_DIR;
    ps_model *m = calloc(1, sizeof *m);
    if (!m) {
        oom(err);
        return NULL;
    }
    int a = snprintf(m->hmm, sizeof m->hmm, "%s/en-us", dir);
    int b = snprintf(m->lm, sizeof m->lm, "%s/en-us.lm.bin", dir);
    int c = snprintf(m->dict, sizeof m->dict, "%s/cmudict-en-us.dict", dir);
    char mdef[PATH_MAX + 8];
    snprintf(mdef, sizeof mdef, "%s/mdef", m->hmm);
    if (a >= (int)sizeof m->hmm || b >= (int)sizeof m->lm || c >= (int)sizeof m->dict || !readable(mdef) ||
        !readable(m->lm) || !readable(m->dict)) {
        vx_warn("asr: the PocketSphinx en-us model is not readable under %s (install pocketsphinx-en-us)", dir);
        vx_err_set(err, VX_E_UNAVAILABLE, "asr_unavailable", "the speech recognition model is not installed");
        free(m);
        return NULL;
    }
    return m;
}

static void ps_unload(void *model) { free(model); }

static void *ps_decoder_new(void *model, vx_err *err) {
    const ps_model *m = model;
    ps_dec *d = calloc(1, sizeof *d);
    if (!d) {
        oom(err);
        return NULL;
    }
    /* Silence is cut by the caller (it knows the absolute times); removing
     * it inside PocketSphinx as well would shift every word time. */
    cmd_ln_t *config = cmd_ln_init(NULL, ps_args(), TRUE, "-hmm", m->hmm, "-lm", m->lm, "-dict", m->dict,
                                   "-remove_silence", "no", "-bestpath", "yes", NULL);
    if (config) d->ps = ps_init(config);
    if (config) cmd_ln_free_r(config); /* the decoder keeps its own reference */
    if (!d->ps) {
        vx_err_set(err, VX_E_UNAVAILABLE, "asr_unavailable", "the speech recognizer could not be initialised");
        free(d);
        return NULL;
    }
    d->frame_rate = (int)cmd_ln_int32_r(ps_get_config(d->ps), "-frate");
    if (d->frame_rate <= 0) d->frame_rate = 100;
    feat_t *feat = ps_get_feat(d->ps);
    d->cmn_type = feat->cmn;
    if (feat->cmn_struct) {
        /* one block: init mean, init sum, live mean, live sum */
        size_t len = (size_t)feat->cmn_struct->veclen;
        mfcc_t *block = calloc(4 * len, sizeof *block);
        if (!block) {
            ps_free(d->ps);
            free(d);
            oom(err);
            return NULL;
        }
        d->cmn_init = (cmn_snapshot){.mean = block, .sum = block + len};
        d->cmn_live = (cmn_snapshot){.mean = block + 2 * len, .sum = block + 3 * len};
        cmn_save(feat->cmn_struct, &d->cmn_init);
    }
    return d;
}

static void ps_decoder_free(void *decoder) {
    ps_dec *d = decoder;
    if (!d) return;
    ps_free(d->ps);
    free(d->cmn_init.mean);
    free(d);
}

static void ps_reset(void *decoder) {
    ps_dec *d = decoder;
    feat_t *feat = ps_get_feat(d->ps);
    if (d->cmn_init.mean) cmn_restore(feat->cmn_struct, &d->cmn_init);
}

static int ps_start(void *decoder, vx_err *err) {
    ps_dec *d = decoder;
    d->fed = 0;
    d->noise = 0x9E3779B9u;
    /* A new "stream" restarts the frame count (word times are per utterance). */
    if (ps_start_stream(d->ps) < 0 || ps_start_utt(d->ps) < 0)
        return vx_err_set(err, VX_E_INTERNAL, "asr_failed", "the speech recognizer could not start an utterance");
    return 0;
}

static int ps_feed(void *decoder, const int16_t *pcm, size_t n, vx_err *err) {
    ps_dec *d = decoder;
    int16_t block[2048];
    while (n > 0) {
        size_t k = n < 2048 ? n : 2048;
        dither_zeros(d, block, pcm, k);
        if (ps_process_raw(d->ps, block, k, FALSE, FALSE) < 0)
            return vx_err_set(err, VX_E_INTERNAL, "asr_failed", "the speech recognizer rejected the audio");
        d->fed += (int64_t)k;
        pcm += k;
        n -= k;
    }
    return 0;
}

static const char *ps_partial(void *decoder) {
    ps_dec *d = decoder;
    const char *hyp = ps_get_hyp(d->ps, NULL);
    return hyp ? hyp : "";
}

/* "<s>", "</s>", "<sil>", "[NOISE]", "++BREATH++": not words. */
static bool is_filler(const char *w) { return !w[0] || w[0] == '<' || w[0] == '[' || w[0] == '+'; }

/* "read(2)" -> "read": the suffix only names a pronunciation variant.
 * Returns a malloc'd string (NULL when out of memory). */
static char *clean_word(const char *w) {
    size_t n = strlen(w);
    if (n > 3 && w[n - 1] == ')') {
        const char *open = strrchr(w, '(');
        if (open && open > w) n = (size_t)(open - w);
    }
    char *out = malloc(n + 1);
    if (!out) return NULL;
    memcpy(out, w, n);
    out[n] = '\0';
    return out;
}

static int ps_end(void *decoder, vx_asr_utterance *out, vx_err *err) {
    ps_dec *d = decoder;
    memset(out, 0, sizeof *out);
    if (ps_end_utt(d->ps) < 0)
        return vx_err_set(err, VX_E_INTERNAL, "asr_failed", "the speech recognizer could not end an utterance");
    double fed_s = (double)d->fed / vx_asr_pocketsphinx.sample_rate;
    out->end = fed_s;
    logmath_t *lmath = ps_get_logmath(d->ps);
    size_t cap = 0;
    vx_strbuf text = {0};
    for (ps_seg_t *seg = ps_seg_iter(d->ps); seg; seg = ps_seg_next(seg)) {
        const char *w = ps_seg_word(seg);
        if (!w || is_filler(w)) continue;
        if (out->n_words == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            vx_asr_word *nw = realloc(out->words, ncap * sizeof *nw);
            if (!nw) {
                ps_seg_free(seg);
                goto fail;
            }
            out->words = nw;
            cap = ncap;
        }
        int sf = 0, ef = 0;
        int32 ascr, lscr, lback;
        ps_seg_frames(seg, &sf, &ef);
        int32 prob = ps_seg_prob(seg, &ascr, &lscr, &lback);
        vx_asr_word *word = &out->words[out->n_words];
        word->word = clean_word(w);
        if (!word->word) {
            ps_seg_free(seg);
            goto fail;
        }
        out->n_words++;
        word->start = (double)sf / d->frame_rate;
        word->end = (double)(ef + 1) / d->frame_rate;
        double conf = prob > 0 ? 1.0 : logmath_exp(lmath, prob);
        word->confidence = isfinite(conf) ? (conf < 0 ? 0 : conf > 1 ? 1 : conf) : 0;
        vx_strbuf_printf(&text, "%s%s", text.len ? " " : "", word->word);
    }
    out->text = text.data ? vx_strbuf_take(&text) : strdup("");
    if (!out->text) goto fail;
    return 0;
fail:
    vx_strbuf_free(&text);
    vx_asr_utterance_clear(out);
    return oom(err);
}

static int ps_decode(void *decoder, const int16_t *pcm, size_t n, vx_asr_utterance *out, vx_err *err) {
    ps_dec *d = decoder;
    memset(out, 0, sizeof *out);
    int16_t *copy = malloc((n ? n : 1) * sizeof *copy);
    if (!copy) return oom(err);
    if (ps_start(d, err) != 0) {
        free(copy);
        return -1;
    }
    dither_zeros(d, copy, pcm, n);
    /* full_utt: features for all of it at once, with batch cepstral mean
     * normalisation (the model's -cmn batch); no running estimate to warm. */
    feat_t *feat = ps_get_feat(d->ps);
    cmn_type_t live_type = feat->cmn;
    if (d->cmn_live.mean) cmn_save(feat->cmn_struct, &d->cmn_live);
    feat->cmn = d->cmn_type;
    int rc = n > 0 ? ps_process_raw(d->ps, copy, n, FALSE, TRUE) : 0;
    feat->cmn = live_type;
    if (d->cmn_live.mean) cmn_restore(feat->cmn_struct, &d->cmn_live);
    free(copy);
    if (rc < 0) {
        ps_end_utt(d->ps);
        return vx_err_set(err, VX_E_INTERNAL, "asr_failed", "the speech recognizer rejected the audio");
    }
    d->fed = (int64_t)n;
    return ps_end(d, out, err);
}

const vx_asr_engine vx_asr_pocketsphinx = {
    .name = "pocketsphinx",
    .sample_rate = 16000,
    .load = ps_load,
    .unload = ps_unload,
    .decoder_new = ps_decoder_new,
    .decoder_free = ps_decoder_free,
    .start = ps_start,
    .reset = ps_reset,
    .feed = ps_feed,
    .partial = ps_partial,
    .end = ps_end,
    .decode = ps_decode,
};

static const vx_asr_engine *const engines[] = {&vx_asr_pocketsphinx};

/* ------------------------------------------------------------------------ */
/* Model and decoder pool                                                   */
/* ------------------------------------------------------------------------ */

struct vx_asr_decoder {
    vx_asr_model *model;
    void *engine_decoder;
    vx_asr_decoder *next_idle;
    bool brief;                  /* held by a background decode (not counted in `held`) */
    bool in_utterance;
    double offset_s;
    int64_t fed;                 /* samples since begin */
};

struct vx_asr_model {
    const vx_asr_engine *engine;
    void *engine_model;
    pthread_mutex_t mu;
    pthread_cond_t released;     /* signalled on release and on a failed creation */
    vx_asr_decoder *idle;        /* LIFO: the warmest decoder is reused first */
    int max, created, in_use, creating;
    int held;                    /* of in_use: long holds (vx_asr_acquire) */
    int reserved;                /* decoders long holds leave to brief ones */
    int64_t creations;
};

void vx_asr_options_default(vx_asr_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->engine = vx_asr_pocketsphinx.name;
    opt->max_decoders = VX_ASR_DEFAULT_DECODERS;
}

vx_asr_model *vx_asr_model_new(const vx_asr_options *opt, vx_err *err) {
    vx_asr_options def;
    if (!opt) {
        vx_asr_options_default(&def);
        opt = &def;
    }
    const char *name = opt->engine ? opt->engine : vx_asr_pocketsphinx.name;
    const vx_asr_engine *engine = NULL;
    for (size_t i = 0; i < sizeof engines / sizeof engines[0]; i++)
        if (strcmp(engines[i]->name, name) == 0) engine = engines[i];
    if (!engine) {
        vx_err_set(err, VX_E_INVALID, "invalid_param", "unknown speech engine \"%.32s\" (known: pocketsphinx)", name);
        return NULL;
    }
    if (opt->max_decoders < 1) {
        vx_err_set(err, VX_E_INVALID, "invalid_param", "the decoder pool needs a bound of at least 1");
        return NULL;
    }
    vx_asr_model *m = calloc(1, sizeof *m);
    if (!m) {
        oom(err);
        return NULL;
    }
    m->engine = engine;
    m->max = opt->max_decoders;
    m->reserved = m->max >= 2 ? 1 : 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->released, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&m->mu, NULL);
    m->engine_model = engine->load(opt, err);
    if (!m->engine_model) {
        vx_asr_model_free(m);
        return NULL;
    }
    return m;
}

void vx_asr_model_free(vx_asr_model *m) {
    if (!m) return;
    if (m->in_use) vx_error("asr: freeing the model with %d decoder(s) still in use", m->in_use);
    for (vx_asr_decoder *d = m->idle, *next; d; d = next) {
        next = d->next_idle;
        m->engine->decoder_free(d->engine_decoder);
        free(d);
    }
    if (m->engine_model) m->engine->unload(m->engine_model);
    pthread_cond_destroy(&m->released);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

const char *vx_asr_model_engine(const vx_asr_model *m) { return m->engine->name; }
int vx_asr_model_rate(const vx_asr_model *m) { return m->engine->sample_rate; }

static void deadline_after(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Creation runs outside the lock (it takes a quarter of a second and ~90 MB
 * for PocketSphinx); `creating` reserves the slot meanwhile. */
static vx_asr_decoder *create_decoder(vx_asr_model *m, bool brief, vx_err *err) {
    vx_asr_decoder *d = calloc(1, sizeof *d);
    if (d) d->engine_decoder = m->engine->decoder_new(m->engine_model, err);
    else oom(err);
    if (d && !d->engine_decoder) {
        free(d);
        d = NULL;
    }
    pthread_mutex_lock(&m->mu);
    m->creating--;
    if (d) {
        d->model = m;
        d->brief = brief;
        m->created++;
        m->creations++;
    } else {
        if (!brief) m->held--;
        m->in_use--;
        pthread_cond_broadcast(&m->released); /* the slot is free again */
    }
    pthread_mutex_unlock(&m->mu);
    return d;
}

/* Takes a decoder for a long (brief = false) or a brief hold; see asr.h. */
static vx_asr_decoder *acquire(vx_asr_model *m, bool brief, int wait_ms, vx_err *err) {
    struct timespec deadline;
    if (wait_ms > 0) deadline_after(&deadline, wait_ms);
    pthread_mutex_lock(&m->mu);
    for (;;) {
        bool allowed = brief || m->held < m->max - m->reserved;
        if (allowed && (m->idle || m->created + m->creating < m->max)) {
            m->in_use++;
            if (!brief) m->held++;
            vx_asr_decoder *d = m->idle;
            if (!d) {
                m->creating++;
                pthread_mutex_unlock(&m->mu);
                return create_decoder(m, brief, err);
            }
            m->idle = d->next_idle;
            d->next_idle = NULL;
            d->brief = brief;
            pthread_mutex_unlock(&m->mu);
            /* what the previous user taught it must not reach this one */
            if (m->engine->reset) m->engine->reset(d->engine_decoder);
            return d;
        }
        int rc = 0;
        if (wait_ms == 0) rc = ETIMEDOUT;
        else if (wait_ms < 0) pthread_cond_wait(&m->released, &m->mu);
        else rc = pthread_cond_timedwait(&m->released, &m->mu, &deadline);
        if (rc == ETIMEDOUT) {
            pthread_mutex_unlock(&m->mu);
            vx_err_set(err, VX_E_UNAVAILABLE, "asr_busy", "every speech decoder is busy; try again later");
            return NULL;
        }
    }
}

vx_asr_decoder *vx_asr_acquire(vx_asr_model *m, int wait_ms, vx_err *err) { return acquire(m, false, wait_ms, err); }

vx_asr_decoder *vx_asr_acquire_brief(vx_asr_model *m, vx_err *err) { return acquire(m, true, -1, err); }

void vx_asr_release(vx_asr_decoder *d) {
    if (!d) return;
    vx_asr_model *m = d->model;
    if (d->in_utterance) {
        vx_asr_utterance dropped;
        vx_err err;
        if (m->engine->end(d->engine_decoder, &dropped, &err) == 0) vx_asr_utterance_clear(&dropped);
        d->in_utterance = false;
    }
    pthread_mutex_lock(&m->mu);
    d->next_idle = m->idle;
    m->idle = d;
    m->in_use--;
    if (!d->brief) m->held--;
    /* waiters differ (long holds may not take the reserve): wake them all */
    pthread_cond_broadcast(&m->released);
    pthread_mutex_unlock(&m->mu);
}

void vx_asr_pool_stats_get(vx_asr_model *m, vx_asr_pool_stats *out) {
    pthread_mutex_lock(&m->mu);
    *out = (vx_asr_pool_stats){.max = m->max, .created = m->created, .in_use = m->in_use, .held = m->held,
                               .reserved = m->reserved, .creations = m->creations};
    pthread_mutex_unlock(&m->mu);
}

/* ------------------------------------------------------------------------ */
/* Utterances                                                               */
/* ------------------------------------------------------------------------ */

int vx_asr_begin(vx_asr_decoder *d, double offset_s, vx_err *err) {
    if (d->in_utterance)
        return vx_err_set(err, VX_E_INTERNAL, "asr_failed", "an utterance is already open on this decoder");
    if (d->model->engine->start(d->engine_decoder, err) != 0) return -1;
    d->in_utterance = true;
    d->offset_s = offset_s;
    d->fed = 0;
    return 0;
}

int vx_asr_feed_s16(vx_asr_decoder *d, const int16_t *pcm, size_t n, vx_err *err) {
    if (!d->in_utterance)
        return vx_err_set(err, VX_E_INTERNAL, "asr_failed", "audio fed outside an utterance");
    if (d->model->engine->feed(d->engine_decoder, pcm, n, err) != 0) return -1;
    d->fed += (int64_t)n;
    return 0;
}

int vx_asr_feed_f32(vx_asr_decoder *d, const float *pcm, size_t n, vx_err *err) {
    int16_t block[2048];
    while (n > 0) {
        size_t k = n < 2048 ? n : 2048;
        for (size_t i = 0; i < k; i++) {
            float x = pcm[i];
            if (!(x == x)) x = 0; /* NaN */
            x = x > 1.0f ? 1.0f : x < -1.0f ? -1.0f : x;
            block[i] = (int16_t)lrintf(x * 32767.0f);
        }
        if (vx_asr_feed_s16(d, block, k, err) != 0) return -1;
        pcm += k;
        n -= k;
    }
    return 0;
}

double vx_asr_fed_seconds(const vx_asr_decoder *d) { return (double)d->fed / d->model->engine->sample_rate; }

const char *vx_asr_partial(vx_asr_decoder *d) {
    if (!d->in_utterance) return "";
    const char *p = d->model->engine->partial(d->engine_decoder);
    return p ? p : "";
}

/* Engines report frame-rounded times: keep every word inside the audio
 * actually fed and in order, so callers can rely on it. */
static void settle_times(vx_asr_utterance *u, double len, double offset) {
    double prev = 0;
    for (size_t i = 0; i < u->n_words; i++) {
        vx_asr_word *w = &u->words[i];
        if (w->start < prev) w->start = prev;
        if (w->start > len) w->start = len;
        if (w->end > len) w->end = len;
        if (w->end < w->start) w->end = w->start;
        prev = w->start;
        w->start += offset;
        w->end += offset;
    }
    u->start = offset;
    u->end = offset + len;
}

int vx_asr_end(vx_asr_decoder *d, vx_asr_utterance *out, vx_err *err) {
    memset(out, 0, sizeof *out);
    if (!d->in_utterance) return vx_err_set(err, VX_E_INTERNAL, "asr_failed", "no utterance is open");
    d->in_utterance = false;
    if (d->model->engine->end(d->engine_decoder, out, err) != 0) return -1;
    settle_times(out, vx_asr_fed_seconds(d), d->offset_s);
    return 0;
}

int vx_asr_decode_s16(vx_asr_decoder *d, const int16_t *pcm, size_t n, double offset_s, vx_asr_utterance *out,
                      vx_err *err) {
    memset(out, 0, sizeof *out);
    if (d->in_utterance)
        return vx_err_set(err, VX_E_INTERNAL, "asr_failed", "an utterance is already open on this decoder");
    if (d->model->engine->decode(d->engine_decoder, pcm, n, out, err) != 0) return -1;
    settle_times(out, (double)n / d->model->engine->sample_rate, offset_s);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The shared model                                                         */
/* ------------------------------------------------------------------------ */

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static vx_asr_model *shared_model;
static char *shared_engine, *shared_dir;
static int shared_max = VX_ASR_DEFAULT_DECODERS;

vx_asr_model *vx_asr_shared(vx_err *err) {
    pthread_mutex_lock(&shared_mu);
    if (!shared_model) {
        vx_asr_options opt;
        vx_asr_options_default(&opt);
        if (shared_engine) opt.engine = shared_engine;
        opt.model_dir = shared_dir;
        opt.max_decoders = shared_max;
        shared_model = vx_asr_model_new(&opt, err);
    }
    vx_asr_model *m = shared_model;
    pthread_mutex_unlock(&shared_mu);
    return m;
}

int vx_asr_shared_configure(const vx_asr_options *opt, vx_err *err) {
    int rc = 0;
    pthread_mutex_lock(&shared_mu);
    if (shared_model) {
        rc = vx_err_set(err, VX_E_CONFLICT, "asr_loaded", "the speech model is already loaded");
    } else if (opt->max_decoders < 1) {
        rc = vx_err_set(err, VX_E_INVALID, "invalid_param", "the decoder pool needs a bound of at least 1");
    } else {
        char *engine = opt->engine ? strdup(opt->engine) : NULL;
        char *dir = opt->model_dir ? strdup(opt->model_dir) : NULL;
        if ((opt->engine && !engine) || (opt->model_dir && !dir)) {
            free(engine);
            free(dir);
            rc = oom(err);
        } else {
            free(shared_engine);
            free(shared_dir);
            shared_engine = engine;
            shared_dir = dir;
            shared_max = opt->max_decoders;
        }
    }
    pthread_mutex_unlock(&shared_mu);
    return rc;
}

void vx_asr_shared_free(void) {
    vx_asr_background_stop();
    pthread_mutex_lock(&shared_mu);
    vx_asr_model_free(shared_model);
    shared_model = NULL;
    free(shared_engine);
    free(shared_dir);
    shared_engine = shared_dir = NULL;
    shared_max = VX_ASR_DEFAULT_DECODERS;
    pthread_mutex_unlock(&shared_mu);
}
