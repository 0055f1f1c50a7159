/* stream.h - the rules of live streams (GET /v1/stream, docs/streaming.md):
 * the config message, the client's text messages, audio frame limits and
 * decoding, WebSocket close codes for each error, the billing arithmetic
 * (holds in blocks, charge for the seconds streamed), and the session that
 * drives a model and the ledger for one stream (stream_session.c).
 * The pure parts: any thread. A session: one thread at a time. */
#ifndef VX_STREAM_H
#define VX_STREAM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "../models/model.h"
#include "accounts.h"
#include "app.h"

#define VX_STREAM_MIN_RATE 8000
#define VX_STREAM_MAX_RATE 48000
/* The longest audio frame: 500 ms of the stream's own format. */
#define VX_STREAM_MAX_FRAME_MS 500
/* Largest text message a client may send (a config). */
#define VX_STREAM_MAX_TEXT 4096

typedef enum vx_stream_encoding { VX_STREAM_PCM_S16LE, VX_STREAM_PCM_F32LE } vx_stream_encoding;

typedef struct vx_stream_config {
    char model[32];               /* "transcribe" (default), "segment", "enhance" */
    int sample_rate;              /* 8000..48000, default 16000 */
    vx_stream_encoding encoding;  /* default pcm_s16le */
    bool words;                   /* transcribe: word timings in results; default true */
    bool partial;                 /* transcribe: partial hypotheses; default true */
    json_t *params;               /* the model's own params ("params" object) or NULL; owned */
} vx_stream_config;

void vx_stream_config_default(vx_stream_config *cfg);
void vx_stream_config_clear(vx_stream_config *cfg);
const char *vx_stream_encoding_name(vx_stream_encoding e);
/* Bytes per sample of the encoding. */
int vx_stream_sample_bytes(vx_stream_encoding e);

/* One text message from the client. */
typedef enum vx_stream_msg_kind { VX_STREAM_MSG_CONFIG, VX_STREAM_MSG_EOF, VX_STREAM_MSG_KEEPALIVE } vx_stream_msg_kind;

/* Parses {"config":{...}}, {"eof":1} or {"keepalive":1}. For a config, *cfg
 * (defaults first) gets the values (caller clears it). Errors (all 400-ish):
 * "invalid_message" (not a JSON object, unknown or several keys, over
 * VX_STREAM_MAX_TEXT bytes),
 * "invalid_config" (unknown field, wrong type), "unknown_model",
 * "unsupported_sample_rate", "unsupported_encoding". */
int vx_stream_message_parse(const char *text, size_t len, vx_stream_msg_kind *kind, vx_stream_config *cfg,
                            vx_err *err);

/* Largest binary frame in bytes for this config. */
size_t vx_stream_frame_limit(const vx_stream_config *cfg);
/* Checks one binary frame: "frame_too_large" (over the limit),
 * "invalid_audio_frame" (not a whole number of samples, or empty). */
int vx_stream_frame_check(const vx_stream_config *cfg, size_t len, vx_err *err);
/* Decodes a checked frame to float samples in [-1, 1]; returns the count
 * (len / sample bytes). out must hold that many. */
size_t vx_stream_frame_decode(const vx_stream_config *cfg, const void *data, size_t len, float *out);
/* Encodes float samples to the stream's format (clipped); returns bytes
 * written to out (n * sample bytes). */
size_t vx_stream_frame_encode(const vx_stream_config *cfg, const float *pcm, size_t n, void *out);

/* The WebSocket close code that goes with an error code (docs/streaming.md). */
int vx_stream_close_code(const char *code);

/* ---- billing arithmetic ---- */
typedef struct vx_stream_bill {
    int64_t per_job, per_second;  /* prices accepted at the start */
    int64_t block;                /* what one block of hold covers: price of the hold seconds, without per_job */
    int64_t held;                 /* total held so far */
    double seconds;               /* audio accepted so far */
} vx_stream_bill;

/* Prices and block from hold_s seconds; nothing held yet. */
void vx_stream_bill_init(vx_stream_bill *b, int64_t per_job, int64_t per_second, int hold_s);
/* The first hold: per_job plus one block. */
int64_t vx_stream_bill_first_hold(const vx_stream_bill *b);
/* What the stream costs after `seconds` of audio. */
int64_t vx_stream_bill_price(const vx_stream_bill *b, double seconds);
/* How much more must be held before `more` seconds can be accepted (0 when
 * the hold covers them). */
int64_t vx_stream_bill_shortfall(const vx_stream_bill *b, double more);
/* What to charge now: the price of the seconds accepted, never above held. */
int64_t vx_stream_bill_charge(const vx_stream_bill *b);

/* ---- sessions (stream_session.c) ---- */

/* Where a session sends messages; text and binary are called on the
 * session's thread. wake (optional) may be called from any thread while the
 * session lives: call vx_stream_session_poll soon on the session's thread
 * (results finished in the background). */
typedef struct vx_stream_sink {
    void (*text)(void *user, json_t *msg);                       /* steals msg */
    void (*binary)(void *user, const void *data, size_t len);   /* copied by the callee */
    void (*wake)(void *user);
    void *user;
} vx_stream_sink;

typedef struct vx_stream_session vx_stream_session;

/* A session for `who`, owned by node lease `owner`. Nothing is held yet.
 * Caller frees with vx_stream_session_free. NULL only when out of memory. */
vx_stream_session *vx_stream_session_new(vx_app *app, const vx_principal *who, const char *owner,
                                         const vx_stream_sink *sink);
/* Sets the config (only before audio); steals cfg's contents. */
int vx_stream_session_configure(vx_stream_session *s, vx_stream_config *cfg, vx_err *err);
/* Starts if not started (prices, first hold, job row, model), then accepts
 * one checked frame: holds more when needed, runs the model (results go to
 * the sink), acknowledges. -1 with err ends the stream
 * ("insufficient_credits", "asr_busy", model errors ...). */
int vx_stream_session_audio(vx_stream_session *s, const void *data, size_t len, vx_err *err);
/* After a wake: sends the results that became ready in the background; for
 * a session ending (vx_stream_session_end returned 1), ends it once the
 * model is done. Returns 1 when the session ended now, 0 otherwise, -1 with
 * err when the end failed (the session has ended then too). */
int vx_stream_session_poll(vx_stream_session *s, vx_err *err);
/* Renews the lease and records the seconds so far if due (heartbeat). */
int vx_stream_session_tick(vx_stream_session *s, vx_err *err);
/* Ends the stream: flushes the model (with `flush`, final results go to the
 * sink, then {"final":...}), settles: captures the seconds streamed and
 * records the job's result with `reason` ("eof", "client_closed",
 * "insufficient_credits", "error:<code>", ...). Never waits for the model's
 * background work: returns 1 when the end is under way and completes from
 * vx_stream_session_poll after a wake (a later call with !flush mutes it:
 * the client left). 0 when it ended, -1 with err when settling failed.
 * Idempotent. */
int vx_stream_session_end(vx_stream_session *s, bool flush, const char *reason, vx_err *err);
/* True between an end that returned 1 and its completion. */
bool vx_stream_session_ending(const vx_stream_session *s);
/* True once the first audio frame placed the hold and opened the job. */
bool vx_stream_session_started(const vx_stream_session *s);
void vx_stream_session_free(vx_stream_session *s);

#endif
