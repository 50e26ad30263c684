/* kube — Kubernetes names for the addresses in flow records.
 *
 * A directory of who held which IP address when: pods (namespace, name, node,
 * workload, labels), Service VIPs (ClusterIP, external IPs), node IPs and
 * NodePorts, and the EndpointSlices behind each Service.  It is fed by one of two
 * sources, chosen at kube_open():
 *
 *   KUBE_SOURCE_API        the Kubernetes API: list + watch of pods (all, or this
 *                          node's plus the pods EndpointSlices name), Services and
 *                          EndpointSlices (discovery.k8s.io/v1), in-cluster
 *                          (service-account token and CA) or from a kubeconfig
 *                          file.  HTTP with libcurl, JSON with jansson.
 *   KUBE_SOURCE_INVENTORY  the lab's inventory file (JSON, lab/lab writes it),
 *                          reloaded when the file changes.
 *
 * Names are kept BY TIME: every IP address has a bounded history of holders with
 * validity intervals [since, until), so a flow is named after the pod that held
 * its address when the flow happened — a deleted pod keeps its name on old flows,
 * and a pod re-created with the same IP is named correctly before and after.  A
 * new holder's interval starts at the later of its creationTimestamp and the end
 * of the previous holder; a holder ends when the source says it is gone (pod
 * deleted or terminal, Service deleted, IP changed).
 *
 * When the source fails (API errors, hangs, garbage, oversized answers; a bad
 * inventory file) the directory keeps its last good state, the source retries
 * with exponential back-off and jitter, and kube_status() says so.
 *
 * Threads: kube_open() starts one thread of the directory's own (the API watcher
 * or the inventory poller).  kube_lookup_ip(), kube_lookup_service(),
 * kube_lookup_backend(), kube_status() and kube_status_json() may be called from
 * any number of threads at once (a reader-writer lock; each lookup is one hash
 * probe plus a copy of the answer).  kube_close() must not race with them.
 * Memory: everything is owned by the handle; lookups copy their answer into the
 * caller's struct, so nothing handed out needs freeing or outlives a lock.
 * Errors: 0 or a negative errno; kube_open() returns NULL, sets errno and writes
 * a message into err.
 */
#ifndef PODCAP_KUBE_H
#define PODCAP_KUBE_H

#include <stddef.h>
#include <stdint.h>

#define KUBE_NS_LEN 64      /* namespace: a DNS label, 63 characters + NUL */
#define KUBE_NAME_LEN 254   /* object names: a DNS subdomain, 253 + NUL */
#define KUBE_KIND_LEN 64
#define KUBE_LABELS_LEN 512 /* labels as compact JSON, whole pairs only */
#define KUBE_PORT_NAME_LEN 64
#define KUBE_ERR_LEN 256

enum kube_source {
	KUBE_SOURCE_NONE = 0,
	KUBE_SOURCE_INVENTORY,
	KUBE_SOURCE_API,
};

/* Which pods the API source watches (memory per pod: docs/kubernetes.md). */
enum kube_pod_scope {
	/* Every pod of the cluster: both ends of every flow get names, labels and
	 * workloads.  One pod watch for the whole cluster. */
	KUBE_PODS_ALL = 0,
	/* This node's pods (fieldSelector=spec.nodeName=NODE) in full, and remote
	 * pods only as far as EndpointSlices name them (targetRef: namespace/name,
	 * node; no labels; workload from the name only when a ReplicaSet hash says
	 * so).  Remote pods behind no Service stay unnamed. */
	KUBE_PODS_NODE,
};

enum kube_log_level { KUBE_LOG_ERROR = 0, KUBE_LOG_WARN, KUBE_LOG_INFO, KUBE_LOG_DEBUG };

struct kube_config {
	int source;                  /* enum kube_source */

	/* API source.  kubeconfig NULL = in-cluster: KUBERNETES_SERVICE_HOST/_PORT
	 * and the token, ca.crt and namespace files in serviceaccount_dir. */
	const char *kubeconfig;
	const char *context;         /* kubeconfig context; NULL = current-context */
	const char *serviceaccount_dir; /* NULL = /var/run/secrets/kubernetes.io/serviceaccount */
	const char *node;            /* this node's name (downward API NODE_NAME);
	                              * required for KUBE_PODS_NODE */
	int pod_scope;               /* enum kube_pod_scope (default ALL) */

	/* Inventory source. */
	const char *inventory;       /* path of the inventory file */
	unsigned inventory_poll_ms;  /* how often its mtime/size/inode is checked (1000) */

	/* Bounds (0 = default).  A response or event over its bound is refused
	 * with an error naming the bound; the directory keeps what it had. */
	size_t max_response_bytes;   /* one list page or inventory file (16 MiB; a
	                              * page over it is asked again in smaller pages) */
	size_t max_event_bytes;      /* one watch event line (2 MiB) */
	size_t max_objects;          /* pods, Services and EndpointSlices each (250000) */
	size_t max_history;          /* ended IP assignments kept (65536) */
	uint64_t history_us;         /* ... and for how long (1 hour) */
	unsigned page_size;          /* list page size, ?limit= (250) */

	/* Timing (0 = default). */
	unsigned connect_timeout_ms; /* TCP + TLS connect (5000) */
	unsigned list_timeout_ms;    /* a whole list request (60000) */
	unsigned watch_timeout_s;    /* timeoutSeconds asked for; each watch picks
	                              * between this and twice this, as client-go (300) */
	unsigned watch_grace_s;      /* a watch silent for timeoutSeconds + this is
	                              * abandoned and reopened (30) */
	unsigned backoff_initial_ms; /* first retry delay (500) ... */
	unsigned backoff_max_ms;     /* ... doubling up to this (30000), jittered */

	/* Log sink for state changes and errors (never one line per event); NULL =
	 * stderr.  Called on the directory's thread (and kube_open's). */
	void (*log)(void *arg, int level, const char *msg);
	void *log_arg;
};

void kube_config_default(struct kube_config *cfg);

struct kube;

/* Validates cfg, reads credentials (kubeconfig, service account) or the inventory
 * file, and starts the directory's thread.  The first list runs in the
 * background; kube_wait_synced() waits for it.  Strings in cfg are copied.  A
 * first inventory load that fails is an error; an API that cannot be reached at
 * start is not (the agent starts with no names and the status says why). */
struct kube *kube_open(const struct kube_config *cfg, char *err, size_t errlen);

/* Waits until every watched resource has been listed once (or the inventory
 * loaded), at most timeout_ms.  0, or -ETIMEDOUT. */
int kube_wait_synced(struct kube *k, unsigned timeout_ms);

/* Stops the thread and frees everything. */
void kube_close(struct kube *k);

/* ---- lookups (any thread) ------------------------------------------------- */

enum kube_ep_kind {
	KUBE_EP_NONE = 0,
	KUBE_EP_POD,     /* a pod's IP */
	KUBE_EP_SERVICE, /* a Service's ClusterIP or external IP */
	KUBE_EP_NODE,    /* a node's IP (hostIP of its pods; host-network pods share it) */
};
const char *kube_ep_kind_name(int kind); /* "pod", "service", "node", "" */

struct kube_endpoint {
	uint8_t kind;             /* enum kube_ep_kind */
	uint8_t partial;          /* pod known only from an EndpointSlice: no labels */
	uint8_t labels_truncated; /* more labels than fit in labels[] */
	uint8_t ended;            /* the holder is gone or moved: named from history */
	char namespace[KUBE_NS_LEN]; /* "" for nodes */
	char name[KUBE_NAME_LEN];    /* pod, Service or node name */
	char node[KUBE_NAME_LEN];    /* pod: its node; node: its name */
	char workload_kind[KUBE_KIND_LEN]; /* "Deployment", "StatefulSet", "DaemonSet",
	                                    * "ReplicaSet", "Job", ..., "" = none */
	char workload[KUBE_NAME_LEN];
	char labels[KUBE_LABELS_LEN]; /* {"app":"web",...}: compact JSON, keys sorted */
	uint64_t since_us;            /* the assignment's interval [since, until) */
	uint64_t until_us;            /* UINT64_MAX while current */
};

/* Who held addr at ts_us (wall-clock microseconds, as flow records carry; 0 =
 * now).  family: 4 or AF_INET, 6 or AF_INET6; addr in network byte order, IPv4
 * in the first 4 bytes (as struct dc_tuple).  0 and *out filled, -ENOENT
 * (unknown at that time), -EINVAL. */
int kube_lookup_ip(const struct kube *k, int family, const uint8_t addr[16], uint64_t ts_us,
		   struct kube_endpoint *out);

enum kube_svc_via {
	KUBE_SVC_CLUSTER_IP = 1, /* addr:port is a ClusterIP and one of its ports */
	KUBE_SVC_EXTERNAL_IP,    /* a spec.externalIPs / LoadBalancer ingress IP */
	KUBE_SVC_NODE_PORT,      /* addr is a node IP and port a NodePort */
	KUBE_SVC_BACKEND,        /* addr:port is an endpoint of the Service */
};
const char *kube_svc_via_name(int via); /* "cluster-ip", "external-ip", "node-port", "backend" */

struct kube_service {
	uint8_t via;          /* enum kube_svc_via */
	uint8_t proto;        /* IPPROTO_TCP, _UDP, _SCTP */
	uint16_t port;        /* the Service's port */
	uint16_t node_port;   /* 0 = none */
	uint16_t target_port; /* 0 when named (target_port_name) or unknown */
	char namespace[KUBE_NS_LEN];
	char name[KUBE_NAME_LEN];
	char port_name[KUBE_PORT_NAME_LEN];        /* the Service port's name, "" if unnamed */
	char target_port_name[KUBE_PORT_NAME_LEN]; /* a named targetPort */
};

/* The Service reached by connecting to addr:port/proto at ts_us: a ClusterIP or
 * external IP with that port, or a NodePort on a node IP.  Use it on the
 * server end of a flow seen before DNAT (the client's veth).  0, -ENOENT. */
int kube_lookup_service(const struct kube *k, int family, const uint8_t addr[16], uint16_t port,
			uint8_t proto, uint64_t ts_us, struct kube_service *out);

/* A Service whose EndpointSlices list addr with port/proto (as of now: slices
 * keep no history): the server end of a flow seen after DNAT.  Several Services
 * may select one pod; the first found is returned.  0, -ENOENT. */
int kube_lookup_backend(const struct kube *k, int family, const uint8_t addr[16], uint16_t port,
			uint8_t proto, struct kube_service *out);

/* ---- status (any thread) -------------------------------------------------- */

enum kube_res_state {
	KUBE_RES_IDLE = 0,
	KUBE_RES_LISTING,
	KUBE_RES_WATCHING,
	KUBE_RES_BACKOFF, /* waiting to retry after an error */
};
const char *kube_res_state_name(int state);

#define KUBE_MAX_RES 3 /* pods, services, endpointslices */

struct kube_res_status {
	char name[24];               /* "pods", "services", "endpointslices" */
	uint8_t state;               /* enum kube_res_state */
	uint8_t synced;              /* listed at least once */
	uint64_t objects;            /* known now */
	uint64_t lists;              /* complete lists (the first one and relists) */
	uint64_t relists;            /* lists after the first: 410 Gone, lost events */
	uint64_t watches;            /* watch requests opened */
	uint64_t reconnects;         /* watches reopened after an error */
	uint64_t events;             /* ADDED + MODIFIED + DELETED applied */
	uint64_t bookmarks;
	uint64_t gone;               /* 410 Gone (status or ERROR event) */
	uint64_t errors;             /* failed requests, bad events */
	uint64_t last_sync_us;       /* last complete list, 0 = never */
	uint64_t last_event_us;      /* last event or bookmark */
	uint64_t last_error_us;
	uint64_t retry_at_us;        /* state BACKOFF: next attempt */
	char resource_version[64];
	char last_error[KUBE_ERR_LEN];
};

struct kube_status {
	uint8_t source;              /* enum kube_source */
	uint8_t synced;              /* everything listed once */
	uint8_t connected;           /* API: every watch open; inventory: last load good */
	uint8_t stale;               /* !connected: names are the last good state's */
	char source_desc[KUBE_ERR_LEN]; /* "in-cluster https://10.96.0.1:443 node n1", ... */
	uint64_t pods, services, endpointslices, nodes;
	uint64_t addresses;          /* IPs with a current holder */
	uint64_t history;            /* ended assignments kept */
	uint64_t history_evicted;    /* ended assignments dropped by the caps */
	uint64_t relists, reconnects, events, errors; /* sums over resources */
	uint64_t last_sync_us;       /* API: the oldest resource's last list;
	                              * inventory: last good load */
	uint64_t stale_since_us;     /* when it went stale, 0 = not stale */
	uint64_t lookups, lookup_hits;
	uint64_t memory_bytes;       /* approximate bytes held by the directory */
	char last_error[KUBE_ERR_LEN];
	uint64_t last_error_us;
	unsigned n_res;
	struct kube_res_status res[KUBE_MAX_RES]; /* API only */
};

int kube_status(const struct kube *k, struct kube_status *out);

/* The status as one JSON object (for /api/v1/stats "kubernetes"), NUL-terminated;
 * -ENOSPC when buf is too small (16384 bytes always suffice). */
int kube_status_json(const struct kube *k, char *buf, size_t len);

/* Parses "all" / "node" into enum kube_pod_scope; -EINVAL otherwise. */
int kube_pod_scope_parse(const char *s);

/* ---- NAT: the Service a connection went through (conntrack) --------------- *
 *
 * kube-proxy DNATs a connection to a ClusterIP, external IP or NodePort to a
 * backend pod (and SNATs NodePort and hairpin traffic).  The node's conntrack
 * table knows both tuples of such a connection; kube_nat follows it (a dump at
 * open, then NEW/DESTROY events over netlink, libnetfilter_conntrack) and keeps
 * the translated connections only, findable by either view of the flow:
 *   before DNAT (the client's veth):  client:port -> VIP:port       (orig)
 *   after DNAT (underlay, backend):   client':port' -> backend:port (reply reversed)
 * so a record seen at either point learns the other side: the VIP's Service and
 * the backend pod, the real client behind an SNAT address.  Ended connections
 * stay findable for history_us (a flow's final record comes up to its idle
 * timeout after conntrack forgets a UDP connection).
 *
 * Threads: kube_nat_open starts one thread (the event reader); lookups and
 * stats from any thread.  Opens conntrack in the calling thread's network
 * namespace (the agent's node): call it after entering it.  Needs CAP_NET_ADMIN.
 * Memory: a ring of max_entries (~140 bytes each) allocated at open. */
struct kube_nat;

struct kube_nat_config {
	size_t max_entries;      /* translated connections kept, live and ended (65536) */
	uint64_t history_us;     /* ended ones stay findable this long (10 minutes) */
	void (*log)(void *arg, int level, const char *msg); /* NULL = stderr */
	void *log_arg;
};
void kube_nat_config_default(struct kube_nat_config *cfg);

struct kube_nat_tuple {
	uint8_t family;          /* 4 or 6 */
	uint8_t proto;           /* IPPROTO_TCP, _UDP, _SCTP */
	uint16_t sport, dport;
	uint8_t src[16], dst[16];/* network order, IPv4 in the first 4 bytes */
};

enum kube_nat_view {
	KUBE_NAT_ORIGINAL = 1,   /* the tuple looked up is the original: before DNAT */
	KUBE_NAT_REPLY,          /* it is the reply reversed: after DNAT (and SNAT) */
};

struct kube_nat_answer {
	struct kube_nat_tuple orig;  /* as the client sent it: dst = the VIP or NodePort */
	struct kube_nat_tuple reply; /* as the backend answered: src = the backend */
	uint8_t seen_as;             /* enum kube_nat_view */
	uint64_t since_us;           /* when conntrack announced it (0: found in the first dump) */
	uint64_t until_us;           /* UINT64_MAX while the connection lives */
};

struct kube_nat *kube_nat_open(const struct kube_nat_config *cfg, char *err, size_t errlen);
/* A table that only kube_nat_feed fills (tests; no conntrack, no thread). */
struct kube_nat *kube_nat_new_empty(const struct kube_nat_config *cfg);
void kube_nat_close(struct kube_nat *n);

/* The translated connection that the flow tuple t (client -> server, as a flow
 * record keys it) belongs to at ts_us (the flow's first packet; 0 = any): 0 and
 * *out, or -ENOENT, -EINVAL. */
int kube_nat_lookup(const struct kube_nat *n, const struct kube_nat_tuple *t, uint64_t ts_us,
		    struct kube_nat_answer *out);
/* Feeds a connection as conntrack would announce it (its original and reply
 * tuples), or its end; at_us 0 = now.  For tests and kube_nat_new_empty. */
int kube_nat_feed(struct kube_nat *n, const struct kube_nat_tuple *orig, const struct kube_nat_tuple *reply,
		  int destroy, uint64_t at_us);

struct kube_nat_stats {
	uint64_t entries;        /* slots in use (live and ended) */
	uint64_t added, destroyed; /* translated connections seen starting / ending */
	uint64_t evicted;        /* live ones overwritten because the ring was full */
	uint64_t dumps, overruns; /* table reads; event losses (each followed by a dump) */
	uint64_t errors;
	uint64_t lookups, hits;
};
void kube_nat_stats(const struct kube_nat *n, struct kube_nat_stats *out);

#endif
