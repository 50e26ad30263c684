/* Unprivileged unit tests of capture/discover: interface classification by CNI
 * conventions, and the pod inventory reader on good and hostile files. */
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)

static void test_classify(void)
{
	static const struct {
		const char *name, *kind;
		int netnsid;
		unsigned flags;
		int want;
	} cases[] = {
		{"veth1a2b3c4d", "veth", 3, 0, CAP_IF_POD_VETH},
		{"cali0123abcd", "veth", 1, 0, CAP_IF_POD_VETH},
		{"lxc9f8e7d6c", "veth", 2, 0, CAP_IF_POD_VETH},
		{"eni12345678", "veth", -1, 0, CAP_IF_POD_VETH}, /* CNI name is enough */
		{"eth0", "veth", 0, 0, CAP_IF_NIC},             /* kind/docker node uplink */
		{"vethpair", "veth", -1, 0, CAP_IF_POD_VETH},
		{"foo0", "veth", -1, 0, CAP_IF_OTHER},
		{"eth0", "", -1, 0, CAP_IF_NIC},
		{"ens5", "", -1, 0, CAP_IF_NIC},
		{"lo", "", -1, IFF_LOOPBACK, CAP_IF_LOOPBACK},
		{"cni0", "bridge", -1, 0, CAP_IF_BRIDGE},
		{"docker0", "bridge", -1, 0, CAP_IF_BRIDGE},
		{"flannel.1", "vxlan", -1, 0, CAP_IF_OVERLAY},
		{"vxlan.calico", "vxlan", -1, 0, CAP_IF_OVERLAY},
		{"cilium_vxlan", "vxlan", -1, 0, CAP_IF_OVERLAY},
		{"cilium_geneve", "geneve", -1, 0, CAP_IF_OVERLAY},
		{"tunl0", "ipip", -1, 0, CAP_IF_OVERLAY},
		{"tunl0", "", -1, 0, CAP_IF_OVERLAY},           /* by name when the kind is unknown */
		{"geneve0", "geneve", -1, 0, CAP_IF_OVERLAY},
		{"gre1", "gre", -1, 0, CAP_IF_OVERLAY},
		{"wg0", "wireguard", -1, 0, CAP_IF_OVERLAY},
		{"kube-ipvs0", "dummy", -1, 0, CAP_IF_OTHER},
		{"nodelocaldns", "dummy", -1, 0, CAP_IF_OTHER},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = cap_classify(cases[i].name, cases[i].kind, cases[i].netnsid, cases[i].flags);
		CHECK(got == cases[i].want, "%s (%s): %s, want %s", cases[i].name, cases[i].kind,
		      cap_if_class_name(got), cap_if_class_name(cases[i].want));
	}
}

static char tmpdir[] = "/tmp/pc-test-discover.XXXXXX";

static const char *write_file(const char *name, const char *text, size_t len)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	if (!f || fwrite(text, 1, len, f) != len) {
		perror(path);
		exit(1);
	}
	fclose(f);
	return path;
}

static void test_inventory_good(void)
{
	const char *json =
		"{\"cluster\": \"pc-lab\", \"extra\": {\"nested\": [1, 2.5e3, true, null, \"x\\\"y\"]},\n"
		" \"pods\": [\n"
		"  {\"name\": \"web-1\", \"namespace\": \"default\", \"netns\": \"pc-web-1\", \"node\": \"pc-node1\",\n"
		"   \"host_veth\": \"veth1a2b3c4d\", \"host_ifindex\": 7, \"ips\": [\"10.244.1.10\", \"fd00::a\"],\n"
		"   \"labels\": {\"app\": \"web\", \"tier\": \"frontend\"}},\n"
		"  {\"name\": \"tls-1\", \"namespace\": \"prod\", \"node\": \"pc-node2\", \"host_veth\": \"veth1a2b3c4d\",\n"
		"   \"ips\": []},\n"
		"  {}\n"
		"]}\n";
	struct cap_inventory *inv;
	char err[256] = "";
	const char *path = write_file("good.json", json, strlen(json));
	int rc = cap_inventory_load(path, &inv, err, sizeof(err));
	CHECK(rc == 0, "good inventory refused: %s", err);
	if (rc)
		return;
	CHECK(cap_inventory_count(inv) == 3, "pods: %zu", cap_inventory_count(inv));
	const struct cap_pod *p = cap_inventory_pod(inv, 0);
	CHECK(p && !strcmp(p->name, "web-1") && !strcmp(p->namespace, "default") && p->host_ifindex == 7 &&
	      p->n_ips == 2 && !strcmp(p->ips[1], "fd00::a"), "first pod fields");
	/* The same veth name on two nodes: the node decides. */
	p = cap_inventory_by_veth(inv, "pc-node2", "veth1a2b3c4d");
	CHECK(p && !strcmp(p->name, "tls-1"), "lookup by node");
	p = cap_inventory_by_veth(inv, "pc-node1", "veth1a2b3c4d");
	CHECK(p && !strcmp(p->name, "web-1"), "lookup by node 1");
	CHECK(cap_inventory_by_veth(inv, NULL, "nosuch") == NULL, "unknown veth");
	cap_inventory_free(inv);
}

static void test_inventory_bad(void)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{}",
		"{\"pods\": [",
		"{\"pods\": [{\"name\": \"x\"}",
		"{\"pods\": [{\"name\": \"unterminated}]}",
		"{\"pods\": [{\"name\": 12}]}",
		"{\"pods\": [{\"host_ifindex\": 99999999999}]}",
		"{\"pods\": [{\"host_ifindex\": -1}]}",
		"{\"pods\": {}}",
		"{\"pods\": [], }",
		"{\"pods\" [] }",
		"{\"pods\": [{\"name\": \"a\nb\"}]}",
		"{\"pods\": [{\"ips\": [\"1.2.3.4\" \"5.6.7.8\"]}]}",
		"{\"pods\": [{\"name\": \"\\u12\"}]}",
		"{\"pods\": [], \"x\": @}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cap_inventory *inv = NULL;
		char err[256] = "";
		const char *path = write_file("bad.json", bad[i], strlen(bad[i]));
		int rc = cap_inventory_load(path, &inv, err, sizeof(err));
		CHECK(rc < 0 && inv == NULL && err[0], "bad inventory %zu accepted: %s", i, bad[i]);
		cap_inventory_free(inv);
	}
	/* Nesting far deeper than the cap. */
	size_t n = 100000;
	char *deep = malloc(2 * n + 32);
	strcpy(deep, "{\"x\": ");
	size_t off = strlen(deep);
	for (size_t i = 0; i < n; i++)
		deep[off++] = '[';
	for (size_t i = 0; i < n; i++)
		deep[off++] = ']';
	strcpy(deep + off, ", \"pods\": []}");
	struct cap_inventory *inv = NULL;
	char err[256] = "";
	int rc = cap_inventory_load(write_file("deep.json", deep, strlen(deep)), &inv, err, sizeof(err));
	CHECK(rc < 0 && strstr(err, "nesting"), "deep nesting: rc %d, %s", rc, err);
	free(deep);
	/* Long strings are truncated, not overflowed. */
	char *lng = malloc(70000);
	strcpy(lng, "{\"pods\": [{\"name\": \"");
	off = strlen(lng);
	memset(lng + off, 'a', 65000);
	strcpy(lng + off + 65000, "\", \"host_veth\": \"veth0123456789abcdef\"}]}");
	rc = cap_inventory_load(write_file("long.json", lng, strlen(lng)), &inv, err, sizeof(err));
	CHECK(rc == 0 && cap_inventory_count(inv) == 1 && strlen(cap_inventory_pod(inv, 0)->name) == 63 &&
	      strlen(cap_inventory_pod(inv, 0)->host_veth) == IF_NAMESIZE - 1, "long strings: rc %d %s", rc, err);
	cap_inventory_free(inv);
	free(lng);
	/* Missing file. */
	rc = cap_inventory_load("/nonexistent/pods.json", &inv, err, sizeof(err));
	CHECK(rc < 0 && strstr(err, "/nonexistent/pods.json"), "missing file: %s", err);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_classify();
	test_inventory_good();
	test_inventory_bad();
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	if (failures) {
		printf("%d failure(s)\n", failures);
		return 1;
	}
	printf("ok: classification and inventory reader\n");
	return 0;
}
