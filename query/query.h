/* query — questions about flows, answered from the flow database and the packet
 * store: which flows match (a filter turned into SQL with bound parameters), the
 * rows formatted for people and programs (table, JSON, NDJSON, CSV), and the
 * packets of the matching flows as one pcapng stream.  `podcap flows`, `podcap
 * export` and the HTTP API all go through here, so they agree.
 *
 * Threads: a q_* call uses the handles it is given on the calling thread (one
 * fdb / pks handle per thread).  Output goes through a write callback (a FILE*,
 * an HTTP response) whose failure ends the answer with its error.
 * Errors: 0 / negative errno; text in the q_error.
 */
#ifndef PODCAP_QUERY_H
#define PODCAP_QUERY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct fdb;
struct pks;
struct pn_writer;

struct q_error {
	int pos;          /* 1-based position in the filter text, 0 = not about the filter */
	char msg[256];
};

/* The simple filter terms of the first CLI (the filter language replaces them):
 * all given terms must hold. */
struct q_simple {
	const char *app;  /* nDPI name, case-insensitive: "TLS" or "Facebook" match either
	                   * part of "TLS.Facebook", "TLS.Facebook" needs both */
	const char *ip;   /* either endpoint, inner or outer */
	int port;         /* either port, -1 = any */
};

/* Parses "app == DNS and ip == 10.0.0.1 and port == 53" (the terms above, '==' or
 * '=', joined by "and") into *out; strings point into buf, which the caller
 * keeps.  -EINVAL with the position in err. */
int q_simple_parse(char *buf, struct q_simple *out, struct q_error *err);

enum q_order {
	Q_ORDER_LAST_DESC = 0, /* newest last packet first (listings) */
	Q_ORDER_FIRST_ASC,     /* oldest first packet first (exports) */
};

struct q_select {
	const struct q_simple *where; /* NULL = all flows */
	uint64_t since_us;            /* last_us >= since, 0 = any */
	enum q_order order;
	int64_t limit;                /* -1 = no limit */
};

enum q_format { Q_FMT_TABLE, Q_FMT_JSON, Q_FMT_NDJSON, Q_FMT_CSV };

/* Output: returns 0 or a negative errno (e.g. -EPIPE), which ends the answer. */
typedef int (*q_write_fn)(void *arg, const void *buf, size_t len);
/* A q_write_fn writing to a FILE* (arg). */
int q_write_file(void *arg, const void *buf, size_t len);

/* Writes the matching flows in fmt.  store (may be NULL) says what it holds of
 * each flow (packets_state); without it the database's own column is shown.
 * Returns the number of rows, or -errno with err filled in. */
long q_list_flows(struct fdb *db, struct pks *store, const struct q_select *sel, enum q_format fmt,
		  q_write_fn write, void *arg, struct q_error *err);

/* The packet store of a flow database: dir when given, else the database's meta
 * packet_store_dir (a relative one is taken from the current directory if it
 * exists there, else next to the database).  Opens it read-only; log (may be NULL)
 * gets the store's messages about damaged or missing data.  -ENOENT when the
 * database names no store. */
int q_open_store(struct fdb *db, const char *dir, void (*log)(void *, const char *), void *log_arg,
		 struct pks **out, struct q_error *err);

/* Export: the flows given by id (ids, n > 0) or by sel, their packets written to w
 * in time order, each packet commented with its flow's Community ID.  Unknown ids
 * are reported through log.  Per-flow outcomes go to report (may be NULL), called
 * once per flow after the packets are written.  *written gets the packets written. */
struct pks_flow;
int q_export(struct fdb *db, struct pks *store, const uint64_t *ids, size_t n, const struct q_select *sel,
	     struct pn_writer *w, void (*report)(void *arg, const struct pks_flow *f), void *report_arg,
	     void (*log)(void *, const char *), void *log_arg, uint64_t *selected, uint64_t *written,
	     struct q_error *err);

#endif
