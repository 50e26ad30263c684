/* flow — bidirectional flow table with nDPI classification and Community ID.
 *
 * A flow is keyed by (observation point, VLAN, inner 5-tuple) in both directions;
 * the client is the side that sent the first packet seen, or the SYN sender when
 * the first packet seen is a SYN/ACK.  The outer tuple, tunnel type and VNI of the
 * first packet are kept as attributes.
 *
 * Threads: a table is used by one thread at a time; run one table per worker and
 * shard packets by fl_hash() to scale (tables may be created concurrently); a
 * later IP fragment (no ports) must then be sent to the table of its first
 * fragment (the engine remembers where first fragments went), or it is counted
 * in the ports-0 flow of its addresses.
 * Flow ids are unique across tables made with the same id_base and id_stride and
 * distinct shards.
 *
 * Ownership: the table owns its flows and their nDPI state.  Records passed to the
 * emit callback are owned by the table and valid only during the call; copy what
 * you keep.  The callback must not call fl_table_* on the same table.  The table never keeps pointers into packet frames after
 * fl_table_packet() returns.
 *
 * Loss: every flow or packet the table cannot account is counted in fl_stats
 * (evicted flows are emitted first, so their records are not lost; the counter says
 * how many were cut short by the memory cap).
 *
 * Keys in detail: VLAN is the outermost tag (dc_packet.vlan[0]).  ICMP/ICMPv6 are
 * keyed without type/code, so echo request and reply are one flow (as ndpiReader);
 * the record's key.sport/dport hold the first packet's type/code, from which the
 * Community ID is computed.  A non-first IP fragment joins the flow of its first
 * fragment (matched by dc_packet.ip_id); if that was not seen, the flow
 * of (addresses, protocol, ports 0).
 *
 * Flow end: idle_timeout after the last packet; tcp_closed_timeout after FIN both
 * ways or a RST; a new SYN on such a closed flow (port reuse) ends it at once.
 * Records: periodic ones (FL_END_ACTIVE, cumulative counters, same id; only when
 * the flow saw packets since its last record) every active_timeout_us, then one
 * final record.  Classification: dpi_done 0 while nDPI still inspects (proto
 * "Unknown"), 1 when nDPI named the protocol, 2 when it gave up (its guess by
 * port/IP counts, as in ndpiReader); confidence says which (enum fl_confidence,
 * nDPI's own "DPI" / "Match by port" / ...).
 *
 * Names: a record's name[] ids refer to a struct fl_names (below) that the
 * table never touches; the engine's record hook fills them (podcap run: the
 * Kubernetes names of both ends) and sinks resolve them.
 *
 * Memory: ~350 bytes per flow plus nDPI's state (~700 bytes and dissector buffers)
 * only while the flow is being classified, plus one nDPI module (~5 MB) per table.
 */
#ifndef PODCAP_FLOW_H
#define PODCAP_FLOW_H

#include <stdint.h>
#include <stddef.h>
#include "decode.h"

struct fl_table;

struct fl_config {
	uint64_t idle_timeout_us;   /* flow ends after this long without packets (default 120 s; TCP after FIN/RST: 10 s) */
	uint64_t active_timeout_us; /* periodic record of a live flow every so often (default 60 s) */
	uint32_t max_flows;         /* memory cap: oldest-idle flow evicted beyond it (default 262144) */
	uint32_t dpi_packets;       /* nDPI gives up on a TCP (or other non-UDP) flow after this many
	                             * packets (default 80, as ndpiReader) */
	uint8_t shard;              /* this table's place among id_stride tables (0..id_stride-1) */
	uint8_t dpi;                /* 1 = classify with nDPI (default 1) */
	/* Extensions (after the original fields so existing initialisers stay valid). */
	uint32_t dpi_packets_udp;   /* same for UDP flows (default 24, as ndpiReader; 0 = default) */
	uint64_t tcp_closed_timeout_us; /* idle timeout after FIN both ways or RST (default 10 s,
	                                 * also when 0; never longer than idle_timeout_us) */
	uint16_t community_id_seed;     /* Community ID seed (default 0, as most tools) */
	/* Flow ids: the n-th flow of this table (n = 1, 2, ...) gets
	 *   id_base + (n - 1) * id_stride + shard + 1,
	 * so id_stride tables with shards 0..id_stride-1 hand out distinct ids above
	 * id_base (the largest id a database already holds).  Defaults 0 and 1. */
	uint64_t id_base;
	uint32_t id_stride;
};
void fl_config_default(struct fl_config *cfg);

enum fl_end {
	FL_END_ACTIVE = 0, /* periodic record: the flow goes on */
	FL_END_IDLE,       /* idle timeout */
	FL_END_TCP,        /* FIN both ways or RST, then the short timeout */
	FL_END_EVICTED,    /* memory cap */
	FL_END_FLUSH,      /* end of input / shutdown */
	FL_END_COUNTS,     /* counts only: the eBPF program counted the flow, but none of
	                    * its packets reached user space (made by the caller, never
	                    * by a flow table; engine.h eng_record) */
};

#define FL_HOST_LEN 256
#define FL_URL_LEN 512

/* How sure nDPI is of a record's protocol: nDPI 4.2's ndpi_confidence_t, as
 * ndpiReader prints it ("Confidence: Match by port").  A flow nDPI gave up on
 * (ndpi_detection_giveup) carries nDPI's guess with BY_PORT or BY_IP, or
 * UNKNOWN when it could not even guess. */
enum fl_confidence {
	FL_CONF_NONE = 0,   /* not classified (yet): still inspecting, or nDPI off */
	FL_CONF_UNKNOWN,    /* nDPI gave up without a guess */
	FL_CONF_BY_PORT,    /* guessed from the L4 ports alone */
	FL_CONF_BY_IP,      /* guessed from the addresses alone (nDPI's IP lists) */
	FL_CONF_DPI_CACHE,  /* from nDPI's caches: another flow of the same hosts */
	FL_CONF_DPI,        /* deep packet inspection of this flow */
	FL_CONF__COUNT
};
/* "", "unknown", "by-port", "by-ip", "dpi-cache", "dpi"; "" out of range. */
const char *fl_confidence_name(int confidence);

/* Kubernetes names of a record (see struct fl_names below): which end. */
enum fl_name_slot {
	FL_NAME_SRC = 0,    /* the client address: a pod, a node, ... */
	FL_NAME_DST,        /* the server address: a pod (after DNAT: the backend), a node, a Service */
	FL_NAME_SERVICE,    /* the Service a VIP or NodePort led to */
	FL_NAME_OUTER_SRC,  /* a tunnel's outer source: a node */
	FL_NAME_OUTER_DST,  /* a tunnel's outer destination: a node */
	FL_NAME__COUNT
};

/* One flow record, client→server oriented.  Index [0] is client→server, [1] is
 * server→client. */
struct fl_record {
	uint64_t id;            /* final: see fl_config.id_base */
	uint32_t obs_id;        /* observation point (interface+direction) given by the caller */
	uint8_t end;            /* enum fl_end */
	uint8_t tunnel;         /* enum dc_tunnel of the first packet */
	uint8_t has_vni;
	uint16_t vlan;          /* outermost VLAN id, 0 = none */
	uint32_t vni;
	struct dc_tuple key;    /* inner tuple, src = client */
	struct dc_tuple outer;  /* outer tuple of the first packet (== key when not tunnelled) */
	uint64_t first_us, last_us;
	uint64_t pkts[2], bytes[2], payload[2];
	uint8_t tcp_flags[2];   /* OR of flags seen per direction */
	uint32_t syn, synack, fin, rst;
	int64_t rtt_us;         /* SYN → SYN/ACK → ACK handshake time, -1 = not seen */
	uint32_t retrans[2], ooo[2];
	uint32_t frags;         /* IP fragments seen */
	char community_id[48];  /* "1:base64" */

	/* nDPI results */
	uint16_t master_proto, app_proto; /* nDPI protocol ids */
	char proto[64];         /* "TLS.Facebook", "DNS", "Unknown" */
	char category[32];
	uint64_t risk;          /* nDPI risk bitmap */
	char host[FL_HOST_LEN]; /* TLS SNI, HTTP Host or DNS query */
	char url[FL_URL_LEN];   /* HTTP URL as nDPI gives it: host + path */
	uint16_t http_status;
	uint8_t dns_rcode;      /* 0xff = none */
	char ja3c[33], ja3s[33];
	uint8_t dpi_done;       /* 1 detected, 2 gave up, 0 still inspecting */
	uint8_t confidence;     /* enum fl_confidence (FL_CONF_NONE while dpi_done is 0) */

	/* Names of the ends, as ids into a struct fl_names that the record hook
	 * (engine.h) and the sinks share; 0 = no name.  Ids, not strings: a
	 * record is copied into every record sink's queue, and the names of both
	 * ends (labels included) would more than double its ~1.3 KB. */
	uint32_t name[FL_NAME__COUNT]; /* enum fl_name_slot */
};

struct fl_stats {
	uint64_t packets;        /* packets accounted to flows */
	uint64_t skipped;        /* packets not accounted: malformed or not IP */
	uint64_t flows_created;
	uint64_t flows_active;
	uint64_t records;        /* records emitted (periodic + final) */
	uint64_t evicted;        /* flows ended early by the memory cap */
	uint64_t dpi_giveup;
	uint64_t dpi_alloc_fail; /* flows not classified: nDPI state allocation failed */
	uint64_t dpi_packets;    /* packets given to nDPI */
};

/* Called for every record: periodic (end == FL_END_ACTIVE) and final.  A non-zero
 * return is remembered and returned by the next fl_table_* call. */
typedef int (*fl_emit_fn)(void *arg, const struct fl_record *rec);

/* Returns NULL and sets errno on failure (ENOMEM, or EINVAL for a bad config). */
struct fl_table *fl_table_new(const struct fl_config *cfg, fl_emit_fn emit, void *arg);
void fl_table_free(struct fl_table *t); /* does not emit; call fl_table_flush first */

/* Accounts one decoded packet at time ts_us (microseconds since the epoch) on
 * observation point obs_id.  frame is the captured frame that p was decoded from
 * (needed for nDPI).  Malformed and non-IP packets are counted in stats.skipped and
 * return -EINVAL.  On success returns 0 and, when non-NULL, sets *flow_id and
 * *pkt_no (0-based packet number within the flow) for packet indexing. */
int fl_table_packet(struct fl_table *t, uint32_t obs_id, const struct dc_packet *p,
		    const uint8_t *frame, uint64_t ts_us, uint64_t *flow_id, uint32_t *pkt_no);

/* Emits periodic and final records for flows whose timers passed now_us.  Call it
 * regularly (file readers: with packet time; live: with wall time). */
int fl_table_expire(struct fl_table *t, uint64_t now_us);
/* Ends every flow with FL_END_FLUSH. */
int fl_table_flush(struct fl_table *t);
/* May be called from any thread while the table's own thread works (each counter
 * is read atomically; the set is not one snapshot). */
void fl_table_stats(const struct fl_table *t, struct fl_stats *out);

/* Symmetric hash of a packet's flow key (same value for both directions); shard
 * with fl_hash(obs_id, p) % tables (the tables take other bits for buckets). */
uint32_t fl_hash(uint32_t obs_id, const struct dc_packet *p);

/* ---- names of the ends: an interning dictionary ------------------------- */

/* A Kubernetes name for one end of a flow: a pod (namespace, name, node,
 * workload, labels), a node (name), or a Service (namespace, name, port, and
 * how the flow reached it).  The flow table never fills these: a record hook
 * looks the addresses up (kube/) at the flow's time and interns the answers
 * here, and sinks turn the record's ids back into strings. */
enum fl_name_kind { FL_KIND_NONE = 0, FL_KIND_POD, FL_KIND_NODE, FL_KIND_SERVICE, FL_KIND__COUNT };
const char *fl_name_kind_name(int kind); /* "", "pod", "node", "service" */

#define FL_NAME_NS_LEN 64
#define FL_NAME_NAME_LEN 254
#define FL_NAME_WORKLOAD_LEN 320  /* "Kind/name" */
#define FL_NAME_LABELS_LEN 512    /* compact JSON object, keys sorted */
#define FL_NAME_VIA_LEN 16

struct fl_name {
	uint8_t kind;                         /* enum fl_name_kind */
	uint16_t port;                        /* Service: its port */
	char ns[FL_NAME_NS_LEN];              /* pod, Service: namespace */
	char name[FL_NAME_NAME_LEN];          /* pod, node or Service name */
	char node[FL_NAME_NAME_LEN];          /* pod: its node; node: its name */
	char workload[FL_NAME_WORKLOAD_LEN];  /* pod: "Deployment/web", "" = none */
	char labels[FL_NAME_LABELS_LEN];      /* pod: {"app":"web"}, "" = unknown */
	char via[FL_NAME_VIA_LEN];            /* Service: "cluster-ip", "node-port",
	                                       * "external-ip", "conntrack" */
};

/* The dictionary: equal names get equal ids, so a record carries 4-byte ids
 * and each distinct name is stored once however many flows carry it.
 *
 * Bounded by generations: entries go into the current generation; when it holds
 * gen_entries names or gen_bytes bytes it becomes the previous one and the
 * generation before is freed.  A name of the previous generation that is
 * interned again moves into the current one, so names in use stay.  An id is
 * good while its generation is current or previous, i.e. for at least
 * gen_entries further interns: far more than records wait in the engine's
 * queues (4096 per sink, and a record interns at most FL_NAME__COUNT names), so
 * a sink resolving a record's ids finds them.  An id too old resolves to
 * -ENOENT (counted in expired); the id space (12 bits of generation, 20 of
 * index) wraps after 4096 generations, long after any record is written.
 *
 * Threads: any number of threads may call fl_names_put and fl_names_get at once
 * (a reader-writer lock: a name already present costs a read lock, a hash and a
 * compare).  fl_names_free must not race with them.
 * Memory: the dictionary copies what it is given; get copies into the caller's
 * struct, so nothing handed out needs freeing. */
struct fl_names;
struct fl_names_stats {
	uint64_t entries;    /* names held (both generations) */
	uint64_t bytes;      /* bytes held by them */
	uint64_t puts, hits; /* fl_names_put calls, and those that found the name */
	uint64_t rotations;  /* generations retired */
	uint64_t expired;    /* fl_names_get of an id whose generation is gone */
	uint64_t failed;     /* fl_names_put that could not allocate (id 0 returned) */
};
/* 0 = defaults: 65536 entries, 16 MiB per generation; gen_entries at most 2^20. */
struct fl_names *fl_names_new(uint32_t gen_entries, size_t gen_bytes);
void fl_names_free(struct fl_names *n);
/* The id of name (interned if new), or 0 when name->kind is FL_KIND_NONE or
 * memory ran out.  Strings are read up to their array's size (NUL or not). */
uint32_t fl_names_put(struct fl_names *n, const struct fl_name *name);
/* Copies the name of id into *out: 0, -ENOENT (0 or expired id), -EINVAL. */
int fl_names_get(const struct fl_names *n, uint32_t id, struct fl_name *out);
void fl_names_stats(const struct fl_names *n, struct fl_names_stats *out);

/* Community ID v1 (https://github.com/corelight/community-id-spec) of a tuple with
 * the given seed, written as "1:<base64>" into out (>= 32 bytes).  Returns 0, or
 * -EINVAL for a tuple without addresses. */
int fl_community_id(const struct dc_tuple *t, uint16_t seed, char *out, size_t len);

#endif
