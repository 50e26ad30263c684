/* The packet path shared by `podcap read` and `podcap run`. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "segments.h"

struct pipeline {
	struct pl_config cfg;
	struct fl_table *flows;
	struct st_store *store;
	struct seg_store *seg;  /* NULL when packets are not kept */
	uint64_t id_base;       /* flow ids of this run start above the database's */
	struct pl_stats st;
	uint64_t last_expire_us;
	int store_failed; /* first fatal store error, reported once */
	char err[512];
};

void pl_config_default(struct pl_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	dc_config_default(&cfg->dc);
	fl_config_default(&cfg->fl);
	st_config_default(&cfg->st);
}

/* Flow records go straight into the store's open transaction; the store batches. */
static int on_record(void *arg, const struct fl_record *in)
{
	struct pipeline *pl = arg;
	struct fl_record rec = *in;
	rec.id += pl->id_base;
	int rc = st_put_flow(pl->store, &rec);
	if (rc == 0 && pl->seg)
		rc = st_set_packets_state(pl->store, rec.id, "stored");
	if (rc < 0) {
		pl->st.store_errors++;
		if (!pl->store_failed) {
			pl->store_failed = rc;
			snprintf(pl->err, sizeof(pl->err), "flow store: %s", st_errmsg(pl->store));
		}
		return rc;
	}
	return 0;
}

int pl_open(const struct pl_config *cfg, struct pipeline **out, char *errbuf, size_t errlen)
{
	struct pipeline *pl = calloc(1, sizeof(*pl));
	int rc;

	*out = NULL;
	if (!pl) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	pl->cfg = *cfg;
	rc = st_open(cfg->db_path, &cfg->st, &pl->store, errbuf, errlen);
	if (rc < 0)
		goto fail;
	rc = st_max_flow_id(pl->store, &pl->id_base);
	if (rc < 0) {
		snprintf(errbuf, errlen, "flow store: %s", st_errmsg(pl->store));
		goto fail;
	}
	if (cfg->store_dir) {
		struct seg_config sc;
		seg_config_default(&sc);
		sc.snaplen = cfg->store_snaplen;
		sc.flow_packets = cfg->store_first_packets;
		if (cfg->store_cap_bytes)
			sc.max_bytes = cfg->store_cap_bytes;
		rc = seg_open(cfg->store_dir, &sc, &pl->seg, errbuf, errlen);
		if (rc < 0)
			goto fail;
		/* export finds the packets of this database's flows through this key */
		char abs[4096];
		const char *dir = realpath(cfg->store_dir, abs) ? abs : cfg->store_dir;
		if ((rc = st_meta_set(pl->store, "packet_store_dir", dir)) < 0) {
			snprintf(errbuf, errlen, "flow store: %s", st_errmsg(pl->store));
			goto fail;
		}
	}
	pl->flows = fl_table_new(&cfg->fl, on_record, pl);
	if (!pl->flows) {
		rc = -errno;
		snprintf(errbuf, errlen, "flow table: %s", strerror(errno));
		goto fail;
	}
	*out = pl;
	return 0;
fail:
	if (pl->seg)
		seg_close(pl->seg);
	if (pl->store)
		st_close(pl->store);
	free(pl);
	return rc;
}

int pl_obs_point(struct pipeline *pl, const char *iface, const char *direction, const char *pod,
		 int linktype, uint32_t *obs)
{
	int rc = st_obs_point(pl->store, iface, direction, pod, linktype, obs);
	if (rc < 0) {
		snprintf(pl->err, sizeof(pl->err), "observation point %s: %s", iface, st_errmsg(pl->store));
		return rc;
	}
	if (pl->seg && (rc = seg_add_interface(pl->seg, *obs, linktype, iface, pod)) < 0)
		snprintf(pl->err, sizeof(pl->err), "packet store: observation point %s: %s", iface,
			 seg_errmsg(pl->seg));
	return rc;
}

int pl_packet(struct pipeline *pl, uint32_t obs, const struct cap_packet *pkt)
{
	struct dc_packet p;

	pl->st.packets++;
	pl->st.bytes += pkt->wirelen;
	dc_decode(&pl->cfg.dc, pkt->linktype, pkt->data, pkt->caplen, pkt->wirelen, &p);
	dc_count(&pl->st.dc, &p);
	if (p.reason == DC_OK) {
		uint64_t flow_id;
		uint32_t pkt_no;
		if (fl_table_packet(pl->flows, obs, &p, pkt->data, pkt->ts_us, &flow_id, &pkt_no) == 0 &&
		    pl->seg) {
			int rc = seg_put(pl->seg, obs, flow_id + pl->id_base, pkt_no, pkt->ts_us, pkt->data,
					 pkt->caplen, pkt->wirelen);
			if (rc > 0)
				pl->st.seg_packets++;
			else if (rc < 0)
				pl->st.seg_errors++; /* disk full or I/O error: flows go on, counted */
		}
	}
	if (pkt->ts_us >= pl->last_expire_us + 1000000u)
		return pl_tick(pl, pkt->ts_us);
	return pl->store_failed;
}

int pl_tick(struct pipeline *pl, uint64_t now_us)
{
	pl->last_expire_us = now_us;
	fl_table_expire(pl->flows, now_us);
	if (pl->seg)
		seg_tick(pl->seg, now_us);
	return pl->store_failed;
}

int pl_finish(struct pipeline *pl)
{
	fl_table_flush(pl->flows);
	if (pl->seg && seg_flush(pl->seg) < 0)
		pl->st.seg_errors++;
	if (pl->store_failed)
		return pl->store_failed;
	int rc = st_commit(pl->store);
	if (rc < 0) {
		snprintf(pl->err, sizeof(pl->err), "flow store commit: %s", st_errmsg(pl->store));
		pl->store_failed = rc;
	}
	return rc;
}

void pl_stats(const struct pipeline *pl, struct pl_stats *out)
{
	*out = pl->st;
	fl_table_stats(pl->flows, &out->fl);
}

void pl_print_summary(const struct pipeline *pl, FILE *f)
{
	struct pl_stats s;
	uint64_t malformed = 0;

	pl_stats(pl, &s);
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		malformed += s.dc.by_reason[r];
	fprintf(f, "packets %llu, bytes %llu, flows %llu, flow records %llu\n",
		(unsigned long long)s.packets, (unsigned long long)s.bytes,
		(unsigned long long)s.fl.flows_created, (unsigned long long)s.fl.records);
	fprintf(f, "not ip %llu, unsupported %llu, malformed %llu",
		(unsigned long long)s.dc.by_reason[DC_NOT_IP],
		(unsigned long long)s.dc.by_reason[DC_UNSUPPORTED], (unsigned long long)malformed);
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		if (s.dc.by_reason[r])
			fprintf(f, ", %s %llu", dc_reason_name(r), (unsigned long long)s.dc.by_reason[r]);
	fputc('\n', f);
	int any = 0;
	for (int t = 1; t < DC_TUN__COUNT; t++)
		if (s.dc.by_tunnel[t]) {
			fprintf(f, "%s%s %llu", any ? ", " : "tunnelled: ", dc_tunnel_name(t),
				(unsigned long long)s.dc.by_tunnel[t]);
			any = 1;
		}
	if (any)
		fputc('\n', f);
	fprintf(f, "evicted flows %llu, dpi gave up %llu, store errors %llu\n",
		(unsigned long long)s.fl.evicted, (unsigned long long)s.fl.dpi_giveup,
		(unsigned long long)s.store_errors);
	if (pl->seg) {
		struct seg_stats ss;
		seg_stats(pl->seg, &ss);
		fprintf(f, "packet store: %llu packets stored, %llu skipped by per-flow limit, %llu refused "
			"(disk), %llu segments deleted by the cap, %llu bytes on disk\n",
			(unsigned long long)ss.packets, (unsigned long long)ss.skipped_limit,
			(unsigned long long)ss.write_errors, (unsigned long long)ss.segments_deleted,
			(unsigned long long)ss.disk_bytes);
	}
}

const char *pl_error(const struct pipeline *pl) { return pl->err; }

void pl_close(struct pipeline *pl)
{
	if (!pl)
		return;
	fl_table_free(pl->flows);
	if (pl->seg)
		seg_close(pl->seg);
	st_close(pl->store);
	free(pl);
}
