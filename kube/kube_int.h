/* kube_int.h — private to kube/: the directory's objects and the pieces the two
 * sources share.  Not for other modules (they use kube.h). */
#ifndef PODCAP_KUBE_INT_H
#define PODCAP_KUBE_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <jansson.h>

#include "kube.h"

#define KUBE_UNTIL_OPEN UINT64_MAX
#define KPOD_MAX_IPS 4      /* status.podIPs: one per family in practice */
#define KHOST_MAX_IPS 2     /* status.hostIPs */
#define KSVC_MAX_IPS 8      /* clusterIPs + externalIPs + LoadBalancer ingress */
#define KSVC_MAX_PORTS 128
#define KSLICE_MAX_EPS 1000 /* the API's own limit per EndpointSlice */
#define KSLICE_MAX_PORTS 100
#define KNODE_MAX_IPS 4
#define KIP_MAX_ENDED 16    /* ended assignments kept per address */
#define KLABELS_MAX 64      /* labels looked at per pod (rendered up to KUBE_LABELS_LEN) */

/* An address: family 4 or 6, IPv4 in the first 4 bytes, the rest zero. */
struct kaddr {
	uint8_t family;
	uint8_t a[16];
};
int kaddr_parse(const char *s, struct kaddr *out); /* 0 or -EINVAL */
int kaddr_eq(const struct kaddr *x, const struct kaddr *y);

enum { KHOLD_POD = 1, KHOLD_SVC, KHOLD_NODE };
enum { KPOD_SRC_WATCH = 1, KPOD_SRC_SLICE, KPOD_SRC_INVENTORY };

/* Objects are immutable once in the directory: a change builds a new object and
 * swaps it in, so an ended assignment keeps the labels and workload the pod had
 * while it held the address.  refs: the table's reference plus one per
 * assignment; all changes happen under the directory's write lock. */
struct kpod {
	unsigned refs;
	uint32_t gen;             /* replace(): seen in the latest list */
	uint8_t src;              /* KPOD_SRC_* */
	uint8_t host_network;
	uint8_t terminal;         /* phase Succeeded/Failed: holds no address */
	uint8_t labels_truncated;
	uint8_t n_ips, n_host_ips;
	uint32_t slice_refs;      /* KPOD_SRC_SLICE: endpoints naming it */
	uint64_t created_us;      /* metadata.creationTimestamp, 0 = unknown */
	struct kaddr ips[KPOD_MAX_IPS];
	struct kaddr host_ips[KHOST_MAX_IPS];
	size_t size;              /* bytes allocated, for the memory figure */
	/* key: metadata.uid (API) or "namespace/name" (inventory, targetRef without
	 * uid); rv: metadata.resourceVersion, "" for the inventory. */
	const char *key, *ns, *name, *node, *wl_kind, *wl_name, *labels, *rv;
};

struct ksvc_port {
	uint8_t proto;
	uint16_t port, node_port, target_port;
	const char *name, *target_name;
};

struct ksvc {
	unsigned refs;
	uint32_t gen;
	uint8_t n_ips;            /* ips[0 .. n_cluster) ClusterIPs, then external ones */
	uint8_t n_cluster;
	uint16_t n_ports;
	uint64_t created_us;
	struct kaddr ips[KSVC_MAX_IPS];
	struct ksvc_port *ports;
	size_t size;
	const char *key, *ns, *name, *type, *rv; /* key "namespace/name" */
};

struct kslice_ep {
	struct kaddr addr;
	uint8_t ready;
	const char *pod_key, *pod_ns, *pod_name, *node; /* NULL: no Pod targetRef */
};

struct kslice_port {
	uint8_t proto;
	uint16_t port;
	const char *name;
};

struct kslice {
	uint32_t gen;
	uint32_t n_eps;
	uint16_t n_ports;
	struct kslice_ep *eps;
	struct kslice_port *ports;
	size_t size;
	const char *key, *ns, *service, *rv; /* service: label kubernetes.io/service-name */
};

struct knode {
	unsigned refs;
	uint8_t n_ips;
	struct kaddr ips[KNODE_MAX_IPS];
	const char *name;
};

/* Objects are allocated in one block with their strings; kobj_* builders. */
struct kpod *kpod_alloc(const char *key, const char *ns, const char *name, const char *node,
			const char *wl_kind, const char *wl_name, const char *labels, const char *rv);
void kpod_free(struct kpod *p);
/* ports[i].name/target_name and the strings are copied into the new block. */
struct ksvc *ksvc_build(const char *ns, const char *name, const char *type, const char *rv,
			uint64_t created_us, const struct kaddr *ips, unsigned n_ips,
			unsigned n_cluster, const struct ksvc_port *ports, unsigned n_ports);
void ksvc_free(struct ksvc *s);
struct kslice *kslice_build(const char *ns, const char *name, const char *service,
			    const char *rv, const struct kslice_ep *eps, unsigned n_eps,
			    const struct kslice_port *ports, unsigned n_ports);
void kslice_free(struct kslice *s);

/* ---- string-keyed hash map (writer side) --------------------------------- */

struct kmap_ent {
	struct kmap_ent *next;
	uint64_t h;
	const char *key; /* points into val (or is owned by the entry: kmap_put_copy) */
	void *val;
	char own[];      /* key storage for kmap_put_copy */
};
struct kmap {
	struct kmap_ent **b;
	size_t nb, n;
};
void *kmap_get(const struct kmap *m, const char *key);
int kmap_put(struct kmap *m, const char *key, void *val); /* replaces; key must live as long */
int kmap_put_copy(struct kmap *m, const char *key, void *val);
void *kmap_del(struct kmap *m, const char *key);
void kmap_free(struct kmap *m, void (*free_val)(void *));
/* Iteration that tolerates deleting the current entry: */
#define KMAP_FOREACH(m, e, tmp, i) \
	for (size_t i = 0; i < (m)->nb; i++) \
		for (struct kmap_ent *e = (m)->b[i], *tmp = e ? e->next : NULL; e; \
		     e = tmp, tmp = e ? e->next : NULL)

/* ---- the directory ------------------------------------------------------- */

struct kassign;
struct kbackref;
struct ipent;

struct kdir {
	pthread_rwlock_t lock;
	int pod_scope;                /* enum kube_pod_scope */
	size_t max_history;
	uint64_t history_us;
	size_t max_objects;
	uint32_t gen;
	struct kmap pods, svcs, slices, nodes, nodeports;
	struct ipent **ipb;           /* address hash */
	size_t ipnb, ipn;
	struct kassign *lru_head, *lru_tail; /* ended assignments, oldest first */
	size_t n_ended, n_current;
	uint64_t evicted;
	uint64_t mem;                 /* approximate bytes held */
	_Atomic uint64_t lookups, hits;
};

int kdir_init(struct kdir *d, const struct kube_config *cfg);
void kdir_free(struct kdir *d);

/* Writers (the source's thread).  Each takes the write lock itself.  Objects
 * handed in are owned by the directory from then on (freed if not kept). */
int kdir_pod_upsert(struct kdir *d, struct kpod *p, uint64_t now);   /* 0, -ENOSPC, -ENOMEM */
void kdir_pod_delete(struct kdir *d, const char *key, uint64_t now);
int kdir_svc_upsert(struct kdir *d, struct ksvc *s, uint64_t now);
void kdir_svc_delete(struct kdir *d, const char *key, uint64_t now);
int kdir_slice_upsert(struct kdir *d, struct kslice *s, uint64_t now);
void kdir_slice_delete(struct kdir *d, const char *key, uint64_t now);
/* Whole-set replacement after a (re)list or a reload: objects of the set not in
 * v[] are deleted (pods: only those of source src).  Takes v[]'s objects.
 * Returns how many were refused (max_objects). */
size_t kdir_pods_replace(struct kdir *d, struct kpod **v, size_t n, int src, uint64_t now);
size_t kdir_svcs_replace(struct kdir *d, struct ksvc **v, size_t n, uint64_t now);
size_t kdir_slices_replace(struct kdir *d, struct kslice **v, size_t n, uint64_t now);
/* A node's address, from a source that lists nodes (the inventory). */
void kdir_node_note(struct kdir *d, const char *name, const struct kaddr *a, uint64_t now);
/* Drops ended assignments older than history_us. */
void kdir_expire(struct kdir *d, uint64_t now);

struct kdir_counts {
	uint64_t pods, svcs, slices, nodes, current, ended, evicted, mem;
};
void kdir_counts(struct kdir *d, struct kdir_counts *c);

int kdir_lookup_ip(struct kdir *d, const struct kaddr *a, uint64_t ts, struct kube_endpoint *out);
int kdir_lookup_service(struct kdir *d, const struct kaddr *a, uint16_t port, uint8_t proto,
			uint64_t ts, struct kube_service *out);
int kdir_lookup_backend(struct kdir *d, const struct kaddr *a, uint16_t port, uint8_t proto,
			struct kube_service *out);

/* ---- JSON objects -> directory objects (objects.c) ------------------------ */

/* Each returns NULL with a message in err (the object is skipped, the rest of
 * the list is used).  Bounds: names, label counts and lengths, IP counts. */
struct kpod *kobj_pod(json_t *o, char *err, size_t errlen);
struct ksvc *kobj_svc(json_t *o, char *err, size_t errlen);
struct kslice *kobj_slice(json_t *o, char *err, size_t errlen);
/* metadata.uid (pods) or "namespace/name" of any object, for DELETED events. */
int kobj_key(json_t *o, int by_uid, char *out, size_t outlen);
/* RFC 3339 "2022-12-23T09:36:45Z" (fractions and offsets allowed) -> us. */
int kobj_time(const char *s, uint64_t *us);
/* Labels object -> compact JSON with sorted keys, whole pairs only. */
void kobj_labels(json_t *labels, char *out, size_t outlen, uint8_t *truncated);
/* Workload from owner references (+ pod-template-hash label). */
void kobj_workload(json_t *owners, json_t *labels, char *kind, size_t kindlen, char *name,
		   size_t namelen);
int kobj_proto(const char *s); /* "TCP" -> 6, "UDP" -> 17, "SCTP" -> 132, -1 */

/* ---- kubeconfig (kubeconfig.c) --------------------------------------------- */

struct kcreds {
	char server[512];        /* https://host:port (no trailing slash) */
	char ca_file[512];       /* "" = system CAs */
	char *ca_pem;            /* certificate-authority-data, decoded */
	size_t ca_pem_len;
	char cert_file[512], key_file[512];
	char *cert_pem, *key_pem;
	size_t cert_pem_len, key_pem_len;
	char token_file[512];    /* re-read before each request (rotation) */
	char *token;             /* static token */
	char *username, *password;
	int insecure;            /* insecure-skip-tls-verify */
	char desc[KUBE_ERR_LEN]; /* for the status: where this came from */
};
void kcreds_free(struct kcreds *c);
/* In-cluster: env KUBERNETES_SERVICE_HOST/PORT, sa_dir/{token,ca.crt}. */
int kcreds_incluster(const char *sa_dir, struct kcreds *c, char *err, size_t errlen);
/* A kubeconfig file, YAML (block style, as kubectl writes it) or JSON. */
int kcreds_kubeconfig(const char *path, const char *context, struct kcreds *c, char *err,
		      size_t errlen);
/* The bearer token for the next request (the token file re-read, else the static
 * token); "" when none. */
int kcreds_token(const struct kcreds *c, char *buf, size_t len, char *err, size_t errlen);
/* YAML document -> jansson tree (mappings, sequences, scalars as strings);
 * bounded; exposed for tests. */
json_t *kyaml_load(const char *buf, size_t len, char *err, size_t errlen);

/* ---- the handle and the sources ------------------------------------------ */

struct kapi;
struct kinv;

struct kube {
	struct kube_config cfg;
	char *s_kubeconfig, *s_context, *s_sa_dir, *s_node, *s_inventory; /* cfg's copies */
	struct kdir dir;
	pthread_t thread;
	int thread_started;
	atomic_int stop;
	pthread_mutex_t st_lock; /* guards st and the sources' status fields */
	pthread_cond_t st_cond;
	struct kube_status st;   /* source-side fields; counts filled on read */
	struct kapi *api;
	struct kinv *inv;
};

void klog(struct kube *k, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint64_t know_us(void);      /* CLOCK_REALTIME, us */
uint64_t kmono_us(void);     /* CLOCK_MONOTONIC, us */

int kapi_open(struct kube *k, char *err, size_t errlen);
void *kapi_thread(void *arg);
void kapi_wake(struct kube *k);
void kapi_close(struct kube *k);

int kinv_open(struct kube *k, char *err, size_t errlen);
void *kinv_thread(void *arg);
void kinv_close(struct kube *k);
/* Parses an inventory file's text into objects (exposed for tests).  nodes:
 * optional (NULL), filled with the "nodes" array's addresses. */
struct knode_addr {
	char name[KUBE_NAME_LEN];
	struct kaddr addr;
};
int kinv_parse(const char *buf, size_t len, struct kpod ***pods, size_t *npods,
	       struct ksvc ***svcs, size_t *nsvcs, struct kslice ***slices, size_t *nslices,
	       struct knode_addr **nodes, size_t *nnodes, char *err, size_t errlen);

#endif
