/* ids.c - time-ordered random ids: "<prefix>_" + 10 base32 chars of the ms
 * timestamp (sorts lexically until the year 36812) + 16 random base32 chars
 * (80 bits). Randomness from libsodium (vx_random_bytes). */
#include "ids.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "clock.h"
#include "crypto.h"

static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz"; /* Crockford, lower */

void vx_id_new(char out[VX_ID_SIZE], const char *prefix) {
    size_t plen = strlen(prefix);
    if (plen > VX_ID_SIZE - 28) plen = VX_ID_SIZE - 28;
    memcpy(out, prefix, plen);
    char *p = out + plen;
    *p++ = '_';
    uint64_t ms = (uint64_t)vx_now_ms();
    for (int i = 9; i >= 0; i--) {
        p[i] = alphabet[ms & 31];
        ms >>= 5;
    }
    p += 10;
    unsigned char rnd[16];
    vx_random_bytes(rnd, sizeof rnd);
    for (int i = 0; i < 16; i++) p[i] = alphabet[rnd[i] & 31];
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
