/* Unit tests of kube/'s directory and parsers, no network: names by time (a pod
 * deleted and re-created with the same IP), relists that missed a delete,
 * terminal and host-network pods, Services (ClusterIP, NodePort, backends),
 * pods named by EndpointSlices only, history caps, hostile objects, RFC 3339
 * times, labels, kubeconfig YAML/JSON, the inventory format, and lookups from
 * several threads while the directory changes (run it under ASan). */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube_int.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)

#define S(us) ((uint64_t)(us) * 1000000ull)
#define T0 S(1700000000) /* a creationTimestamp: 2023-11-14T22:13:20Z */

static struct kaddr A(const char *s)
{
	struct kaddr a;
	if (kaddr_parse(s, &a) < 0)
		abort();
	return a;
}

static void init_dir(struct kdir *d, int scope, size_t max_history)
{
	struct kube_config c;
	kube_config_default(&c);
	c.pod_scope = scope;
	if (max_history)
		c.max_history = max_history;
	if (kdir_init(d, &c) < 0)
		abort();
}

/* A pod as the API would send it (shape of a real PodList item). */
static json_t *pod_json(const char *uid, const char *ns, const char *name, const char *ip,
			const char *created, const char *phase)
{
	char buf[2048];
	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\",\"uid\":\"%s\","
		 "\"resourceVersion\":\"%s-%s\",\"creationTimestamp\":\"%s\","
		 "\"labels\":{\"app\":\"web\",\"pod-template-hash\":\"5d9c8f7b6\"},"
		 "\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\","
		 "\"name\":\"web-5d9c8f7b6\",\"uid\":\"u-rs\",\"controller\":true,"
		 "\"blockOwnerDeletion\":true}]},"
		 "\"spec\":{\"nodeName\":\"pc-node1\"},"
		 "\"status\":{\"phase\":\"%s\",\"hostIP\":\"172.18.0.11\",\"podIP\":\"%s\","
		 "\"podIPs\":[{\"ip\":\"%s\"}]}}",
		 name, ns, uid, uid, phase, created, phase, ip, ip);
	json_error_t je;
	json_t *j = json_loads(buf, 0, &je);
	if (!j) {
		printf("bad test JSON: %s\n", je.text);
		abort();
	}
	return j;
}

static struct kpod *pod(const char *uid, const char *name, const char *ip, const char *created,
			const char *phase)
{
	char err[256];
	json_t *j = pod_json(uid, "default", name, ip, created, phase);
	struct kpod *p = kobj_pod(j, err, sizeof(err));
	json_decref(j);
	if (!p) {
		printf("kobj_pod: %s\n", err);
		abort();
	}
	return p;
}

static const char *who(struct kdir *d, const char *ip, uint64_t ts)
{
	static char out[8][400];
	static int slot;
	struct kube_endpoint e;
	struct kaddr a = A(ip);
	char *o = out[slot++ % 8];
	if (kdir_lookup_ip(d, &a, ts, &e) < 0)
		snprintf(o, 400, "-");
	else
		snprintf(o, 400, "%s:%s/%s", kube_ep_kind_name(e.kind), e.namespace, e.name);
	return o;
}

static void test_recreate_same_ip(void)
{
	struct kdir d;
	init_dir(&d, KUBE_PODS_ALL, 0);
	/* web-0 created at T0, seen deleted at T0+100 s; a new web-0 (another uid)
	 * created at T0+105 s gets the same address. */
	kdir_pod_upsert(&d, pod("uid-a", "web-0", "10.244.1.10", "2023-11-14T22:13:20Z", "Running"),
			T0 + S(1));
	CHECK(!strcmp(who(&d, "10.244.1.10", T0 + S(50)), "pod:default/web-0"), "before delete: %s",
	      who(&d, "10.244.1.10", T0 + S(50)));
	kdir_pod_delete(&d, "uid-a", T0 + S(100));
	kdir_pod_upsert(&d, pod("uid-b", "web-0", "10.244.1.10", "2023-11-14T22:15:05Z", "Running"),
			T0 + S(106));
	struct kube_endpoint e;
	struct kaddr a = A("10.244.1.10");
	CHECK(kdir_lookup_ip(&d, &a, T0 + S(50), &e) == 0 && e.ended && e.until_us == T0 + S(100),
	      "old flow: ended=%d until=%llu", e.ended, (unsigned long long)e.until_us);
	CHECK(!strcmp(e.workload_kind, "Deployment") && !strcmp(e.workload, "web"),
	      "workload %s/%s", e.workload_kind, e.workload);
	CHECK(!strcmp(e.labels, "{\"app\":\"web\",\"pod-template-hash\":\"5d9c8f7b6\"}"), "labels %s",
	      e.labels);
	CHECK(!strcmp(who(&d, "10.244.1.10", T0 + S(102)), "-"), "gap: %s",
	      who(&d, "10.244.1.10", T0 + S(102)));
	CHECK(kdir_lookup_ip(&d, &a, T0 + S(110), &e) == 0 && !e.ended &&
	      e.since_us == T0 + S(105), "new flow: ended=%d since=%llu", e.ended,
	      (unsigned long long)e.since_us);
	CHECK(kdir_lookup_ip(&d, &a, 0, &e) == 0 && !strcmp(e.name, "web-0") && !e.ended, "now");
	CHECK(!strcmp(who(&d, "10.244.1.10", T0 - S(10)), "-"), "before creation");
	/* The node learned from hostIP. */
	CHECK(!strcmp(who(&d, "172.18.0.11", T0 + S(10)), "node:/pc-node1"), "node: %s",
	      who(&d, "172.18.0.11", T0 + S(10)));
	kdir_free(&d);
}

static void test_relist_missed_delete(void)
{
	struct kdir d;
	init_dir(&d, KUBE_PODS_ALL, 0);
	struct kpod *v[2];
	v[0] = pod("uid-a", "api-1", "10.244.3.10", "2023-11-14T22:13:20Z", "Running");
	v[1] = pod("uid-c", "client-2", "10.244.2.11", "2023-11-14T22:13:20Z", "Running");
	kdir_pods_replace(&d, v, 2, KPOD_SRC_WATCH, T0 + S(1));
	/* The watch broke; meanwhile api-1 was deleted and api-1 re-created (new
	 * uid) with the same address at T0+200.  The relist says only that. */
	v[0] = pod("uid-b", "api-1", "10.244.3.10", "2023-11-14T22:16:40Z", "Running");
	v[1] = pod("uid-c", "client-2", "10.244.2.11", "2023-11-14T22:13:20Z", "Running");
	kdir_pods_replace(&d, v, 2, KPOD_SRC_WATCH, T0 + S(300));
	struct kube_endpoint e;
	struct kaddr a = A("10.244.3.10");
	CHECK(kdir_lookup_ip(&d, &a, T0 + S(150), &e) == 0 && e.ended && e.until_us == T0 + S(200),
	      "old holder until its successor's creation: %llu", (unsigned long long)e.until_us);
	CHECK(kdir_lookup_ip(&d, &a, T0 + S(250), &e) == 0 && !e.ended && e.since_us == T0 + S(200),
	      "new holder since its creation");
	CHECK(!strcmp(who(&d, "10.244.2.11", T0 + S(250)), "pod:default/client-2"), "unchanged pod");
	struct kdir_counts c;
	kdir_counts(&d, &c);
	CHECK(c.pods == 2 && c.ended == 1, "pods %llu ended %llu", (unsigned long long)c.pods,
	      (unsigned long long)c.ended);
	kdir_free(&d);
}

static void test_terminal_and_hostnet(void)
{
	struct kdir d;
	init_dir(&d, KUBE_PODS_ALL, 0);
	kdir_pod_upsert(&d, pod("uid-j", "job-x", "10.244.1.20", "2023-11-14T22:13:20Z", "Running"),
			T0 + S(1));
	kdir_pod_upsert(&d, pod("uid-j", "job-x", "10.244.1.20", "2023-11-14T22:13:20Z", "Succeeded"),
			T0 + S(60));
	/* The pod object stays, its address does not. */
	CHECK(!strcmp(who(&d, "10.244.1.20", 0), "-"), "terminal: %s", who(&d, "10.244.1.20", 0));
	CHECK(!strcmp(who(&d, "10.244.1.20", T0 + S(30)), "pod:default/job-x"), "terminal history");
	/* Same rv would be skipped: the helper bakes the uid into rv, so change it. */
	json_t *j = pod_json("uid-h", "kube-system", "kube-proxy-x", "172.18.0.11",
			     "2023-11-14T22:13:20Z", "Running");
	json_object_set_new(json_object_get(j, "spec"), "hostNetwork", json_true());
	char err[256];
	struct kpod *p = kobj_pod(j, err, sizeof(err));
	json_decref(j);
	kdir_pod_upsert(&d, p, T0 + S(2));
	CHECK(!strcmp(who(&d, "172.18.0.11", 0), "node:/pc-node1"), "host network: %s",
	      who(&d, "172.18.0.11", 0));
	kdir_free(&d);
}

static json_t *loads(const char *s)
{
	json_error_t je;
	json_t *j = json_loads(s, 0, &je);
	if (!j) {
		printf("bad test JSON: %s: %s\n", je.text, s);
		abort();
	}
	return j;
}

static void test_services(void)
{
	struct kdir d;
	init_dir(&d, KUBE_PODS_ALL, 0);
	char err[256];
	json_t *j = loads("{\"metadata\":{\"name\":\"web\",\"namespace\":\"default\",\"uid\":\"s1\","
			  "\"resourceVersion\":\"7\",\"creationTimestamp\":\"2023-11-14T22:13:20Z\"},"
			  "\"spec\":{\"type\":\"NodePort\",\"clusterIP\":\"10.96.0.80\","
			  "\"clusterIPs\":[\"10.96.0.80\"],\"externalIPs\":[\"192.0.2.7\"],"
			  "\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":80,"
			  "\"targetPort\":8080,\"nodePort\":30080},{\"name\":\"dns\",\"protocol\":\"UDP\","
			  "\"port\":53,\"targetPort\":\"dns\"}]},\"status\":{\"loadBalancer\":{}}}");
	struct ksvc *s = kobj_svc(j, err, sizeof(err));
	json_decref(j);
	CHECK(s, "kobj_svc: %s", err);
	kdir_svc_upsert(&d, s, T0 + S(1));
	kdir_pod_upsert(&d, pod("uid-w", "web-1", "10.244.1.10", "2023-11-14T22:13:20Z", "Running"),
			T0 + S(1));
	struct kube_service ks;
	struct kaddr vip = A("10.96.0.80"), ext = A("192.0.2.7"), node = A("172.18.0.11");
	CHECK(kdir_lookup_service(&d, &vip, 80, 6, T0 + S(5), &ks) == 0 &&
	      ks.via == KUBE_SVC_CLUSTER_IP && !strcmp(ks.name, "web") && ks.target_port == 8080 &&
	      !strcmp(ks.port_name, "http"), "cluster ip");
	CHECK(kdir_lookup_service(&d, &vip, 53, 17, T0 + S(5), &ks) == 0 &&
	      !strcmp(ks.target_port_name, "dns") && ks.target_port == 0, "named target port");
	CHECK(kdir_lookup_service(&d, &vip, 81, 6, T0 + S(5), &ks) == -ENOENT, "wrong port");
	CHECK(kdir_lookup_service(&d, &vip, 53, 6, T0 + S(5), &ks) == -ENOENT, "wrong protocol");
	CHECK(kdir_lookup_service(&d, &ext, 80, 6, T0 + S(5), &ks) == 0 &&
	      ks.via == KUBE_SVC_EXTERNAL_IP, "external ip");
	CHECK(kdir_lookup_service(&d, &node, 30080, 6, T0 + S(5), &ks) == 0 &&
	      ks.via == KUBE_SVC_NODE_PORT && ks.port == 80, "node port");
	CHECK(!strcmp(who(&d, "10.96.0.80", T0 + S(5)), "service:default/web"), "vip by ip");
	j = loads("{\"metadata\":{\"name\":\"web-abcde\",\"namespace\":\"default\","
		  "\"resourceVersion\":\"9\",\"labels\":{\"kubernetes.io/service-name\":\"web\"}},"
		  "\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"10.244.1.10\"],"
		  "\"conditions\":{\"ready\":true,\"serving\":true,\"terminating\":false},"
		  "\"nodeName\":\"pc-node1\",\"targetRef\":{\"kind\":\"Pod\",\"namespace\":\"default\","
		  "\"name\":\"web-1\",\"uid\":\"uid-w\"}}],"
		  "\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":8080}]}");
	struct kslice *sl = kobj_slice(j, err, sizeof(err));
	json_decref(j);
	CHECK(sl, "kobj_slice: %s", err);
	kdir_slice_upsert(&d, sl, T0 + S(2));
	struct kaddr be = A("10.244.1.10");
	CHECK(kdir_lookup_backend(&d, &be, 8080, 6, &ks) == 0 && ks.via == KUBE_SVC_BACKEND &&
	      !strcmp(ks.name, "web") && ks.port == 80 && ks.node_port == 30080, "backend");
	CHECK(kdir_lookup_backend(&d, &be, 8081, 6, &ks) == -ENOENT, "backend wrong port");
	/* Service deleted: the VIP keeps its name for older flows. */
	kdir_svc_delete(&d, "default/web", T0 + S(100));
	CHECK(kdir_lookup_service(&d, &vip, 80, 6, T0 + S(50), &ks) == 0, "deleted svc, old flow");
	CHECK(kdir_lookup_service(&d, &vip, 80, 6, T0 + S(150), &ks) == -ENOENT, "deleted svc, new");
	CHECK(kdir_lookup_service(&d, &node, 30080, 6, T0 + S(150), &ks) == -ENOENT, "nodeport gone");
	kdir_slice_delete(&d, "default/web-abcde", T0 + S(100));
	CHECK(kdir_lookup_backend(&d, &be, 8080, 6, &ks) == -ENOENT, "slice gone");
	kdir_free(&d);
}

static struct kslice *slice_json(const char *name, const char *rv, const char *ip, const char *pod,
				 const char *uid)
{
	char buf[1024], err[256];
	snprintf(buf, sizeof(buf),
		 "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\",\"resourceVersion\":\"%s\","
		 "\"labels\":{\"kubernetes.io/service-name\":\"api\"}},\"addressType\":\"IPv4\","
		 "\"endpoints\":[{\"addresses\":[\"%s\"],\"conditions\":{\"ready\":true},"
		 "\"nodeName\":\"pc-node2\",\"targetRef\":{\"kind\":\"Pod\",\"namespace\":\"default\","
		 "\"name\":\"%s\",\"uid\":\"%s\"}}],\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\","
		 "\"port\":8080}]}",
		 name, rv, ip, pod, uid);
	json_t *j = loads(buf);
	struct kslice *s = kobj_slice(j, err, sizeof(err));
	json_decref(j);
	if (!s)
		abort();
	return s;
}

static void test_slice_pods(void)
{
	struct kdir d;
	init_dir(&d, KUBE_PODS_NODE, 0);
	/* A remote Deployment pod named only by an EndpointSlice. */
	kdir_slice_upsert(&d, slice_json("api-x1", "1", "10.244.3.10", "api-7c6b9d4f5-x2x9k", "uid-r"),
			  T0 + S(1));
	struct kube_endpoint e;
	struct kaddr a = A("10.244.3.10");
	CHECK(kdir_lookup_ip(&d, &a, T0 + S(2), &e) == 0 && e.partial &&
	      !strcmp(e.name, "api-7c6b9d4f5-x2x9k") && !strcmp(e.node, "pc-node2") &&
	      !strcmp(e.workload_kind, "Deployment") && !strcmp(e.workload, "api"),
	      "slice pod: %s %s %s/%s", e.name, e.node, e.workload_kind, e.workload);
	/* The slice changes (rv 2) but still lists the pod: no break in its name. */
	kdir_slice_upsert(&d, slice_json("api-x1", "2", "10.244.3.10", "api-7c6b9d4f5-x2x9k", "uid-r"),
			  T0 + S(50));
	CHECK(kdir_lookup_ip(&d, &a, T0 + S(2), &e) == 0 && !e.ended, "continuous after update");
	/* A pod of this node, from the pod watch, wins over a slice's word. */
	kdir_slice_upsert(&d, slice_json("api-x2", "3", "10.244.1.12", "client-1", "uid-c"), T0 + S(60));
	kdir_pod_upsert(&d, pod("uid-c", "client-1", "10.244.1.12", "2023-11-14T22:13:20Z", "Running"),
			T0 + S(61));
	struct kaddr c1 = A("10.244.1.12");
	CHECK(kdir_lookup_ip(&d, &c1, T0 + S(62), &e) == 0 && !e.partial &&
	      !strcmp(e.labels, "{\"app\":\"web\",\"pod-template-hash\":\"5d9c8f7b6\"}"),
	      "watched pod over slice pod: partial=%d labels=%s", e.partial, e.labels);
	/* The slice goes: the remote pod's name ends, the watched pod stays. */
	kdir_slice_delete(&d, "default/api-x1", T0 + S(100));
	kdir_slice_delete(&d, "default/api-x2", T0 + S(100));
	CHECK(kdir_lookup_ip(&d, &a, T0 + S(150), &e) == -ENOENT, "remote pod gone");
	CHECK(kdir_lookup_ip(&d, &a, T0 + S(80), &e) == 0 && e.ended, "remote pod history");
	CHECK(kdir_lookup_ip(&d, &c1, T0 + S(150), &e) == 0 && !e.ended, "watched pod stays");
	kdir_free(&d);
}

static void test_history_caps(void)
{
	struct kdir d;
	init_dir(&d, KUBE_PODS_ALL, 8);
	char uid[32], name[32], ip[32];
	/* 40 pods come and go on 4 addresses. */
	for (int i = 0; i < 40; i++) {
		snprintf(uid, sizeof(uid), "u%d", i);
		snprintf(name, sizeof(name), "p%d", i);
		snprintf(ip, sizeof(ip), "10.244.9.%d", i % 4);
		kdir_pod_upsert(&d, pod(uid, name, ip, "2023-11-14T22:13:20Z", "Running"), T0 + S(10 * i));
		kdir_pod_delete(&d, uid, T0 + S(10 * i + 5));
	}
	struct kdir_counts c;
	kdir_counts(&d, &c);
	CHECK(c.ended == 8 && c.evicted == 32 && c.pods == 0, "ended %llu evicted %llu",
	      (unsigned long long)c.ended, (unsigned long long)c.evicted);
	CHECK(!strcmp(who(&d, "10.244.9.3", T0 + S(392)), "pod:default/p39"), "newest kept");
	CHECK(!strcmp(who(&d, "10.244.9.0", T0 + S(2)), "-"), "oldest evicted");
	kdir_expire(&d, T0 + S(400) + S(3600) + S(1));
	kdir_counts(&d, &c);
	CHECK(c.ended == 0 && c.mem < 4096, "expired: %llu left, mem %llu",
	      (unsigned long long)c.ended, (unsigned long long)c.mem);
	kdir_free(&d);
}

static void test_hostile(void)
{
	char err[256], big[400];
	memset(big, 'a', 300);
	big[300] = '\0';
	const char *bad[] = {
		"[]",
		"{\"metadata\":{}}",
		"{\"metadata\":{\"name\":7}}",
		"{\"metadata\":{\"name\":\"x\\u0001y\"}}",
		"{\"metadata\":{\"name\":\"x\",\"creationTimestamp\":\"yesterday\"}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *j = loads(bad[i]);
		struct kpod *p = kobj_pod(j, err, sizeof(err));
		CHECK(!p && err[0], "accepted %s", bad[i]);
		kpod_free(p);
		json_decref(j);
	}
	char buf[600];
	snprintf(buf, sizeof(buf), "{\"metadata\":{\"name\":\"%s\"}}", big);
	json_t *j = loads(buf);
	struct kpod *p = kobj_pod(j, err, sizeof(err));
	CHECK(!p && strstr(err, "longer than 253"), "long name: %s", err);
	json_decref(j);
	/* Odd but harmless fields are skipped, not fatal. */
	j = loads("{\"metadata\":{\"name\":\"x\",\"labels\":{\"a\":1,\"b\":\"c\"},"
		  "\"ownerReferences\":\"no\"},\"status\":{\"podIP\":\"not-an-ip\","
		  "\"podIPs\":[{\"ip\":\"10.0.0.1\"},7,{\"ip\":\"fd00::1\"}]}}");
	p = kobj_pod(j, err, sizeof(err));
	CHECK(p && p->n_ips == 2 && !strcmp(p->labels, "{\"b\":\"c\"}"), "odd fields");
	kpod_free(p);
	json_decref(j);
	/* A Service with a hostile port list. */
	j = loads("{\"metadata\":{\"name\":\"s\",\"namespace\":\"n\"},\"spec\":{\"clusterIP\":\"None\","
		  "\"ports\":[{\"port\":0},{\"port\":70000},{\"port\":53,\"protocol\":\"ICMP\"},"
		  "{\"port\":80,\"targetPort\":{\"x\":1}}]}}");
	struct ksvc *s = kobj_svc(j, err, sizeof(err));
	CHECK(s && s->n_ips == 0 && s->n_ports == 1 && s->ports[0].port == 80 &&
	      s->ports[0].target_port == 0, "hostile service");
	ksvc_free(s);
	json_decref(j);
}

static void test_time_labels(void)
{
	uint64_t us = 0;
	CHECK(kobj_time("2023-11-14T22:13:20Z", &us) == 0 && us == T0, "plain");
	CHECK(kobj_time("2023-11-14T22:13:20.123456Z", &us) == 0 && us == T0 + 123456, "micro");
	CHECK(kobj_time("2023-11-14T23:13:20+01:00", &us) == 0 && us == T0, "offset");
	CHECK(kobj_time("2024-02-29T00:00:00Z", &us) == 0 && us == S(1709164800), "leap day");
	CHECK(kobj_time("2023-11-14 22:13:20Z", &us) < 0, "space");
	CHECK(kobj_time("2023-11-14T22:13:20", &us) < 0, "no zone");
	CHECK(kobj_time("2023-13-14T22:13:20Z", &us) < 0, "month 13");
	CHECK(kobj_time("2023-11-14T22:13:20ZZ", &us) < 0, "trailing");
	char out[64];
	uint8_t tr;
	json_t *l = loads("{\"zeta\":\"1\",\"app\":\"web\",\"tier\":\"front\\\"end\"}");
	kobj_labels(l, out, sizeof(out), &tr);
	CHECK(!strcmp(out, "{\"app\":\"web\",\"tier\":\"front\\\"end\",\"zeta\":\"1\"}") && !tr,
	      "sorted, escaped: %s", out);
	kobj_labels(l, out, 30, &tr);
	CHECK(!strcmp(out, "{\"app\":\"web\"}") && tr, "whole pairs: %s", out);
	json_decref(l);
}

static void test_yaml(void)
{
	char err[256];
	const char *y =
		"apiVersion: v1\n"
		"clusters:\n"
		"- cluster:\n"
		"    certificate-authority-data: TFMwdExTMUNSVWRKVGc9PQ==\n"
		"    server: https://127.0.0.1:6443\n"
		"  name: kind-kind\n"
		"contexts:\n"
		"- context:\n"
		"    cluster: kind-kind\n"
		"    user: kind-kind\n"
		"  name: kind-kind\n"
		"current-context: kind-kind   # a comment\n"
		"kind: Config\n"
		"preferences: {}\n"
		"users:\n"
		"- name: kind-kind\n"
		"  user:\n"
		"    token: \"abc:def\"\n";
	json_t *j = kyaml_load(y, strlen(y), err, sizeof(err));
	CHECK(j, "yaml: %s", err);
	CHECK(j && !strcmp(json_string_value(json_object_get(j, "current-context")), "kind-kind"),
	      "current-context");
	json_t *users = json_object_get(j, "users");
	CHECK(!strcmp(json_string_value(json_object_get(json_object_get(json_array_get(users, 0), "user"),
							 "token")), "abc:def"), "quoted token");
	json_decref(j);
	const char *js = "{\"kind\":\"Config\",\"clusters\":[{\"name\":\"c\",\"cluster\":{\"server\":\"http://x\"}}]}";
	j = kyaml_load(js, strlen(js), err, sizeof(err));
	CHECK(j && json_array_size(json_object_get(j, "clusters")) == 1, "json kubeconfig: %s", err);
	json_decref(j);
	const char *alias = "a: &x [1, 2]\nb: *x\n";
	j = kyaml_load(alias, strlen(alias), err, sizeof(err));
	CHECK(!j && strstr(err, "aliases"), "alias refused: %s", err);
	const char *broken = "a: b\n c: [\n";
	j = kyaml_load(broken, strlen(broken), err, sizeof(err));
	CHECK(!j && strstr(err, "line "), "broken: %s", err);
	char deep[200] = "";
	for (int i = 0; i < 40; i++)
		strcat(deep, "[");
	j = kyaml_load(deep, strlen(deep), err, sizeof(err));
	CHECK(!j && (strstr(err, "deeper") || strstr(err, "line")), "deep: %s", err);
	j = kyaml_load("just a string", 13, err, sizeof(err));
	CHECK(!j, "scalar document");
}

static void test_inventory(void)
{
	const char *inv =
		"{\"cluster\": \"pc-lab\", \"nodes\": [{\"name\": \"pc-node1\", \"ips\": [\"172.18.0.11\"]}],"
		" \"pods\": ["
		"  {\"name\": \"web-1\", \"namespace\": \"default\", \"netns\": \"pc-web-1\", \"node\": \"pc-node1\","
		"   \"host_veth\": \"veth1234\", \"host_ifindex\": 5, \"ips\": [\"10.244.1.10\"],"
		"   \"labels\": {\"app\": \"web\", \"tier\": \"frontend\"}},"
		"  {\"name\": \"coredns\", \"namespace\": \"kube-system\", \"node\": \"pc-node1\","
		"   \"ips\": [\"10.244.1.11\"], \"labels\": {\"k8s-app\": \"kube-dns\"}}],"
		" \"services\": ["
		"  {\"namespace\": \"default\", \"name\": \"web\", \"cluster_ip\": \"10.96.0.80\","
		"   \"ports\": [{\"port\": 80, \"protocol\": \"TCP\", \"target_port\": 8080, \"node_port\": 30080}],"
		"   \"selector\": {\"app\": \"web\"},"
		"   \"endpoints\": [{\"pod\": \"web-1\", \"namespace\": \"default\", \"ip\": \"10.244.1.10\", \"port\": 8080}]},"
		"  {\"namespace\": \"kube-system\", \"name\": \"kube-dns\", \"cluster_ip\": \"10.96.0.10\","
		"   \"ports\": [{\"name\": \"dns\", \"port\": 53, \"protocol\": \"UDP\", \"target_port\": 53}],"
		"   \"endpoints\": [{\"pod\": \"coredns\", \"namespace\": \"kube-system\", \"ip\": \"10.244.1.11\", \"port\": 53}]}]}";
	struct kpod **pods;
	struct ksvc **svcs;
	struct kslice **slices;
	size_t np, ns, nl;
	char err[200];
	int r = kinv_parse(inv, strlen(inv), &pods, &np, &svcs, &ns, &slices, &nl, NULL, NULL, err,
			   sizeof(err));
	CHECK(r == 0 && np == 2 && ns == 2 && nl == 2, "parse: %d %s", r, err);
	if (r)
		return;
	struct kdir d;
	init_dir(&d, KUBE_PODS_ALL, 0);
	kdir_pods_replace(&d, pods, np, KPOD_SRC_INVENTORY, T0);
	kdir_svcs_replace(&d, svcs, ns, T0);
	kdir_slices_replace(&d, slices, nl, T0);
	free(pods);
	free(svcs);
	free(slices);
	struct kube_service ks;
	struct kaddr dns = A("10.96.0.10"), n1 = A("172.18.0.11"), c = A("10.244.1.11");
	CHECK(kdir_lookup_service(&d, &dns, 53, 17, T0 + 1, &ks) == 0 && !strcmp(ks.name, "kube-dns"),
	      "dns vip");
	CHECK(kdir_lookup_service(&d, &n1, 30080, 6, T0 + 1, &ks) == 0 && !strcmp(ks.name, "web"),
	      "nodeport via inventory node ips");
	CHECK(kdir_lookup_backend(&d, &c, 53, 17, &ks) == 0 && !strcmp(ks.port_name, "dns") &&
	      ks.port == 53, "dns backend");
	CHECK(!strcmp(who(&d, "10.244.1.10", T0 + 1), "pod:default/web-1"), "inventory pod");
	kdir_free(&d);
	const char *bads[] = {"", "[]", "{\"pods\": 3}", "{\"pods\": [{\"namespace\": \"x\"}]}",
			      "{\"pods\": [], \"services\": {}}", "{\"pods\": [{\"name\": \"a\\u0000b\"}]}"};
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		r = kinv_parse(bads[i], strlen(bads[i]), &pods, &np, &svcs, &ns, &slices, &nl, NULL, NULL,
			       err, sizeof(err));
		CHECK(r < 0 && err[0], "bad inventory %zu accepted", i);
	}
}

/* ---- lookups racing with changes --------------------------------------------- */

struct race {
	struct kdir *d;
	volatile int stop;
	unsigned long lookups, wrong;
};

static void *reader(void *arg)
{
	struct race *r = arg;
	struct kube_endpoint e;
	char ip[32], want[32];
	for (unsigned i = 0; !r->stop; i++) {
		snprintf(ip, sizeof(ip), "10.244.7.%u", i % 200);
		struct kaddr a = A(ip);
		if (kdir_lookup_ip(r->d, &a, 0, &e) == 0) {
			/* Every pod on 10.244.7.N is named rN-something. */
			snprintf(want, sizeof(want), "r%u-", i % 200);
			if (strncmp(e.name, want, strlen(want)))
				r->wrong++;
		}
		r->lookups++;
	}
	return NULL;
}

static void test_race(void)
{
	struct kdir d;
	init_dir(&d, KUBE_PODS_ALL, 1000);
	struct race r = {&d, 0, 0, 0};
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, reader, &r);
	char uid[32], name[48], ip[32];
	for (unsigned i = 0; i < 20000; i++) {
		unsigned slot = i % 200;
		snprintf(uid, sizeof(uid), "u%u", i);
		snprintf(name, sizeof(name), "r%u-%u", slot, i);
		snprintf(ip, sizeof(ip), "10.244.7.%u", slot);
		kdir_pod_upsert(&d, pod(uid, name, ip, "2023-11-14T22:13:20Z", "Running"), T0 + i);
		if (i >= 200) {
			snprintf(uid, sizeof(uid), "u%u", i - 200);
			kdir_pod_delete(&d, uid, T0 + i);
		}
		if (i % 1000 == 0)
			kdir_expire(&d, T0 + i);
	}
	r.stop = 1;
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	CHECK(r.wrong == 0, "%lu wrong answers of %lu", r.wrong, r.lookups);
	kdir_free(&d);
}

int main(void)
{
	test_recreate_same_ip();
	test_relist_missed_delete();
	test_terminal_and_hostnet();
	test_services();
	test_slice_pods();
	test_history_caps();
	test_hostile();
	test_time_labels();
	test_yaml();
	test_inventory();
	test_race();
	if (failures) {
		printf("%d failures\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
