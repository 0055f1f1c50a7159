/* stream.c - the server's stream thread: one epoll loop that drives every
 * long-lived answer (deferred requests, SSE channels, WebSockets) without
 * busy polling. Other threads post work through an eventfd (vx_stream_wake);
 * one timerfd fires at the earliest deadline of a binary heap of items.
 * vx_stream_start/stop_phase/free run on the thread that owns the server;
 * vx_stream_wake and the ref calls on any thread; the rest on the stream thread. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include "../util/log.h"
#include "http_int.h"

struct vx_stream {
    vx_http_server *srv;
    pthread_t thread;
    int epfd, efd, tfd;

    pthread_mutex_t mu;            /* wake queue, phase requests */
    pthread_cond_t cond;
    vx_stream_item *wake_head, *wake_tail;
    int phase_wanted;              /* set by vx_stream_stop_phase */
    int phase_done;                /* last phase the thread has applied */
    bool quit;

    atomic_int phase;              /* phase the thread is in (readable anywhere) */

    /* stream thread only */
    vx_stream_item *items;         /* registered */
    vx_stream_item *dead;          /* retired this turn */
    vx_stream_item **heap;
    size_t heap_len, heap_cap;
    uint64_t armed_ns;             /* timerfd setting, 0 = disarmed */
};

/* Sentinel epoll data for the eventfd and the timerfd. */
static char efd_tag, tfd_tag;

uint64_t vx_stream_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void vx_stream_item_init(vx_stream_item *it, vx_stream *s, const vx_stream_item_ops *ops) {
    memset(it, 0, sizeof *it);
    it->ops = ops;
    it->stream = s;
    it->fd = -1;
    atomic_init(&it->refs, 1);
}

void vx_stream_item_ref(vx_stream_item *it) { atomic_fetch_add(&it->refs, 1); }

void vx_stream_item_unref(vx_stream_item *it) {
    if (it && atomic_fetch_sub(&it->refs, 1) == 1) it->ops->destroy(it);
}

int vx_stream_phase(const vx_stream *s) { return atomic_load(&s->phase); }

void vx_stream_wake(vx_stream_item *it) {
    vx_stream *s = it->stream;
    bool was_empty = false;
    pthread_mutex_lock(&s->mu);
    if (!it->wake_queued) {
        it->wake_queued = true;
        vx_stream_item_ref(it);
        it->wake_next = NULL;
        was_empty = s->wake_head == NULL;
        if (s->wake_tail) s->wake_tail->wake_next = it;
        else s->wake_head = it;
        s->wake_tail = it;
    }
    pthread_mutex_unlock(&s->mu);
    if (was_empty) {
        uint64_t one = 1;
        if (write(s->efd, &one, sizeof one) < 0 && errno != EAGAIN) vx_error("http: stream wake failed");
    }
}

/* ---- timer heap (stream thread) ---- */

static void heap_set(vx_stream *s, size_t i, vx_stream_item *it) {
    s->heap[i] = it;
    it->heap_pos = i + 1;
}

static void heap_up(vx_stream *s, size_t i) {
    vx_stream_item *it = s->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (s->heap[parent]->deadline_ns <= it->deadline_ns) break;
        heap_set(s, i, s->heap[parent]);
        i = parent;
    }
    heap_set(s, i, it);
}

static void heap_down(vx_stream *s, size_t i) {
    vx_stream_item *it = s->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->heap_len) break;
        if (c + 1 < s->heap_len && s->heap[c + 1]->deadline_ns < s->heap[c]->deadline_ns) c++;
        if (s->heap[c]->deadline_ns >= it->deadline_ns) break;
        heap_set(s, i, s->heap[c]);
        i = c;
    }
    heap_set(s, i, it);
}

static void heap_remove(vx_stream *s, vx_stream_item *it) {
    if (!it->heap_pos) return;
    size_t i = it->heap_pos - 1;
    it->heap_pos = 0;
    s->heap_len--;
    if (i == s->heap_len) return;
    heap_set(s, i, s->heap[s->heap_len]);
    heap_up(s, i);
    heap_down(s, s->heap[i]->heap_pos - 1);
}

void vx_stream_set_deadline(vx_stream_item *it, uint64_t deadline_ns) {
    vx_stream *s = it->stream;
    if (deadline_ns == 0) {
        heap_remove(s, it);
        it->deadline_ns = 0;
        return;
    }
    if (it->heap_pos) {
        it->deadline_ns = deadline_ns;
        heap_up(s, it->heap_pos - 1);
        heap_down(s, it->heap_pos - 1);
        return;
    }
    if (s->heap_len == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        vx_stream_item **grown = realloc(s->heap, cap * sizeof *grown);
        if (!grown) {
            vx_error("http: stream timer heap: out of memory");
            return;
        }
        s->heap = grown;
        s->heap_cap = cap;
    }
    it->deadline_ns = deadline_ns;
    heap_set(s, s->heap_len++, it);
    heap_up(s, s->heap_len - 1);
}

static void arm_timer(vx_stream *s) {
    uint64_t want = s->heap_len ? s->heap[0]->deadline_ns : 0;
    if (want == s->armed_ns) return;
    struct itimerspec its = {0};
    if (want) {
        its.it_value.tv_sec = (time_t)(want / 1000000000u);
        its.it_value.tv_nsec = (long)(want % 1000000000u);
    }
    if (timerfd_settime(s->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0) s->armed_ns = want;
}

/* ---- registration (stream thread) ---- */

void vx_stream_register(vx_stream_item *it) {
    vx_stream *s = it->stream;
    if (it->registered) return;
    it->registered = true;
    vx_stream_item_ref(it);
    it->prev = NULL;
    it->next = s->items;
    if (s->items) s->items->prev = it;
    s->items = it;
}

int vx_stream_watch(vx_stream_item *it, int fd, uint32_t events) {
    vx_stream *s = it->stream;
    if (events == 0) {
        if (it->in_epoll) epoll_ctl(s->epfd, EPOLL_CTL_DEL, it->fd, NULL);
        it->in_epoll = false;
        return 0;
    }
    struct epoll_event ev = {.events = events, .data.ptr = it};
    if (it->in_epoll && it->fd == fd) return epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev);
    if (it->in_epoll) epoll_ctl(s->epfd, EPOLL_CTL_DEL, it->fd, NULL);
    it->fd = fd;
    it->in_epoll = epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
    return it->in_epoll ? 0 : -1;
}

void vx_stream_retire(vx_stream_item *it) {
    vx_stream *s = it->stream;
    if (!it->registered) return;
    vx_stream_watch(it, -1, 0);
    heap_remove(s, it);
    it->deadline_ns = 0;
    if (it->prev) it->prev->next = it->next;
    else s->items = it->next;
    if (it->next) it->next->prev = it->prev;
    it->prev = it->next = NULL;
    it->registered = false;
    /* Dropped after the epoll batch: a later event of the batch may still
     * name this item. */
    it->dead_next = s->dead;
    s->dead = it;
}

/* ---- the loop ---- */

static void run_wakes(vx_stream *s) {
    uint64_t n;
    if (read(s->efd, &n, sizeof n) < 0 && errno != EAGAIN) vx_error("http: stream eventfd read failed");
    pthread_mutex_lock(&s->mu);
    vx_stream_item *list = s->wake_head;
    s->wake_head = s->wake_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    /* An item stays marked queued until it is taken off this list, so a
     * concurrent wake cannot relink it under our feet; one that comes after
     * queues it again for the next turn. */
    while (list) {
        vx_stream_item *it = list;
        pthread_mutex_lock(&s->mu);
        list = it->wake_next;
        it->wake_queued = false;
        pthread_mutex_unlock(&s->mu);
        it->ops->wake(it);
        vx_stream_item_unref(it);
    }
}

static void run_timers(vx_stream *s) {
    uint64_t n;
    if (read(s->tfd, &n, sizeof n) < 0 && errno != EAGAIN) vx_error("http: stream timerfd read failed");
    s->armed_ns = 0;
    uint64_t now = vx_stream_now_ns();
    while (s->heap_len && s->heap[0]->deadline_ns <= now) {
        vx_stream_item *it = s->heap[0];
        heap_remove(s, it);
        it->deadline_ns = 0;
        it->ops->timer(it, now);
    }
}

static void apply_phase(vx_stream *s, int phase) {
    atomic_store(&s->phase, phase);
    /* stop() may retire the item or register others (at the head): walk a
     * snapshot guarded by references. */
    size_t n = 0;
    for (vx_stream_item *it = s->items; it; it = it->next) n++;
    vx_stream_item **all = n ? malloc(n * sizeof *all) : NULL;
    size_t k = 0;
    for (vx_stream_item *it = s->items; it && all; it = it->next) {
        vx_stream_item_ref(it);
        all[k++] = it;
    }
    for (size_t i = 0; i < k; i++) {
        all[i]->ops->stop(all[i], phase);
        vx_stream_item_unref(all[i]);
    }
    free(all);
}

static void *stream_main(void *arg) {
    vx_stream *s = arg;
    struct epoll_event evs[64];
    for (;;) {
        arm_timer(s);
        int n = epoll_wait(s->epfd, evs, 64, -1);
        if (n < 0 && errno != EINTR) {
            vx_error("http: stream epoll_wait failed");
            break;
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &efd_tag) {
                run_wakes(s);
            } else if (p == &tfd_tag) {
                run_timers(s);
            } else {
                vx_stream_item *it = p;
                if (it->in_epoll) it->ops->io(it, evs[i].events);
            }
        }
        pthread_mutex_lock(&s->mu);
        int wanted = s->phase_wanted;
        bool quit = s->quit && !s->wake_head;
        pthread_mutex_unlock(&s->mu);
        while (s->phase_done < wanted) {
            apply_phase(s, s->phase_done + 1);
            pthread_mutex_lock(&s->mu);
            s->phase_done++;
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->mu);
        }
        while (s->dead) {
            vx_stream_item *it = s->dead;
            s->dead = it->dead_next;
            vx_stream_item_unref(it);
        }
        if (quit) break;
    }
    return NULL;
}

vx_stream *vx_stream_start(vx_http_server *srv, vx_err *err) {
    vx_stream *s = calloc(1, sizeof *s);
    if (!s) {
        vx_err_set(err, VX_E_INTERNAL, "out_of_memory", "out of memory");
        return NULL;
    }
    s->srv = srv;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    struct epoll_event e1 = {.events = EPOLLIN, .data.ptr = &efd_tag};
    struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = &tfd_tag};
    if (s->epfd < 0 || s->efd < 0 || s->tfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->efd, &e1) != 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->tfd, &e2) != 0 || pthread_create(&s->thread, NULL, stream_main, s) != 0) {
        vx_err_set(err, VX_E_INTERNAL, "stream_thread_failed", "could not start the stream thread");
        if (s->epfd >= 0) close(s->epfd);
        if (s->efd >= 0) close(s->efd);
        if (s->tfd >= 0) close(s->tfd);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cond);
        free(s);
        return NULL;
    }
    return s;
}

static void poke(vx_stream *s) {
    uint64_t one = 1;
    if (write(s->efd, &one, sizeof one) < 0 && errno != EAGAIN) vx_error("http: stream wake failed");
}

void vx_stream_stop_phase(vx_stream *s, int phase) {
    pthread_mutex_lock(&s->mu);
    if (phase > s->phase_wanted) s->phase_wanted = phase;
    pthread_mutex_unlock(&s->mu);
    poke(s);
    pthread_mutex_lock(&s->mu);
    while (s->phase_done < phase) pthread_cond_wait(&s->cond, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void vx_stream_free(vx_stream *s) {
    if (!s) return;
    vx_stream_stop_phase(s, 2);
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    pthread_mutex_unlock(&s->mu);
    poke(s);
    pthread_join(s->thread, NULL);
    /* Anything still registered never finished (a bug upstream): drop it. */
    while (s->items) {
        vx_stream_item *it = s->items;
        vx_warn("http: stream item left at exit");
        vx_stream_retire(it);
    }
    while (s->dead) {
        vx_stream_item *it = s->dead;
        s->dead = it->dead_next;
        vx_stream_item_unref(it);
    }
    close(s->epfd);
    close(s->efd);
    close(s->tfd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    free(s->heap);
    free(s);
}
