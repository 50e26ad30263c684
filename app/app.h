/* app — the podcap command line: one binary, one file per subcommand.
 * Each cmd_* gets argv with argv[0] = the subcommand name and returns the process
 * exit status: 0 success, 1 runtime failure, 2 bad usage (after printing a usage
 * line to stderr). */
#ifndef PODCAP_APP_H
#define PODCAP_APP_H

#include <stdint.h>
#include <stdio.h>

#include "capture.h"
#include "engine.h"
#include "flowdb.h"
#include "pktstore.h"

int cmd_decode(int argc, char **argv);
int cmd_read(int argc, char **argv);
int cmd_flows(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_sniff(int argc, char **argv);
/* podcapdump, Wireshark's extcap for an agent (cmd_extcap.c): argv[0] is the
 * program's name, the rest Wireshark's --extcap-* options. */
int cmd_extcap(int argc, char **argv);

/* ---- the query API's client (remote.c): `flows|export --server URL` ---- */

struct app_get {
	const char *cmd;              /* "flows", for messages */
	const char *server;           /* "http://127.0.0.1:7070" */
	const char *path;             /* "/api/v1/flows" */
	struct { const char *name, *value; } params[24]; /* value NULL = left out; escaped here */
	size_t nparams;
	const char *token_file;       /* bearer token (first line), or NULL */
	const char *cacert;           /* CA file for https, or NULL for the system's */
	const char *filter_text;      /* to show a filter error's position */
	/* the 2xx body, as it arrives; < 0 stops the transfer */
	int (*write)(void *arg, const void *buf, size_t len);
	void *arg;
	char *next_cursor;            /* X-Next-Cursor of the answer ("" if none), when not NULL */
	size_t next_cursor_len;
	int *incomplete;              /* set from X-Complete: false, when not NULL */
	void *curl;                   /* reused between calls; free with app_get_done */
	/* When *stop turns nonzero (a signal handler) the transfer ends within about
	 * a second and app_get returns 0 quietly; NULL = never. */
	const volatile int *stop;
	/* Whole-transfer limit in seconds (connecting included); 0 = none, with a
	 * 10 s limit on connecting. */
	long timeout_s;
};
/* 0 after a 2xx answer, the HTTP status (> 0) of an error answer after printing
 * its message, -1 after a message for anything else (connection, output). */
int app_get(struct app_get *g);
void app_get_done(struct app_get *g);

/* Prints "usage: podcap <usage>" and a hint to stderr; returns 2. */
int app_usage(const char *usage);
/* Parses a size like "50M", "1G", "4096" into bytes; 0 on success, -EINVAL. */
int app_parse_size(const char *s, unsigned long long *out);
/* Parses a non-negative integer within [min,max]; 0 or -EINVAL. */
int app_parse_uint(const char *s, unsigned long long min, unsigned long long max,
		   unsigned long long *out);

/* A path option's value (--db PATH, -w FILE, ...): refused when empty or when
 * it starts with '-' ("--db -", "-w --db": a value left out), after a message;
 * 0 or -EINVAL.  Callers that give "-" a meaning (stdout) check for it first. */
int app_check_path(const char *cmd, const char *opt, const char *val);
/* --server URL of the API clients: http:// or https:// and a host; 0, or -EINVAL
 * after a message (the caller prints its usage line, exit 2). */
int app_check_server(const char *cmd, const char *url);
/* --listen ADDR:PORT of serve and run, as the server will parse it: 0, or -EINVAL
 * after a message. */
int app_check_listen(const char *cmd, const char *addr);

/* Prints a filter error of podcap CMD: the message, then the filter with a caret
 * under the position. */
struct q_error;
void app_filter_error(const char *cmd, const char *text, const struct q_error *e);
/* The value of --since (since = 1) or --until into r (a time: epoch seconds, UTC,
 * or before now: 30s, 2h): 0, or -EINVAL after a message naming podcap CMD. */
struct q_range;
int app_range_opt(const char *cmd, int since, const char *val, struct q_range *r);
/* --since after --until: -EINVAL after a message (flows, top; the API answers
 * 400 to the same range). */
int app_range_check(const char *cmd, const struct q_range *r);

/* ---- the options `read` and `run` share (options.c) ---- */

enum app_cmd { APP_READ = 1, APP_RUN = 2 };
#define APP_MAX_IFACES 64

struct app_opts {
	/* both */
	struct eng_config eng;
	struct fdb_config fdb;
	struct pks_config pks;
	const char *db_path;      /* --db, required */
	const char *store_dir;    /* --store: packets kept too */
	int quiet;
	int group_given;          /* --group (fsio_set_group done while parsing) */
	/* run */
	struct cap_live_config live;
	const char *netns, *inventory;
	const char *ifaces[APP_MAX_IFACES];
	int n_ifaces;
	uint64_t duration_s, stats_s;
	int all_ifaces, inventory_given;
	/* the query API inside the agent (--listen); off when listen is NULL */
	const char *listen, *token_file, *tls_cert, *tls_key;
	/* Kubernetes names of both ends of every flow (kube_names.c) */
	const char *kubernetes;      /* --kubernetes in-cluster */
	const char *kubeconfig;      /* --kubeconfig FILE */
	const char *kube_context;    /* --kube-context NAME */
	const char *node;            /* --node NAME (default $NODE_NAME) */
	int kube_pods;               /* --kube-pods: enum kube_pod_scope */
	int no_conntrack;            /* --no-conntrack */
	const char *names_inventory; /* the inventory that names ends (set by app_opts_parse) */
};

/* Defaults of a command (worker counts, bulk-load flags, ...). */
void app_opts_default(enum app_cmd cmd, struct app_opts *o);
/* Parses argv (and, for run, --config FILE first) into o.  Returns 0 with
 * *first_arg the index of the first positional argument, 1 after printing --help
 * (exit 0), or 2 after printing what is wrong and the usage line. */
int app_opts_parse(enum app_cmd cmd, int argc, char **argv, struct app_opts *o, int *first_arg);
/* The usage line of a command ("read FILE... --db PATH [...]"). */
const char *app_opts_usage(enum app_cmd cmd);

/* Opens the sinks the options ask for (flow database, packet store) into
 * sinks[0..*n); the stats handles stay valid until eng_close.  0, or 1 after a
 * message on stderr. */
struct app_sinks {
	struct eng_sink sink[4];   /* flows, packets, and the agent's metrics and streams */
	size_t n;
	struct fdb_sink *fdb;
	struct pks_sink *pks;
};
int app_open_sinks(const char *cmd, const struct app_opts *o, struct app_sinks *out);
/* ---- Kubernetes names on flow records (kube_names.c) ---- */

/* Opens the names source the options ask for: the Kubernetes API (--kubernetes,
 * --kubeconfig), else the inventory (names_inventory), and with live, the
 * node's conntrack table (unless --no-conntrack; call it inside the node's
 * network namespace).  *out stays NULL when no source is configured.  0, or 1
 * after a message on stderr.  Give app_names_dict() to the flow database
 * (fdb_config.names) and app_names_hook as the engine's record_hook with the
 * handle as its argument; close after eng_close(). */
struct app_names;
int app_names_open(const char *cmd, const struct app_opts *o, int live, struct app_names **out);
/* A hook to run before the names (e.g. the eBPF kernel counts). */
void app_names_chain(struct app_names *n, void (*next)(void *, struct fl_record *), void *arg);
void app_names_hook(void *arg, struct fl_record *rec);
const struct fl_names *app_names_dict(const struct app_names *n);
/* The Kubernetes source behind the names (for the API's stats), or NULL. */
struct kube *app_names_kube(const struct app_names *n);
/* Its conntrack reader (Services after DNAT), NULL without one. */
struct kube_nat *app_names_nat(const struct app_names *n);
/* kube_status_json() of the source, for /api/v1/stats; -ENOENT without one. */
int app_names_status_json(const struct app_names *n, char *buf, size_t len);
/* One line: source state, counters, conntrack, dictionary. */
void app_names_print(const struct app_names *n, const char *prefix, FILE *f);
void app_names_close(struct app_names *n);

/* The summary of a run: packets, decode reasons, flows, sinks, CPU per thread. */
void app_print_summary(struct engine *e, const struct app_sinks *s, uint64_t caller_cpu_us, FILE *f);

#endif
