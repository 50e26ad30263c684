/* kube.c — the handle: configuration, the source's thread, lookups, status. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube_int.h"

void kube_config_default(struct kube_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->source = KUBE_SOURCE_NONE;
	cfg->pod_scope = KUBE_PODS_ALL;
	cfg->inventory_poll_ms = 1000;
	cfg->max_response_bytes = 16u << 20;
	cfg->max_event_bytes = 2u << 20;
	cfg->max_objects = 250000;
	cfg->max_history = 65536;
	cfg->history_us = 3600ull * 1000000;
	cfg->page_size = 250;
	cfg->connect_timeout_ms = 5000;
	cfg->list_timeout_ms = 60000;
	cfg->watch_timeout_s = 300;
	cfg->watch_grace_s = 30;
	cfg->backoff_initial_ms = 500;
	cfg->backoff_max_ms = 30000;
}

uint64_t know_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t kmono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void klog(struct kube *k, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (k->cfg.log)
		k->cfg.log(k->cfg.log_arg, level, msg);
	else if (level <= KUBE_LOG_INFO)
		fprintf(stderr, "podcap: kube: %s\n", msg);
}

const char *kube_ep_kind_name(int kind)
{
	switch (kind) {
	case KUBE_EP_POD: return "pod";
	case KUBE_EP_SERVICE: return "service";
	case KUBE_EP_NODE: return "node";
	default: return "";
	}
}

const char *kube_svc_via_name(int via)
{
	switch (via) {
	case KUBE_SVC_CLUSTER_IP: return "cluster-ip";
	case KUBE_SVC_EXTERNAL_IP: return "external-ip";
	case KUBE_SVC_NODE_PORT: return "node-port";
	case KUBE_SVC_BACKEND: return "backend";
	default: return "";
	}
}

const char *kube_res_state_name(int state)
{
	switch (state) {
	case KUBE_RES_IDLE: return "connecting";
	case KUBE_RES_LISTING: return "listing";
	case KUBE_RES_WATCHING: return "watching";
	case KUBE_RES_BACKOFF: return "backoff";
	default: return "?";
	}
}

int kube_pod_scope_parse(const char *s)
{
	if (s && !strcmp(s, "all"))
		return KUBE_PODS_ALL;
	if (s && !strcmp(s, "node"))
		return KUBE_PODS_NODE;
	return -EINVAL;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void free_strings(struct kube *k)
{
	free(k->s_kubeconfig);
	free(k->s_context);
	free(k->s_sa_dir);
	free(k->s_node);
	free(k->s_inventory);
}

static int dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

struct kube *kube_open(const struct kube_config *cfg, char *err, size_t errlen)
{
	struct kube_config def;
	kube_config_default(&def);
	struct kube *k = calloc(1, sizeof(*k));
	int r = -EINVAL;
	if (!k) {
		snprintf(err, errlen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	k->cfg = *cfg;
#define DEF(f) if (!k->cfg.f) k->cfg.f = def.f
	DEF(inventory_poll_ms);
	DEF(max_response_bytes);
	DEF(max_event_bytes);
	DEF(max_objects);
	DEF(max_history);
	DEF(history_us);
	DEF(page_size);
	DEF(connect_timeout_ms);
	DEF(list_timeout_ms);
	DEF(watch_timeout_s);
	DEF(watch_grace_s);
	DEF(backoff_initial_ms);
	DEF(backoff_max_ms);
#undef DEF
	if (k->cfg.backoff_max_ms < k->cfg.backoff_initial_ms)
		k->cfg.backoff_max_ms = k->cfg.backoff_initial_ms;
	if (dup_opt(cfg->kubeconfig, &k->s_kubeconfig) || dup_opt(cfg->context, &k->s_context) ||
	    dup_opt(cfg->serviceaccount_dir, &k->s_sa_dir) || dup_opt(cfg->node, &k->s_node) ||
	    dup_opt(cfg->inventory, &k->s_inventory)) {
		snprintf(err, errlen, "out of memory");
		free_strings(k);
		free(k);
		errno = ENOMEM;
		return NULL;
	}
	k->cfg.kubeconfig = k->s_kubeconfig;
	k->cfg.context = k->s_context;
	k->cfg.serviceaccount_dir = k->s_sa_dir;
	k->cfg.node = k->s_node;
	k->cfg.inventory = k->s_inventory;
	pthread_mutex_init(&k->st_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->st_cond, &ca);
	pthread_condattr_destroy(&ca);
	k->st.source = (uint8_t)cfg->source;
	if ((r = kdir_init(&k->dir, &k->cfg)) < 0) {
		snprintf(err, errlen, "cannot set up the directory lock");
		goto fail_dir;
	}

	void *(*fn)(void *) = NULL;
	r = -EINVAL;
	if (cfg->pod_scope != KUBE_PODS_ALL && cfg->pod_scope != KUBE_PODS_NODE) {
		snprintf(err, errlen, "unknown pod scope %d", cfg->pod_scope);
	} else if (cfg->source == KUBE_SOURCE_API) {
		if (cfg->pod_scope == KUBE_PODS_NODE && (!cfg->node || !cfg->node[0])) {
			snprintf(err, errlen, "watching this node's pods needs the node's name (--node, "
				 "NODE_NAME from the downward API)");
		} else if (cfg->node && strlen(cfg->node) > 253) {
			snprintf(err, errlen, "node name longer than 253 characters");
		} else {
			pthread_once(&curl_once, curl_init);
			r = kapi_open(k, err, errlen);
			fn = kapi_thread;
		}
	} else if (cfg->source == KUBE_SOURCE_INVENTORY) {
		if (!cfg->inventory || !cfg->inventory[0])
			snprintf(err, errlen, "the inventory source needs a file name");
		else {
			r = kinv_open(k, err, errlen);
			fn = kinv_thread;
		}
	} else {
		snprintf(err, errlen, "no metadata source chosen");
	}
	if (r < 0)
		goto fail;
	if ((r = pthread_create(&k->thread, NULL, fn, k)) != 0) {
		r = -r;
		snprintf(err, errlen, "cannot start the metadata thread: %s", strerror(-r));
		goto fail;
	}
	pthread_setname_np(k->thread, "podcap-kube");
	k->thread_started = 1;
	return k;
fail:
	kapi_close(k);
	kinv_close(k);
	kdir_free(&k->dir);
fail_dir:
	pthread_cond_destroy(&k->st_cond);
	pthread_mutex_destroy(&k->st_lock);
	free_strings(k);
	free(k);
	errno = -r;
	return NULL;
}

static int synced_locked(const struct kube *k)
{
	if (k->cfg.source == KUBE_SOURCE_INVENTORY)
		return k->st.synced;
	if (!k->st.n_res)
		return 0;
	for (unsigned i = 0; i < k->st.n_res; i++)
		if (!k->st.res[i].synced)
			return 0;
	return 1;
}

int kube_wait_synced(struct kube *k, unsigned timeout_ms)
{
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	int r = 0;
	pthread_mutex_lock(&k->st_lock);
	while (!synced_locked(k)) {
		if (pthread_cond_timedwait(&k->st_cond, &k->st_lock, &dl) == ETIMEDOUT) {
			r = synced_locked(k) ? 0 : -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&k->st_lock);
	return r;
}

void kube_close(struct kube *k)
{
	if (!k)
		return;
	atomic_store(&k->stop, 1);
	if (k->thread_started) {
		kapi_wake(k);
		pthread_join(k->thread, NULL);
	}
	kapi_close(k);
	kinv_close(k);
	kdir_free(&k->dir);
	pthread_cond_destroy(&k->st_cond);
	pthread_mutex_destroy(&k->st_lock);
	free_strings(k);
	free(k);
}

/* ---- lookups ----------------------------------------------------------------------- */

static int to_kaddr(int family, const uint8_t addr[16], struct kaddr *a)
{
	memset(a, 0, sizeof(*a));
	if (!addr)
		return -EINVAL;
	if (family == 4 || family == AF_INET) {
		a->family = 4;
		memcpy(a->a, addr, 4);
	} else if (family == 6 || family == AF_INET6) {
		a->family = 6;
		memcpy(a->a, addr, 16);
	} else {
		return -EINVAL;
	}
	return 0;
}

int kube_lookup_ip(const struct kube *k, int family, const uint8_t addr[16], uint64_t ts_us,
		   struct kube_endpoint *out)
{
	struct kaddr a;
	if (!k || !out || to_kaddr(family, addr, &a) < 0)
		return -EINVAL;
	/* The directory's lock and counters are the only state a lookup changes. */
	return kdir_lookup_ip((struct kdir *)&k->dir, &a, ts_us, out);
}

int kube_lookup_service(const struct kube *k, int family, const uint8_t addr[16], uint16_t port,
			uint8_t proto, uint64_t ts_us, struct kube_service *out)
{
	struct kaddr a;
	if (!k || !out || to_kaddr(family, addr, &a) < 0)
		return -EINVAL;
	return kdir_lookup_service((struct kdir *)&k->dir, &a, port, proto, ts_us, out);
}

int kube_lookup_backend(const struct kube *k, int family, const uint8_t addr[16], uint16_t port,
			uint8_t proto, struct kube_service *out)
{
	struct kaddr a;
	if (!k || !out || to_kaddr(family, addr, &a) < 0)
		return -EINVAL;
	return kdir_lookup_backend((struct kdir *)&k->dir, &a, port, proto, out);
}

/* ---- status -------------------------------------------------------------------------- */

int kube_status(const struct kube *k, struct kube_status *out)
{
	if (!k || !out)
		return -EINVAL;
	struct kube *mk = (struct kube *)k;
	struct kdir_counts c;
	kdir_counts(&mk->dir, &c);
	pthread_mutex_lock(&mk->st_lock);
	*out = k->st;
	out->synced = (uint8_t)synced_locked(k);
	pthread_mutex_unlock(&mk->st_lock);
	out->source = (uint8_t)k->cfg.source;
	out->pods = c.pods;
	out->services = c.svcs;
	out->endpointslices = c.slices;
	out->nodes = c.nodes;
	out->addresses = c.current;
	out->history = c.ended;
	out->history_evicted = c.evicted;
	out->memory_bytes = c.mem;
	out->lookups = atomic_load_explicit(&mk->dir.lookups, memory_order_relaxed);
	out->lookup_hits = atomic_load_explicit(&mk->dir.hits, memory_order_relaxed);
	out->relists = out->reconnects = out->events = 0;
	if (k->cfg.source == KUBE_SOURCE_API) {
		out->errors = 0;
		out->last_sync_us = UINT64_MAX;
		for (unsigned i = 0; i < out->n_res; i++) {
			struct kube_res_status *r = &out->res[i];
			out->relists += r->relists;
			out->reconnects += r->reconnects;
			out->events += r->events;
			out->errors += r->errors;
			if (r->last_sync_us < out->last_sync_us)
				out->last_sync_us = r->last_sync_us;
		}
		if (out->last_sync_us == UINT64_MAX)
			out->last_sync_us = 0;
		out->res[0].objects = c.pods;
		out->res[1].objects = c.svcs;
		out->res[2].objects = c.slices;
	}
	return 0;
}

struct jbuf {
	char *p;
	size_t len, pos;
	int full;
};

static void jb_raw(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jb_raw(struct jbuf *b, const char *fmt, ...)
{
	if (b->full)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->pos, b->len - b->pos, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->len - b->pos)
		b->full = 1;
	else
		b->pos += (size_t)n;
}

static void jb_str(struct jbuf *b, const char *s)
{
	jb_raw(b, "\"");
	for (; *s && !b->full; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			jb_raw(b, "\\%c", c);
		else if (c < 0x20)
			jb_raw(b, "\\u%04x", c);
		else
			jb_raw(b, "%c", c);
	}
	jb_raw(b, "\"");
}

static void jb_time(struct jbuf *b, const char *key, uint64_t us)
{
	if (!us) {
		jb_raw(b, ",\"%s\":null", key);
		return;
	}
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char s[40];
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	jb_raw(b, ",\"%s\":\"%s.%03uZ\"", key, s, (unsigned)(us % 1000000 / 1000));
}

int kube_status_json(const struct kube *k, char *buf, size_t len)
{
	struct kube_status s;
	if (!buf || !len)
		return -EINVAL;
	int r = kube_status(k, &s);
	if (r < 0)
		return r;
	struct jbuf b = {buf, len, 0, 0};
	jb_raw(&b, "{\"source\":");
	jb_str(&b, s.source == KUBE_SOURCE_API ? "api" : s.source == KUBE_SOURCE_INVENTORY ? "inventory" : "none");
	jb_raw(&b, ",\"description\":");
	jb_str(&b, s.source_desc);
	jb_raw(&b, ",\"synced\":%s,\"connected\":%s,\"stale\":%s", s.synced ? "true" : "false",
	       s.connected ? "true" : "false", s.stale ? "true" : "false");
	jb_time(&b, "stale_since", s.stale_since_us);
	jb_time(&b, "last_sync", s.last_sync_us);
	jb_raw(&b, ",\"pods\":%llu,\"services\":%llu,\"endpointslices\":%llu,\"nodes\":%llu,"
	       "\"addresses\":%llu,\"history\":%llu,\"history_evicted\":%llu,\"relists\":%llu,"
	       "\"reconnects\":%llu,\"events\":%llu,\"errors\":%llu,\"lookups\":%llu,"
	       "\"lookup_hits\":%llu,\"memory_bytes\":%llu,\"last_error\":",
	       (unsigned long long)s.pods, (unsigned long long)s.services,
	       (unsigned long long)s.endpointslices, (unsigned long long)s.nodes,
	       (unsigned long long)s.addresses, (unsigned long long)s.history,
	       (unsigned long long)s.history_evicted, (unsigned long long)s.relists,
	       (unsigned long long)s.reconnects, (unsigned long long)s.events,
	       (unsigned long long)s.errors, (unsigned long long)s.lookups,
	       (unsigned long long)s.lookup_hits, (unsigned long long)s.memory_bytes);
	if (s.last_error[0])
		jb_str(&b, s.last_error);
	else
		jb_raw(&b, "null");
	jb_time(&b, "last_error_time", s.last_error_us);
	jb_raw(&b, ",\"resources\":[");
	for (unsigned i = 0; i < s.n_res; i++) {
		const struct kube_res_status *x = &s.res[i];
		jb_raw(&b, "%s{\"name\":", i ? "," : "");
		jb_str(&b, x->name);
		jb_raw(&b, ",\"state\":\"%s\",\"synced\":%s,\"objects\":%llu,\"lists\":%llu,"
		       "\"relists\":%llu,\"watches\":%llu,\"reconnects\":%llu,\"events\":%llu,"
		       "\"bookmarks\":%llu,\"gone\":%llu,\"errors\":%llu,\"resource_version\":",
		       kube_res_state_name(x->state), x->synced ? "true" : "false",
		       (unsigned long long)x->objects, (unsigned long long)x->lists,
		       (unsigned long long)x->relists, (unsigned long long)x->watches,
		       (unsigned long long)x->reconnects, (unsigned long long)x->events,
		       (unsigned long long)x->bookmarks, (unsigned long long)x->gone,
		       (unsigned long long)x->errors);
		jb_str(&b, x->resource_version);
		jb_time(&b, "last_sync", x->last_sync_us);
		jb_time(&b, "last_event", x->last_event_us);
		jb_time(&b, "retry_at", x->retry_at_us);
		jb_raw(&b, ",\"last_error\":");
		if (x->last_error[0])
			jb_str(&b, x->last_error);
		else
			jb_raw(&b, "null");
		jb_raw(&b, "}");
	}
	jb_raw(&b, "]}");
	return b.full ? -ENOSPC : 0;
}
