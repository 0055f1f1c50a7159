/* fuzz_id.c - libFuzzer target for the id shape check (vx_id_valid in
 * src/util/ids.c), which guards every {id} taken from a URL. The first byte
 * picks the prefix, the rest (to its first NUL) is the candidate. Accepted
 * ids must be prefix "_" + 26 lower-case Crockford base32 characters. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/util/ids.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const prefixes[] = {"job", "usr", "key", "led", "req", ""};
static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 256) return 0;
    const char *prefix = prefixes[data[0] % (sizeof prefixes / sizeof prefixes[0])];
    char *s = malloc(size);
    if (!s) return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    if (vx_id_valid(s, prefix)) {
        size_t plen = strlen(prefix);
        if (strlen(s) != plen + 27 || strncmp(s, prefix, plen) != 0 || s[plen] != '_') abort();
        for (const char *p = s + plen + 1; *p; p++)
            if (!strchr(alphabet, *p)) abort();
    }
    if (vx_id_valid(NULL, prefix)) abort();
    free(s);
    return 0;
}
