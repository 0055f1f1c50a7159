/* ids.c - time-ordered random ids: "<prefix>_" + 10 base32 chars of the ms
 * timestamp (sorts lexically until the year 36812) + 16 random base32 chars
 * (80 bits), from libsodium. Within one process ids strictly increase, also
 * within one millisecond, so "newest first" by id is exact. Thread-safe. */
#include "ids.h"
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "clock.h"
#include "crypto.h"

static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz"; /* Crockford, lower */

/* Last id handed out, so ids made in the same millisecond still increase:
 * the random part of the previous id plus one (as ULID's monotonic mode). */
static pthread_mutex_t last_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t last_ms, last_hi, last_lo; /* random part: 16 + 64 bits */

void vx_id_new(char out[VX_ID_SIZE], const char *prefix) {
    size_t plen = strlen(prefix);
    if (plen > VX_ID_SIZE - 28) plen = VX_ID_SIZE - 28;
    memcpy(out, prefix, plen);
    char *p = out + plen;
    *p++ = '_';

    uint64_t ms = (uint64_t)vx_now_ms(), hi, lo;
    unsigned char rnd[10];
    vx_random_bytes(rnd, sizeof rnd);
    pthread_mutex_lock(&last_mu);
    if (ms <= last_ms) { /* same ms, or the clock stepped back: continue the sequence */
        ms = last_ms;
        lo = last_lo + 1;
        hi = (last_hi + (lo == 0)) & 0xffff;
    } else {
        hi = (uint64_t)rnd[0] << 8 | rnd[1];
        hi &= 0x7fff; /* leave headroom so increments never wrap */
        memcpy(&lo, rnd + 2, sizeof lo);
    }
    last_ms = ms, last_hi = hi, last_lo = lo;
    pthread_mutex_unlock(&last_mu);

    for (int i = 9; i >= 0; i--) {
        p[i] = alphabet[ms & 31];
        ms >>= 5;
    }
    p += 10;
    /* 80 bits as 16 base32 digits, most significant first */
    for (int i = 15; i >= 0; i--) {
        p[i] = alphabet[lo & 31];
        lo = (lo >> 5) | ((hi & 31) << 59);
        hi >>= 5;
    }
    p[16] = '\0';
}

bool vx_id_valid(const char *s, const char *prefix) {
    if (!s) return false;
    size_t plen = strlen(prefix);
    if (strncmp(s, prefix, plen) != 0 || s[plen] != '_') return false;
    const char *p = s + plen + 1;
    if (strlen(p) != 26) return false;
    for (; *p; p++)
        if (!strchr(alphabet, *p)) return false;
    return true;
}
