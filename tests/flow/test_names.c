/* The names dictionary (struct fl_names): interning, round trips, generations,
 * hostile lengths, and several threads at once. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "flow.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static struct fl_name pod(const char *ns, const char *name, const char *node, const char *labels)
{
	struct fl_name n;
	memset(&n, 0, sizeof(n));
	n.kind = FL_KIND_POD;
	snprintf(n.ns, sizeof(n.ns), "%s", ns);
	snprintf(n.name, sizeof(n.name), "%s", name);
	snprintf(n.node, sizeof(n.node), "%s", node);
	snprintf(n.workload, sizeof(n.workload), "Deployment/%s", name);
	snprintf(n.labels, sizeof(n.labels), "%s", labels);
	return n;
}

static int same(const struct fl_name *a, const struct fl_name *b)
{
	return a->kind == b->kind && a->port == b->port && !strcmp(a->ns, b->ns) && !strcmp(a->name, b->name) &&
	       !strcmp(a->node, b->node) && !strcmp(a->workload, b->workload) &&
	       !strcmp(a->labels, b->labels) && !strcmp(a->via, b->via);
}

static void test_basic(void)
{
	struct fl_names *d = fl_names_new(0, 0);
	CHECK(d, "new");
	struct fl_name a = pod("default", "web-1", "pc-node1", "{\"app\":\"web\"}");
	struct fl_name b = pod("default", "web-2", "pc-node2", "{\"app\":\"web\"}");
	struct fl_name svc;
	memset(&svc, 0, sizeof(svc));
	svc.kind = FL_KIND_SERVICE;
	svc.port = 80;
	strcpy(svc.ns, "default");
	strcpy(svc.name, "web");
	strcpy(svc.via, "cluster-ip");
	uint32_t ia = fl_names_put(d, &a), ib = fl_names_put(d, &b), is = fl_names_put(d, &svc);
	CHECK(ia && ib && is && ia != ib && ib != is, "ids %u %u %u", ia, ib, is);
	CHECK(fl_names_put(d, &a) == ia, "same name, same id");
	struct fl_name a2 = a;
	a2.labels[0] = 0; /* labels differ: another name */
	CHECK(fl_names_put(d, &a2) != ia, "labels are part of the name");
	struct fl_name svc2 = svc;
	svc2.port = 53;
	CHECK(fl_names_put(d, &svc2) != is, "port is part of the name");
	struct fl_name out;
	CHECK(fl_names_get(d, ia, &out) == 0 && same(&out, &a), "round trip pod");
	CHECK(fl_names_get(d, is, &out) == 0 && same(&out, &svc), "round trip service");
	CHECK(fl_names_get(d, 0, &out) == -ENOENT, "id 0");
	CHECK(fl_names_get(d, 0x12345, &out) == -ENOENT, "unknown id");
	struct fl_name none;
	memset(&none, 0, sizeof(none));
	CHECK(fl_names_put(d, &none) == 0, "no kind: no id");
	none.kind = 200;
	CHECK(fl_names_put(d, &none) == 0, "bad kind: no id");

	/* Arrays filled to the end without a NUL are read to their end only. */
	struct fl_name full;
	memset(&full, 'x', sizeof(full));
	full.kind = FL_KIND_POD;
	full.port = 7;
	uint32_t ifull = fl_names_put(d, &full);
	CHECK(ifull, "full arrays interned");
	CHECK(fl_names_get(d, ifull, &out) == 0 && strlen(out.name) == sizeof(out.name) - 1 &&
	      strlen(out.labels) == sizeof(out.labels) - 1 && strlen(out.via) == sizeof(out.via) - 1,
	      "full arrays come back NUL-terminated and whole but the last byte");
	struct fl_names_stats st;
	fl_names_stats(d, &st);
	CHECK(st.entries == 6 && st.hits == 1 && st.puts == 7, "stats entries %llu hits %llu puts %llu",
	      (unsigned long long)st.entries, (unsigned long long)st.hits, (unsigned long long)st.puts);
	fl_names_free(d);
	CHECK(fl_names_new(1u << 20, 0) == NULL && errno == EINVAL, "generation size capped");
}

/* With 4 names per generation: an id lives through the next generation, then
 * expires; a name interned again is found (copied forward) with a new id. */
static void test_generations(void)
{
	struct fl_names *d = fl_names_new(4, 0);
	char name[32];
	uint32_t ids[12];
	struct fl_name n[12], out;
	for (int i = 0; i < 12; i++) {
		snprintf(name, sizeof(name), "pod-%d", i);
		n[i] = pod("ns", name, "node", "");
		ids[i] = fl_names_put(d, &n[i]);
		CHECK(ids[i], "put %d", i);
	}
	/* generations: 0-3, 4-7 (previous), 8-11 (current) */
	CHECK(fl_names_get(d, ids[0], &out) == -ENOENT, "two generations back: expired");
	CHECK(fl_names_get(d, ids[5], &out) == 0 && same(&out, &n[5]), "previous generation still good");
	CHECK(fl_names_get(d, ids[11], &out) == 0 && same(&out, &n[11]), "current generation");
	uint32_t again = fl_names_put(d, &n[0]);
	CHECK(again && again != ids[0] && fl_names_get(d, again, &out) == 0 && same(&out, &n[0]),
	      "an expired name interned again gets a new id");
	struct fl_names_stats st;
	fl_names_stats(d, &st);
	CHECK(st.rotations == 3 && st.expired == 1, "rotations %llu expired %llu",
	      (unsigned long long)st.rotations, (unsigned long long)st.expired);
	/* a byte cap rotates too */
	fl_names_free(d);
	d = fl_names_new(0, 2000);
	uint32_t first = 0;
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "pod-%d", i);
		struct fl_name p = pod("ns", name, "node", "{\"app\":\"a-fairly-long-label-value\"}");
		uint32_t id = fl_names_put(d, &p);
		if (!first)
			first = id;
	}
	fl_names_stats(d, &st);
	CHECK(st.rotations > 0 && st.bytes < 2000 * 2 + 8192, "byte cap: rotations %llu bytes %llu",
	      (unsigned long long)st.rotations, (unsigned long long)st.bytes);
	CHECK(fl_names_get(d, first, &out) == -ENOENT, "byte cap: the first name expired");
	fl_names_free(d);
}

/* Three threads intern overlapping names and read them back while the
 * dictionary rotates: every id handed out resolves to its name while its
 * generation lives (run under ASan/UBSan in the sanitizer build). */
static struct fl_names *shared;
static int thread_bad[3];

static void *worker(void *arg)
{
	int t = (int)(long)arg;
	char name[32];
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "pod-%d", (i * 7 + t) % 3000);
		struct fl_name p = pod("default", name, "n1", ""), out;
		uint32_t id = fl_names_put(shared, &p);
		int rc = id ? fl_names_get(shared, id, &out) : -1;
		/* Just interned: its generation is current or, if another thread
		 * rotated since, previous; only a thread descheduled while others
		 * intern a whole generation could see it expire, and then the answer
		 * is -ENOENT, never another name. */
		if (!id || (rc != 0 && rc != -ENOENT) || (rc == 0 && !same(&out, &p)))
			thread_bad[t]++;
	}
	return NULL;
}

static void test_threads(void)
{
	shared = fl_names_new(1000, 0);
	pthread_t th[3];
	for (long i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, worker, (void *)i);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	CHECK(!thread_bad[0] && !thread_bad[1] && !thread_bad[2], "threads: %d %d %d bad",
	      thread_bad[0], thread_bad[1], thread_bad[2]);
	struct fl_names_stats st;
	fl_names_stats(shared, &st);
	CHECK(st.rotations > 0 && st.puts == 60000, "threads rotated (%llu) and put %llu",
	      (unsigned long long)st.rotations, (unsigned long long)st.puts);
	fl_names_free(shared);
}

int main(void)
{
	test_basic();
	test_generations();
	test_threads();
	CHECK(!strcmp(fl_name_kind_name(FL_KIND_SERVICE), "service") && !strcmp(fl_name_kind_name(-1), ""),
	      "kind names");
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("names dictionary: interning, generations, threads ok\n");
	return 0;
}
