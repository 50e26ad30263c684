/* query — questions about flows: the filter language (text → AST → SQL with bound
 * parameters), and what is built on it: listings of the matching flows in four
 * formats, and the packets of the matching flows as one pcapng stream.  `podcap
 * flows`, `podcap export` and the HTTP API all go through here, so they agree.
 *
 * One grammar for `podcap flows FILTER`, the HTTP API and the page (docs/filters.md
 * is the user's reference).  A filter such as
 *     app == TLS and host == "*.example.com" and not dport in [443, 8443]
 * is parsed by q_parse() into an immutable AST (struct q_filter), which
 * q_compile() turns into an SQL boolean expression over the flow table plus an
 * array of typed parameters.  Only constant fragments and column names from the
 * field table (query/fields.c) ever go into the SQL text; every value the user
 * typed is a parameter.  q_filter_text() prints the normalised filter.
 *
 * The SQL refers to `flows` as `f`:   SELECT ... FROM flows f WHERE <where> ...
 * Tests on the observation point (iface, direction) use a sub-select of their own
 * on observation_points, so the WHERE text needs no join; a caller that joins
 * observation_points for its output must not alias it `op`.  Compiled filters that
 * contain a CIDR off an octet (IPv4) or group (IPv6) boundary call the SQL
 * function ip_in_net(addr, net, bits), which the flow database registers on
 * every connection (it knows how addresses are stored).
 *
 * Memory: every object returned is owned by the caller and freed with its _free
 * function (q_filter_free, q_sql_free, or free() for strings).  Parameters of a
 * q_sql point into the q_sql itself; they stay valid until q_sql_free().
 * Threads: no global state; any function may be called from any thread.  A
 * q_filter and a q_sql are immutable after construction and may be shared
 * read-only between threads.
 * Errors: functions return 0 or a negative errno; parse and compile errors fill a
 * struct q_error whose msg is one line, "position N: expected X, found Y", with N
 * the 1-based character (Unicode code point) position in the filter text.
 */
#ifndef PODCAP_QUERY_H
#define PODCAP_QUERY_H

#include <stddef.h>
#include <stdint.h>

struct q_filter;
struct fdb;
struct fdb_param;
struct pks;
struct pks_flow;
struct pn_writer;
struct dc_packet;

/* --- limits --- */

/* Every bound is checked while parsing, before any allocation grows with it. */
struct q_limits {
	uint32_t max_len;    /* bytes of filter text (default 4096; at most 1 MiB) */
	uint32_t max_depth;  /* nesting of '(' and 'not' (default 64; at most 256) */
	uint32_t max_list;   /* values in one list, `in [...]` (default 256) */
	uint32_t max_values; /* values in the whole filter (default 1024; at most 8192) */
};
void q_limits_default(struct q_limits *lim);

/* --- errors --- */

struct q_error {
	int code;            /* -EINVAL syntax or type, -E2BIG a limit, -ENOMEM */
	uint32_t pos;        /* 1-based character position; 0 = not about a place */
	uint32_t byte;       /* the same place as a 0-based byte offset */
	char found[80];      /* what was there: "'abc'", "end of filter", "NUL byte" */
	char expected[160];  /* what would have been accepted there */
	char msg[320];       /* the one line to show: "position 12: expected ..." */
};
/* All text in a q_error is valid UTF-8 without control characters, so it can be
 * printed or put into JSON (after the usual quote/backslash escaping). */

/* --- parsing --- */

/* Parses len bytes of text (no NUL terminator needed; a NUL byte inside is an
 * error at its position).  lim may be NULL for the defaults.  Empty or all-blank
 * text is a valid filter that matches every flow.  On success *out is the filter
 * (free with q_filter_free); on failure *out is NULL, err (if given) says why and
 * the return is -EINVAL, -E2BIG or -ENOMEM. */
int q_parse(const char *text, size_t len, const struct q_limits *lim,
	    struct q_filter **out, struct q_error *err);
void q_filter_free(struct q_filter *f);

/* The normalised filter text (canonical field names and operators, one space
 * between tokens, values in canonical form: addresses as stored, sizes in bytes,
 * durations with their largest exact unit, minimal parentheses).  Parsing it gives
 * the same filter.  Returns a malloc'd string (caller frees), or NULL with errno
 * ENOMEM.  An empty filter prints as "". */
char *q_filter_text(const struct q_filter *f);

/* --- compiling to SQL --- */

enum q_param_type { Q_PARAM_INT, Q_PARAM_DOUBLE, Q_PARAM_TEXT };
struct q_param {
	enum q_param_type type;
	int64_t i;           /* Q_PARAM_INT */
	double d;            /* Q_PARAM_DOUBLE (no field uses it yet) */
	const char *text;    /* Q_PARAM_TEXT: len bytes, also NUL-terminated */
	size_t len;
};

/* The time range is separate from the filter: a flow is in [from, to] when it
 * was active at some time in it (last_us >= from and first_us <= to). */
struct q_range {
	int has_from, has_to;
	int64_t from_us, to_us;  /* µs since the epoch, e.g. from q_time_parse() */
};

struct q_compile_opts {
	int first_param;         /* number of the first parameter, ?N (default 1) */
	struct q_range range;    /* default: none */
};
void q_compile_opts_default(struct q_compile_opts *o);

struct q_sql {
	/* A parenthesised SQL boolean expression over `flows f`, NUL-terminated, for
	 * "... WHERE " where " ...".  It uses parameters ?first .. ?(first+nparams-1)
	 * (numbered, so one value may appear twice); the caller's own parameters
	 * take numbers from first + nparams on. */
	char *where;
	size_t where_len;
	struct q_param *params;  /* params[k] binds to ?(first_param + k) */
	size_t nparams;
	int first_param;
};

/* f may be NULL (no filter: only the range, or "(1)").  opts may be NULL for the
 * defaults.  Returns 0 and *out (free with q_sql_free), or with err filled:
 *   -E2BIG   the SQL would overflow SQLite's parser stack (a deeply nested filter
 *            over long lists; err has the position), or needs more parameters
 *            than SQLite takes
 *   -EINVAL  bad opts;  -ENOMEM
 * The SQL is sized for a statement that has it as the first term of its WHERE,
 * at most one sub-select deep (e.g. SELECT count(*) FROM (SELECT ... WHERE
 * <where> AND <cursor> ORDER BY ... LIMIT ?)); nest it no deeper. */
int q_compile(const struct q_filter *f, const struct q_compile_opts *opts,
	      struct q_sql **out, struct q_error *err);
void q_sql_free(struct q_sql *sql);

/* q_parse + q_compile in one call. */
int q_compile_text(const char *text, size_t len, const struct q_limits *lim,
		   const struct q_compile_opts *opts, struct q_sql **out, struct q_error *err);

/* The parameters of sql as the flow database's cursors take them, into
 * out[0 .. sql->nparams); they point into sql. */
void q_sql_params(const struct q_sql *sql, struct fdb_param *out);

/* --- time --- */

/* Parses a time for a range bound into µs since the epoch:
 *   "now"                       now_us
 *   "-1h", "1h", "now-1h30m"    that long before now_us (units us ms s m h d)
 *   "2024-10-01T12:00:00Z"      RFC 3339 / ISO 8601: date, optional time (T or
 *   "2024-10-01 12:00:00.25"    space), optional fraction up to µs, optional Z or
 *   "2024-10-01"                ±HH:MM; no zone means UTC
 *   "1727784000", "1727784000.5"  epoch seconds
 * now_us == 0 means the wall clock (CLOCK_REALTIME).  Errors as for q_parse. */
int q_time_parse(const char *text, size_t len, int64_t now_us, int64_t *out_us,
		 struct q_error *err);

/* --- the field table, for GET /api/v1/fields and help texts --- */

struct q_field_info {
	const char *name;        /* "dport" */
	const char *type;        /* "port", "address", "size", ... (docs/filters.md) */
	const char *operators;   /* "== != < <= > >= in exists" */
	const char *description; /* one sentence */
	const char *index;       /* the index that serves `==` on it, or NULL */
};
size_t q_field_count(void);
/* The i-th field (0-based), NULL past the end.  Static data: never freed. */
const struct q_field_info *q_field(size_t i);

/* --- CLI shorthands --- */

/* Filter text for the old `podcap flows` flags, ANDed with an optional
 * positional filter:  --app X → app == "X",  --ip A → (ip == "A" or
 * outer.ip == "A"),  --port N → port == N  (port < 0: not given; app, ip,
 * filter: NULL or "" when not given).  Values are quoted, so the result parses
 * exactly when each value is valid for its field; parse it with q_parse and show
 * it in error messages (positions refer to it).  Returns a malloc'd string, ""
 * when nothing is given, or NULL with errno ENOMEM / EINVAL (port > 65535). */
char *q_shorthand(const char *filter, const char *app, const char *ip, int port);

/* --- listing flows (flows.c) --- */

enum q_order {
	Q_ORDER_LAST_DESC = 0, /* -last: newest last packet first (the CLI's listing) */
	Q_ORDER_FIRST_ASC,     /* first: oldest first packet first (exports) */
	Q_ORDER_LAST_ASC,      /* last */
	Q_ORDER_FIRST_DESC,    /* -first */
	Q_ORDER_ID_DESC,       /* -id: newest flows first (stable while flows arrive) */
	Q_ORDER_ID_ASC,        /* id */
	Q_ORDER_BYTES_DESC,    /* -bytes (scans: no index) */
	Q_ORDER_PACKETS_DESC,  /* -packets (scans: no index) */
	Q_ORDER__COUNT
};
/* "-id", "last", ...: 0, or -EINVAL for an unknown name. */
int q_order_parse(const char *name, enum q_order *out);
const char *q_order_name(enum q_order order);

/* Keyset pagination: the order's value and the id of the last row of the
 * previous page; the next page starts after it. */
struct q_cursor {
	int set;
	int64_t value, id;
};

struct q_select {
	const struct q_filter *filter; /* NULL = all flows */
	struct q_range range;          /* active in [from, to] */
	enum q_order order;
	int64_t limit;                 /* -1 = no limit */
	struct q_cursor after;         /* rows after this one, in order */
};

/* What a listing found out beside its rows. */
struct q_page {
	int more;                      /* rows beyond the limit exist */
	struct q_cursor next;          /* after the last row written (set when more) */
};

enum q_format { Q_FMT_TABLE, Q_FMT_JSON, Q_FMT_NDJSON, Q_FMT_CSV };

/* Output: returns 0 or a negative errno (e.g. -EPIPE), which ends the answer. */
typedef int (*q_write_fn)(void *arg, const void *buf, size_t len);
/* A q_write_fn writing to a FILE* (arg). */
int q_write_file(void *arg, const void *buf, size_t len);

/* Writes the matching flows in fmt through write.  store (may be NULL) says what
 * it holds of each flow (packets_state); without it the database's own column is
 * shown.  JSON objects carry every column, the id as a string, and the
 * observation point's interface (iface).  Returns the number of rows, or -errno
 * with err filled in; page (may be NULL) says whether more rows follow and where
 * the next page starts.  Runs on the calling thread with db's and store's
 * handles. */
long q_list_flows(struct fdb *db, struct pks *store, const struct q_select *sel, enum q_format fmt,
		  q_write_fn write, void *arg, struct q_page *page, struct q_error *err);

/* --- top talkers and charts (top.c) --- */

/* pod is the observation point's pod; src_pod ... service name the ends
 * ("namespace/name", "Kind/name" for workloads; "" where unknown). */
enum q_top_by { Q_BY_APP, Q_BY_POD, Q_BY_SRC, Q_BY_DST, Q_BY_DPORT, Q_BY_IFACE, Q_BY_CATEGORY,
		Q_BY_HOST, Q_BY_SRC_POD, Q_BY_DST_POD, Q_BY_SRC_NS, Q_BY_DST_NS, Q_BY_SRC_WORKLOAD,
		Q_BY_DST_WORKLOAD, Q_BY_SERVICE, Q_BY__COUNT };
/* The names above, comma-separated, for messages. */
#define Q_TOP_BY_NAMES "app, pod, src, dst, dport, iface, category, host, src_pod, dst_pod, src_ns, dst_ns," \
	" src_workload, dst_workload, service"
enum q_metric { Q_METRIC_BYTES, Q_METRIC_PACKETS, Q_METRIC_FLOWS, Q_METRIC__COUNT };
/* "app", "pod", ... / "bytes", "packets", "flows": 0 or -EINVAL. */
int q_top_by_parse(const char *name, enum q_top_by *out);
int q_metric_parse(const char *name, enum q_metric *out);
const char *q_top_by_name(enum q_top_by by);
const char *q_metric_name(enum q_metric m);

struct q_top {
	const struct q_filter *filter; /* NULL = all flows */
	struct q_range range;
	enum q_top_by by;
	enum q_metric metric;
	int limit;                     /* keys (1..1000) */
	int64_t bucket_us;             /* > 0: per-bucket values of those keys, by last packet */
	int64_t max_buckets;           /* refuse more buckets than this (-E2BIG) */
	size_t max_mem;                /* bytes for summing keys in memory (0 = 32 MiB);
					* more distinct keys go through SQLite's sorter */
};
struct q_top_row { char *key; int64_t value; };        /* key "" for none (no app, no pod) */
struct q_top_bucket { int64_t t; size_t row; int64_t value; };
struct q_top_result {
	struct q_top_row *rows;        /* largest first */
	size_t nrows;
	int64_t total, other;          /* all keys; the keys not in rows */
	struct q_top_bucket *buckets;  /* by time, then by row */
	size_t nbuckets;
	/* Answered from the flow database's per-minute rollup (no filter, key app,
	 * category, iface or pod): flows count in the minute of their last packet,
	 * so the range is exact to resolution_us.  untracked > 0: the writer could
	 * not follow that many flows' updates and the rollup over-counts them. */
	int from_rollup;
	int64_t resolution_us;
	int64_t untracked;
	/* Else the flows were read and summed in hash tables (1), or, with more
	 * distinct keys than q_top.max_mem holds, grouped by SQLite (0).  scans:
	 * how many times the matching flows were read (1; 2 when every key's
	 * buckets did not fit in max_mem beside the keys; 2 or 3 the SQL way). */
	int in_memory;
	int scans;
};
/* Groups the matching flows by a key and sums a metric over the whole range (one
 * scan, or the rollup: see q_top_result); with bucket_us also per time bucket
 * for the keys found.  0 or -errno with
 * err filled; free the result with q_top_free. */
int q_top(struct fdb *db, const struct q_top *req, struct q_top_result *out, struct q_error *err);
/* n (1..Q_TOP_MANY) requests over the same flows (one filter pointer, range
 * and metric; each its own key, limit, bucket_us and max_mem), answered into
 * outs[0..n): those the rollup can answer from it, the rest summed together in
 * one scan of the matching flows instead of one scan each (a chart page's
 * apps, pods, clients and servers).  The tables of all keys together stay
 * within the largest max_mem among them (a call costs what one key did); a key
 * that does not fit beside the others is answered the SQL way after the scan.  Each result as q_top's; 0 or -errno
 * with err filled (then no result is held). */
#define Q_TOP_MANY 8
int q_top_many(struct fdb *db, const struct q_top *reqs, size_t n, struct q_top_result *outs,
	       struct q_error *err);
void q_top_free(struct q_top_result *r);

/* The oldest time the database still holds every flow for: 0 when retention has
 * never deleted any, else the newest last packet it deleted.  An answer about an
 * earlier time is not complete. */
int q_retained_until(struct fdb *db, int64_t *out_us);
/* The last packet times of the oldest and newest flows held (0, 0 when empty):
 * two index probes. */
int q_time_span(struct fdb *db, int64_t *oldest_us, int64_t *newest_us);

/* The packet store of a flow database: dir when given, else the database's meta
 * packet_store_dir (a relative one is taken from the current directory if it
 * exists there, else next to the database).  Opens it read-only; log (may be NULL)
 * gets the store's messages about damaged or missing data.  -ENOENT when the
 * database names no store. */
int q_open_store(struct fdb *db, const char *dir, void (*log)(void *, const char *), void *log_arg,
		 struct pks **out, struct q_error *err);

/* --- inner frames (--inner) --- */

/* The frame a capture file holds of a packet when the pods' own view is wanted:
 * a tunnelled packet's innermost IP packet behind an Ethernet header (VXLAN's
 * own inner Ethernet header when the only tunnel is VXLAN and it is untagged;
 * otherwise addresses 00:00:00:00:00:00 and the IP version's type), and an
 * untunnelled packet of another link type likewise, so that everything written
 * is Ethernet.  p is dc_decode()'s result for frame.  Returns 1 with the new
 * frame in out[0 .. *caplen) (outcap >= 14 + captured bytes, or it is cut) and
 * its length on the wire in *wirelen; 0 when frame is already that (untunnelled
 * Ethernet: write it as it is); -EINVAL when p holds no IP packet. */
int q_inner_frame(const struct dc_packet *p, const uint8_t *frame, uint8_t *out, size_t outcap,
		  uint32_t *caplen, uint32_t *wirelen);

/* Export: the flows given by id (ids, n > 0) or by sel, their packets written to w
 * in time order, each packet commented with its flow's Community ID.  Unknown ids
 * are reported through log.  Per-flow outcomes go to report (may be NULL), once
 * per flow after the packets are written.  *selected gets the flows chosen,
 * *written the packets written. */
int q_export(struct fdb *db, struct pks *store, const uint64_t *ids, size_t n, const struct q_select *sel,
	     struct pn_writer *w, void (*report)(void *arg, const struct pks_flow *f), void *report_arg,
	     void (*log)(void *, const char *), void *log_arg, uint64_t *selected, uint64_t *written,
	     struct q_error *err);
/* The same with options: inner = 1 writes every packet as q_inner_frame() makes
 * it (decoded with dc_config_default(): VXLAN on 4789 and 8472, Geneve on 6081),
 * and every interface as Ethernet. */
struct q_export_opts {
	int inner;
	/* Called once the flows are chosen, before a packet is written (may be
	 * NULL): n flows, more = 1 when sel's limit left matching flows out.  The
	 * API sets its answer's headers there. */
	void (*on_selected)(void *arg, uint64_t n, int more);
	void *on_selected_arg;
};
int q_export_ex(struct fdb *db, struct pks *store, const uint64_t *ids, size_t n, const struct q_select *sel,
		const struct q_export_opts *opts, struct pn_writer *w,
		void (*report)(void *arg, const struct pks_flow *f), void *report_arg,
		void (*log)(void *, const char *), void *log_arg, uint64_t *selected, uint64_t *written,
		struct q_error *err);

#endif
