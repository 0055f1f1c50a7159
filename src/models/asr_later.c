/* asr_later.c - background whole-utterance decodes (asr.h): a live stream
 * hands each utterance that ended to a few process-wide threads, so the
 * decode that makes its final text (the same call a batch job makes) never
 * delays the stream's next replies. Tasks run in order of submission, each on
 * a brief decoder of its own model; the threads run below normal priority,
 * so live frames keep the CPU first. Any thread. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "../util/log.h"
#include "asr.h"

#define MAX_THREADS 8
/* How much less CPU priority the decodes get than live frames (nice). */
#define NICENESS 5

typedef enum task_state { TASK_QUEUED, TASK_RUNNING, TASK_DONE } task_state;

struct vx_asr_task {
    vx_asr_task *next;             /* queue order */
    vx_asr_model *model;
    int16_t *pcm;                  /* owned copy; freed once decoded */
    size_t n;
    double offset_s;
    void (*ready)(void *user);
    void *user;
    task_state state;
    bool dropped;                  /* RUNNING and nobody wants it: the runner frees it */
    int rc;
    vx_err err;
    vx_asr_utterance out;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;   /* a task was queued, or stop */
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;   /* a task finished */
static vx_asr_task *head, **tail = &head;
static pthread_t threads[MAX_THREADS];
static int n_threads, pending;
static int64_t decoded;
static bool stopping;

static void task_free(vx_asr_task *t) {
    vx_asr_utterance_clear(&t->out);
    free(t->pcm);
    free(t);
}

static void *runner(void *arg) {
    (void)arg;
    /* per-thread on Linux: only this thread yields to live work */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), NICENESS) != 0) vx_debug("asr: background decodes at normal priority");
    pthread_mutex_lock(&mu);
    for (;;) {
        while (!head && !stopping) pthread_cond_wait(&work, &mu);
        if (!head) break;
        vx_asr_task *t = head;
        head = t->next;
        if (!head) tail = &head;
        t->state = TASK_RUNNING;
        pthread_mutex_unlock(&mu);

        vx_err err = {0};
        vx_asr_utterance out = {0};
        vx_asr_decoder *d = vx_asr_acquire_brief(t->model, &err);
        int rc = d ? vx_asr_decode_s16(d, t->pcm, t->n, t->offset_s, &out, &err) : -1;
        vx_asr_release(d);
        free(t->pcm);
        t->pcm = NULL;

        pthread_mutex_lock(&mu);
        pending--;
        decoded++;
        if (t->dropped) {
            vx_asr_utterance_clear(&out);
            task_free(t);
        } else {
            t->rc = rc;
            t->err = err;
            t->out = out;
            t->state = TASK_DONE;
            pthread_cond_broadcast(&done);
            if (t->ready) t->ready(t->user);
        }
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* Under mu: the threads, once. */
static int start_locked(vx_err *err) {
    if (n_threads > 0) return 0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int want = cores < 1 ? 1 : cores > MAX_THREADS ? MAX_THREADS : (int)cores;
    stopping = false;
    for (int i = 0; i < want; i++) {
        if (pthread_create(&threads[n_threads], NULL, runner, NULL) != 0) break;
        n_threads++;
    }
    if (n_threads == 0) return vx_err_set(err, VX_E_INTERNAL, "thread_failed", "cannot start speech decode threads");
    return 0;
}

bool vx_asr_background_ok(vx_asr_model *m) {
    vx_asr_pool_stats st;
    vx_asr_pool_stats_get(m, &st);
    return st.reserved > 0;
}

vx_asr_task *vx_asr_decode_later(vx_asr_model *m, const int16_t *pcm, size_t n, double offset_s,
                                 void (*ready)(void *user), void *user, vx_err *err) {
    if (!vx_asr_background_ok(m)) {
        vx_err_set(err, VX_E_CONFLICT, "asr_no_background",
                   "background decodes need a decoder pool of two or more (--asr-decoders)");
        return NULL;
    }
    vx_asr_task *t = calloc(1, sizeof *t);
    if (t) t->pcm = malloc((n ? n : 1) * sizeof *pcm);
    if (!t || !t->pcm) {
        free(t);
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    if (n) memcpy(t->pcm, pcm, n * sizeof *pcm);
    t->model = m;
    t->n = n;
    t->offset_s = offset_s;
    t->ready = ready;
    t->user = user;
    pthread_mutex_lock(&mu);
    if (start_locked(err) != 0) {
        pthread_mutex_unlock(&mu);
        task_free(t);
        return NULL;
    }
    t->state = TASK_QUEUED;
    *tail = t;
    tail = &t->next;
    pending++;
    pthread_cond_signal(&work);
    pthread_mutex_unlock(&mu);
    return t;
}

bool vx_asr_task_ready(vx_asr_task *t) {
    pthread_mutex_lock(&mu);
    bool ready = t->state == TASK_DONE;
    pthread_mutex_unlock(&mu);
    return ready;
}

int vx_asr_task_take(vx_asr_task *t, vx_asr_utterance *out, vx_err *err) {
    pthread_mutex_lock(&mu);
    while (t->state != TASK_DONE) pthread_cond_wait(&done, &mu);
    pthread_mutex_unlock(&mu);
    int rc = t->rc;
    if (rc == 0) {
        *out = t->out;
        memset(&t->out, 0, sizeof t->out);
    } else {
        memset(out, 0, sizeof *out);
        *err = t->err;
    }
    task_free(t);
    return rc;
}

void vx_asr_task_drop(vx_asr_task *t) {
    if (!t) return;
    pthread_mutex_lock(&mu);
    if (t->state == TASK_QUEUED) {
        vx_asr_task **p = &head;
        while (*p != t) p = &(*p)->next;
        *p = t->next;
        if (tail == &t->next) tail = p;
        pending--;
        task_free(t);
    } else if (t->state == TASK_RUNNING) {
        t->dropped = true;
    } else {
        task_free(t);
    }
    pthread_mutex_unlock(&mu);
}

void vx_asr_background_stats(int *pending_out, int64_t *decoded_out) {
    pthread_mutex_lock(&mu);
    if (pending_out) *pending_out = pending;
    if (decoded_out) *decoded_out = decoded;
    pthread_mutex_unlock(&mu);
}

void vx_asr_background_stop(void) {
    pthread_mutex_lock(&mu);
    if (head) vx_error("asr: stopping the background decodes with %d task(s) queued", pending);
    stopping = true;
    pthread_cond_broadcast(&work);
    int n = n_threads;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);
    pthread_mutex_lock(&mu);
    n_threads = 0;
    stopping = false;
    pthread_mutex_unlock(&mu);
}
