/* Private to server/: the server's and the request's structures, shared by server.c
 * (loop, connections, admission), req.c (requests, answers, streams, workers) and
 * static.c.  Field groups say which thread may touch them. */
#ifndef PODCAP_SRV_CORE_H
#define PODCAP_SRV_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <h2o.h>
#include <uv.h>

#include "server.h"
#include "srv_internal.h"

#define SRV_IOV_MAX 64          /* chunks handed to h2o in one send */
#define SRV_CHUNK_MIN 16384     /* small writes are packed into chunks of this size */
#define SRV_SWEEP_MS 250        /* timeout sweep period */

struct srv_class_def {
	char *name;
	unsigned max;
	unsigned retry_after_s;
	unsigned active;        /* loop thread */
};

/* One srv_static call: the handler's argument, owned by the server. */
struct srv_static_set {
	struct srv_static_set *next;
	const struct srv_asset *assets;
	size_t n;
	char *prefix;                   /* without the trailing '/', "" for "/" */
};

struct srv_route_def {
	char *method;
	struct srv_pattern pat;
	srv_handler_fn fn;
	void *arg;
	unsigned flags;
	int limit_class;
	unsigned score;                 /* precedence: literal segments, then no "*" */
};

/* One accepted TCP connection.  h2o owns the h2o_socket_t and closes the uv handle;
 * its close callback (on_conn_close) gives us back the tcp member, hence first. */
struct srv_conn {
	uv_tcp_t tcp;
	struct srv *srv;
	h2o_socket_t *sock;
	struct srv_conn *next, *prev;   /* srv->conns */
	struct srv_conn *hnext;         /* hash chain keyed by sock */
	unsigned inflight;              /* requests admitted and not yet disposed */
	uint64_t deadline;              /* uv_now() ms to close by when idle; 0 = none */
	bool shut;                      /* shutdown(2) already called */
	bool write_stuck;               /* seen by the last sweep: see rescue_stuck_write */
};

struct srv_chunk {
	struct srv_chunk *next;
	size_t len, cap;
	char data[];
};

struct srv_hdr {
	struct srv_hdr *next;
	char *name;                     /* lower case */
	char *value;
};

enum srv_mode { SRV_MODE_NONE, SRV_MODE_WHOLE, SRV_MODE_STREAM };

/* Loop thread, inline handlers: true (and counted as rejected_auth) when the
 * server has a token and req does not carry it, for a public route that must not
 * tell a stranger which paths exist. */
bool srv__auth_missing(struct srv_req *req);

struct srv_req {
	struct srv *srv;
	atomic_uint refs;
	pthread_mutex_t mu;
	pthread_cond_t cv;              /* writers wait here for room or for the end */

	/* Set at admission, immutable afterwards: any thread. */
	const struct srv_route_def *route;
	const char *method, *path, *peer;
	int version;
	bool is_head;
	struct srv_kv *params;          /* names point into route->pat */
	unsigned nparams;
	struct srv_kv *query;
	size_t nquery;
	struct srv_kv *headers;
	size_t nheaders;
	const char *body;
	size_t body_len;

	/* Under mu. */
	enum srv_mode mode;
	int status;
	char *ctype;
	struct srv_hdr *hdrs, *hdrs_tail;
	char *out;                      /* whole answer's body */
	size_t out_len;
	bool out_static;                /* out points at static memory: not freed */
	struct srv_chunk *qhead, *qtail;/* queued stream bytes, not yet given to h2o */
	size_t queued;
	bool ended, aborted, write_failed, detached;
	bool waiting;                   /* the loop found the queue empty: wake it on data */
	int closed_err;                 /* 0, or why writes fail: -EPIPE, -ESHUTDOWN, -ETIMEDOUT */
	void (*on_close)(struct srv_req *, void *);
	void *on_close_arg;
	bool on_close_fired;

	/* Loop thread only. */
	h2o_req_t *h2o;                 /* NULL once h2o disposed the request */
	struct srv_conn *conn;
	h2o_generator_t gen;
	bool started, busy, final_sent, in_pump, repump, in_inline, counted_class, whole;
	size_t out_sent;                /* bytes of out given to h2o */
	struct srv_chunk *inflight;     /* given to h2o, freed at proceed */
	h2o_iovec_t iov[SRV_IOV_MAX];
	uint64_t busy_since;
	struct srv_req *anext, *aprev;  /* srv->active */

	/* Under srv->pend_mu. */
	bool scheduled;
	struct srv_req *pnext;

	/* Under srv->work_mu. */
	struct srv_req *wnext;

	char arena[];                   /* the request's copied strings and arrays */
};

struct srv_counters {
	_Atomic uint64_t connections_accepted, connections_active, connections_rejected;
	_Atomic uint64_t requests, requests_active, responses[6], bytes_in, bytes_out;
	_Atomic uint64_t rejected_url, rejected_header, rejected_body, rejected_auth;
	_Atomic uint64_t rejected_busy, rejected_overload, timeouts_request, timeouts_write;
	_Atomic uint64_t streams_cut, stream_again;
};

#define SRV_COUNT(srv, field) atomic_fetch_add_explicit(&(srv)->counters.field, 1, memory_order_relaxed)
#define SRV_ADD(srv, field, n) \
	atomic_fetch_add_explicit(&(srv)->counters.field, (n), memory_order_relaxed)
#define SRV_SUB(srv, field, n) \
	atomic_fetch_sub_explicit(&(srv)->counters.field, (n), memory_order_relaxed)

struct srv {
	struct srv_config cfg;          /* defaults filled in */
	char listen_str[80];
	int port;
	unsigned char token_digest[32];
	bool has_token;
	SSL_CTX *ssl;

	/* Registered before srv_start, read-only afterwards. */
	struct srv_route_def *routes;
	size_t nroutes, routes_cap;
	struct srv_class_def *classes;  /* id i is classes[i - 1] */
	size_t nclasses;
	struct srv_static_set *statics;

	/* libuv + h2o: loop thread once started (the caller's thread before). */
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t wake;
	uv_timer_t sweep, grace;
	bool listener_open, loop_inited;
	h2o_globalconf_t h2oconf;
	h2o_context_t ctx;
	h2o_accept_ctx_t accept_ctx;
	bool h2o_inited;
	pthread_t loop_tid;
	pthread_mutex_t ctl_mu;         /* serialises srv_stop */
	bool started, stopped;

	/* Loop thread only. */
	struct srv_conn *conns;
	unsigned nconns;
	struct srv_conn **chash;
	size_t chash_mask;
	struct srv_req *active;
	bool stopping;
	char *scratch;                  /* path splitting buffer */
	size_t scratch_len;

	/* Cross-thread wake-ups of the loop. */
	pthread_mutex_t pend_mu;
	struct srv_req *pend_head, *pend_tail;
	bool loop_running;              /* the wake handle may be signalled */
	bool stop_requested;
	atomic_bool stop_flag;          /* read by workers */

	/* Worker pool. */
	pthread_mutex_t work_mu;
	pthread_cond_t work_cv;
	struct srv_req *work_head, *work_tail;
	unsigned work_len;
	bool work_quit;
	pthread_t *workers;
	unsigned nworkers;

	/* Live srv_req objects: srv_close waits for zero. */
	pthread_mutex_t live_mu;
	pthread_cond_t live_cv;
	unsigned long live;

	struct srv_counters counters;
};

/* req.c */
struct srv_req *srv_req_new(struct srv *srv, h2o_req_t *h2o, const struct srv_route_def *route,
			    const char **pvals, const size_t *pvlen, const char *query, size_t qlen,
			    int *http_status, char *msg, size_t msglen);
void srv_req_admit(struct srv_req *r, struct srv_conn *conn);
void srv_req_pump(struct srv_req *r);
void srv_req_cut(struct srv_req *r, int err);
void srv_req_shutdown(struct srv_req *r);
void srv_req_handler_done(struct srv_req *r, bool on_loop);
void srv_req_schedule(struct srv_req *r);
int srv_respond_static(struct srv_req *r, int status, const char *ctype, const void *body, size_t len);
int srv_workers_start(struct srv *srv);
void srv_workers_stop(struct srv *srv);
void srv_work_push(struct srv *srv, struct srv_req *r);

/* server.c */
void srv_conn_request_done(struct srv *srv, struct srv_conn *conn);
void srv_conn_shut(struct srv_conn *conn);
void srv_on_wake(uv_async_t *h);

/* static.c */
void srv_static_free(struct srv *srv);

#endif
