/* The inventory source through kube_open(): the lab's file (pods, nodes,
 * Services with endpoints) loaded, reloaded when it changes (a pod replaced on
 * the same address keeps its old name for older flows), and a broken or
 * missing file leaving the last good names in place with the status saying so.
 * And the lab agrees with the recordings: the inventory lab/lab writes
 * (recordings/lab-pods.json, made by its write_inventory) names every address
 * of the recorded API lists the same way.
 *   test_kube_inventory TMPDIR RECORDINGS_DIR */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "kube.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)

static char path[512];

static void put(const char *text)
{
	char tmp[600];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	fputs(text, f);
	fclose(f);
	rename(tmp, path); /* as lab/lab writes it */
}

static const char *name_at(struct kube *k, const char *ip, uint64_t ts)
{
	static char out[4][300];
	static int slot;
	char *o = out[slot++ % 4];
	uint8_t a[16] = {0};
	inet_pton(AF_INET, ip, a);
	struct kube_endpoint e;
	if (kube_lookup_ip(k, 4, a, ts, &e) < 0)
		snprintf(o, 300, "-");
	else
		snprintf(o, 300, "%.60s/%.200s", e.namespace, e.name);
	return o;
}

static int wait_name(struct kube *k, const char *ip, const char *want)
{
	for (int i = 0; i < 1500; i++) {
		if (!strcmp(name_at(k, ip, 0), want))
			return 1;
		usleep(20000);
	}
	return 0;
}

static int wait_error(struct kube *k, const char *want)
{
	struct kube_status s;
	for (int i = 0; i < 1500; i++) {
		kube_status(k, &s);
		if (s.stale && strstr(s.last_error, want))
			return 1;
		usleep(20000);
	}
	printf("last error: %s\n", s.last_error);
	return 0;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

#define HEAD "{\"cluster\": \"pc-lab\", \"nodes\": [{\"name\": \"pc-node1\", \"ips\": [\"172.18.0.11\"]}, " \
	     "{\"name\": \"pc-node2\", \"ips\": [\"172.18.0.12\"]}], \"pods\": [\n"
#define COREDNS "  {\"name\": \"coredns\", \"namespace\": \"kube-system\", \"netns\": \"pc-coredns\", " \
		"\"node\": \"pc-node1\", \"host_veth\": \"veth1a2b3c4d\", \"host_ifindex\": 7, " \
		"\"ips\": [\"10.244.1.11\"], \"labels\": {\"k8s-app\": \"kube-dns\"}}"
#define SERVICES "], \"services\": [\n" \
	"  {\"namespace\": \"kube-system\", \"name\": \"kube-dns\", \"cluster_ip\": \"10.96.0.10\", " \
	"\"ports\": [{\"name\": \"dns\", \"port\": 53, \"protocol\": \"UDP\", \"target_port\": 53}], " \
	"\"selector\": {\"k8s-app\": \"kube-dns\"}, \"endpoints\": [{\"pod\": \"coredns\", " \
	"\"namespace\": \"kube-system\", \"ip\": \"10.244.1.11\", \"port\": 53}]},\n" \
	"  {\"namespace\": \"default\", \"name\": \"web\", \"cluster_ip\": \"10.96.0.80\", " \
	"\"ports\": [{\"port\": 80, \"protocol\": \"TCP\", \"target_port\": 8080, \"node_port\": 30080}], " \
	"\"selector\": {\"app\": \"web\"}, \"endpoints\": [{\"pod\": \"web-1\", \"namespace\": \"default\", " \
	"\"ip\": \"10.244.1.10\", \"port\": 8080}]}]}\n"

/* Every pod of pods-list.json, Service of services-list.json and endpoint of
 * endpointslices-list.json, looked up in the directory the lab's inventory
 * made: same namespace, name, node, workload, labels (the API's are a
 * superset: controllers add theirs), ClusterIP ports and backends. */
static void lab_agrees(const char *rec)
{
	char p[600], err[256];
	snprintf(p, sizeof(p), "%s/lab-pods.json", rec);
	struct kube_config c;
	kube_config_default(&c);
	c.source = KUBE_SOURCE_INVENTORY;
	c.inventory = p;
	struct kube *k = kube_open(&c, err, sizeof(err));
	CHECK(k, "lab inventory: %s", err);
	if (!k)
		return;
	json_error_t je;
	snprintf(p, sizeof(p), "%s/pods-list.json", rec);
	json_t *pods = json_load_file(p, 0, &je), *it;
	size_t i, n = 0;
	json_array_foreach(json_object_get(pods, "items"), i, it) {
		json_t *md = json_object_get(it, "metadata");
		const char *ip = json_string_value(json_object_get(json_object_get(it, "status"), "podIP"));
		uint8_t a[16] = {0};
		inet_pton(AF_INET, ip, a);
		struct kube_endpoint e;
		if (kube_lookup_ip(k, 4, a, 0, &e) < 0) {
			CHECK(0, "%s: not in the lab's inventory", ip);
			continue;
		}
		const char *ns = json_string_value(json_object_get(md, "namespace"));
		const char *name = json_string_value(json_object_get(md, "name"));
		const char *node = json_string_value(json_object_get(json_object_get(it, "spec"), "nodeName"));
		CHECK(!strcmp(e.namespace, ns) && !strcmp(e.name, name) && !strcmp(e.node, node),
		      "%s: lab says %s/%s on %s, the API %s/%s on %s", ip, e.namespace, e.name, e.node, ns,
		      name, node);
		/* The workload the API's owner reference leads to. */
		json_t *own = json_array_get(json_object_get(md, "ownerReferences"), 0);
		const char *ok = json_string_value(json_object_get(own, "kind"));
		const char *on = json_string_value(json_object_get(own, "name"));
		char wl[300];
		if (!strcmp(ok, "ReplicaSet"))
			snprintf(wl, sizeof(wl), "Deployment/%.*s", (int)(strrchr(on, '-') - on), on);
		else
			snprintf(wl, sizeof(wl), "%s/%s", ok, on);
		char got[400];
		snprintf(got, sizeof(got), "%s/%s", e.workload_kind, e.workload);
		CHECK(!strcmp(got, wl), "%s: workload lab %s, API %s", name, got, wl);
		json_t *labels = json_loads(e.labels, 0, &je), *v;
		const char *lk;
		json_object_foreach(labels, lk, v) {
			const char *api = json_string_value(json_object_get(json_object_get(md, "labels"), lk));
			CHECK(api && !strcmp(api, json_string_value(v)), "%s: label %s", name, lk);
		}
		json_decref(labels);
		n++;
	}
	json_decref(pods);
	snprintf(p, sizeof(p), "%s/services-list.json", rec);
	json_t *svcs = json_load_file(p, 0, &je), *pt;
	json_array_foreach(json_object_get(svcs, "items"), i, it) {
		json_t *spec = json_object_get(it, "spec");
		const char *name = json_string_value(json_object_get(json_object_get(it, "metadata"), "name"));
		uint8_t a[16] = {0};
		inet_pton(AF_INET, json_string_value(json_object_get(spec, "clusterIP")), a);
		size_t j;
		json_array_foreach(json_object_get(spec, "ports"), j, pt) {
			struct kube_service ks;
			int proto = !strcmp(json_string_value(json_object_get(pt, "protocol")), "UDP") ? 17 : 6;
			int port = (int)json_integer_value(json_object_get(pt, "port"));
			CHECK(kube_lookup_service(k, 4, a, (uint16_t)port, (uint8_t)proto, 0, &ks) == 0 &&
			      !strcmp(ks.name, name) &&
			      !strcmp(ks.port_name, json_string_value(json_object_get(pt, "name"))),
			      "service %s port %d", name, port);
		}
	}
	json_decref(svcs);
	snprintf(p, sizeof(p), "%s/endpointslices-list.json", rec);
	json_t *sl = json_load_file(p, 0, &je), *ep;
	json_array_foreach(json_object_get(sl, "items"), i, it) {
		const char *svc = json_string_value(json_object_get(
			json_object_get(json_object_get(it, "metadata"), "labels"), "kubernetes.io/service-name"));
		size_t j, q;
		json_array_foreach(json_object_get(it, "endpoints"), j, ep) {
			uint8_t a[16] = {0};
			inet_pton(AF_INET, json_string_value(json_array_get(json_object_get(ep, "addresses"), 0)), a);
			json_array_foreach(json_object_get(it, "ports"), q, pt) {
				struct kube_service ks;
				int proto = !strcmp(json_string_value(json_object_get(pt, "protocol")), "UDP") ? 17 : 6;
				CHECK(kube_lookup_backend(k, 4, a,
							  (uint16_t)json_integer_value(json_object_get(pt, "port")),
							  (uint8_t)proto, &ks) == 0 && !strcmp(ks.name, svc),
				      "backend of %s", svc);
			}
		}
	}
	json_decref(sl);
	printf("lab inventory and recordings agree on %zu pods\n", n);
	kube_close(k);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s TMPDIR RECORDINGS_DIR\n", argv[0]);
		return 2;
	}
	lab_agrees(argv[2]);
	char dir[400];
	snprintf(dir, sizeof(dir), "%s/kube-inv.XXXXXX", argv[1]);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/lab-pods.json", dir);
	char err[256];
	struct kube_config c;
	kube_config_default(&c);
	c.source = KUBE_SOURCE_INVENTORY;
	c.inventory = path;
	c.inventory_poll_ms = 50;

	struct kube *k = kube_open(&c, err, sizeof(err));
	CHECK(!k && strstr(err, path), "a missing file at start is an error: %s", err);

	put(HEAD "  {\"name\": \"web-1\", \"namespace\": \"default\", \"node\": \"pc-node1\", "
		 "\"ips\": [\"10.244.1.10\"], \"labels\": {\"app\": \"web\", \"tier\": \"frontend\"}},\n"
		 COREDNS SERVICES);
	k = kube_open(&c, err, sizeof(err));
	CHECK(k, "kube_open: %s", err);
	if (!k)
		return 1;
	CHECK(kube_wait_synced(k, 10000) == 0, "not loaded");
	CHECK(!strcmp(name_at(k, "10.244.1.10", 0), "default/web-1"), "web-1");
	struct kube_endpoint e;
	uint8_t a[16] = {0};
	inet_pton(AF_INET, "10.244.1.10", a);
	CHECK(kube_lookup_ip(k, AF_INET, a, 0, &e) == 0 &&
	      !strcmp(e.labels, "{\"app\":\"web\",\"tier\":\"frontend\"}") && !strcmp(e.node, "pc-node1"),
	      "labels %s", e.labels);
	struct kube_service ks;
	inet_pton(AF_INET, "10.96.0.10", a);
	CHECK(kube_lookup_service(k, 4, a, 53, 17, 0, &ks) == 0 && !strcmp(ks.name, "kube-dns"), "dns vip");
	inet_pton(AF_INET, "172.18.0.12", a);
	CHECK(kube_lookup_service(k, 4, a, 30080, 6, 0, &ks) == 0 && !strcmp(ks.name, "web") &&
	      ks.via == KUBE_SVC_NODE_PORT, "nodeport on the other node");
	inet_pton(AF_INET, "10.244.1.11", a);
	CHECK(kube_lookup_backend(k, 4, a, 53, 17, &ks) == 0 && !strcmp(ks.name, "kube-dns") &&
	      !strcmp(ks.port_name, "dns"), "dns backend");

	/* web-1 replaced by web-2 on the same address. */
	uint64_t t1 = now_us();
	usleep(2000);
	put(HEAD "  {\"name\": \"web-2\", \"namespace\": \"default\", \"node\": \"pc-node1\", "
		 "\"ips\": [\"10.244.1.10\"], \"labels\": {\"app\": \"web\"}},\n" COREDNS SERVICES);
	CHECK(wait_name(k, "10.244.1.10", "default/web-2"), "reload: web-2");
	CHECK(!strcmp(name_at(k, "10.244.1.10", t1), "default/web-1"), "older flows: web-1 (%s)",
	      name_at(k, "10.244.1.10", t1));

	/* A broken file: the names stay, the status says why. */
	put("{\"pods\": [ {\"name\": \"half-writ");
	CHECK(wait_error(k, "not JSON"), "garbage reported");
	CHECK(!strcmp(name_at(k, "10.244.1.10", 0), "default/web-2"), "names kept over garbage");
	unlink(path);
	CHECK(wait_error(k, "No such file"), "missing file reported");
	CHECK(!strcmp(name_at(k, "10.244.1.11", 0), "kube-system/coredns"), "names kept, no file");
	put(HEAD COREDNS SERVICES);
	CHECK(wait_name(k, "10.244.1.10", "-"), "good file again: web-2 gone");
	struct kube_status s;
	kube_status(k, &s);
	CHECK(!s.stale && s.connected && s.pods == 1 && s.services == 2, "status after recovery");
	char js[16384];
	CHECK(kube_status_json(k, js, sizeof(js)) == 0 && strstr(js, "\"source\":\"inventory\""), "json");
	kube_close(k);
	unlink(path);
	rmdir(dir);
	if (failures) {
		printf("%d failures\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
