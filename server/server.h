/* server — the HTTP core of podcap's query API: HTTP/1.1 and HTTP/2 (h2c with prior
 * knowledge, h2 over TLS with ALPN) on a libuv loop, with h2o (Debian's libuv build,
 * 2.2.5) doing all HTTP parsing and framing.  This module knows no endpoint: callers
 * register routes (srv_route, srv_static) and write the answers.
 *
 * Threads
 *   - The caller's thread: srv_open, srv_class, srv_route, srv_static, srv_start,
 *     srv_stop, srv_close.  Routes and classes are registered before srv_start and
 *     never change afterwards.
 *   - The loop thread (srv_start creates it): owns every socket and every h2o object;
 *     admits requests (limits, token, routing), runs SRV_INLINE handlers, sends the
 *     data that other threads queued.  Inline handlers must not block: on the loop
 *     thread srv_stream_write behaves like srv_stream_try_write.
 *   - The worker threads (cfg.workers of them): run every other handler, which may
 *     block (SQLite queries, file reads) and may block in srv_stream_write while the
 *     client reads slowly (back-pressure).
 *   - Any thread holding a reference (see Lifetimes) may call the srv_req_* accessors,
 *     the response and stream functions; they are thread-safe per request.  One
 *     request's bytes arrive in the order of the calls that queued them.
 *   srv_stats may be called from any thread at any time between srv_open and srv_close.
 *
 * Lifetimes and ownership
 *   - A struct srv_req is created by the loop thread when a request is admitted and is
 *     reference counted.  The handler owns one reference for the duration of its call;
 *     when it returns, that reference is dropped and the request is finished: no answer
 *     yet gives a JSON 500; a stream not ended is ended, or cut (srv_stream_abort) if
 *     one of its writes had failed, so a truncated body never looks complete.
 *     Everything a handler reads (method, path, params, query, headers, body) is a copy
 *     owned by the srv_req, valid on any thread as long as the caller holds a reference.
 *   - srv_req_detach (inside the handler only) moves the handler's reference to the
 *     caller: returning from the handler then neither finishes nor frees the request.
 *     The new owner must call srv_req_release exactly once, from any thread, when it
 *     is done (typically after srv_stream_end); release finishes the request like a
 *     handler return.  Long-lived streams (live packets, server-sent events) use this
 *     so that they do not hold a worker thread.
 *   - Other threads that only write (a capture thread feeding a live stream) take
 *     their own reference with srv_req_ref and drop it with srv_req_unref; those
 *     neither end nor finish the response.  srv_req_ref may only be called by a
 *     thread that already holds a reference (or under the lock that protects the
 *     owner's reference).
 *   - The client side may vanish at any time (disconnect, HTTP/2 RST_STREAM, write
 *     timeout, srv_stop); the srv_req stays valid for its holders, writes start
 *     failing and srv_req_closed turns true.  srv_req_on_close registers a callback for
 *     that moment.  Over HTTP/1.1 h2o does not read a connection while it answers on
 *     it, so a client that leaves an idle stream is noticed at the next write only:
 *     long-lived streams should write something (e.g. an SSE comment) every few seconds.
 *   - All bodies and strings passed in are copied before the call returns, except
 *     srv_respond_take (takes a malloc()ed body) and srv_static (keeps pointers to
 *     the asset table, which must outlive the server — embed.py makes them static).
 *   - srv_close blocks until every detached request has been released.
 *
 * Security model: the default listen address is 127.0.0.1:7070.  srv_open refuses a
 * listen address that is not loopback unless a bearer token is configured.  With a
 * token, every route except those marked SRV_PUBLIC (and the embedded static assets,
 * which carry no captured data) needs "Authorization: Bearer <token>"; the comparison
 * is of SHA-256 digests with CRYPTO_memcmp, so it takes the same time whatever the
 * token's content and length.  TLS (cert + key files) is optional.  No CORS headers.
 *
 * Errors: functions return 0 (or a count) or a negative errno.  Every error answer
 * the server makes itself is a small JSON body {"error": "...", "status": N}.
 */
#ifndef PODCAP_SERVER_H
#define PODCAP_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct srv;
struct srv_req;

/* Every field has a default used when it is 0 / NULL: `struct srv_config c = {0};` is a
 * valid loopback-only configuration. */
struct srv_config {
	const char *listen;           /* "HOST:PORT", "[V6]:PORT"; default "127.0.0.1:7070";
				       * port 0 picks a free port (srv_port tells which) */
	const char *token_file;       /* bearer token file (first line, >= 16 bytes); required
				       * when listen is not a loopback address */
	const char *tls_cert_file;    /* PEM certificate chain; TLS when set (needs tls_key_file) */
	const char *tls_key_file;     /* PEM private key */
	unsigned workers;             /* worker threads; default 4 */
	unsigned max_connections;     /* concurrent connections; default 256; beyond: closed at accept */
	unsigned max_queued;          /* requests waiting for a worker; default 256; beyond: 503 */
	size_t max_header_bytes;      /* all request header names + values; default 16 KiB; 431 */
	size_t max_url_bytes;         /* path + query as sent; default 8 KiB; 414 */
	size_t max_body_bytes;        /* request body; default 64 KiB; 413 (HTTP/2: RST_STREAM) */
	unsigned max_query_params;    /* query parameters; default 64; 400 */
	unsigned request_timeout_ms;  /* a connection without a request in progress (connecting,
				       * sending headers/body, idle keep-alive) is closed after
				       * this; default 10000 (slowloris defence) */
	unsigned write_timeout_ms;    /* a response whose client reads nothing for this long is
				       * cut (its connection closed); default 60000 */
	size_t stream_queue_bytes;    /* per-request queue of streamed bytes; default 256 KiB */
	unsigned stop_grace_ms;       /* srv_stop waits this long for responses to end, then
				       * closes the remaining connections; default 5000 */
};

/* Handler: runs on a worker thread (or on the loop thread for SRV_INLINE routes).  It
 * answers with srv_respond* or srv_stream_*, or detaches the request. */
typedef void (*srv_handler_fn)(struct srv_req *req, void *arg);

enum {
	SRV_INLINE = 1u << 0, /* run on the loop thread: cheap handlers that never block */
	SRV_PUBLIC = 1u << 1, /* no token needed (e.g. /healthz) */
};

struct srv_route_opts {
	unsigned flags;       /* SRV_INLINE, SRV_PUBLIC */
	int limit_class;      /* 0 or an id from srv_class: concurrency limit shared by routes */
};

/* Embedded file (server/embed.py writes arrays of these). */
struct srv_asset {
	const char *path;            /* relative to the URL prefix, e.g. "index.html", "js/app.js" */
	const unsigned char *data;
	size_t len;
	const char *content_type;    /* e.g. "text/html; charset=utf-8" */
	const char *etag;            /* strong ETag with its quotes, e.g. "\"3f2a...\"" */
};

/* Counters since srv_open; a snapshot made of relaxed atomic reads. */
struct srv_stats {
	uint64_t connections_accepted;
	uint64_t connections_active;
	uint64_t connections_rejected;   /* over max_connections, closed at accept */
	uint64_t requests;               /* requests that reached the server's handler */
	uint64_t requests_active;
	uint64_t responses[6];           /* by status class: [1]..[5] = 1xx..5xx, [0] = other */
	uint64_t bytes_in;               /* request bodies */
	uint64_t bytes_out;              /* response bodies */
	uint64_t rejected_url;           /* 414 */
	uint64_t rejected_header;        /* 431 */
	uint64_t rejected_body;          /* 413 */
	uint64_t rejected_auth;          /* 401 */
	uint64_t rejected_busy;          /* 429: a limit class is full */
	uint64_t rejected_overload;      /* 503: the worker queue is full, or stopping */
	uint64_t timeouts_request;       /* connections closed by request_timeout_ms */
	uint64_t timeouts_write;         /* responses cut by write_timeout_ms */
	uint64_t streams_cut;            /* responses that ended before their last byte was sent
					  * (client went away, stall, srv_stop) */
	uint64_t stream_again;           /* srv_stream_try_write calls answered -EAGAIN */
};

/* --- server lifecycle (caller's thread) --- */

/* Validates cfg, reads the token file, loads TLS files, binds and listens.  On error
 * returns a negative errno and writes a one-line message into err (errlen bytes);
 * e.g. -EADDRINUSE "listen 127.0.0.1:7070: address already in use", -EPERM for a
 * non-loopback address without a token. */
int srv_open(const struct srv_config *cfg, struct srv **out, char *err, size_t errlen);
/* Any thread: 0 if addr is a listen address srv_open would take (HOST:PORT,
 * [IPV6]:PORT), else -EINVAL and its message in err; binds nothing.  For
 * command lines, to refuse a bad --listen as a usage error before any work. */
int srv_listen_check(const char *addr, char *err, size_t errlen);

/* Declares a concurrency class (e.g. "export"): at most max_concurrent requests of its
 * routes are in progress at once (from admission to the response's last byte); one
 * more gets 429 with Retry-After: retry_after_s.  Returns the class id (> 0). */
int srv_class(struct srv *srv, const char *name, unsigned max_concurrent, unsigned retry_after_s);

/* Registers a handler for method ("GET", "POST", ...) and a path pattern: literal
 * segments, "{name}" segments (one non-empty segment; srv_req_param gives it decoded),
 * and a last segment "*" matching the rest (srv_req_param(req, "*")).  A GET route
 * also answers HEAD (without a body).  When several routes match, the one with the
 * most literal segments wins, and on a tie the one without "*".  A path no route
 * matches: 404; a path that matches with another method: 405 with Allow.  opts may be
 * NULL (worker thread, token needed, no class).  -EINVAL for a bad pattern, -EBUSY
 * after srv_start. */
int srv_route(struct srv *srv, const char *method, const char *pattern,
	      srv_handler_fn fn, void *arg, const struct srv_route_opts *opts);

/* Serves n embedded assets under url_prefix ("/" or e.g. "/ui"): GET and HEAD, with
 * Content-Type, ETag, Cache-Control: no-cache (the browser revalidates; If-None-Match
 * gets 304) and index.html for the prefix itself.  Runs inline; needs no token. */
int srv_static(struct srv *srv, const char *url_prefix, const struct srv_asset *assets, size_t n);

/* Starts the worker threads and the loop thread; returns at once. */
int srv_start(struct srv *srv);

/* Graceful stop, blocking: stops accepting (HTTP/2: GOAWAY), closes idle connections,
 * makes stream writes fail with -ESHUTDOWN (handlers then return and their streams are
 * cut), ends detached streams cleanly after what they have queued, lets whole answers
 * in progress (and handlers still running) finish for up to stop_grace_ms, closes what
 * is left, joins the loop and worker threads.  Requests still waiting for a worker get
 * 503.  Not from the loop or a worker thread (-EDEADLK).  Idempotent. */
int srv_stop(struct srv *srv);

/* Stops if needed, waits for detached requests to be released, frees everything. */
void srv_close(struct srv *srv);

/* Bound TCP port (useful with port 0). */
int srv_port(const struct srv *srv);
void srv_stats(const struct srv *srv, struct srv_stats *out);

/* --- request (any thread holding a reference) --- */

const char *srv_req_method(const struct srv_req *req);       /* "GET" (HEAD is reported as HEAD) */
const char *srv_req_path(const struct srv_req *req);         /* path as sent, without the query */
const char *srv_req_peer(const struct srv_req *req);         /* "1.2.3.4:5678" or "[::1]:5678" */
int srv_req_http_version(const struct srv_req *req);         /* 0x100, 0x101, 0x200 */
/* Path parameter {name} (or "*"), percent-decoded; NULL if the pattern has none. */
const char *srv_req_param(const struct srv_req *req, const char *name);
/* Query parameters, percent-decoded ('+' is a space); malformed escapes were refused
 * with 400 before the handler ran.  Values are NUL-terminated and may also contain
 * NUL bytes (%00): *len (may be NULL) gives the full length. */
const char *srv_req_query(const struct srv_req *req, const char *name, size_t *len);
/* All values of a repeated parameter, in order: fills up to max, returns the count. */
size_t srv_req_query_all(const struct srv_req *req, const char *name,
			 const char **values, size_t max);
/* Iterates all parameters: 0 <= i < srv_req_query_count. */
size_t srv_req_query_count(const struct srv_req *req);
int srv_req_query_at(const struct srv_req *req, size_t i, const char **name,
		     const char **value, size_t *len);
/* Request header by name (case-insensitive), first occurrence; "host" is included. */
const char *srv_req_header(const struct srv_req *req, const char *name);
const void *srv_req_body(const struct srv_req *req, size_t *len);

/* --- answering (any thread holding a reference, once per request) --- */

/* Adds a response header (before srv_respond* / srv_stream_begin).  -EINVAL for a name
 * that is not a token or a value with CR or LF; -EALREADY after the answer began.  A
 * Cache-Control header replaces the default "no-store". */
int srv_add_header(struct srv_req *req, const char *name, const char *value);
/* Whole answer with Content-Length; body is copied.  status 200-599 (else -EINVAL);
 * content_type NULL sends none.  -EALREADY if already answered.  Returns 0 even when
 * the client has gone (the answer is dropped).  Every answer also carries
 * "Cache-Control: no-store" (unless set) and "X-Content-Type-Options: nosniff". */
int srv_respond(struct srv_req *req, int status, const char *content_type,
		const void *body, size_t len);
/* Same, taking ownership of a malloc()ed body (freed with free(), also on error). */
int srv_respond_take(struct srv_req *req, int status, const char *content_type,
		     void *body, size_t len);
/* JSON error answer {"error": "<message>", "status": N}. */
int srv_respond_error(struct srv_req *req, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int srv_respond_verror(struct srv_req *req, int status, const char *fmt, va_list ap);

/* Streamed answer of unknown length: chunked on HTTP/1.1, DATA frames on HTTP/2.
 * srv_stream_write copies buf into the request's bounded queue; while the queue is
 * full it blocks (back-pressure: the loop thread drains it as fast as h2o can send).
 * Returns 0 once queued, -EPIPE when the client went away, -ESHUTDOWN when the server
 * is stopping, -ETIMEDOUT when the response was cut for a stalled client, -EINVAL
 * before srv_stream_begin or after srv_stream_end.  On the loop thread it never blocks
 * (like srv_stream_try_write).
 * srv_stream_try_write never blocks: -EAGAIN when buf does not fit in the queue now
 * (the producer counts a drop), -EMSGSIZE when len exceeds the queue size.
 * srv_stream_end sends what is queued, then ends the answer normally;
 * srv_stream_abort discards what is queued and cuts the answer so the client can tell
 * it is incomplete (HTTP/1.1: connection closed without the last chunk; HTTP/2:
 * RST_STREAM).  For HEAD requests the head goes out at srv_stream_begin and writes
 * return -EPIPE.  A write after the client left returns the reason (-EPIPE, ...) even
 * if the stream was ended meanwhile. */
int srv_stream_begin(struct srv_req *req, int status, const char *content_type);
int srv_stream_write(struct srv_req *req, const void *buf, size_t len);
int srv_stream_try_write(struct srv_req *req, const void *buf, size_t len);
int srv_stream_end(struct srv_req *req);
int srv_stream_abort(struct srv_req *req);

/* True once the client went away or the answer was cut (stall, srv_stop). */
bool srv_req_closed(const struct srv_req *req);
/* cb(req, arg) runs once, on the loop thread, when h2o is done with the request: the
 * answer was sent, or the client side is gone for good.  If that already happened, cb
 * runs at once on the calling thread.  It must not block; it may call srv_req_release
 * or srv_req_unref.  Register once: before the handler returns, or from the owner of a
 * detached request. */
void srv_req_on_close(struct srv_req *req, void (*cb)(struct srv_req *req, void *arg),
		      void *arg);

/* See "Lifetimes" above. */
void srv_req_detach(struct srv_req *req);
void srv_req_release(struct srv_req *req);
void srv_req_ref(struct srv_req *req);
void srv_req_unref(struct srv_req *req);

#endif
