/* api — the query API over HTTP (docs/api.md): /api/v1/flows, flows/{id}, the
 * pcap exports, top, stats, interfaces, fields, /metrics, /healthz, the OpenAPI
 * document and the web page, on the HTTP server of server/.
 *
 * The agent (`podcap run --listen`) and `podcap serve` open it the same way; the
 * agent also attaches its engine (counters), its sinks' statistics and a metrics
 * sink, and publishes its capture counters (only the capture thread may read the
 * capture backend, so it hands the API a copy about once a second).
 *
 * Threads: api_open, api_metrics_sink, api_attach, api_stop and api_close on the
 * caller's thread; api_publish_capture from the capture thread; handlers run on
 * the server's threads.  Every worker thread opens its own read-only handles of
 * the flow database and packet store (one handle per thread, as SQLite wants),
 * closed when the thread ends.  Queries never take a lock the writer takes: the
 * writer goes on at its pace while readers query (WAL).
 *
 * Order at the end of an agent: api_stop (no more requests), eng_close (the
 * metrics sink's last callbacks), api_close.
 */
#ifndef PODCAP_API_H
#define PODCAP_API_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

struct api;
struct engine;
struct eng_sink;
struct fdb_sink;
struct pks_sink;
struct kube;
struct strm_hub;

struct api_config {
	struct srv_config http;       /* listen address, token, TLS, limits */
	const char *db_path;          /* flow database (required) */
	const char *store_dir;        /* packet store; NULL = the database's meta packet_store_dir */
	const char *mode;             /* "agent" or "serve" */
	uint64_t query_ms;            /* SQLite work one query may take (default 10000) */
	unsigned max_exports;         /* pcap exports at once (default 4) */
	unsigned max_streams;         /* live streams at once (default 8; more get 429) */
	struct kube *kube;            /* Kubernetes names' source, for stats; may be NULL */
	/* The agent's retention settings, shown next to the sizes they bound
	 * (0 = none, or not known to `podcap serve`). */
	uint64_t db_cap_bytes;        /* --db-cap */
	uint64_t db_max_age_s;        /* --db-max-age */
	uint64_t store_cap_bytes;     /* --store-cap */
};
void api_config_default(struct api_config *cfg);

/* Binds, registers the routes and starts serving.  -errno with a message. */
int api_open(const struct api_config *cfg, struct api **out, char *errbuf, size_t errlen);
/* The bound port (for port 0). */
int api_port(const struct api *a);

/* The agent: a sink counting final flow records for /metrics (flows by app, TCP
 * retransmissions, a handshake-RTT histogram).  Give it to eng_open; the API
 * keeps its memory (the sink's close does nothing). */
void api_metrics_sink(struct api *a, struct eng_sink *out);
/* The agent: the engine and sinks whose counters /api/v1/stats and /metrics show.
 * Any may be NULL. */
void api_attach(struct api *a, struct engine *e, struct fdb_sink *fdb, struct pks_sink *pks);

/* The agent: the hub of live streams (GET /api/v1/stream; 503 until it is
 * attached, 409 in `podcap serve`, which has none).  Attach after eng_open;
 * the hub outlives api_close. */
void api_attach_streams(struct api *a, struct strm_hub *h);

/* The agent: the source of Kubernetes names, whose status /api/v1/stats shows. */
void api_attach_kube(struct api *a, struct kube *k);
/* The conntrack reader naming Services after DNAT, for its counters in the
 * stats (the caller's; it outlives the API's answers, like k). */
struct kube_nat;
void api_attach_nat(struct api *a, struct kube_nat *n);

/* Capture counters, from the capture thread. */
struct api_iface {
	uint32_t obs_id;
	char iface[IF_NAMESIZE];
	char pod[128];
	uint64_t received, kernel_drops;
	uint64_t kernel_counted, kernel_bytes; /* what the eBPF program counted, else 0 */
};
struct api_capture {
	const char *backend;          /* "ebpf" / "pcap" (static string) */
	uint64_t received, kernel_drops, ring_drops, bad_records;
	/* eBPF: flows of which no packet got through the ring, recorded from the
	 * kernel's counters alone (end "counts") */
	uint64_t counts_records;
	uint64_t counts_lost;         /* ... that could not be added (eng_record refused them) */
	/* eBPF: keys in the kernel's flow counter map and its size: a full map
	 * evicts the least recently used keys (their counts are then lost) */
	uint64_t flow_map_entries, flow_map_size;
	const struct api_iface *ifaces;
	size_t nifaces;
};
void api_publish_capture(struct api *a, const struct api_capture *c);

/* Stops answering (requests in progress finish within the grace time). */
void api_stop(struct api *a);
void api_close(struct api *a);

#endif
