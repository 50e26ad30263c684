/* podcap run — the node agent: live capture → engine (decode, flows, sinks).
 *
 * The capture thread polls the backend with a short timeout, takes link changes
 * from the discovery monitor between polls, and ticks the engine on wall time
 * (flow timers, commits).  Each captured interface is an observation point whose
 * id travels with its packets (cap_packet.tag), so no packet is looked up by
 * interface.  SIGINT/SIGTERM end the loop; every flow is then flushed and the
 * stores committed before exit. */
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

#include "api.h"
#include "app.h"
#include "stream.h"

#define RUN_MAX_IFACES 256
/* While a live stream is open the loop ticks the engine this often, so a packet
 * waits at most about that long in a half-filled batch or a stream's buffer. */
#define RUN_STREAM_TICK_MS 20
/* How often idle counts-only flows are looked for in the eBPF flow map (a
 * batched walk of the map: ~16 system calls for 65,536 flows). */
#define RUN_SWEEP_MS 5000

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* One captured interface = one observation point (both directions: a flow's two
 * halves meet on the same interface, so its record stays bidirectional). */
struct run_if {
	uint32_t ifindex;
	uint32_t obs;
	char name[IF_NAMESIZE];
	char pod[CAP_POD_NAME_LEN];
	int cls;
	int active;
	int streamed;   /* the capture sends every packet: a live stream watches it */
};

struct run_ctx {
	struct app_opts *o;
	struct engine *e;
	struct app_sinks sinks;
	struct cap_live *live;
	struct cap_inventory *inv;
	struct cap_disc_monitor *mon;
	struct cap_iface *list;     /* the last interface listing */
	size_t nlist;
	struct timespec inv_mtime;  /* of the inventory loaded, to notice a rewrite */
	struct run_if ifs[RUN_MAX_IFACES];
	size_t n_ifs;
	struct app_names *names;    /* Kubernetes names of the ends, NULL = none */
	uint64_t counts_records;    /* eBPF counts-only records made (on_counts) */
	uint64_t counts_lost;       /* ... that eng_record refused */
	int fatal;
	struct api *api;            /* --listen: the query API, else NULL */
	struct strm_hub *hub;       /* --listen: live streams (an engine sink) */
	uint64_t stream_gen;        /* the hub's wanted set last applied to the capture */
	int stream_all;             /* a stream wants every interface: recording on */
	int sinks_given;            /* eng_open was called: it closes the sinks */
};

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

/* eBPF sends only the first packets of each flow to user space (and one per
 * keepalive period while it goes on); the kernel keeps exact per-flow counters.
 * Records of untunnelled flows take the kernel's counts (tunnelled ones are
 * keyed by their inner tuple, the kernel by the outer one).  A final record
 * takes the keys out with their counts: a later packet of the same tuple starts
 * a new flow, and nothing the kernel counted after it is left unrecorded (a
 * flow that went on past its first packets and an idle end was: its record had
 * the counts of the moment, the rest stayed in the map). */
static void kernel_counts(void *arg, struct fl_record *rec)
{
	struct run_ctx *c = arg;

	if (rec->tunnel != DC_TUN_NONE || !rec->key.family)
		return;
	const struct eng_obs *o = eng_obs(c->e, rec->obs_id);
	uint32_t ifindex = o ? o->ifindex : 0;
	if (!ifindex)
		return;
	struct dc_tuple rev = rec->key;
	memcpy(rev.src, rec->key.dst, sizeof(rev.src));
	memcpy(rev.dst, rec->key.src, sizeof(rev.dst));
	rev.sport = rec->key.dport;
	rev.dport = rec->key.sport;
	uint64_t p[2], b[2];
	int final = rec->end != FL_END_ACTIVE;
	int (*get)(struct cap_live *, uint32_t, const struct dc_tuple *, uint64_t *, uint64_t *) =
		final ? cap_live_flow_take : cap_live_flow_counters;
	if (get(c->live, ifindex, &rec->key, &p[0], &b[0]) < 0 || get(c->live, ifindex, &rev, &p[1], &b[1]) < 0)
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

/* A flow the eBPF program counted but none of whose packets reached us (the
 * ring was full each time): a record of its kernel counters, end "counts", so
 * that every flow the kernel counted has a record. */
static void on_counts(void *arg, const struct cap_counts *k)
{
	struct run_ctx *c = arg;
	struct run_if *ri = find_run_if(c, k->ifindex);
	struct fl_record rec;

	memset(&rec, 0, sizeof(rec));
	rec.obs_id = ri ? ri->obs : 0;
	rec.end = FL_END_COUNTS;
	rec.key.family = k->family;
	rec.key.proto = k->proto;
	rec.key.sport = k->sport;
	rec.key.dport = k->dport;
	memcpy(rec.key.src, k->src, sizeof(rec.key.src));
	memcpy(rec.key.dst, k->dst, sizeof(rec.key.dst));
	rec.outer = rec.key;
	rec.first_us = k->first_us;
	rec.last_us = k->last_us >= k->first_us ? k->last_us : k->first_us;
	rec.pkts[0] = k->pkts;
	rec.bytes[0] = k->bytes;
	rec.pkts[1] = k->rpkts;
	rec.bytes[1] = k->rbytes;
	rec.rtt_us = -1;
	rec.dns_rcode = 0xff;
	rec.confidence = FL_CONF_NONE;
	snprintf(rec.proto, sizeof(rec.proto), "Unknown");
	if (fl_community_id(&rec.key, c->o->eng.fl.community_id_seed, rec.community_id,
			    sizeof(rec.community_id)) < 0)
		rec.community_id[0] = 0;
	if (eng_record(c->e, &rec) < 0)
		c->counts_lost++;
	else
		c->counts_records++;
}

static size_t count_active(const struct run_ctx *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n_ifs; i++)
		n += c->ifs[i].active != 0;
	return n;
}

/* Every packet carries its observation point as the tag of its interface. */
static void on_packet(void *arg, const struct cap_packet *pkt)
{
	struct run_ctx *c = arg;
	if (!c->fatal && eng_packet(c->e, pkt->tag, pkt) < 0)
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
	/* The observation point first: its id is the interface's tag. */
	uint32_t obs;
	int rc = eng_obs_point(c->e, ifc->name, "both", ifc->pod[0] ? ifc->pod : NULL, linktype,
			       ifc->ifindex, &obs);
	if (rc < 0) {
		fprintf(stderr, "podcap run: %s: observation point: %s\n", ifc->name, strerror(-rc));
		return rc;
	}
	rc = cap_live_add(c->live, ifc->name, obs, err, sizeof(err));
	if (rc < 0 && rc != -EEXIST) {
		fprintf(stderr, "podcap run: %s\n", err);
		return rc;
	}
	if (!ri)
		ri = &c->ifs[c->n_ifs++];
	memset(ri, 0, sizeof(*ri));
	ri->ifindex = ifc->ifindex;
	ri->cls = ifc->cls;
	ri->obs = obs;
	snprintf(ri->name, sizeof(ri->name), "%s", ifc->name);
	snprintf(ri->pod, sizeof(ri->pod), "%s", ifc->pod);
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
	c->stream_gen = 0; /* streams' interfaces are applied again */
	if (event == CAP_LINK_DEL) {
		if (ri) {
			cap_live_remove(c->live, ifc->ifindex);
			ri->active = 0;
			ri->streamed = 0;
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
		int rc = cap_live_add(c->live, ifc->name, ri->obs, err, sizeof(err));
		if (rc == 0 && !c->o->quiet)
			printf("podcap run: %s is up again, capture resumed\n", ifc->name);
		else if (rc < 0 && rc != -EEXIST)
			fprintf(stderr, "podcap run: %s\n", err);
	}
}

static void print_stats(struct run_ctx *c, uint64_t elapsed_ms, const char *when)
{
	struct cap_live_stats ls;
	struct eng_stats ps;
	struct fdb_sink_stats fs;
	struct cap_live_iface_stats is[RUN_MAX_IFACES];
	uint64_t malformed = 0;

	cap_live_stats(c->live, &ls);
	eng_stats(c->e, &ps);
	fdb_sink_stats(c->sinks.fdb, &fs);
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
	       (unsigned long long)(ps.fl.records + ps.external_records), (unsigned long long)ps.fl.evicted,
	       (unsigned long long)fs.lost);
	printf(" frags=%llu reassembled=%llu frag_timeouts=%llu frag_overlaps=%llu frag_evicted=%llu "
	       "frag_too_big=%llu frag_bad=%llu frag_held=%llu frag_bytes=%llu",
	       (unsigned long long)ps.fr.fragments, (unsigned long long)ps.fr.reassembled,
	       (unsigned long long)ps.fr.timed_out, (unsigned long long)ps.fr.overlapping,
	       (unsigned long long)ps.fr.evicted, (unsigned long long)ps.fr.too_big,
	       (unsigned long long)ps.fr.bad, (unsigned long long)ps.fr_held,
	       (unsigned long long)ps.fr.bytes);
	if (cap_live_backend(c->live) == CAP_BACKEND_EBPF)
		/* kernel_flows: keys in the map now; kernel_flows_taken: taken out
		 * with their flow's final record; counts_records: taken out as
		 * records of their own (no packet of theirs reached us) */
		printf(" kernel_counted_pkts=%llu kernel_counted_bytes=%llu kernel_flows=%llu kernel_flows_taken=%llu"
		       " kernel_flows_delivered=%llu kernel_flows_heads=%llu counts_records=%llu counts_lost=%llu",
		       (unsigned long long)ls.flow_pkts, (unsigned long long)ls.flow_bytes,
		       (unsigned long long)ls.flow_entries, (unsigned long long)ls.flows_taken,
		       (unsigned long long)ls.flows_delivered, (unsigned long long)ls.flows_heads,
		       (unsigned long long)c->counts_records, (unsigned long long)c->counts_lost);
	if (c->hub) {
		struct strm_hub_stats ss;
		strm_hub_stats(c->hub, &ss);
		printf(" streams_open=%llu streams_opened=%llu stream_packets=%llu stream_bytes=%llu "
		       "stream_dropped=%llu", (unsigned long long)ss.open, (unsigned long long)ss.opened,
		       (unsigned long long)ss.packets, (unsigned long long)ss.bytes,
		       (unsigned long long)ss.dropped);
	}
	printf("\n");
	app_names_print(c->names, "podcap run:   ", stdout);
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

/* The API may not read the capture backend (only this thread may), so it gets a
 * copy of the counters about once a second. */
static void publish_capture(struct run_ctx *c)
{
	struct cap_live_stats ls;
	struct cap_live_iface_stats is[RUN_MAX_IFACES];
	static struct api_iface ai[RUN_MAX_IFACES];
	cap_live_stats(c->live, &ls);
	size_t n = cap_live_iface_stats(c->live, is, RUN_MAX_IFACES);
	for (size_t i = 0; i < n; i++) {
		struct run_if *ri = find_run_if(c, is[i].ifindex);
		memset(&ai[i], 0, sizeof(ai[i]));
		ai[i].obs_id = ri ? ri->obs : 0;
		snprintf(ai[i].iface, sizeof(ai[i].iface), "%.*s", IF_NAMESIZE - 1, is[i].name);
		if (ri)
			snprintf(ai[i].pod, sizeof(ai[i].pod), "%.*s", (int)sizeof(ai[i].pod) - 1, ri->pod);
		ai[i].received = is[i].received;
		ai[i].kernel_drops = is[i].kernel_drops;
		uint64_t kp, kb;
		if (cap_live_counted(c->live, is[i].ifindex, CAP_DIR_UNKNOWN, &kp, &kb) == 0) {
			ai[i].kernel_counted = kp;
			ai[i].kernel_bytes = kb;
		}
	}
	struct api_capture ac = {
		.backend = cap_backend_name(cap_live_backend(c->live)),
		.received = ls.received, .kernel_drops = ls.kernel_drops, .ring_drops = ls.ring_drops,
		.bad_records = ls.bad_records, .counts_records = c->counts_records, .counts_lost = c->counts_lost,
		.flow_map_entries = ls.flow_entries,
		.flow_map_size = ls.flow_map_size,
		.ifaces = ai, .nifaces = n,
	};
	api_publish_capture(c->api, &ac);
}

/* --listen: the API opens first, so that a port in use stops the agent before
 * it captures anything, and in the namespace podcap was started in (see
 * run_start).  The flow database may not exist yet: the API opens it when
 * asked (agent mode). */
static int open_api(struct run_ctx *c)
{
	struct api_config cfg;
	char err[1024];
	api_config_default(&cfg);
	cfg.mode = "agent";
	cfg.db_path = c->o->db_path;
	cfg.store_dir = c->o->store_dir;
	cfg.http.listen = c->o->listen;
	cfg.http.token_file = c->o->token_file;
	cfg.http.tls_cert_file = c->o->tls_cert;
	cfg.http.tls_key_file = c->o->tls_key;
	cfg.db_cap_bytes = c->o->fdb.retain_bytes;
	cfg.db_max_age_s = c->o->fdb.retain_age_s;
	cfg.store_cap_bytes = c->o->store_dir ? c->o->pks.max_bytes : 0;
	if (api_open(&cfg, &c->api, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap run: --listen: %s\n", err);
		return -1;
	}
	const char *colon = strrchr(c->o->listen, ':');
	int hostlen = colon ? (int)(colon - c->o->listen) : (int)strlen(c->o->listen);
	if (!c->o->quiet)
		printf("podcap run: API and web page on %s://%.*s:%d/\n", c->o->tls_cert ? "https" : "http", hostlen,
		       c->o->listen, api_port(c->api));
	fflush(stdout);
	return 0;
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

/* Enters the node, opens capture, sinks and engine, and starts capturing on the
 * interfaces wanted.  0, or -1 after a message. */
static int run_start(struct run_ctx *c)
{
	char err[1024];
	int rc;
	/* The API, with its threads and listening socket, in the namespace podcap
	 * was started in: a user reaches it there (the node's host network, or the
	 * lab's host), not inside the captured namespace. */
	if (c->o->listen && open_api(c) < 0)
		return -1;
	/* Then the node's namespace, before any capture socket, BPF object or engine
	 * thread exists: setns() moves only this thread, and what it makes later
	 * inherits it. */
	if (c->o->netns && enter_netns(c->o->netns) < 0)
		return -1;
	if (cap_inventory_load(c->o->inventory, &c->inv, err, sizeof(err)) < 0) {
		if (c->o->inventory_given) {
			fprintf(stderr, "podcap run: %s\n", err);
			return -1;
		}
		c->inv = NULL; /* the default file is optional: veths stay unnamed */
	} else {
		inventory_mtime(c->o->inventory, &c->inv_mtime);
	}
	/* a long flow's packet reaches the flow table at least twice per idle
	 * timeout, so it is not ended while the kernel still counts it */
	c->o->live.keepalive_us = c->o->eng.fl.idle_timeout_us / 2;
	if (cap_live_open(&c->o->live, &c->live, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap run: %s\n", err);
		return -1;
	}
	if (c->o->live.filter && cap_live_backend(c->live) == CAP_BACKEND_EBPF)
		fprintf(stderr, "podcap run: --filter applies to the pcap backend only; the eBPF backend sees all\n");
	if (cap_live_fallback_reason(c->live))
		fprintf(stderr, "podcap run: eBPF backend unavailable (%s); using libpcap\n",
			cap_live_fallback_reason(c->live));
	if (cap_live_backend(c->live) == CAP_BACKEND_EBPF) {
		c->o->eng.record_hook = kernel_counts;
		c->o->eng.record_hook_arg = c;
		c->o->eng.external_records = 1; /* on_counts */
	}
	/* Names after the node's namespace is entered: conntrack is read there. */
	if (app_names_open("run", c->o, 1, &c->names))
		return -1;
	if (c->names) {
		/* one hook: the kernel's counts first, then the names */
		if (c->o->eng.record_hook)
			app_names_chain(c->names, c->o->eng.record_hook, c->o->eng.record_hook_arg);
		c->o->eng.record_hook = app_names_hook;
		c->o->eng.record_hook_arg = c->names;
		c->o->fdb.names = app_names_dict(c->names);
	}
	if (app_open_sinks("run", c->o, &c->sinks))
		return -1;
	if (c->api) {
		/* Live streams: the capture thread arms them (arm_streams). */
		struct strm_hub_config hc;
		strm_hub_config_default(&hc);
		hc.arm = 1;
		if (!(c->hub = strm_hub_open(&hc))) {
			fprintf(stderr, "podcap run: live streams: %s\n", strerror(errno));
			return -1;
		}
		strm_hub_sink(c->hub, &c->sinks.sink[c->sinks.n++]);
		api_metrics_sink(c->api, &c->sinks.sink[c->sinks.n++]);
		if (c->names) {
			api_attach_kube(c->api, app_names_kube(c->names));
			api_attach_nat(c->api, app_names_nat(c->names));
		}
	}
	/* The engine owns the sinks from here on, also when it fails to open. */
	c->sinks_given = 1;
	if (eng_open(&c->o->eng, c->sinks.sink, c->sinks.n, &c->e, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap run: %s\n", err);
		return -1;
	}
	if (c->api) {
		api_attach(c->api, c->e, c->sinks.fdb, c->sinks.pks);
		api_attach_streams(c->api, c->hub);
	}
	if ((rc = cap_disc_monitor_open(c->inv, c->o->netns, &c->mon)) < 0) {
		fprintf(stderr, "podcap run: cannot watch links: %s\n", strerror(-rc));
		return -1;
	}
	rc = cap_discover(c->inv, c->o->netns, &c->list, &c->nlist);
	if (rc < 0) {
		fprintf(stderr, "podcap run: listing interfaces: %s\n", strerror(-rc));
		return -1;
	}
	for (int i = 0; i < c->o->n_ifaces; i++) {
		int found = 0;
		for (size_t j = 0; j < c->nlist; j++)
			found |= !strcmp(c->list[j].name, c->o->ifaces[i]);
		if (!found) {
			fprintf(stderr, "podcap run: --iface %s: no such interface%s%s\n", c->o->ifaces[i],
				c->o->netns ? " in netns " : "", c->o->netns ? c->o->netns : "");
			return -1;
		}
	}
	size_t n_wanted = 0;
	for (size_t j = 0; j < c->nlist; j++) {
		if (!wanted(c, &c->list[j]))
			continue;
		n_wanted++;
		if (start_iface(c, &c->list[j]) < 0 && c->o->n_ifaces)
			return -1; /* an interface asked for by name must work */
	}
	if (n_wanted && !count_active(c)) {
		fprintf(stderr, "podcap run: could not capture on any of %zu interface(s)\n", n_wanted);
		return -1;
	}
	return 0;
}

/* Live streams want every packet of their interfaces: tell the capture (the
 * eBPF program otherwise sends only flow heads), then let the streams begin.
 * force: the interfaces changed, apply again whatever the generation. */
static void arm_streams(struct run_ctx *c, int force)
{
	static uint32_t obs[RUN_MAX_IFACES];
	uint64_t gen = strm_hub_generation(c->hub);
	if (gen == c->stream_gen && !force)
		return;
	int all = 0;
	size_t n = strm_hub_wanted(c->hub, obs, RUN_MAX_IFACES, &all, &gen);
	for (size_t i = 0; i < c->n_ifs; i++) {
		struct run_if *ri = &c->ifs[i];
		int want = 0;
		for (size_t k = 0; k < n && !want; k++)
			want = obs[k] == ri->obs;
		want = want && ri->active;
		if (want == ri->streamed)
			continue;
		int rc = cap_live_set_streamed(c->live, ri->ifindex, want);
		if (rc < 0 && want)
			fprintf(stderr, "podcap run: %s: cannot send every packet to its stream: %s\n", ri->name,
				strerror(-rc));
		ri->streamed = rc == 0 ? want : 0;
	}
	if (all != c->stream_all) {
		cap_live_set_recording(c->live, all);
		c->stream_all = all;
	}
	c->stream_gen = gen;
	strm_hub_armed(c->hub, gen);
}

/* Captures until a signal, --duration or a fatal error; then ends every flow and
 * prints the final counters. */
static void run_loop(struct run_ctx *c)
{
	int rc;
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	if (!c->o->quiet)
		printf("podcap run: backend %s, %zu interface(s), db %s\n",
		       cap_backend_name(cap_live_backend(c->live)), count_active(c), c->o->db_path);
	fflush(stdout);
	uint64_t t0 = mono_ms(), last_tick = t0, last_stats = t0, last_publish = 0, last_sweep = t0;
	while (!stop_requested && !c->fatal) {
		uint64_t now = mono_ms();
		if (c->o->duration_s && now - t0 >= c->o->duration_s * 1000u)
			break;
		int streaming = c->hub && strm_hub_active(c->hub) > 0;
		rc = cap_live_poll(c->live, streaming ? RUN_STREAM_TICK_MS : 100, on_packet, c);
		if (rc < 0 && rc != -EINTR) {
			fprintf(stderr, "podcap run: capture: %s\n", strerror(-rc));
			break;
		}
		rc = cap_disc_monitor_read(c->mon, on_link, c);
		if (rc == -ENOBUFS) {
			/* Missed link notifications: re-list and pick up what is new. */
			free(c->list);
			c->list = NULL;
			if (cap_discover(c->inv, c->o->netns, &c->list, &c->nlist) == 0)
				for (size_t j = 0; j < c->nlist; j++)
					on_link(c, CAP_LINK_NEW, &c->list[j]);
		}
		if (c->hub)
			arm_streams(c, rc == -ENOBUFS);
		now = mono_ms();
		if (now - last_tick >= (streaming ? RUN_STREAM_TICK_MS : 200)) {
			/* timers, and half-filled batches handed to the workers */
			if (eng_tick(c->e, wall_us()) < 0)
				c->fatal = 1;
			last_tick = now;
		}
		if (now - last_sweep >= RUN_SWEEP_MS) {
			/* eBPF: idle flows none of whose packets got through the ring */
			cap_live_sweep_counts(c->live, c->o->eng.fl.idle_timeout_us, 0, on_counts, c);
			last_sweep = now;
		}
		if (c->api && now - last_publish >= 1000) {
			publish_capture(c);
			last_publish = now;
		}
		if (c->o->stats_s && now - last_stats >= c->o->stats_s * 1000u && !c->o->quiet) {
			print_stats(c, now - t0, "stats");
			last_stats = now;
		}
	}
	if (!c->fatal)
		cap_live_sweep_counts(c->live, 0, 1, on_counts, c);
	if (c->fatal)
		fprintf(stderr, "podcap run: %s\n", eng_error(c->e));
	else if (eng_finish(c->e) < 0) {
		fprintf(stderr, "podcap run: %s\n", eng_error(c->e));
		c->fatal = 1;
	}
	print_stats(c, mono_ms() - t0, "final");
	if (!c->o->quiet)
		app_print_summary(c->e, &c->sinks, eng_thread_cpu_us(), stdout);
}

int cmd_run(int argc, char **argv)
{
	/* static: options point into it for the life of the process */
	static struct app_opts o;
	struct run_ctx *c = NULL;
	char err[1024];
	int status = 1, rc, first;

	app_opts_default(APP_RUN, &o);
	rc = app_opts_parse(APP_RUN, argc, argv, &o, &first);
	if (rc)
		return rc == 1 ? 0 : rc;
	if (first < argc) {
		fprintf(stderr, "podcap run: unexpected argument '%s'\n", argv[first]);
		return app_usage(app_opts_usage(APP_RUN));
	}
	if (o.live.filter && cap_live_check_filter(o.live.filter, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap run: %s\n", err);
		return app_usage(app_opts_usage(APP_RUN));
	}
	if (geteuid() != 0) {
		fprintf(stderr, "podcap run: must run as root (live capture needs CAP_NET_ADMIN, CAP_NET_RAW "
			"and, for the eBPF backend, CAP_BPF)\n");
		return 1;
	}
	if (!(c = calloc(1, sizeof(*c)))) {
		fprintf(stderr, "podcap run: out of memory\n");
		return 1;
	}
	c->o = &o;
	if (run_start(c) == 0) {
		run_loop(c);
		status = c->fatal ? 1 : 0;
	}
	free(c->list);
	cap_disc_monitor_close(c->mon);
	/* The engine first: ending its flows may still read the eBPF flow map
	 * (record hook); then the tc programs are detached. */
	api_stop(c->api);
	eng_close(c->e);
	for (size_t i = 0; !c->sinks_given && i < c->sinks.n; i++)
		c->sinks.sink[i].ops->close(c->sinks.sink[i].ctx);
	api_close(c->api);
	strm_hub_close(c->hub); /* its streams ended with the engine's sink */
	/* after the engine: the flow database resolved names until it closed */
	app_names_close(c->names);
	if (c->live)
		cap_live_close(c->live);
	cap_inventory_free(c->inv);
	free(c);
	return status;
}
