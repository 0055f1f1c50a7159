/* pipeline.h - runs one model on one local input file: decode -> model ->
 * encode to a local output file, with progress and cancellation. No
 * database or blob store here: the worker (worker.c) and `voxd run` both
 * call this. Callable from any thread; one call owns all its state. */
#ifndef VX_PIPELINE_H
#define VX_PIPELINE_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "../models/model.h"
#include "../util/err.h"

/* Called at most every ~100 ms with fraction in [0,1). */
typedef void (*vx_progress_fn)(void *user, double fraction);

typedef struct vx_pipeline_request {
    const vx_model *model;
    const json_t *params;           /* validated, defaults filled */
    const char *input_path;
    const char *output_path;        /* where audio output goes (if the model makes any) */
    vx_progress_fn progress;        /* may be NULL */
    void *progress_user;
    const atomic_bool *cancel;      /* may be NULL; when it becomes true the run
                                       stops with VX_E_CANCELED "canceled" */
} vx_pipeline_request;

typedef struct vx_pipeline_result {
    json_t *result;                 /* model's document (owned; json_decref) */
    bool has_output;                /* an audio file was written to output_path */
    char output_format[16];
    int64_t output_bytes;
    double input_duration_s;        /* decoded duration */
} vx_pipeline_result;

/* 0 on success. On failure nothing is left at output_path. */
int vx_pipeline_run(const vx_pipeline_request *req, vx_pipeline_result *res, vx_err *err);
void vx_pipeline_result_clear(vx_pipeline_result *res);

#endif
