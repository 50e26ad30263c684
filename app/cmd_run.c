/* podcap run — the node agent: live capture → decode → flows → store.
 *
 * One thread: the capture backend is polled with a short timeout, link changes
 * come from the discovery monitor between polls, flow timers and the periodic
 * counters run on wall time.  SIGINT/SIGTERM end the loop; every flow is then
 * flushed and the store committed before exit. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "discover.h"
#include "live.h"
#include "pipeline.h"

#define RUN_USAGE "run --db PATH [--config FILE] [--backend ebpf|pcap] [--netns NAME] [--iface IF]... " \
	"[--inventory FILE] [--duration S] [--stats-interval S] [--filter BPF] [--snaplen N] " \
	"[--flow-packets N] [--buffer SIZE] [--workers N] [--all-ifaces] [--store DIR] [--store-cap SIZE] " \
	"[--store-first N] [--db-cap SIZE] [--db-max-age S] [--no-dpi] [--quiet]"
#define RUN_MAX_IFACES 256
#define RUN_MAX_NAMED 64
#define DEFAULT_INVENTORY "/run/podcap/lab-pods.json"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct run_opts {
	struct pl_config pl;
	struct cap_live_config live;
	const char *netns, *inventory;
	char *ifaces[RUN_MAX_NAMED];
	int n_ifaces;
	uint64_t duration_s, stats_s;
	int all_ifaces, quiet, inventory_given;
};

/* One captured interface = one observation point (both directions: a flow's two
 * halves meet on the same interface, so its record stays bidirectional). */
struct run_if {
	uint32_t ifindex;
	uint32_t obs;
	char name[IF_NAMESIZE];
	char pod[CAP_POD_NAME_LEN];
	int cls;
	int active;
};

struct run_ctx {
	struct run_opts *o;
	struct pipeline *pl;
	struct cap_live *live;
	struct cap_inventory *inv;
	struct cap_disc_monitor *mon;
	struct timespec inv_mtime;  /* of the inventory loaded, to notice a rewrite */
	struct run_if ifs[RUN_MAX_IFACES];
	size_t n_ifs;
	int fatal;
	uint64_t unknown_if; /* packets from an interface we do not know (cannot happen: counted) */
};

static void run_help(void)
{
	printf("usage: podcap " RUN_USAGE "\n\n"
	       "Captures live traffic on a node's pod veths, overlay devices and NIC, turns it into\n"
	       "classified flow records and stores them in the SQLite database PATH.  Needs root.\n\n"
	       "  --db PATH            flow database (created if missing)\n"
	       "  --config FILE        options as 'key = value' lines (same names as the long options)\n"
	       "  --backend B          ebpf (default; tc clsact + ring buffer, falls back to pcap) or pcap\n"
	       "  --netns NAME         capture inside network namespace NAME (/run/netns/NAME), e.g. a node\n"
	       "  --iface IF           capture on IF (repeatable); default: every pod veth, overlay and NIC,\n"
	       "                       following interfaces that appear and disappear\n"
	       "  --all-ifaces         with the default selection, bridges too\n"
	       "  --inventory FILE     pod inventory naming the veths (default " DEFAULT_INVENTORY " if present)\n"
	       "  --duration S         stop after S seconds (default: until SIGINT/SIGTERM)\n"
	       "  --stats-interval S   print counters every S seconds (default 10, 0 = only at the end)\n"
	       "  --filter BPF         libpcap filter expression (pcap backend)\n"
	       "  --snaplen N          bytes kept per packet (default 2048)\n"
	       "  --flow-packets N     eBPF: first N packets of each flow go to user space (default 16);\n"
	       "                       records of untunnelled flows take the kernel's exact per-flow\n"
	       "                       counts, tunnelled ones count what reached user space\n"
	       "  --buffer SIZE        kernel buffer: libpcap ring per interface, or the eBPF ring buffer\n"
	       "                       (default 8M; 1M..1G)\n"
	       "  --workers N          flow worker threads (default: 2 on 2+ cores, so capture never waits\n"
	       "                       on nDPI; 0 = all in one thread)\n"
	       "  --store DIR          keep packets in rolling pcapng segments under DIR (eBPF: the\n"
	       "                       packets that reach user space, the first --flow-packets of a flow)\n"
	       "  --store-cap SIZE     total size of the segments, oldest deleted first (default 2G)\n"
	       "  --store-first N      keep only the first N packets of each flow\n"
	       "  --db-cap SIZE        keep the flow database under SIZE, oldest flows deleted first\n"
	       "  --db-max-age S       delete flows older than S seconds\n"
	       "  --no-dpi             no nDPI classification\n"
	       "  --quiet              only errors and the final counters\n");
}

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Applies one option (from argv or the config file).  Returns 0, or 2 after a
 * message for a bad value. */
static int apply_opt(struct run_opts *o, const char *name, char *val)
{
	unsigned long long v;
	if (!strcmp(name, "db")) {
		o->pl.db_path = val;
	} else if (!strcmp(name, "backend")) {
		if (!strcmp(val, "ebpf"))
			o->live.backend = CAP_BACKEND_EBPF;
		else if (!strcmp(val, "pcap"))
			o->live.backend = CAP_BACKEND_PCAP;
		else {
			fprintf(stderr, "podcap run: bad backend '%s' (ebpf or pcap)\n", val);
			return 2;
		}
	} else if (!strcmp(name, "netns")) {
		o->netns = val;
	} else if (!strcmp(name, "iface")) {
		if (o->n_ifaces >= RUN_MAX_NAMED) {
			fprintf(stderr, "podcap run: more than %d --iface\n", RUN_MAX_NAMED);
			return 2;
		}
		o->ifaces[o->n_ifaces++] = val;
	} else if (!strcmp(name, "inventory")) {
		o->inventory = val;
		o->inventory_given = 1;
	} else if (!strcmp(name, "duration") || !strcmp(name, "stats-interval")) {
		if (app_parse_uint(val, 0, 86400u * 365, &v) < 0) {
			fprintf(stderr, "podcap run: bad --%s '%s' (seconds)\n", name, val);
			return 2;
		}
		if (name[0] == 'd')
			o->duration_s = v;
		else
			o->stats_s = v;
	} else if (!strcmp(name, "filter")) {
		o->live.filter = val;
	} else if (!strcmp(name, "snaplen")) {
		if (app_parse_uint(val, 64, 262144, &v) < 0) {
			fprintf(stderr, "podcap run: bad --snaplen '%s' (64..262144)\n", val);
			return 2;
		}
		o->live.snaplen = (uint32_t)v;
	} else if (!strcmp(name, "flow-packets")) {
		if (app_parse_uint(val, 1, 1000000, &v) < 0) {
			fprintf(stderr, "podcap run: bad --flow-packets '%s' (1..1000000)\n", val);
			return 2;
		}
		o->live.flow_packets = (uint32_t)v;
	} else if (!strcmp(name, "buffer")) {
		if (app_parse_size(val, &v) < 0 || v < (1u << 20) || v > (1u << 30)) {
			fprintf(stderr, "podcap run: bad --buffer '%s' (1M..1G)\n", val);
			return 2;
		}
		o->live.buffer_bytes = (uint32_t)v;
	} else if (!strcmp(name, "workers")) {
		if (app_parse_uint(val, 0, PL_MAX_WORKERS, &v) < 0) {
			fprintf(stderr, "podcap run: bad --workers '%s' (0..%d)\n", val, PL_MAX_WORKERS);
			return 2;
		}
		o->pl.workers = (unsigned)v;
	} else if (!strcmp(name, "store")) {
		o->pl.store_dir = val;
	} else if (!strcmp(name, "store-cap") || !strcmp(name, "db-cap")) {
		if (app_parse_size(val, &v) < 0 || v < (1u << 20)) {
			fprintf(stderr, "podcap run: bad --%s '%s' (a size of at least 1M, e.g. 2G)\n", name, val);
			return 2;
		}
		if (name[0] == 's')
			o->pl.store_cap_bytes = v;
		else
			o->pl.st.retain_bytes = v;
	} else if (!strcmp(name, "store-first")) {
		if (app_parse_uint(val, 1, 1u << 20, &v) < 0) {
			fprintf(stderr, "podcap run: bad --store-first '%s' (1..1048576)\n", val);
			return 2;
		}
		o->pl.store_first_packets = (uint32_t)v;
	} else if (!strcmp(name, "db-max-age")) {
		if (app_parse_uint(val, 60, 86400ull * 3650, &v) < 0) {
			fprintf(stderr, "podcap run: bad --db-max-age '%s' (seconds, 60..315360000)\n", val);
			return 2;
		}
		o->pl.st.retain_age_s = v;
	} else if (!strcmp(name, "all-ifaces")) {
		o->all_ifaces = 1;
	} else if (!strcmp(name, "no-dpi")) {
		o->pl.fl.dpi = 0;
	} else if (!strcmp(name, "quiet")) {
		o->quiet = 1;
	} else {
		fprintf(stderr, "podcap run: unknown option '%s'\n", name);
		return 2;
	}
	return 0;
}

/* Reads 'key = value' lines; '#' starts a comment.  The strings are kept for the
 * life of the process (options point into them). */
static int load_config(struct run_opts *o, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int lineno = 0;
	if (!f) {
		fprintf(stderr, "podcap run: --config %s: %s\n", path, strerror(errno));
		return 2;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *k = line + strspn(line, " \t\r\n");
		if (!*k)
			continue;
		char *eq = strchr(k, '=');
		char *val = eq ? eq + 1 : (char *)"";
		if (eq)
			*eq = '\0';
		size_t kl = strcspn(k, " \t\r\n");
		k[kl] = '\0';
		val += strspn(val, " \t");
		val[strcspn(val, "\r\n")] = '\0';
		for (size_t n = strlen(val); n && (val[n - 1] == ' ' || val[n - 1] == '\t'); n--)
			val[n - 1] = '\0';
		char *kv = strdup(k), *vv = strdup(val);
		if (!kv || !vv || apply_opt(o, kv, vv)) {
			fprintf(stderr, "podcap run: %s:%d: bad line\n", path, lineno);
			fclose(f);
			return 2;
		}
	}
	fclose(f);
	return 0;
}

/* obs id -> ifindex for the record hook, which runs on flow worker threads while
 * the capture thread adds interfaces.  Indexed like run_ctx.ifs (a slot is reused
 * when an interface goes and another comes), so it never fills up; a flow of an
 * interface whose slot was reused keeps its user-space counts. */
static pthread_mutex_t obs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { uint32_t obs, ifindex; } obs_map[RUN_MAX_IFACES];

static void obs_map_set(size_t slot, uint32_t obs, uint32_t ifindex)
{
	pthread_mutex_lock(&obs_lock);
	obs_map[slot].obs = obs;
	obs_map[slot].ifindex = ifindex;
	pthread_mutex_unlock(&obs_lock);
}

/* eBPF sends only the first packets of each flow to user space; the kernel keeps
 * exact per-flow counters.  Records of untunnelled flows take the kernel's counts
 * (tunnelled ones are keyed by their inner tuple, the kernel by the outer one). */
static void kernel_counts(void *arg, struct fl_record *rec)
{
	struct run_ctx *c = arg;
	uint32_t ifindex = 0;

	if (rec->tunnel != DC_TUN_NONE || !rec->key.family)
		return;
	pthread_mutex_lock(&obs_lock);
	for (size_t i = 0; i < RUN_MAX_IFACES; i++)
		if (obs_map[i].ifindex && obs_map[i].obs == rec->obs_id)
			ifindex = obs_map[i].ifindex;
	pthread_mutex_unlock(&obs_lock);
	if (!ifindex)
		return;
	struct dc_tuple rev = rec->key;
	memcpy(rev.src, rec->key.dst, sizeof(rev.src));
	memcpy(rev.dst, rec->key.src, sizeof(rev.dst));
	rev.sport = rec->key.dport;
	rev.dport = rec->key.sport;
	uint64_t p[2], b[2];
	if (cap_live_flow_counters(c->live, ifindex, &rec->key, &p[0], &b[0]) < 0 ||
	    cap_live_flow_counters(c->live, ifindex, &rev, &p[1], &b[1]) < 0)
		return;
	for (int d = 0; d < 2; d++)
		if (p[d] > rec->pkts[d]) {
			rec->pkts[d] = p[d];
			rec->bytes[d] = b[d];
		}
}

static struct run_if *find_run_if(struct run_ctx *c, uint32_t ifindex)
{
	for (size_t i = 0; i < c->n_ifs; i++)
		if (c->ifs[i].ifindex == ifindex && c->ifs[i].active)
			return &c->ifs[i];
	return NULL;
}

static size_t count_active(const struct run_ctx *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n_ifs; i++)
		n += c->ifs[i].active != 0;
	return n;
}

static void on_packet(void *arg, const struct cap_live_packet *lp)
{
	struct run_ctx *c = arg;
	if (c->fatal)
		return;
	struct run_if *ri = find_run_if(c, lp->ifindex);
	if (!ri) {
		c->unknown_if++;
		return;
	}
	struct cap_packet pkt = {
		.data = lp->data,
		.caplen = lp->caplen,
		.wirelen = lp->wirelen,
		.ts_us = lp->ts_us,
		.linktype = lp->linktype,
		.ifindex = lp->ifindex,
	};
	if (pl_packet(c->pl, ri->obs, &pkt) < 0)
		c->fatal = 1;
}

static int wanted(const struct run_ctx *c, const struct cap_iface *ifc)
{
	if (c->o->n_ifaces) {
		for (int i = 0; i < c->o->n_ifaces; i++)
			if (!strcmp(c->o->ifaces[i], ifc->name))
				return 1;
		return 0;
	}
	switch (ifc->cls) {
	case CAP_IF_POD_VETH:
	case CAP_IF_OVERLAY:
	case CAP_IF_NIC:
		return 1;
	case CAP_IF_BRIDGE:
		return c->o->all_ifaces;
	default:
		return 0;
	}
}

static int start_iface(struct run_ctx *c, const struct cap_iface *ifc)
{
	char err[512];
	int linktype = DC_LINK_ETHERNET;
	if (find_run_if(c, ifc->ifindex))
		return 0;
	struct run_if *ri = NULL;
	for (size_t i = 0; i < c->n_ifs; i++)
		if (!c->ifs[i].active) {
			ri = &c->ifs[i];
			break;
		}
	if (!ri && c->n_ifs >= RUN_MAX_IFACES) {
		fprintf(stderr, "podcap run: %s: more than %d interfaces, not captured\n", ifc->name, RUN_MAX_IFACES);
		return -ENOSPC;
	}
	int rc = cap_live_add(c->live, ifc->name, err, sizeof(err));
	if (rc < 0 && rc != -EEXIST) {
		fprintf(stderr, "podcap run: %s\n", err);
		return rc;
	}
	if (!ri)
		ri = &c->ifs[c->n_ifs++];
	memset(ri, 0, sizeof(*ri));
	ri->ifindex = ifc->ifindex;
	ri->cls = ifc->cls;
	snprintf(ri->name, sizeof(ri->name), "%s", ifc->name);
	snprintf(ri->pod, sizeof(ri->pod), "%s", ifc->pod);
	if (pl_obs_point(c->pl, ifc->name, "both", ifc->pod[0] ? ifc->pod : NULL, linktype, &ri->obs) < 0) {
		fprintf(stderr, "podcap run: %s\n", pl_error(c->pl));
		cap_live_remove(c->live, ifc->ifindex);
		return -EIO;
	}
	obs_map_set((size_t)(ri - c->ifs), ri->obs, ri->ifindex);
	ri->active = 1;
	if (!c->o->quiet)
		printf("podcap run: capturing on %s (%s%s%s%s%s)\n", ifc->name, cap_if_class_name(ifc->cls),
		       ifc->kind[0] ? ", " : "", ifc->kind, ifc->pod[0] ? ", pod " : "", ifc->pod);
	fflush(stdout);
	return 0;
}

static int inventory_mtime(const char *path, struct timespec *out)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	*out = st.st_mtim;
	return 0;
}

/* Pods come and go after the agent started: when a veth shows up that the
 * inventory does not name, read the inventory again if its file changed. */
static void refresh_inventory(struct run_ctx *c)
{
	struct timespec m;
	struct cap_inventory *inv;
	char err[256];
	if (inventory_mtime(c->o->inventory, &m) < 0 ||
	    (m.tv_sec == c->inv_mtime.tv_sec && m.tv_nsec == c->inv_mtime.tv_nsec))
		return;
	if (cap_inventory_load(c->o->inventory, &inv, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap run: inventory reload: %s\n", err);
		c->inv_mtime = m; /* do not retry a bad file on every link event */
		return;
	}
	if (c->mon)
		cap_disc_monitor_set_inventory(c->mon, inv);
	cap_inventory_free(c->inv);
	c->inv = inv;
	c->inv_mtime = m;
}

static void on_link(void *arg, int event, const struct cap_iface *ifc_in)
{
	struct run_ctx *c = arg;
	struct cap_iface named = *ifc_in;
	const struct cap_iface *ifc = &named;
	if (event == CAP_LINK_NEW && !named.pod[0] && !strcmp(named.kind, "veth")) {
		refresh_inventory(c);
		const struct cap_pod *pod = cap_inventory_by_veth(c->inv, c->o->netns, named.name);
		if (pod) {
			named.cls = CAP_IF_POD_VETH;
			snprintf(named.pod, sizeof(named.pod), "%s/%s",
				 pod->namespace[0] ? pod->namespace : "default", pod->name);
		}
	}
	struct run_if *ri = find_run_if(c, ifc->ifindex);
	if (event == CAP_LINK_DEL) {
		if (ri) {
			cap_live_remove(c->live, ifc->ifindex);
			ri->active = 0;
			if (!c->o->quiet)
				printf("podcap run: %s went away, capture stopped\n", ri->name);
		}
		return;
	}
	if (!ri && ifc->up && wanted(c, ifc)) {
		start_iface(c, ifc);
	} else if (ri && ifc->up) {
		/* Back up after a down: libpcap needs a new handle (same observation point). */
		char err[256];
		int rc = cap_live_add(c->live, ifc->name, err, sizeof(err));
		if (rc == 0 && !c->o->quiet)
			printf("podcap run: %s is up again, capture resumed\n", ifc->name);
		else if (rc < 0 && rc != -EEXIST)
			fprintf(stderr, "podcap run: %s\n", err);
	}
}

static void print_stats(struct run_ctx *c, uint64_t elapsed_ms, const char *when)
{
	struct cap_live_stats ls;
	struct pl_stats ps;
	struct cap_live_iface_stats is[RUN_MAX_IFACES];
	uint64_t malformed = 0;

	cap_live_stats(c->live, &ls);
	pl_stats(c->pl, &ps);
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		malformed += ps.dc.by_reason[r];
	printf("podcap run: %s %.1fs backend=%s received=%llu kernel_drops=%llu ring_drops=%llu "
	       "bad_records=%llu decoded=%llu malformed=%llu not_ip=%llu flows_active=%llu records=%llu "
	       "evicted=%llu store_errors=%llu",
	       when, (double)elapsed_ms / 1000.0, cap_backend_name(cap_live_backend(c->live)),
	       (unsigned long long)ls.received, (unsigned long long)ls.kernel_drops,
	       (unsigned long long)ls.ring_drops, (unsigned long long)ls.bad_records,
	       (unsigned long long)ps.packets, (unsigned long long)malformed,
	       (unsigned long long)ps.dc.by_reason[DC_NOT_IP], (unsigned long long)ps.fl.flows_active,
	       (unsigned long long)ps.fl.records, (unsigned long long)ps.fl.evicted,
	       (unsigned long long)ps.store_errors);
	if (cap_live_backend(c->live) == CAP_BACKEND_EBPF)
		printf(" kernel_counted_pkts=%llu kernel_counted_bytes=%llu kernel_flows=%llu",
		       (unsigned long long)ls.flow_pkts, (unsigned long long)ls.flow_bytes,
		       (unsigned long long)ls.flow_entries);
	printf("\n");
	size_t n = cap_live_iface_stats(c->live, is, RUN_MAX_IFACES);
	for (size_t i = 0; i < n; i++) {
		struct run_if *ri = find_run_if(c, is[i].ifindex);
		printf("podcap run:   %-16s %-24s received=%llu kernel_drops=%llu", is[i].name,
		       ri && ri->pod[0] ? ri->pod : ri ? cap_if_class_name(ri->cls) : "-",
		       (unsigned long long)is[i].received, (unsigned long long)is[i].kernel_drops);
		uint64_t kp, kb;
		if (cap_live_counted(c->live, is[i].ifindex, CAP_DIR_UNKNOWN, &kp, &kb) == 0)
			printf(" kernel_counted=%llu", (unsigned long long)kp);
		printf("\n");
	}
	fflush(stdout);
}

static int enter_netns(const char *name)
{
	char path[256];
	if (strchr(name, '/')) {
		fprintf(stderr, "podcap run: bad --netns '%s' (a name under /run/netns)\n", name);
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "/run/netns/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "podcap run: --netns %s: %s\n", path, strerror(errno));
		return -errno;
	}
	int rc = setns(fd, CLONE_NEWNET);
	int e = errno;
	close(fd);
	if (rc < 0) {
		fprintf(stderr, "podcap run: setns %s: %s\n", name, strerror(e));
		return -e;
	}
	return 0;
}

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 0},
		{"config", required_argument, NULL, 0},
		{"backend", required_argument, NULL, 0},
		{"netns", required_argument, NULL, 0},
		{"iface", required_argument, NULL, 0},
		{"inventory", required_argument, NULL, 0},
		{"duration", required_argument, NULL, 0},
		{"stats-interval", required_argument, NULL, 0},
		{"filter", required_argument, NULL, 0},
		{"snaplen", required_argument, NULL, 0},
		{"flow-packets", required_argument, NULL, 0},
		{"buffer", required_argument, NULL, 0},
		{"workers", required_argument, NULL, 0},
		{"all-ifaces", no_argument, NULL, 0},
		{"store", required_argument, NULL, 0},
		{"store-cap", required_argument, NULL, 0},
		{"store-first", required_argument, NULL, 0},
		{"db-cap", required_argument, NULL, 0},
		{"db-max-age", required_argument, NULL, 0},
		{"no-dpi", no_argument, NULL, 0},
		{"quiet", no_argument, NULL, 0},
		{"help", no_argument, NULL, 'h'},
		{0, 0, 0, 0},
	};
	static struct run_opts o;
	struct run_ctx *c = NULL;
	struct cap_disc_monitor *mon = NULL;
	struct cap_iface *list = NULL;
	size_t nlist = 0;
	char err[1024];
	int status = 1, ch, idx, rc;

	memset(&o, 0, sizeof(o));
	pl_config_default(&o.pl);
	/* The capture thread decodes; flow work (nDPI) goes to workers when there
	 * are cores for them, as in podcap read. */
	o.pl.workers = sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 2 : 0;
	cap_live_config_default(&o.live);
	o.stats_s = 10;
	o.inventory = DEFAULT_INVENTORY;
	optind = 1;
	opterr = 1;
	/* --config first, so command-line options override the file. */
	for (int i = 1; i < argc - 1; i++)
		if (!strcmp(argv[i], "--config") && load_config(&o, argv[i + 1]))
			return app_usage(RUN_USAGE);
	while ((ch = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
		if (ch == 'h') {
			run_help();
			return 0;
		}
		if (ch != 0)
			return app_usage(RUN_USAGE);
		if (!strcmp(opts[idx].name, "config"))
			continue;
		if (apply_opt(&o, opts[idx].name, optarg ? optarg : (char *)""))
			return app_usage(RUN_USAGE);
	}
	if (optind < argc) {
		fprintf(stderr, "podcap run: unexpected argument '%s'\n", argv[optind]);
		return app_usage(RUN_USAGE);
	}
	if (!o.pl.db_path) {
		fprintf(stderr, "podcap run: --db PATH is required\n");
		return app_usage(RUN_USAGE);
	}
	if (o.live.filter && cap_live_check_filter(o.live.filter, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap run: %s\n", err);
		return app_usage(RUN_USAGE);
	}
	if (geteuid() != 0) {
		fprintf(stderr, "podcap run: must run as root (live capture needs CAP_NET_ADMIN, CAP_NET_RAW "
			"and, for the eBPF backend, CAP_BPF)\n");
		return 1;
	}

	c = calloc(1, sizeof(*c));
	if (!c) {
		fprintf(stderr, "podcap run: out of memory\n");
		return 1;
	}
	c->o = &o;
	/* Enter the node's namespace before any socket, BPF object or thread exists:
	 * setns() moves only this thread, and everything made later inherits it. */
	if (o.netns && enter_netns(o.netns) < 0)
		goto out;
	if (cap_inventory_load(o.inventory, &c->inv, err, sizeof(err)) < 0) {
		if (o.inventory_given) {
			fprintf(stderr, "podcap run: %s\n", err);
			goto out;
		}
		c->inv = NULL; /* the default file is optional: veths stay unnamed */
	} else {
		inventory_mtime(o.inventory, &c->inv_mtime);
	}
	if (cap_live_open(&o.live, &c->live, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap run: %s\n", err);
		goto out;
	}
	if (o.live.filter && cap_live_backend(c->live) == CAP_BACKEND_EBPF)
		fprintf(stderr, "podcap run: --filter applies to the pcap backend only; the eBPF backend sees all\n");
	if (cap_live_fallback_reason(c->live))
		fprintf(stderr, "podcap run: eBPF backend unavailable (%s); using libpcap\n",
			cap_live_fallback_reason(c->live));
	if (cap_live_backend(c->live) == CAP_BACKEND_EBPF) {
		o.pl.record_hook = kernel_counts;
		o.pl.record_hook_arg = c;
	}
	if (pl_open(&o.pl, &c->pl, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap run: %s\n", err);
		goto out;
	}
	if ((rc = cap_disc_monitor_open(c->inv, o.netns, &mon)) < 0) {
		fprintf(stderr, "podcap run: cannot watch links: %s\n", strerror(-rc));
		goto out;
	}
	c->mon = mon;
	rc = cap_discover(c->inv, o.netns, &list, &nlist);
	if (rc < 0) {
		fprintf(stderr, "podcap run: listing interfaces: %s\n", strerror(-rc));
		goto out;
	}
	for (int i = 0; i < o.n_ifaces; i++) {
		int found = 0;
		for (size_t j = 0; j < nlist; j++)
			found |= !strcmp(list[j].name, o.ifaces[i]);
		if (!found) {
			fprintf(stderr, "podcap run: --iface %s: no such interface%s%s\n", o.ifaces[i],
				o.netns ? " in netns " : "", o.netns ? o.netns : "");
			goto out;
		}
	}
	size_t n_wanted = 0;
	for (size_t j = 0; j < nlist; j++) {
		if (!wanted(c, &list[j]))
			continue;
		n_wanted++;
		if (start_iface(c, &list[j]) < 0 && o.n_ifaces)
			goto out; /* an interface asked for by name must work */
	}
	if (n_wanted && !count_active(c)) {
		fprintf(stderr, "podcap run: could not capture on any of %zu interface(s)\n", n_wanted);
		goto out;
	}

	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	if (!o.quiet)
		printf("podcap run: backend %s, %zu interface(s), db %s\n",
		       cap_backend_name(cap_live_backend(c->live)), count_active(c), o.pl.db_path);
	fflush(stdout);
	uint64_t t0 = mono_ms(), last_tick = t0, last_stats = t0;
	while (!stop_requested && !c->fatal) {
		uint64_t now = mono_ms();
		if (o.duration_s && now - t0 >= o.duration_s * 1000u)
			break;
		rc = cap_live_poll(c->live, 100, on_packet, c);
		if (rc < 0 && rc != -EINTR) {
			fprintf(stderr, "podcap run: capture: %s\n", strerror(-rc));
			break;
		}
		rc = cap_disc_monitor_read(mon, on_link, c);
		if (rc == -ENOBUFS) {
			/* Missed link notifications: re-list and pick up what is new. */
			free(list);
			list = NULL;
			if (cap_discover(c->inv, o.netns, &list, &nlist) == 0)
				for (size_t j = 0; j < nlist; j++)
					on_link(c, CAP_LINK_NEW, &list[j]);
		}
		now = mono_ms();
		if (now - last_tick >= 200) { /* timers, and half-filled batches handed to the workers */
			if (pl_tick(c->pl, wall_us()) < 0)
				c->fatal = 1;
			last_tick = now;
		}
		if (o.stats_s && now - last_stats >= o.stats_s * 1000u && !o.quiet) {
			print_stats(c, now - t0, "stats");
			last_stats = now;
		}
	}
	if (c->fatal)
		fprintf(stderr, "podcap run: flow store failed: %s\n", pl_error(c->pl));
	if (pl_finish(c->pl) < 0) {
		fprintf(stderr, "podcap run: %s\n", pl_error(c->pl));
		c->fatal = 1;
	}
	print_stats(c, mono_ms() - t0, "final");
	if (!o.quiet)
		pl_print_summary(c->pl, stdout);
	status = c->fatal ? 1 : 0;
out:
	free(list);
	cap_disc_monitor_close(mon);
	if (c) {
		/* The pipeline first: ending its flows may still read the eBPF flow
		 * map (record hook); then the tc programs are detached. */
		if (c->pl)
			pl_close(c->pl);
		if (c->live)
			cap_live_close(c->live);
		cap_inventory_free(c->inv);
		free(c);
	}
	return status;
}
