/* Counters: /api/v1/stats (JSON), /metrics (Prometheus text), the observation
 * points, and the filter fields.  Nothing here scans the flow table: stats are
 * asked often (the page polls them, Prometheus scrapes), so they come from the
 * engine's and sinks' counters, file sizes and index probes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api_internal.h"
#include "stream.h"
#include "flowdb.h"
#include "kube.h"
#include "pktstore.h"

static struct engine *attached_engine(struct api *a)
{
	return __atomic_load_n(&a->eng, __ATOMIC_ACQUIRE);
}

/* The database file with its WAL: what it takes on disk. */
static uint64_t db_bytes(const char *path)
{
	struct stat st;
	uint64_t n = 0;
	char wal[4096];
	if (stat(path, &st) == 0)
		n += (uint64_t)st.st_blocks * 512u;
	snprintf(wal, sizeof(wal), "%s-wal", path);
	if (stat(wal, &st) == 0)
		n += (uint64_t)st.st_blocks * 512u;
	return n;
}

/* A consistent copy of the capture snapshot (ifaces malloc'd; caller frees). */
static int capture_copy(struct api *a, struct api_capture *c, struct api_iface **ifaces)
{
	*ifaces = NULL;
	pthread_mutex_lock(&a->cap_lock);
	int have = a->have_capture;
	if (have) {
		*c = a->cap;
		if (a->nifaces && (*ifaces = malloc(a->nifaces * sizeof(**ifaces))))
			memcpy(*ifaces, a->ifaces, a->nifaces * sizeof(**ifaces));
		c->nifaces = *ifaces ? a->nifaces : 0;
		c->ifaces = *ifaces;
		static const char *const names[] = {"ebpf", "pcap"};
		c->backend = !strcmp(a->backend, "ebpf") ? names[0] : names[1];
	}
	pthread_mutex_unlock(&a->cap_lock);
	return have;
}

static void iface_json(struct jbuf *b, const struct api_iface *f)
{
	int first = 1;
	jb_str(b, "{");
	jb_kv_u64(b, &first, "obs_id", f->obs_id);
	jb_kv_str(b, &first, "iface", f->iface);
	jb_kv_str(b, &first, "pod", f->pod[0] ? f->pod : NULL);
	jb_kv_u64(b, &first, "received", f->received);
	jb_kv_u64(b, &first, "kernel_drops", f->kernel_drops);
	jb_kv_u64(b, &first, "kernel_counted", f->kernel_counted);
	jb_kv_u64(b, &first, "kernel_counted_bytes", f->kernel_bytes);
	jb_str(b, "}");
}

static void stats_capture(struct jbuf *b, int *first, const struct api_capture *cap)
{
	int f = 1;
	jb_kv_str(b, first, "backend", cap->backend);
	jb_key(b, first, "capture");
	jb_str(b, "{");
	jb_kv_u64(b, &f, "received", cap->received);
	jb_kv_u64(b, &f, "kernel_drops", cap->kernel_drops);
	jb_kv_u64(b, &f, "ring_drops", cap->ring_drops);
	jb_kv_u64(b, &f, "bad_records", cap->bad_records);
	jb_kv_u64(b, &f, "counts_records", cap->counts_records);
	jb_kv_u64(b, &f, "counts_lost", cap->counts_lost);
	if (cap->flow_map_size) {
		jb_kv_u64(b, &f, "flow_map_entries", cap->flow_map_entries);
		jb_kv_u64(b, &f, "flow_map_size", cap->flow_map_size);
	}
	jb_str(b, "}");
	jb_key(b, first, "interfaces");
	jb_str(b, "[");
	for (size_t i = 0; i < cap->nifaces; i++) {
		if (i)
			jb_str(b, ",");
		iface_json(b, &cap->ifaces[i]);
	}
	jb_str(b, "]");
}

/* decode, reassembly, flows, sinks: the engine's counters */
static void stats_engine(struct jbuf *b, int *first, struct engine *e)
{
	struct eng_stats es;
	eng_stats(e, &es);
	uint64_t malformed = 0;
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		malformed += es.dc.by_reason[r];
	int f = 1, f2 = 1;
	jb_key(b, first, "decode");
	jb_str(b, "{");
	jb_kv_u64(b, &f, "packets", es.packets);
	jb_kv_u64(b, &f, "bytes", es.bytes);
	jb_kv_u64(b, &f, "frames_cut", es.frames_cut);
	jb_kv_u64(b, &f, "not_ip", es.dc.by_reason[DC_NOT_IP]);
	jb_kv_u64(b, &f, "unsupported", es.dc.by_reason[DC_UNSUPPORTED]);
	jb_kv_u64(b, &f, "malformed", malformed);
	jb_key(b, &f, "by_reason");
	jb_str(b, "{");
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		if (es.dc.by_reason[r])
			jb_kv_u64(b, &f2, dc_reason_name(r), es.dc.by_reason[r]);
	jb_str(b, "}");
	jb_key(b, &f, "by_tunnel");
	jb_str(b, "{");
	f2 = 1;
	for (int t = 1; t < DC_TUN__COUNT; t++)
		if (es.dc.by_tunnel[t])
			jb_kv_u64(b, &f2, dc_tunnel_name(t), es.dc.by_tunnel[t]);
	jb_str(b, "}}");
	f = 1;
	jb_key(b, first, "reassembly");
	jb_str(b, "{");
	jb_kv_u64(b, &f, "fragments", es.fr.fragments);
	jb_kv_u64(b, &f, "reassembled", es.fr.reassembled);
	jb_kv_u64(b, &f, "timed_out", es.fr.timed_out);
	jb_kv_u64(b, &f, "overlapping", es.fr.overlapping);
	jb_kv_u64(b, &f, "duplicates", es.fr.duplicates);
	jb_kv_u64(b, &f, "evicted", es.fr.evicted);
	jb_kv_u64(b, &f, "too_big", es.fr.too_big);
	jb_kv_u64(b, &f, "bad", es.fr.bad);
	jb_kv_u64(b, &f, "held_fragments", es.fr_held);
	jb_kv_u64(b, &f, "held_bytes", es.fr.bytes);
	jb_str(b, "}");
	f = 1;
	jb_key(b, first, "flows");
	jb_str(b, "{");
	jb_kv_u64(b, &f, "active", es.fl.flows_active);
	jb_kv_u64(b, &f, "created", es.fl.flows_created);
	jb_kv_u64(b, &f, "records", es.fl.records);
	jb_kv_u64(b, &f, "evicted", es.fl.evicted);
	jb_kv_u64(b, &f, "skipped_packets", es.fl.skipped);
	jb_kv_u64(b, &f, "dpi_giveup", es.fl.dpi_giveup);
	jb_kv_u64(b, &f, "dpi_alloc_fail", es.fl.dpi_alloc_fail);
	jb_str(b, "}");
	jb_key(b, first, "sinks");
	jb_str(b, "[");
	for (size_t i = 0; i < es.nsinks; i++) {
		f = 1;
		jb_str(b, i ? ",{" : "{");
		jb_kv_str(b, &f, "name", es.sink[i].name);
		jb_kv_u64(b, &f, "batches", es.sink[i].batches);
		jb_kv_u64(b, &f, "records", es.sink[i].records);
		jb_kv_u64(b, &f, "discarded", es.sink[i].discarded);
		jb_kv_double(b, &f, "cpu_s", (double)es.sink[i].cpu_us / 1e6);
		jb_str(b, "}");
	}
	jb_str(b, "]");
}

/* The flow database: its writer's counters (the agent) and the file; -1 after
 * answering 503 (no handle). */
static int stats_flowdb(struct api *a, struct srv_req *req, struct jbuf *b, int *first)
{
	int f = 1;
	jb_key(b, first, "flowdb");
	jb_str(b, "{");
	jb_kv_str(b, &f, "path", a->db_path);
	jb_kv_u64(b, &f, "bytes", db_bytes(a->db_path));
	if (a->cfg.db_cap_bytes)
		jb_kv_u64(b, &f, "cap_bytes", a->cfg.db_cap_bytes);
	if (a->cfg.db_max_age_s)
		jb_kv_u64(b, &f, "max_age_s", a->cfg.db_max_age_s);
	struct fdb_sink *fs = __atomic_load_n(&a->fdbs, __ATOMIC_ACQUIRE);
	if (fs) {
		struct fdb_sink_stats ss;
		fdb_sink_stats(fs, &ss);
		jb_kv_u64(b, &f, "rows_written", ss.rows);
		jb_kv_u64(b, &f, "lost", ss.lost);
		jb_kv_u64(b, &f, "commits", ss.commits);
		jb_kv_u64(b, &f, "retained", ss.retained);
		jb_kv_u64(b, &f, "names_expired", ss.names_expired);
	}
	uint64_t max_id = 0;
	int64_t oldest = 0, newest = 0, retained = 0;
	pthread_mutex_lock(&a->db_cache_lock);
	int fresh = a->db_cache_us && api_now_us() - a->db_cache_us < API_DB_CACHE_US;
	pthread_mutex_unlock(&a->db_cache_lock);
	/* a handle only when the cache is old: most answers take no SQLite */
	struct fdb *db = fresh ? NULL : api_db(a, req);
	if (!fresh && !db)
		return -1;
	api_db_numbers(a, db, &max_id, &oldest, &newest, &retained);
	jb_kv_u64(b, &f, "max_id", max_id);
	jb_kv_i64(b, &f, "oldest_us", oldest);
	jb_kv_i64(b, &f, "newest_us", newest);
	jb_kv_i64(b, &f, "retained_until_us", retained);
	jb_str(b, "}");
	return 0;
}

static void stats_pktstore(struct api *a, struct jbuf *b, int *first, struct pks_sink *ps)
{
	struct pks_stats st;
	pks_sink_stats(ps, &st);
	int f = 1;
	jb_key(b, first, "pktstore");
	jb_str(b, "{");
	jb_kv_str(b, &f, "dir", a->store_dir);
	jb_kv_u64(b, &f, "packets", st.packets);
	jb_kv_u64(b, &f, "bytes", st.bytes);
	jb_kv_u64(b, &f, "write_errors", st.write_errors);
	jb_kv_u64(b, &f, "skipped_limit", st.skipped_limit);
	jb_kv_u64(b, &f, "segments_opened", st.segments_open);
	jb_kv_u64(b, &f, "segments_deleted", st.segments_deleted);
	jb_kv_u64(b, &f, "index_lost", st.index_lost);
	jb_kv_u64(b, &f, "disk_bytes", st.disk_bytes);
	if (a->cfg.store_cap_bytes)
		jb_kv_u64(b, &f, "cap_bytes", a->cfg.store_cap_bytes);
	jb_kv_u64(b, &f, "warnings", st.warnings);
	jb_str(b, "}");
}

/* Live streams (GET /api/v1/stream): open now, opened in all, what they carried
 * and what slow clients lost. */
static void stats_streams(struct jbuf *b, int *first, struct strm_hub *hub)
{
	struct strm_hub_stats st;
	strm_hub_stats(hub, &st);
	int f = 1;
	jb_key(b, first, "streams");
	jb_str(b, "{");
	jb_kv_u64(b, &f, "open", st.open);
	jb_kv_u64(b, &f, "opened", st.opened);
	jb_kv_u64(b, &f, "packets", st.packets);
	jb_kv_u64(b, &f, "bytes", st.bytes);
	jb_kv_u64(b, &f, "dropped", st.dropped);
	jb_str(b, "}");
}

static void stats_server(struct api *a, struct jbuf *b, int *first)
{
	struct srv_stats s;
	srv_stats(a->srv, &s);
	int f = 1;
	jb_key(b, first, "server");
	jb_str(b, "{");
	jb_kv_u64(b, &f, "connections", s.connections_active);
	jb_kv_u64(b, &f, "connections_accepted", s.connections_accepted);
	jb_kv_u64(b, &f, "connections_rejected", s.connections_rejected);
	jb_kv_u64(b, &f, "requests", s.requests);
	jb_kv_u64(b, &f, "rejected_auth", s.rejected_auth);
	jb_kv_u64(b, &f, "rejected_busy", s.rejected_busy);
	jb_kv_u64(b, &f, "rejected_overload", s.rejected_overload);
	jb_kv_u64(b, &f, "rejected_limits", s.rejected_url + s.rejected_header + s.rejected_body);
	jb_kv_u64(b, &f, "timeouts", s.timeouts_request + s.timeouts_write);
	jb_kv_u64(b, &f, "streams_cut", s.streams_cut);
	jb_str(b, "}");
	/* pcap answers: limited = the limit left matching flows out (said in
	 * X-Podcap-Complete: false); damaged = cut because the packet store could
	 * not read some of their packets; failed = an error (JSON, or a cut) */
	f = 1;
	jb_key(b, first, "exports");
	jb_str(b, "{");
	jb_kv_u64(b, &f, "answered", __atomic_load_n(&a->exports, __ATOMIC_RELAXED));
	jb_kv_u64(b, &f, "limited", __atomic_load_n(&a->exports_limited, __ATOMIC_RELAXED));
	jb_kv_u64(b, &f, "damaged", __atomic_load_n(&a->exports_damaged, __ATOMIC_RELAXED));
	jb_kv_u64(b, &f, "failed", __atomic_load_n(&a->exports_failed, __ATOMIC_RELAXED));
	jb_kv_u64(b, &f, "missing", __atomic_load_n(&a->exports_missing, __ATOMIC_RELAXED));
	jb_kv_u64(b, &f, "partial", __atomic_load_n(&a->exports_partial, __ATOMIC_RELAXED));
	jb_str(b, "}");
}

void api_h_stats(struct srv_req *req, void *arg)
{
	struct api *a = arg;
	struct jbuf b = {0};
	struct api_capture cap;
	struct api_iface *ifaces = NULL;
	int first = 1;
	struct engine *e = attached_engine(a);
	struct pks_sink *ps = __atomic_load_n(&a->pkss, __ATOMIC_ACQUIRE);
	struct kube *k = __atomic_load_n(&a->kube, __ATOMIC_ACQUIRE);

	jb_str(&b, "{");
	jb_kv_str(&b, &first, "mode", a->mode);
	jb_kv_u64(&b, &first, "uptime_s", (api_now_us() - a->start_us) / 1000000u);
	jb_kv_u64(&b, &first, "now_us", api_now_us());
	if (capture_copy(a, &cap, &ifaces))
		stats_capture(&b, &first, &cap);
	free(ifaces);
	if (e)
		stats_engine(&b, &first, e);
	if (stats_flowdb(a, req, &b, &first) < 0) {
		jb_free(&b);
		return;
	}
	if (ps)
		stats_pktstore(a, &b, &first, ps);
	struct strm_hub *hub = __atomic_load_n(&a->hub, __ATOMIC_ACQUIRE);
	if (hub)
		stats_streams(&b, &first, hub);
	stats_server(a, &b, &first);
	if (k) {
		char *kj = malloc(16384);
		if (kj && kube_status_json(k, kj, 16384) == 0) {
			jb_key(&b, &first, "kubernetes");
			jb_str(&b, kj);
		}
		free(kj);
	}
	struct kube_nat *nat = __atomic_load_n(&a->nat, __ATOMIC_ACQUIRE);
	if (nat) {
		/* Services after DNAT: what the conntrack reader lost (event overruns,
		 * translations overwritten in a full ring, read errors) */
		struct kube_nat_stats ns;
		kube_nat_stats(nat, &ns);
		int f = 1;
		jb_key(&b, &first, "conntrack");
		jb_str(&b, "{");
		jb_kv_u64(&b, &f, "entries", ns.entries);
		jb_kv_u64(&b, &f, "added", ns.added);
		jb_kv_u64(&b, &f, "lookups", ns.lookups);
		jb_kv_u64(&b, &f, "hits", ns.hits);
		jb_kv_u64(&b, &f, "overruns", ns.overruns);
		jb_kv_u64(&b, &f, "evicted", ns.evicted);
		jb_kv_u64(&b, &f, "errors", ns.errors);
		jb_str(&b, "}");
	}
	jb_str(&b, "}\n");
	if (b.err) {
		jb_free(&b);
		srv_respond_error(req, 503, "out of memory");
		return;
	}
	srv_respond_take(req, 200, "application/json", b.p, b.len);
}

/* ---- GET /api/v1/interfaces ---- */

void api_h_interfaces(struct srv_req *req, void *arg)
{
	struct api *a = arg;
	struct jbuf b = {0};
	struct fdb_cursor *c = NULL;
	struct api_capture cap;
	struct api_iface *ifaces = NULL;
	int have = capture_copy(a, &cap, &ifaces);
	struct fdb *db = api_db(a, req);
	if (!db) {
		free(ifaces);
		return;
	}
	int rc = fdb_cursor_open(db, "SELECT id, iface, direction, pod, linktype, first_seen_us "
				 "FROM observation_points ORDER BY id LIMIT 100000", NULL, 0, &c);
	jb_str(&b, "[");
	int n = 0;
	while (rc >= 0 && (rc = fdb_cursor_next(c)) == 1) {
		int f = 1;
		uint32_t id = (uint32_t)fdb_cursor_int(c, 0);
		jb_str(&b, n++ ? ",\n{" : "\n{");
		jb_kv_u64(&b, &f, "obs_id", id);
		jb_kv_str(&b, &f, "iface", fdb_cursor_text(c, 1));
		jb_kv_str(&b, &f, "direction", fdb_cursor_text(c, 2));
		jb_kv_str(&b, &f, "pod", fdb_cursor_text(c, 3));
		jb_kv_i64(&b, &f, "linktype", fdb_cursor_int(c, 4));
		jb_kv_i64(&b, &f, "first_seen_us", fdb_cursor_int(c, 5));
		/* live counters, when the agent captures there now */
		for (size_t i = 0; have && i < cap.nifaces; i++)
			if (cap.ifaces[i].obs_id == id) {
				jb_key(&b, &f, "live");
				iface_json(&b, &cap.ifaces[i]);
				break;
			}
		jb_str(&b, "}");
	}
	jb_str(&b, n ? "\n]\n" : "]\n");
	free(ifaces);
	if (rc < 0) {
		srv_respond_error(req, rc == -ETIMEDOUT ? 503 : 500, "%s", fdb_errmsg(db));
		fdb_cursor_close(c);
		jb_free(&b);
		return;
	}
	fdb_cursor_close(c);
	if (b.err) {
		jb_free(&b);
		srv_respond_error(req, 503, "out of memory");
		return;
	}
	srv_respond_take(req, 200, "application/json", b.p, b.len);
}

/* ---- GET /api/v1/fields ---- */

void api_h_fields(struct srv_req *req, void *arg)
{
	(void)arg;
	struct jbuf b = {0};
	jb_str(&b, "[");
	for (size_t i = 0; i < q_field_count(); i++) {
		const struct q_field_info *fi = q_field(i);
		int f = 1;
		jb_str(&b, i ? ",\n{" : "\n{");
		jb_kv_str(&b, &f, "name", fi->name);
		jb_kv_str(&b, &f, "type", fi->type);
		jb_kv_str(&b, &f, "operators", fi->operators);
		jb_kv_str(&b, &f, "description", fi->description);
		jb_kv_str(&b, &f, "index", fi->index);
		jb_str(&b, "}");
	}
	jb_str(&b, "\n]\n");
	if (b.err) {
		jb_free(&b);
		srv_respond_error(req, 503, "out of memory");
		return;
	}
	srv_respond_take(req, 200, "application/json", b.p, b.len);
}

/* ---- GET /metrics ---- */

/* A label value: backslash, quote and newline escaped (the text format's rules). */
static void prom_label(struct jbuf *b, const char *s)
{
	jb_str(b, "\"");
	size_t run = 0;
	const char *p = s;
	for (; *p; p++) {
		if (*p != '\\' && *p != '"' && *p != '\n')
			continue;
		jb_raw(b, s, (size_t)(p - s));
		jb_str(b, *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : "\\n");
		s = p + 1;
	}
	(void)run;
	jb_raw(b, s, (size_t)(p - s));
	jb_str(b, "\"");
}

static void prom_head(struct jbuf *b, const char *name, const char *type, const char *help)
{
	jb_fmt(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_u64(struct jbuf *b, const char *name, const char *type, const char *help, uint64_t v)
{
	prom_head(b, name, type, help);
	jb_fmt(b, "%s %" PRIu64 "\n", name, v);
}

static void metrics_capture(struct jbuf *b, const struct api_capture *c)
{
	prom_u64(b, "podcap_capture_received_packets_total", "counter",
		 "Packets the capture backend delivered to user space.", c->received);
	prom_u64(b, "podcap_capture_kernel_drops_total", "counter",
		 "Packets the kernel dropped before the capture could read them.", c->kernel_drops);
	prom_u64(b, "podcap_capture_ring_drops_total", "counter",
		 "Packets lost because the eBPF ring buffer was full.", c->ring_drops);
	prom_u64(b, "podcap_capture_bad_records_total", "counter",
		 "Capture records that could not be read.", c->bad_records);
	prom_u64(b, "podcap_capture_counts_records_total", "counter",
		 "eBPF: flow records from the kernel's counters alone (no packet of the flow got through the ring).",
		 c->counts_records);
	prom_u64(b, "podcap_capture_counts_lost_total", "counter",
		 "eBPF: counts-only flow records that could not be added (lost).", c->counts_lost);
	if (c->flow_map_size) {
		prom_u64(b, "podcap_capture_flow_map_entries", "gauge",
			 "eBPF: keys in the kernel's flow counter map (full: the least recently used are evicted "
			 "with their counts).", c->flow_map_entries);
		prom_u64(b, "podcap_capture_flow_map_size", "gauge", "eBPF: the flow counter map's size.",
			 c->flow_map_size);
	}
	static const struct { const char *name, *help; size_t off; } per_if[] = {
		{"podcap_interface_received_packets_total", "Packets received on the interface by the capture.",
		 offsetof(struct api_iface, received)},
		{"podcap_interface_kernel_drops_total", "Packets the kernel dropped on the interface.",
		 offsetof(struct api_iface, kernel_drops)},
		{"podcap_interface_packets_total", "Packets the eBPF program counted on the interface (0 with libpcap).",
		 offsetof(struct api_iface, kernel_counted)},
		{"podcap_interface_bytes_total", "Bytes the eBPF program counted on the interface (0 with libpcap).",
		 offsetof(struct api_iface, kernel_bytes)},
	};
	for (size_t k = 0; k < sizeof(per_if) / sizeof(per_if[0]); k++) {
		prom_head(b, per_if[k].name, "counter", per_if[k].help);
		for (size_t i = 0; i < c->nifaces; i++) {
			const struct api_iface *f = &c->ifaces[i];
			jb_fmt(b, "%s{iface=", per_if[k].name);
			prom_label(b, f->iface);
			jb_str(b, ",pod=");
			prom_label(b, f->pod);
			jb_fmt(b, "} %" PRIu64 "\n", *(const uint64_t *)((const char *)f + per_if[k].off));
		}
	}
}

static void metrics_engine(struct jbuf *b, struct engine *e)
{
	struct eng_stats es;
	eng_stats(e, &es);
	prom_u64(b, "podcap_decoded_packets_total", "counter", "Packets handed to the engine.", es.packets);
	prom_u64(b, "podcap_decoded_bytes_total", "counter", "Bytes of the packets handed to the engine.",
		 es.bytes);
	prom_head(b, "podcap_decode_problems_total", "counter",
		  "Packets not accounted to a flow, by reason (not IP, unsupported, each malformed kind).");
	for (int r = DC_NOT_IP; r < DC_R__COUNT; r++)
		if (es.dc.by_reason[r] || r == DC_NOT_IP)
			jb_fmt(b, "podcap_decode_problems_total{reason=\"%s\"} %" PRIu64 "\n", dc_reason_name(r),
			       es.dc.by_reason[r]);
	prom_head(b, "podcap_tunnel_packets_total", "counter", "Packets by outermost tunnel.");
	for (int t = 0; t < DC_TUN__COUNT; t++)
		if (es.dc.by_tunnel[t] || t == 0)
			jb_fmt(b, "podcap_tunnel_packets_total{tunnel=\"%s\"} %" PRIu64 "\n", dc_tunnel_name(t),
			       es.dc.by_tunnel[t]);
	prom_u64(b, "podcap_ip_fragments_total", "counter", "IP fragments given to reassembly.", es.fr.fragments);
	prom_u64(b, "podcap_ip_reassembled_total", "counter", "IP datagrams reassembled.", es.fr.reassembled);
	prom_head(b, "podcap_ip_reassembly_given_up_total", "counter",
		  "IP datagrams reassembly gave up on (their fragments went on alone), by reason.");
	jb_fmt(b, "podcap_ip_reassembly_given_up_total{reason=\"timeout\"} %" PRIu64 "\n", es.fr.timed_out);
	jb_fmt(b, "podcap_ip_reassembly_given_up_total{reason=\"overlap\"} %" PRIu64 "\n", es.fr.overlapping);
	jb_fmt(b, "podcap_ip_reassembly_given_up_total{reason=\"evicted\"} %" PRIu64 "\n", es.fr.evicted);
	jb_fmt(b, "podcap_ip_reassembly_given_up_total{reason=\"too_big\"} %" PRIu64 "\n", es.fr.too_big);
	jb_fmt(b, "podcap_ip_reassembly_given_up_total{reason=\"bad\"} %" PRIu64 "\n", es.fr.bad);
	prom_u64(b, "podcap_flows_active", "gauge", "Flows in the flow tables now.", es.fl.flows_active);
	prom_u64(b, "podcap_flows_created_total", "counter", "Flows started.", es.fl.flows_created);
	prom_u64(b, "podcap_flow_records_total", "counter", "Flow records emitted (periodic and final).",
		 es.fl.records);
	prom_u64(b, "podcap_flows_evicted_total", "counter", "Flows ended early by the flow table's memory cap.",
		 es.fl.evicted);
	prom_u64(b, "podcap_dpi_giveup_total", "counter", "Flows nDPI gave up on.", es.fl.dpi_giveup);
	/* in /api/v1/stats already; here too, so an alert can see every loss */
	prom_u64(b, "podcap_flow_skipped_packets_total", "counter",
		 "Packets the flow tables could not account to a flow (no memory for a new one).", es.fl.skipped);
	prom_u64(b, "podcap_dpi_alloc_failures_total", "counter",
		 "Flows nDPI could not classify for want of memory.", es.fl.dpi_alloc_fail);
	prom_u64(b, "podcap_decode_frames_cut_total", "counter",
		 "Copied frames longer than a batch (192 KiB), cut to it (a snap length above it).", es.frames_cut);
	prom_head(b, "podcap_sink_records_total", "counter", "Records a sink received.");
	for (size_t i = 0; i < es.nsinks; i++)
		jb_fmt(b, "podcap_sink_records_total{sink=\"%s\"} %" PRIu64 "\n", es.sink[i].name,
		       es.sink[i].records);
	prom_head(b, "podcap_sink_discarded_total", "counter", "Events dropped after a sink failed.");
	for (size_t i = 0; i < es.nsinks; i++)
		jb_fmt(b, "podcap_sink_discarded_total{sink=\"%s\"} %" PRIu64 "\n", es.sink[i].name,
		       es.sink[i].discarded);
	prom_head(b, "podcap_sink_cpu_seconds_total", "counter", "CPU time of a sink's thread.");
	for (size_t i = 0; i < es.nsinks; i++)
		jb_fmt(b, "podcap_sink_cpu_seconds_total{sink=\"%s\"} %.6f\n", es.sink[i].name,
		       (double)es.sink[i].cpu_us / 1e6);
}

static void metrics_apps(struct jbuf *b, struct api *a)
{
	struct api_metrics *m = &a->metrics;
	pthread_mutex_lock(&m->lock);
	static const struct { const char *name, *help; size_t off; } per_app[] = {
		{"podcap_app_flows_total", "Ended flows by application (nDPI name).",
		 offsetof(struct api_app_count, flows)},
		{"podcap_app_packets_total", "Packets of ended flows by application.",
		 offsetof(struct api_app_count, packets)},
		{"podcap_app_bytes_total", "Bytes of ended flows by application.",
		 offsetof(struct api_app_count, bytes)},
	};
	for (size_t k = 0; k < sizeof(per_app) / sizeof(per_app[0]); k++) {
		prom_head(b, per_app[k].name, "counter", per_app[k].help);
		for (size_t i = 0; i < m->napps; i++) {
			jb_fmt(b, "%s{app=", per_app[k].name);
			prom_label(b, m->apps[i].name);
			jb_fmt(b, "} %" PRIu64 "\n",
			       *(const uint64_t *)((const char *)&m->apps[i] + per_app[k].off));
		}
	}
	prom_u64(b, "podcap_app_overflow_flows_total", "counter",
		 "Ended flows not counted by application because the table of names was full.", m->apps_overflow);
	prom_u64(b, "podcap_tcp_flows_total", "counter", "Ended TCP flows.", m->tcp_flows);
	prom_u64(b, "podcap_tcp_packets_total", "counter", "Packets of ended TCP flows.", m->tcp_packets);
	prom_u64(b, "podcap_tcp_retransmitted_packets_total", "counter",
		 "Retransmitted packets of ended TCP flows (ratio: divide by podcap_tcp_packets_total).",
		 m->tcp_retrans);
	prom_head(b, "podcap_tcp_handshake_rtt_seconds", "histogram",
		  "SYN to SYN/ACK to ACK time of ended TCP flows that had a handshake.");
	uint64_t cum = 0;
	for (int i = 0; i < API_RTT_BUCKETS; i++) {
		cum += m->rtt_buckets[i];
		jb_fmt(b, "podcap_tcp_handshake_rtt_seconds_bucket{le=\"%g\"} %" PRIu64 "\n", api_rtt_bounds_s[i], cum);
	}
	jb_fmt(b, "podcap_tcp_handshake_rtt_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", m->rtt_count);
	jb_fmt(b, "podcap_tcp_handshake_rtt_seconds_sum %.6f\n", m->rtt_sum_s);
	jb_fmt(b, "podcap_tcp_handshake_rtt_seconds_count %" PRIu64 "\n", m->rtt_count);
	pthread_mutex_unlock(&m->lock);
}

void api_h_metrics(struct srv_req *req, void *arg)
{
	struct api *a = arg;
	struct jbuf b = {0};
	struct api_capture cap;
	struct api_iface *ifaces = NULL;
	struct engine *e = attached_engine(a);

	prom_head(&b, "podcap_info", "gauge", "Which podcap answers: the mode (agent or serve).");
	jb_fmt(&b, "podcap_info{mode=");
	prom_label(&b, a->mode);
	jb_str(&b, "} 1\n");
	prom_u64(&b, "podcap_start_time_seconds", "gauge", "When the process started serving, seconds since the epoch.",
		 a->start_us / 1000000u);
	if (capture_copy(a, &cap, &ifaces))
		metrics_capture(&b, &cap);
	free(ifaces);
	if (e)
		metrics_engine(&b, e);
	if (a->metrics_used)
		metrics_apps(&b, a);
	struct fdb_sink *fs = __atomic_load_n(&a->fdbs, __ATOMIC_ACQUIRE);
	if (fs) {
		struct fdb_sink_stats ss;
		fdb_sink_stats(fs, &ss);
		prom_u64(&b, "podcap_flowdb_rows_written_total", "counter", "Flow rows written (periodic and final).",
			 ss.rows);
		prom_u64(&b, "podcap_flowdb_rows_lost_total", "counter", "Flow rows lost to failed commits or refused.",
			 ss.lost);
		prom_u64(&b, "podcap_flowdb_rows_retained_total", "counter", "Flow rows deleted by retention.",
			 ss.retained);
		prom_u64(&b, "podcap_flowdb_names_expired_total", "counter",
			 "Kubernetes names gone from the dictionary before their flow's row was written (no names).",
			 ss.names_expired);
	}
	prom_u64(&b, "podcap_flowdb_bytes", "gauge", "Size of the flow database with its WAL.", db_bytes(a->db_path));
	if (a->cfg.db_cap_bytes)
		prom_u64(&b, "podcap_flowdb_cap_bytes", "gauge",
			 "The flow database's size cap (--db-cap): oldest flows deleted beyond it.", a->cfg.db_cap_bytes);
	struct pks_sink *ps = __atomic_load_n(&a->pkss, __ATOMIC_ACQUIRE);
	if (ps) {
		struct pks_stats st;
		pks_sink_stats(ps, &st);
		prom_u64(&b, "podcap_pktstore_packets_total", "counter", "Packets written to the packet store.", st.packets);
		prom_u64(&b, "podcap_pktstore_write_errors_total", "counter",
			 "Packets the packet store could not write (disk full, I/O error).", st.write_errors);
		prom_u64(&b, "podcap_pktstore_segments_deleted_total", "counter", "Segments deleted by the size cap.",
			 st.segments_deleted);
		prom_u64(&b, "podcap_pktstore_index_lost_total", "counter",
			 "Packets whose index entry could not be committed.", st.index_lost);
		prom_u64(&b, "podcap_pktstore_skipped_limit_total", "counter",
			 "Packets not stored because their flow had its first N (--store-first).", st.skipped_limit);
		prom_u64(&b, "podcap_pktstore_warnings_total", "counter",
			 "Packet store problems reported (damaged index, undeletable segments, a full disk).",
			 st.warnings);
		prom_u64(&b, "podcap_pktstore_bytes", "gauge", "Segments and index on disk.", st.disk_bytes);
		if (a->cfg.store_cap_bytes)
			prom_u64(&b, "podcap_pktstore_cap_bytes", "gauge",
				 "The packet store's size cap (--store-cap): oldest segments deleted beyond it.",
				 a->cfg.store_cap_bytes);
	}
	struct strm_hub *hub = __atomic_load_n(&a->hub, __ATOMIC_ACQUIRE);
	if (hub) {
		struct strm_hub_stats st;
		strm_hub_stats(hub, &st);
		prom_u64(&b, "podcap_streams_open", "gauge", "Live pcapng streams open now (GET /api/v1/stream).",
			 st.open);
		prom_u64(&b, "podcap_stream_packets_total", "counter", "Packets written to live streams.", st.packets);
		prom_u64(&b, "podcap_stream_bytes_total", "counter", "Bytes sent to live stream clients.", st.bytes);
		prom_u64(&b, "podcap_stream_dropped_total", "counter",
			 "Packets a live stream could not deliver (its client too slow); also in its ISBs.", st.dropped);
	}
	struct kube_nat *nat = __atomic_load_n(&a->nat, __ATOMIC_ACQUIRE);
	if (nat) {
		struct kube_nat_stats ns;
		kube_nat_stats(nat, &ns);
		prom_u64(&b, "podcap_conntrack_overruns_total", "counter",
			 "conntrack events lost (the socket overran; a dump followed): Services after DNAT may go unnamed.",
			 ns.overruns);
		prom_u64(&b, "podcap_conntrack_evicted_total", "counter",
			 "Live translated connections overwritten because the ring was full.", ns.evicted);
		prom_u64(&b, "podcap_conntrack_errors_total", "counter", "conntrack read errors.", ns.errors);
	}
	struct srv_stats s;
	srv_stats(a->srv, &s);
	prom_head(&b, "podcap_http_responses_total", "counter", "HTTP responses by status class.");
	for (int i = 1; i <= 5; i++)
		jb_fmt(&b, "podcap_http_responses_total{code=\"%dxx\"} %" PRIu64 "\n", i, s.responses[i]);
	prom_u64(&b, "podcap_http_connections", "gauge", "Open HTTP connections.", s.connections_active);
	prom_head(&b, "podcap_http_rejected_total", "counter",
		  "Requests refused: no or a wrong token, a class full (429), overload (503), limits (414/431/413).");
	jb_fmt(&b, "podcap_http_rejected_total{reason=\"auth\"} %" PRIu64 "\n", s.rejected_auth);
	jb_fmt(&b, "podcap_http_rejected_total{reason=\"busy\"} %" PRIu64 "\n", s.rejected_busy);
	jb_fmt(&b, "podcap_http_rejected_total{reason=\"overload\"} %" PRIu64 "\n", s.rejected_overload);
	jb_fmt(&b, "podcap_http_rejected_total{reason=\"limits\"} %" PRIu64 "\n",
	       s.rejected_url + s.rejected_header + s.rejected_body);
	prom_u64(&b, "podcap_http_streams_cut_total", "counter",
		 "Streamed answers that ended before their last byte (client gone, stalled, stopping).", s.streams_cut);
	prom_head(&b, "podcap_exports_total", "counter",
		  "pcap answers by outcome: all; limited (the limit left matching flows out); damaged (cut: "
		  "packets the store could not read); failed.");
	jb_fmt(&b, "podcap_exports_total{outcome=\"all\"} %" PRIu64 "\n", __atomic_load_n(&a->exports, __ATOMIC_RELAXED));
	jb_fmt(&b, "podcap_exports_total{outcome=\"limited\"} %" PRIu64 "\n",
	       __atomic_load_n(&a->exports_limited, __ATOMIC_RELAXED));
	jb_fmt(&b, "podcap_exports_total{outcome=\"damaged\"} %" PRIu64 "\n",
	       __atomic_load_n(&a->exports_damaged, __ATOMIC_RELAXED));
	jb_fmt(&b, "podcap_exports_total{outcome=\"failed\"} %" PRIu64 "\n",
	       __atomic_load_n(&a->exports_failed, __ATOMIC_RELAXED));
	jb_fmt(&b, "podcap_exports_total{outcome=\"missing\"} %" PRIu64 "\n",
	       __atomic_load_n(&a->exports_missing, __ATOMIC_RELAXED));
	jb_fmt(&b, "podcap_exports_total{outcome=\"partial\"} %" PRIu64 "\n",
	       __atomic_load_n(&a->exports_partial, __ATOMIC_RELAXED));
	if (b.err) {
		jb_free(&b);
		srv_respond_error(req, 503, "out of memory");
		return;
	}
	srv_respond_take(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
}
