/* fuzz_audio_probe.c - libFuzzer target for upload validation
 * (vx_audio_probe in src/audio/probe.c and formats.c): the input is written
 * to a file in /dev/shm and probed with a 30 s duration limit, as an upload
 * is. Inputs over 64 KiB are skipped to keep runs fast. What is accepted
 * must describe real audio within the limit in an accepted container. */
#include <fcntl.h>
#include <libavutil/log.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../../src/audio/audio.h"
#include "../../src/util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT (64 * 1024)
#define MAX_DURATION_S 30.0

static char path[256];

static void remove_file(void) { unlink(path); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    vx_log_set_level(VX_LOG_ERROR);
    av_log_set_level(AV_LOG_QUIET);
    /* scripts/fuzz.sh names a scratch dir it removes even after a crash */
    const char *base = getenv("VOXD_FUZZ_TMP");
    struct stat sb;
    if (!base || !base[0]) base = stat("/dev/shm", &sb) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%.200s/voxd-fuzz-probe-%ld", base, (long)getpid());
    atexit(remove_file);
    return 0;
}

static void check_info(const vx_audio_info *info) {
    if (info->sample_rate <= 0 || info->channels <= 0) abort();
    if (!(info->duration_s > 0 && info->duration_s <= MAX_DURATION_S)) abort();
    if (strnlen(info->format, sizeof info->format) == sizeof info->format) abort();
    if (strnlen(info->codec, sizeof info->codec) == sizeof info->codec) abort();
    size_t i = 0;
    while (vx_audio_input_formats[i] && strcmp(vx_audio_input_formats[i], info->format) != 0) i++;
    if (!vx_audio_input_formats[i]) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_INPUT) return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) abort();
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) abort();
        done += (size_t)n;
    }
    close(fd);
    vx_audio_info info;
    vx_err err = {0};
    if (vx_audio_probe(path, MAX_DURATION_S, &info, &err) == 0) {
        check_info(&info);
    } else if (err.status == VX_OK || err.status == VX_E_INTERNAL || !err.code[0]) {
        /* every refusal of bytes is a 4xx the client can act on */
        abort();
    }
    return 0;
}
