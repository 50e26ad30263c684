/* The Kubernetes API source against apiserver-replay.py: list, watch
 * ADDED/MODIFIED/DELETED, BOOKMARK moving the resourceVersion, 410 Gone (event
 * and HTTP) -> relist, a dropped connection -> reconnect from the last
 * resourceVersion, a pod deleted and re-created with the same IP named right
 * before and after, paging with an expired continue token, this node's pods
 * plus EndpointSlice names, in-cluster credentials over TLS, and the faults:
 * 500s, garbage, a silent watch, a hanging list, a huge list -- after each the
 * directory still has its names and the status says what is wrong.
 *
 *   test_kube_api HTTP_URL HTTPS_URL CA_FILE TOKEN TMPDIR
 *
 * Waits poll the status with generous deadlines; no check depends on timing. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kube_int.h"

static int failures;
static const char *url, *tls_url, *ca_file, *token, *tmpdir;
static char kubeconfig[512];

#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
	printf(__VA_ARGS__); printf("\n"); fflush(stdout); } } while (0)

static void logcb(void *arg, int level, const char *msg)
{
	(void)arg;
	printf("    [kube %d] %s\n", level, msg);
}

/* ---- talking to the replay server ------------------------------------------ */

struct buf {
	char *p;
	size_t n;
};

static size_t sink(char *p, size_t s, size_t n, void *arg)
{
	struct buf *b = arg;
	char *np = realloc(b->p, b->n + s * n + 1);
	if (!np)
		return 0;
	b->p = np;
	memcpy(b->p + b->n, p, s * n);
	b->n += s * n;
	b->p[b->n] = '\0';
	return s * n;
}

static char *http(const char *base, const char *path, int post)
{
	char u[600];
	snprintf(u, sizeof(u), "%s%s", base, path);
	struct buf b = {NULL, 0};
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, u);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	if (post)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	CURLcode r = curl_easy_perform(c);
	curl_easy_cleanup(c);
	if (r != CURLE_OK) {
		printf("control %s: %s\n", path, curl_easy_strerror(r));
		exit(1);
	}
	return b.p;
}

static void scenario(const char *name)
{
	char p[128];
	snprintf(p, sizeof(p), "/_control/scenario?name=%s", name);
	free(http(url, p, 1));
}

static void release(const char *gate)
{
	char p[128];
	snprintf(p, sizeof(p), "/_control/release?gate=%s", gate);
	free(http(url, p, 1));
}

/* The requests for one resource path ("/api/v1/pods"), watch or not. */
static json_t *requests(const char *base, const char *path, int watch)
{
	char *s = http(base, "/_control/requests", 0);
	json_error_t je;
	json_t *all = json_loads(s, 0, &je), *out = json_array(), *r;
	free(s);
	size_t i;
	json_array_foreach(all, i, r) {
		const char *p = json_string_value(json_object_get(r, "path"));
		json_t *q = json_object_get(r, "query");
		int w = json_object_get(q, "watch") != NULL;
		if (p && !strcmp(p, path) && w == watch)
			json_array_append(out, r);
	}
	json_decref(all);
	return out;
}

static const char *qget(json_t *req, const char *k)
{
	const char *v = json_string_value(json_object_get(json_object_get(req, "query"), k));
	return v ? v : "";
}

/* ---- the directory under test ---------------------------------------------- */

static struct kube *open_api(struct kube_config *c, const char *scen)
{
	char err[256];
	scenario(scen);
	c->source = KUBE_SOURCE_API;
	if (!c->kubeconfig && !c->serviceaccount_dir)
		c->kubeconfig = kubeconfig;
	c->log = logcb;
	struct kube *k = kube_open(c, err, sizeof(err));
	if (!k) {
		printf("FAIL kube_open: %s\n", err);
		exit(1);
	}
	return k;
}

static struct kube_config base_cfg(void)
{
	struct kube_config c;
	kube_config_default(&c);
	c.backoff_initial_ms = 50; /* keep the tests short */
	c.backoff_max_ms = 400;
	return c;
}

typedef int (*pred_fn)(const struct kube_status *s, void *arg);

static int wait_for(struct kube *k, pred_fn fn, void *arg, const char *what)
{
	struct kube_status s;
	for (int i = 0; i < 3000; i++) { /* 60 s at most: a busy machine */
		kube_status(k, &s);
		if (fn(&s, arg))
			return 1;
		usleep(20000);
	}
	printf("FAIL waiting for %s; last error: %s\n", what, s.last_error);
	failures++;
	return 0;
}

static int p_synced(const struct kube_status *s, void *a)
{
	(void)a;
	return s->synced && s->connected;
}

struct resc {
	int res;
	const char *field;
	uint64_t min;
};

static uint64_t res_field(const struct kube_status *s, int res, const char *f)
{
	const struct kube_res_status *r = &s->res[res];
	if (!strcmp(f, "relists"))
		return r->relists;
	if (!strcmp(f, "reconnects"))
		return r->reconnects;
	if (!strcmp(f, "events"))
		return r->events;
	if (!strcmp(f, "errors"))
		return r->errors;
	if (!strcmp(f, "watches"))
		return r->watches;
	if (!strcmp(f, "gone"))
		return r->gone;
	if (!strcmp(f, "bookmarks"))
		return r->bookmarks;
	if (!strcmp(f, "lists"))
		return r->lists;
	return 0;
}

static int p_res(const struct kube_status *s, void *a)
{
	const struct resc *c = a;
	return res_field(s, c->res, c->field) >= c->min;
}

static int p_error(const struct kube_status *s, void *a)
{
	return strstr(s->last_error, (const char *)a) != NULL;
}

static int lookup(struct kube *k, const char *ip, uint64_t ts, struct kube_endpoint *e)
{
	uint8_t a[16] = {0};
	int fam = strchr(ip, ':') ? 6 : 4;
	inet_pton(fam == 4 ? AF_INET : AF_INET6, ip, a);
	return kube_lookup_ip(k, fam, a, ts, e);
}

static const char *name_at(struct kube *k, const char *ip, uint64_t ts)
{
	static char out[4][300];
	static int slot;
	char *o = out[slot++ % 4];
	struct kube_endpoint e;
	if (lookup(k, ip, ts, &e) < 0)
		snprintf(o, 300, "-");
	else
		snprintf(o, 300, "%.60s/%.200s", e.namespace, e.name);
	return o;
}

struct named {
	const char *ip, *want;
};

static struct kube *cur; /* the directory p_named looks at */

static int p_named(const struct kube_status *s, void *a)
{
	(void)s;
	struct named *n = a;
	return !strcmp(name_at(cur, n->ip, 0), n->want);
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Names that must survive every fault: the recorded list's. */
static void check_names_kept(struct kube *k, const char *when)
{
	CHECK(!strcmp(name_at(k, "10.244.1.10", 0), "default/web-1"), "%s: web-1 %s", when,
	      name_at(k, "10.244.1.10", 0));
	CHECK(!strcmp(name_at(k, "10.244.3.10", 0), "default/api-1"), "%s: api-1", when);
	CHECK(!strcmp(name_at(k, "10.96.0.10", 0), "kube-system/kube-dns"), "%s: kube-dns", when);
}

/* ---- the tests -------------------------------------------------------------------- */

static void t_list_watch_lookups(void)
{
	printf("list + watch, lookups of every kind\n");
	struct kube_config c = base_cfg();
	struct kube *k = cur = open_api(&c, "quiet");
	CHECK(kube_wait_synced(k, 30000) == 0, "not synced");
	wait_for(k, p_synced, NULL, "connected");
	struct kube_endpoint e;
	CHECK(lookup(k, "10.244.1.10", 0, &e) == 0 && e.kind == KUBE_EP_POD && !e.partial &&
	      !strcmp(e.node, "pc-node1") && !strcmp(e.workload_kind, "Deployment") &&
	      !strcmp(e.workload, "web") && strstr(e.labels, "\"app\":\"web\"") &&
	      strstr(e.labels, "\"tier\":\"frontend\""), "web-1: %s %s/%s %s", e.node, e.workload_kind,
	      e.workload, e.labels);
	CHECK(lookup(k, "10.244.1.11", 0, &e) == 0 && !strcmp(e.namespace, "kube-system") &&
	      !strcmp(e.workload_kind, "Deployment") && !strcmp(e.workload, "coredns"),
	      "coredns workload %s/%s", e.workload_kind, e.workload);
	CHECK(lookup(k, "10.244.2.10", 0, &e) == 0 && !strcmp(e.workload_kind, "StatefulSet") &&
	      !strcmp(e.workload, "tls"), "tls-1 workload %s/%s", e.workload_kind, e.workload);
	CHECK(lookup(k, "10.244.2.12", 0, &e) == 0 && !strcmp(e.name, "web-2") &&
	      !strcmp(e.node, "pc-node2"), "web-2");
	CHECK(lookup(k, "172.18.0.12", 0, &e) == 0 && e.kind == KUBE_EP_NODE &&
	      !strcmp(e.name, "pc-node2"), "node ip");
	CHECK(lookup(k, "10.244.9.9", 0, &e) == -ENOENT, "unknown ip");
	struct kube_service ks;
	uint8_t a[16] = {0};
	inet_pton(AF_INET, "10.96.0.10", a);
	CHECK(kube_lookup_service(k, 4, a, 53, 17, 0, &ks) == 0 && !strcmp(ks.name, "kube-dns") &&
	      !strcmp(ks.port_name, "dns") && ks.via == KUBE_SVC_CLUSTER_IP, "kube-dns:53/udp");
	inet_pton(AF_INET, "172.18.0.11", a);
	CHECK(kube_lookup_service(k, AF_INET, a, 30080, 6, 0, &ks) == 0 && !strcmp(ks.name, "web") &&
	      ks.via == KUBE_SVC_NODE_PORT && ks.port == 80 && ks.target_port == 8080, "nodeport");
	inet_pton(AF_INET, "10.244.3.10", a);
	CHECK(kube_lookup_backend(k, 4, a, 8080, 6, &ks) == 0 && !strcmp(ks.name, "api") &&
	      ks.port == 80 && !strcmp(ks.port_name, "http"), "backend api:80 <- 10.244.3.10:8080");
	struct kube_status s;
	kube_status(k, &s);
	CHECK(s.pods == 7 && s.services == 3 && s.endpointslices == 3 && s.nodes == 2,
	      "counts %llu %llu %llu %llu", (unsigned long long)s.pods,
	      (unsigned long long)s.services, (unsigned long long)s.endpointslices,
	      (unsigned long long)s.nodes);
	CHECK(s.connected && !s.stale && s.last_sync_us > 0 && s.relists == 0, "status");
	char js[16384];
	CHECK(kube_status_json(k, js, sizeof(js)) == 0 && strstr(js, "\"connected\":true") &&
	      strstr(js, "\"name\":\"endpointslices\""), "status json: %s", js);
	json_error_t je;
	json_t *jj = json_loads(js, 0, &je);
	CHECK(jj != NULL, "status json does not parse: %s", je.text);
	json_decref(jj);
	/* What was asked: a paged list, then a watch from its resourceVersion with
	 * bookmarks, a bearer token on every request. */
	json_t *lists = requests(url, "/api/v1/pods", 0), *watches = requests(url, "/api/v1/pods", 1);
	CHECK(json_array_size(lists) == 1 && !strcmp(qget(json_array_get(lists, 0), "limit"), "250"),
	      "pods list request");
	json_t *w = json_array_get(watches, 0);
	CHECK(w && !strcmp(qget(w, "resourceVersion"), "1000") &&
	      !strcmp(qget(w, "allowWatchBookmarks"), "true") && atoi(qget(w, "timeoutSeconds")) >= 300 &&
	      json_is_true(json_object_get(w, "auth")), "pods watch request");
	json_decref(lists);
	json_decref(watches);
	kube_close(k);
}

static void t_lifecycle(void)
{
	printf("watch: a pod re-created with the same IP, an IP taken by another pod, MODIFIED\n");
	struct kube_config c = base_cfg();
	struct kube *k = cur = open_api(&c, "lifecycle");
	CHECK(kube_wait_synced(k, 30000) == 0, "not synced");
	struct resc bm = {0, "bookmarks", 1};
	wait_for(k, p_res, &bm, "first bookmark");
	uint64_t t_before = now_us();
	struct kube_endpoint neu, e;
	/* tls-1: deleted, then re-created by its StatefulSet (new uid, same IP). */
	CHECK(!strcmp(name_at(k, "10.244.2.10", t_before), "default/tls-1"), "before");
	release("deleted");
	struct named gone = {"10.244.2.10", "-"};
	wait_for(k, p_named, &gone, "tls-1 deleted");
	uint64_t t_gap = now_us();
	release("recreated");
	struct named back = {"10.244.2.10", "default/tls-1"};
	wait_for(k, p_named, &back, "tls-1 re-created");
	uint64_t t_after = now_us();
	CHECK(lookup(k, "10.244.2.10", t_before, &e) == 0 && !strcmp(e.name, "tls-1") && e.ended,
	      "a flow from before the delete: the old pod (ended=%d)", e.ended);
	CHECK(lookup(k, "10.244.2.10", t_after, &neu) == 0 && !strcmp(neu.name, "tls-1") && !neu.ended &&
	      neu.since_us >= e.until_us && neu.since_us > t_before,
	      "a flow after: the new pod, whose interval starts after the old one's");
	CHECK(lookup(k, "10.244.2.10", t_gap, &e) == -ENOENT || e.since_us <= t_gap,
	      "between delete and re-create: nobody (or the new pod if already there)");
	/* client-2 goes, client-3 gets its address. */
	uint64_t t_c2 = now_us();
	release("reused");
	struct named c3 = {"10.244.2.11", "default/client-3"};
	wait_for(k, p_named, &c3, "client-3 on client-2's address");
	CHECK(!strcmp(name_at(k, "10.244.2.11", t_c2), "default/client-2"),
	      "older flows on 10.244.2.11: client-2 (%s)", name_at(k, "10.244.2.11", t_c2));
	CHECK(!strcmp(name_at(k, "10.244.2.11", now_us()), "default/client-3"), "newer: client-3");
	release("more");
	struct resc bm2 = {0, "bookmarks", 2};
	wait_for(k, p_res, &bm2, "second bookmark");
	CHECK(lookup(k, "10.244.1.10", 0, &e) == 0 && strstr(e.labels, "\"version\":\"v2\""),
	      "MODIFIED labels: %s", e.labels);
	struct kube_status s;
	kube_status(k, &s);
	CHECK(s.res[0].events >= 8 && !strcmp(s.res[0].resource_version, "1040") &&
	      s.res[0].relists == 0, "events %llu rv %s", (unsigned long long)s.res[0].events,
	      s.res[0].resource_version);
	kube_close(k);
}

static void t_bookmark_rv(void)
{
	printf("BOOKMARK moves the resourceVersion the next watch starts from\n");
	struct kube_config c = base_cfg();
	struct kube *k = cur = open_api(&c, "bookmark");
	CHECK(kube_wait_synced(k, 30000) == 0, "not synced");
	struct resc w = {0, "watches", 2};
	wait_for(k, p_res, &w, "second watch");
	json_t *ws = requests(url, "/api/v1/pods", 1);
	CHECK(json_array_size(ws) >= 2 && !strcmp(qget(json_array_get(ws, 0), "resourceVersion"), "1000") &&
	      !strcmp(qget(json_array_get(ws, 1), "resourceVersion"), "1500"),
	      "second watch from the bookmark's rv: %s", qget(json_array_get(ws, 1), "resourceVersion"));
	json_decref(ws);
	struct kube_status s;
	kube_status(k, &s);
	CHECK(s.res[0].relists == 0 && s.res[0].reconnects == 0, "a normal watch end is no error");
	kube_close(k);
}

static void t_gone(const char *scen)
{
	printf("410 Gone (%s) -> relist\n", scen);
	struct kube_config c = base_cfg();
	uint64_t t_before = now_us(); /* the 410 may come before the first sync is seen */
	struct kube *k = cur = open_api(&c, scen);
	CHECK(kube_wait_synced(k, 30000) == 0, "not synced");
	struct resc r = {0, "relists", 1};
	wait_for(k, p_res, &r, "relist");
	wait_for(k, p_synced, NULL, "connected again");
	CHECK(!strcmp(name_at(k, "10.244.2.11", 0), "default/client-3"),
	      "after the relist 10.244.2.11 is client-3's");
	/* The relist shows client-3 on client-2's address without client-2's
	 * deletion having been seen: client-2 held it until client-3's creation
	 * (the recording's 2026-11-28T08:20:02Z). */
	uint64_t c3_created = 0, c2_time = 0;
	kobj_time("2026-11-28T08:20:02Z", &c3_created);
	kobj_time("2026-11-28T08:00:00Z", &c2_time);
	CHECK(!strcmp(name_at(k, "10.244.2.11", c2_time), "default/client-2"),
	      "client-2 kept for flows before client-3 was created");
	CHECK(!strcmp(name_at(k, "10.244.2.11", c3_created), "default/client-3") &&
	      !strcmp(name_at(k, "10.244.2.11", t_before), "default/client-3"),
	      "client-3 from its creation on");
	struct kube_status s;
	kube_status(k, &s);
	CHECK(s.res[0].gone >= 1, "gone counted");
	json_t *ls = requests(url, "/api/v1/pods", 0), *ws = requests(url, "/api/v1/pods", 1);
	CHECK(json_array_size(ls) >= 2 && json_array_size(ws) >= 2 &&
	      !strcmp(qget(json_array_get(ws, 1), "resourceVersion"), "2000"),
	      "relisted, then watched from the new list's rv");
	json_decref(ls);
	json_decref(ws);
	kube_close(k);
}

static void t_drop(void)
{
	printf("connection dropped mid-watch -> reconnect from the last rv, with back-off\n");
	struct kube_config c = base_cfg();
	struct kube *k = cur = open_api(&c, "drop");
	CHECK(kube_wait_synced(k, 30000) == 0, "not synced");
	struct resc r = {0, "reconnects", 1};
	wait_for(k, p_res, &r, "reconnect");
	struct resc w = {0, "watches", 2};
	wait_for(k, p_res, &w, "second watch");
	wait_for(k, p_synced, NULL, "connected again");
	json_t *ws = requests(url, "/api/v1/pods", 1);
	CHECK(json_array_size(ws) >= 2 && !strcmp(qget(json_array_get(ws, 1), "resourceVersion"), "1101"),
	      "reconnected from the last event's rv: %s", qget(json_array_get(ws, 1), "resourceVersion"));
	json_decref(ws);
	CHECK(!strcmp(name_at(k, "10.244.2.11", 0), "-"), "the delete before the drop applied");
	struct kube_status s;
	kube_status(k, &s);
	CHECK(s.res[0].relists == 0, "no relist for a dropped connection");
	kube_close(k);
}

static void t_list_500(void)
{
	printf("500s on the first list -> retried with back-off until it works\n");
	struct kube_config c = base_cfg();
	struct kube *k = cur = open_api(&c, "list-500");
	CHECK(kube_wait_synced(k, 30000) == 0, "not synced");
	struct kube_status s;
	kube_status(k, &s);
	CHECK(s.res[0].errors >= 2 && strstr(s.res[0].last_error, "HTTP 500") &&
	      strstr(s.res[0].last_error, "etcdserver"), "errors %llu: %s",
	      (unsigned long long)s.res[0].errors, s.res[0].last_error);
	CHECK(s.pods == 7, "listed in the end");
	kube_close(k);
}

static void t_fault_keeps_names(const char *scen, const char *expect, struct kube_config c)
{
	printf("%s: names kept, status says \"%s\"\n", scen, expect);
	struct kube *k = cur = open_api(&c, scen);
	CHECK(kube_wait_synced(k, 30000) == 0, "not synced");
	check_names_kept(k, scen);
	wait_for(k, p_error, (void *)expect, expect);
	check_names_kept(k, scen);
	struct kube_status s;
	kube_status(k, &s);
	CHECK(s.stale && !s.connected && s.stale_since_us > 0 && s.errors > 0,
	      "%s: stale=%d connected=%d", scen, s.stale, s.connected);
	char js[16384];
	CHECK(kube_status_json(k, js, sizeof(js)) == 0 && strstr(js, "\"stale\":true"), "json stale");
	kube_close(k);
}

static void t_paged(void)
{
	printf("paged list, continue token expired on page 2 -> list again\n");
	struct kube_config c = base_cfg();
	c.page_size = 2;
	struct kube *k = cur = open_api(&c, "paged-expire");
	CHECK(kube_wait_synced(k, 30000) == 0, "not synced");
	struct kube_status s;
	kube_status(k, &s);
	CHECK(s.pods == 7 && s.res[0].gone == 1, "pods %llu gone %llu", (unsigned long long)s.pods,
	      (unsigned long long)s.res[0].gone);
	json_t *ls = requests(url, "/api/v1/pods", 0);
	CHECK(json_array_size(ls) == 6, "page 1, page 2 (410), pages 1-4: %zu requests",
	      json_array_size(ls));
	CHECK(!qget(json_array_get(ls, 2), "continue")[0] && qget(json_array_get(ls, 3), "continue")[0],
	      "restarted without the token");
	json_decref(ls);
	kube_close(k);
}

static void t_node_scope(void)
{
	printf("pods of this node + names from EndpointSlices\n");
	struct kube_config c = base_cfg();
	c.pod_scope = KUBE_PODS_NODE;
	c.node = "pc-node1";
	struct kube *k = cur = open_api(&c, "quiet");
	CHECK(kube_wait_synced(k, 30000) == 0, "not synced");
	json_t *ls = requests(url, "/api/v1/pods", 0);
	CHECK(!strcmp(qget(json_array_get(ls, 0), "fieldSelector"), "spec.nodeName=pc-node1"),
	      "field selector: %s", qget(json_array_get(ls, 0), "fieldSelector"));
	json_decref(ls);
	struct kube_endpoint e;
	CHECK(lookup(k, "10.244.1.10", 0, &e) == 0 && !e.partial && strstr(e.labels, "web"),
	      "local pod in full");
	CHECK(lookup(k, "10.244.3.10", 0, &e) == 0 && e.partial && !strcmp(e.name, "api-1") &&
	      !strcmp(e.node, "pc-node2"), "remote pod from its EndpointSlice");
	CHECK(lookup(k, "10.244.2.12", 0, &e) == 0 && e.partial && !strcmp(e.name, "web-2") &&
	      !strcmp(e.workload_kind, ""), "remote web-2 from the web slice");
	CHECK(lookup(k, "10.244.2.11", 0, &e) == -ENOENT, "remote pod behind no Service: unnamed");
	kube_close(k);
}

static void t_incluster(void)
{
	printf("in-cluster: service-account token and CA over HTTPS\n");
	char sa[600], p[700];
	snprintf(sa, sizeof(sa), "%s/sa", tmpdir);
	mkdir(sa, 0700);
	snprintf(p, sizeof(p), "%s/token", sa);
	FILE *f = fopen(p, "w");
	fprintf(f, "%s\n", token);
	fclose(f);
	snprintf(p, sizeof(p), "cp %s %s/ca.crt", ca_file, sa);
	if (system(p) != 0)
		abort();
	snprintf(p, sizeof(p), "%s/namespace", sa);
	f = fopen(p, "w");
	fprintf(f, "podcap");
	fclose(f);
	const char *hp = strrchr(tls_url, ':');
	setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", hp + 1, 1);
	struct kube_config c = base_cfg();
	c.serviceaccount_dir = sa;
	char err[256];
	c.source = KUBE_SOURCE_API;
	c.log = logcb;
	struct kube *k = cur = kube_open(&c, err, sizeof(err));
	CHECK(k, "kube_open in-cluster: %s", err);
	if (!k)
		return;
	CHECK(kube_wait_synced(k, 30000) == 0, "not synced over TLS");
	CHECK(!strcmp(name_at(k, "10.244.1.10", 0), "default/web-1"), "named over TLS");
	struct kube_status s;
	kube_status(k, &s);
	CHECK(strstr(s.source_desc, "in-cluster https://127.0.0.1:"), "desc %s", s.source_desc);
	kube_close(k);
	/* A rotated token the server does not accept: 401, said so. */
	snprintf(p, sizeof(p), "%s/token", sa);
	f = fopen(p, "w");
	fprintf(f, "expired-token\n");
	fclose(f);
	k = cur = kube_open(&c, err, sizeof(err));
	wait_for(k, p_error, (void *)"HTTP 401: Unauthorized", "401");
	kube_close(k);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	/* Not in a pod at all. */
	k = kube_open(&c, err, sizeof(err));
	CHECK(!k && strstr(err, "KUBERNETES_SERVICE_HOST"), "outside a cluster: %s", err);
	kube_close(k);
}

static void t_kubeconfig_certs(void)
{
	printf("kubeconfig with inline CA, client certificate and key (TLS client auth)\n");
	char p[600], err[256];
	snprintf(p, sizeof(p), "%s/kubeconfig-certs", tmpdir);
	struct kube_config c = base_cfg();
	c.source = KUBE_SOURCE_API;
	c.kubeconfig = p;
	c.log = logcb;
	struct kube *k = kube_open(&c, err, sizeof(err));
	CHECK(k, "kube_open: %s", err);
	if (!k)
		return;
	CHECK(kube_wait_synced(k, 30000) == 0, "not synced with a client certificate");
	CHECK(!strcmp(name_at(k, "10.244.1.12", 0), "default/client-1"), "named");
	kube_close(k);
}

static void t_config_errors(void)
{
	printf("configuration errors are refused with a message\n");
	char err[256], p[600];
	struct kube_config c = base_cfg();
	c.source = KUBE_SOURCE_API;
	c.pod_scope = KUBE_PODS_NODE;
	c.kubeconfig = kubeconfig;
	struct kube *k = kube_open(&c, err, sizeof(err));
	CHECK(!k && strstr(err, "node"), "node scope without a node: %s", err);
	c.pod_scope = KUBE_PODS_ALL;
	snprintf(p, sizeof(p), "%s/exec.yaml", tmpdir);
	FILE *f = fopen(p, "w");
	fprintf(f, "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context:\n"
		   "    cluster: k\n    user: u\nclusters:\n- name: k\n  cluster:\n    server: https://x:6443\n"
		   "users:\n- name: u\n  user:\n    exec:\n      command: gke-gcloud-auth-plugin\n");
	fclose(f);
	c.kubeconfig = p;
	k = kube_open(&c, err, sizeof(err));
	CHECK(!k && strstr(err, "exec"), "exec plugin: %s", err);
	c.kubeconfig = "/nonexistent/kubeconfig";
	k = kube_open(&c, err, sizeof(err));
	CHECK(!k && strstr(err, "/nonexistent/kubeconfig"), "missing file: %s", err);
	c.kubeconfig = kubeconfig;
	c.context = "nope";
	k = kube_open(&c, err, sizeof(err));
	CHECK(!k && strstr(err, "context \"nope\" not found"), "unknown context: %s", err);
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s HTTP_URL HTTPS_URL CA_FILE TOKEN TMPDIR\n", argv[0]);
		return 2;
	}
	url = argv[1];
	tls_url = argv[2];
	ca_file = argv[3];
	token = argv[4];
	tmpdir = argv[5];
	setvbuf(stdout, NULL, _IOLBF, 0);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(kubeconfig, sizeof(kubeconfig), "%s/kubeconfig", tmpdir);
	FILE *f = fopen(kubeconfig, "w");
	/* As kubectl writes them; the server is plain HTTP, the token still sent. */
	fprintf(f, "apiVersion: v1\nclusters:\n- cluster:\n    server: %s\n  name: replay\n"
		   "contexts:\n- context:\n    cluster: replay\n    namespace: default\n    user: tester\n"
		   "  name: replay\ncurrent-context: replay\nkind: Config\npreferences: {}\nusers:\n"
		   "- name: tester\n  user:\n    token: replay-token\n", url);
	fclose(f);

	t_list_watch_lookups();
	t_lifecycle();
	t_bookmark_rv();
	t_gone("gone-event");
	t_gone("gone-http");
	t_drop();
	t_list_500();
	t_fault_keeps_names("watch-500", "HTTP 500", base_cfg());
	t_fault_keeps_names("garbage", "unreadable JSON", base_cfg());
	struct kube_config c = base_cfg();
	c.watch_timeout_s = 1;
	c.watch_grace_s = 1;
	t_fault_keeps_names("hang", "nothing received", c);
	c = base_cfg();
	c.list_timeout_ms = 1500;
	t_fault_keeps_names("list-hang", "list failed", c);
	c = base_cfg();
	c.max_response_bytes = 1u << 20;
	t_fault_keeps_names("huge", "larger than 1048576 bytes: refused; keeping the previous state", c);
	t_paged();
	t_node_scope();
	t_incluster();
	t_kubeconfig_certs();
	t_config_errors();
	curl_global_cleanup();
	if (failures) {
		printf("%d failures\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
