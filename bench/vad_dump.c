/* vad_dump.c - prints the voice activity detector's per-frame features for
 * audio files (tab-separated, one line per 10 ms frame), for bench/vad_fit.py
 * (fitting the feature weights) and for inspection. Built by that script
 * against a voxd build's libvoxd.a; not part of voxd itself.
 *   vad_dump FILE...   -> path index probability raw power_db noise_db snr_db flatness llr voicing
 *                         modulation ltsv voicing_lt llr_lt voicing_rel llr_rel */
#include <stdio.h>
#include <stdlib.h>
#include "audio/audio.h"
#include "audio/vad.h"

static int print_frame(void *user, const vx_vad_frame *f, vx_err *err) {
    printf("%s\t%lld\t%.4f\t%.4f\t%.2f\t%.2f\t%.2f\t%.4f\t%.4f\t%.4f\t%.3f\t%.5f\t%.4f\t%.4f\t%.4f\t%.4f\n", (const char *)user, (long long)f->index,
           f->probability, f->raw, f->power_db, f->noise_db, f->snr_db, f->flatness, f->llr, f->voicing, f->modulation,
           f->ltsv, f->voicing_lt, f->llr_lt, f->voicing_rel, f->llr_rel);
    return 0;
}

int main(int argc, char **argv) {
    float buf[4096];
    for (int i = 1; i < argc; i++) {
        vx_err err = {0};
        vx_decoder *d = vx_decoder_open(argv[i], 16000, 1, &err);
        vx_vad *v = d ? vx_vad_new(16000, &err) : NULL;
        if (!v) {
            fprintf(stderr, "%s: %s\n", argv[i], err.message);
            vx_decoder_close(d);
            return 1;
        }
        long n;
        while ((n = vx_decoder_read(d, buf, 4096, &err)) > 0) vx_vad_process(v, buf, (size_t)n, print_frame, argv[i], &err);
        vx_vad_flush(v, print_frame, argv[i], &err);
        vx_vad_free(v);
        vx_decoder_close(d);
    }
    return 0;
}
