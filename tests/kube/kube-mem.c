/* Memory per pod in the directory, and the transient cost of parsing a list
 * page, measured with mallinfo2() on pods shaped like the recordings' (a real
 * pod: ~9 KiB of JSON with managedFields, 4 labels, an owner).  Prints the
 * figures docs/kubernetes.md quotes; fails only if a pod costs more than
 * 4 KiB in the directory (a regression guard, not a benchmark).
 *   kube-mem RECORDINGS_DIR [PODS] */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube_int.h"

static size_t heap(void)
{
	struct mallinfo2 m = mallinfo2();
	return m.uordblks;
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s RECORDINGS_DIR [PODS]\n", argv[0]);
		return 2;
	}
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 20000;
	char path[600];
	snprintf(path, sizeof(path), "%s/pods-list.json", argv[1]);
	json_error_t je;
	json_t *list = json_load_file(path, 0, &je);
	if (!list) {
		fprintf(stderr, "%s: %s\n", path, je.text);
		return 1;
	}
	json_t *tmpl = json_array_get(json_object_get(list, "items"), 0); /* web-1 */
	char *one = json_dumps(tmpl, JSON_COMPACT);
	size_t json_per_pod = strlen(one);
	free(one);

	/* A list page as the API sends it: 250 pods, parsed into one tree. */
	json_t *page = json_array();
	for (int i = 0; i < 250; i++)
		json_array_append_new(page, json_deep_copy(tmpl));
	char *page_text = json_dumps(page, JSON_COMPACT);
	size_t page_len = strlen(page_text);
	json_decref(page);
	size_t h0 = heap();
	json_t *parsed = json_loads(page_text, 0, &je);
	size_t tree = heap() - h0;
	json_decref(parsed);
	free(page_text);

	/* n distinct pods into the directory: the pod objects and everything the
	 * directory adds (address table, assignments, hash entries). */
	struct kpod **v = calloc(n, sizeof(*v));
	struct kaddr *addrs = calloc(n, sizeof(*addrs));
	char err[256], buf[64];
	size_t before = heap();
	for (size_t i = 0; i < n; i++) {
		json_t *p = json_deep_copy(tmpl);
		json_t *md = json_object_get(p, "metadata");
		snprintf(buf, sizeof(buf), "web-%zu", i);
		json_object_set_new(md, "name", json_string(buf));
		snprintf(buf, sizeof(buf), "uid-%zu", i);
		json_object_set_new(md, "uid", json_string(buf));
		snprintf(buf, sizeof(buf), "10.%zu.%zu.%zu", 64 + (i >> 16), (i >> 8) & 255, i & 255);
		json_object_set_new(json_object_get(p, "status"), "podIP", json_string(buf));
		json_object_del(json_object_get(p, "status"), "podIPs");
		v[i] = kobj_pod(p, err, sizeof(err));
		json_decref(p);
		kaddr_parse(buf, &addrs[i]);
		if (!v[i]) {
			fprintf(stderr, "kobj_pod: %s\n", err);
			return 1;
		}
	}
	struct kube_config c;
	kube_config_default(&c);
	struct kdir d;
	kdir_init(&d, &c);
	kdir_pods_replace(&d, v, n, KPOD_SRC_WATCH, 1700000000000000ull);
	size_t after = heap();
	free(v);
	double per_pod = (double)(after - before) / n;
	struct kdir_counts k;
	kdir_counts(&d, &k);

	/* Lookups: one hash probe and a copy, under the read lock. */
	struct kube_endpoint e;
	double t0 = mono();
	size_t hits = 0, rounds = 2000000;
	for (size_t i = 0; i < rounds; i++)
		hits += kdir_lookup_ip(&d, &addrs[(i * 7919) % n], 0, &e) == 0;
	double dt = mono() - t0;
	free(addrs);

	/* Deleting them all keeps each as ended history (until the caps). */
	size_t h1 = heap();
	for (size_t i = 0; i < n && i < c.max_history; i++) {
		snprintf(buf, sizeof(buf), "uid-%zu", i);
		kdir_pod_delete(&d, buf, 1700000001000000ull);
	}
	size_t ended = n < c.max_history ? n : c.max_history;
	double per_ended = ((double)heap() - (double)h1) / ended;
	kdir_free(&d);
	json_decref(list);

	printf("pods in the directory: %zu (addresses %llu)\n", n, (unsigned long long)k.current);
	printf("  memory per pod: %.0f bytes (directory's own count: %.0f)\n", per_pod,
	       (double)k.mem / n);
	printf("  100000 pods: %.1f MiB\n", per_pod * 100000 / (1 << 20));
	printf("  a deleted pod kept as history: %+.0f bytes (its object stays, its table entry goes)\n",
	       per_ended);
	printf("list page of 250 pods: %zu KiB JSON (%zu bytes/pod), parsed tree %zu KiB transient "
	       "(%.1fx the text)\n", page_len >> 10, json_per_pod, tree >> 10, (double)tree / page_len);
	printf("lookups: %zu of %zu hit, %.0f ns each (one thread)\n",
	       hits, rounds, dt / rounds * 1e9);
	if (per_pod > 4096) {
		printf("FAIL: more than 4 KiB per pod\n");
		return 1;
	}
	return 0;
}
