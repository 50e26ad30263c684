/* api internals: shared by api.c (lifecycle, handles, the small endpoints),
 * flows.c (flows, flow detail, pcap, top), stats.c (stats, interfaces, fields,
 * metrics) and metrics.c (the metrics sink).  Nothing here leaves the module. */
#ifndef PODCAP_API_INTERNAL_H
#define PODCAP_API_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "engine.h"
#include "query.h"

struct fdb;
struct pks;
struct strm_hub;
struct api_stream;

/* ---- a growable text buffer for answers (json.c) ---- */

struct jbuf {
	char *p;
	size_t len, cap;
	size_t max;   /* refuse to grow beyond (0 = 64 MiB) */
	int err;      /* sticky: -ENOMEM or -E2BIG; later appends do nothing */
};
void jb_free(struct jbuf *b);
void jb_raw(struct jbuf *b, const void *s, size_t n);
void jb_str(struct jbuf *b, const char *s);                /* appended as is */
void jb_fmt(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string: quotes, escapes, invalid UTF-8 bytes as U+FFFD; NULL -> null. */
void jb_jstr(struct jbuf *b, const char *s);
void jb_jstrn(struct jbuf *b, const char *s, size_t n);
/* "name": (with a comma before it unless first) */
void jb_key(struct jbuf *b, int *first, const char *name);
void jb_kv_u64(struct jbuf *b, int *first, const char *name, uint64_t v);
void jb_kv_i64(struct jbuf *b, int *first, const char *name, int64_t v);
void jb_kv_str(struct jbuf *b, int *first, const char *name, const char *v);
void jb_kv_bool(struct jbuf *b, int *first, const char *name, bool v);
void jb_kv_double(struct jbuf *b, int *first, const char *name, double v);
/* q_write_fn into a jbuf */
int jb_write(void *arg, const void *buf, size_t len);

/* ---- the metrics sink (metrics.c) ---- */

#define API_RTT_BUCKETS 14
#define API_MAX_APPS 512

struct api_app_count {
	char name[64];
	uint64_t flows, packets, bytes;
};

struct api_metrics {
	pthread_mutex_t lock;
	uint64_t records_final;
	uint64_t tcp_flows, tcp_packets, tcp_retrans;
	uint64_t rtt_count, rtt_buckets[API_RTT_BUCKETS]; /* cumulative at output, not here */
	double rtt_sum_s;
	size_t napps;
	struct api_app_count apps[API_MAX_APPS];
	uint64_t apps_overflow; /* final records whose app found no slot (counted as "other") */
};
extern const double api_rtt_bounds_s[API_RTT_BUCKETS];
void api_metrics_init(struct api_metrics *m);
void api_metrics_destroy(struct api_metrics *m);
extern const struct eng_sink_ops api_metrics_ops;

/* ---- the API ---- */

/* One worker thread's read-only handles. */
struct api_handles {
	struct fdb *db;
	struct pks *store;
	int store_state;         /* 0 not tried, 1 open, -errno failed (retried after store_retry_us) */
	uint64_t store_retry_us;
};

#define API_MAX_ROUTES 24
struct api_route {
	srv_handler_fn fn;
	struct api *a;
	/* the query parameters it takes, "a,b,c" (NULL: any); those in repeat may
	 * be given more than once */
	const char *params, *repeat;
};

struct api {
	struct api_config cfg;
	struct api_route routes[API_MAX_ROUTES]; /* route(): the handlers behind params_checked */
	unsigned nroutes;
	char *db_path, *store_dir, *mode;
	struct srv *srv;
	pthread_key_t key;
	int key_ok;
	uint64_t start_us;       /* wall clock at api_open */
	int export_class;
	/* pcap answers (atomic): answered, limited (the limit left matching flows
	 * out: X-Podcap-Complete: false), damaged (packets the store could not
	 * read: the answer was cut), failed (an error, as JSON or a cut) */
	uint64_t exports, exports_limited, exports_damaged, exports_failed;
	/* ... missing: none of the packets asked for is still stored (410);
	 * partial: some were not (retention), the rest was sent */
	uint64_t exports_missing, exports_partial;

	/* agent parts (api_attach), read by handlers */
	struct engine *eng;
	struct fdb_sink *fdbs;
	struct pks_sink *pkss;
	struct kube *kube;       /* names' source, for stats (api_attach_kube) */
	struct kube_nat *nat;    /* Services after DNAT (conntrack), for stats; may be NULL */
	pthread_mutex_t cap_lock;
	int have_capture;
	char backend[16];
	struct api_capture cap;  /* cap.ifaces points to ifaces */
	struct api_iface *ifaces;
	size_t nifaces, ifaces_cap;

	/* live streams (stream.c): the agent's hub, and the flow filter poller */
	struct strm_hub *hub;
	int stream_class;
	pthread_mutex_t stream_lock;
	pthread_cond_t stream_cond;
	struct api_stream *stream_list;
	pthread_t poller;
	int poller_started, stream_stop;

	struct api_metrics metrics;
	int metrics_used;        /* api_metrics_sink was called */

	/* The database's numbers for /api/v1/stats, at most API_DB_CACHE_US old:
	 * stats are polled by pages and scraped, and four SQLite statements per
	 * answer halved the rate wrk measured (10k/s against 20k). */
	pthread_mutex_t db_cache_lock;
	uint64_t db_cache_us;    /* when taken; 0 = never */
	uint64_t db_max_id;
	int64_t db_oldest_us, db_newest_us, db_retained_us;
};
#define API_DB_CACHE_US 1000000u

/* The calling worker's handles (opened on first use); NULL after answering the
 * request with an error. */
struct fdb *api_db(struct api *a, struct srv_req *req);
/* The packet store, or NULL after answering 409 (no store) or 503. */
struct pks *api_store(struct api *a, struct srv_req *req);
/* The same without answering: NULL when there is none (yet). */
struct pks *api_store_quiet(struct api *a, struct fdb *db);

/* The database's max id, oldest and newest last packet, and retained-until,
 * at most API_DB_CACHE_US old (db may be NULL only while the cache is fresh). */
int api_db_numbers(struct api *a, struct fdb *db, uint64_t *max_id, int64_t *oldest, int64_t *newest,
		   int64_t *retained);

/* Wall clock in µs. */
uint64_t api_now_us(void);

/* Answers a q_error as JSON (400 with position for filter errors; 503 for a
 * query stopped by the time limit; 500 otherwise). */
void api_query_error(struct srv_req *req, const struct q_error *qe, const char *what);

/* Parses the common parameters filter, from, to into a filter (caller frees) and
 * a range; answers 400 and returns -1 on a bad one. */
int api_common_params(struct srv_req *req, struct q_filter **filter, struct q_range *range);

/* The completeness of an answer about range: appends "complete", "oldest_us" and
 * "incomplete_because" to a JSON object being written. */
void api_completeness(struct api *a, struct fdb *db, const struct q_range *range, struct jbuf *b,
		      int *first, bool *complete);

/* handlers */
void api_h_flows(struct srv_req *req, void *arg);
void api_h_flow(struct srv_req *req, void *arg);
void api_h_flow_pcap(struct srv_req *req, void *arg);
void api_h_pcap(struct srv_req *req, void *arg);
void api_h_top(struct srv_req *req, void *arg);
void api_h_stats(struct srv_req *req, void *arg);
void api_h_interfaces(struct srv_req *req, void *arg);
void api_h_fields(struct srv_req *req, void *arg);
void api_h_metrics(struct srv_req *req, void *arg);
void api_h_stream(struct srv_req *req, void *arg);
/* Stops the stream filter poller (stream.c); before the server's close. */
void api_stream_stop(struct api *a);

#endif
