/* live — libpcap and eBPF tc live capture behind one interface.  See capture.h. */
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pcap/pcap.h>

#include "decode.h"
#include "live_int.h"


const char *cap_backend_name(int backend)
{
	return backend == CAP_BACKEND_EBPF ? "ebpf" : "pcap";
}

void cap_live_config_default(struct cap_live_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = CAP_BACKEND_EBPF;
	cfg->snaplen = 2048;
	cfg->buffer_bytes = 8u << 20;
	cfg->flow_packets = 16;
	cfg->max_flows = 65536;
}

int cap_live_backend(const struct cap_live *l)
{
	return l->backend;
}

const char *cap_live_fallback_reason(const struct cap_live *l)
{
	return l->fallback[0] ? l->fallback : NULL;
}

/* ---- libpcap ------------------------------------------------------------- */

/* Longest time a packet may wait in a TPACKET_V3 block before the kernel hands
 * the block over (pcap_set_timeout).  Live streams (sniff) want little latency:
 * at 100 ms their p99 was 113 ms; under a flood blocks fill long before 10 ms. */
#define LIVE_PCAP_BLOCK_MS 10

static int pcap_attach_if(struct cap_live *l, struct live_if *ifc, char *errbuf, size_t errlen)
{
	char perr[PCAP_ERRBUF_SIZE] = "";
	struct bpf_program prog;
	int err = -EIO;

	pcap_t *p = pcap_create(ifc->name, perr);
	if (!p) {
		snprintf(errbuf, errlen, "%s: %s", ifc->name, perr);
		return -ENODEV;
	}
	/* Not immediate mode: libpcap then uses TPACKET_V2, one ring slot and
	 * (when the ring was empty) one wake-up per packet.  TPACKET_V3 packs packets
	 * into blocks that the kernel hands over when full or after the timeout, so
	 * a quiet pod's packets wait at most LIVE_PCAP_BLOCK_MS, and under load one
	 * poll() returns thousands of packets. */
	if (pcap_set_snaplen(p, (int)l->cfg.snaplen) || pcap_set_promisc(p, 0) ||
	    pcap_set_immediate_mode(p, 0) || pcap_set_buffer_size(p, (int)l->cfg.buffer_bytes) ||
	    pcap_set_timeout(p, LIVE_PCAP_BLOCK_MS)) {
		snprintf(errbuf, errlen, "%s: pcap setup failed", ifc->name);
		goto fail;
	}
	int r = pcap_activate(p);
	if (r < 0) {
		snprintf(errbuf, errlen, "%s: %s", ifc->name, pcap_geterr(p));
		err = r == PCAP_ERROR_PERM_DENIED ? -EPERM : r == PCAP_ERROR_NO_SUCH_DEVICE ? -ENODEV : -EIO;
		goto fail;
	}
	/* LINUX_SLL2 would carry each packet's direction, but libpcap offers it only on
	 * the "any" device; per-interface handles stay Ethernet and direction unknown
	 * (an observation point covers both directions anyway). */
	if (pcap_datalink(p) != DC_LINK_ETHERNET) {
		snprintf(errbuf, errlen, "%s: link type %d is not Ethernet", ifc->name, pcap_datalink(p));
		err = -EOPNOTSUPP;
		goto fail;
	}
	if (l->cfg.filter) {
		if (pcap_compile(p, &prog, l->cfg.filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
			snprintf(errbuf, errlen, "filter '%s': %s", l->cfg.filter, pcap_geterr(p));
			err = -EINVAL;
			goto fail;
		}
		r = pcap_setfilter(p, &prog);
		pcap_freecode(&prog);
		if (r < 0) {
			snprintf(errbuf, errlen, "%s: setfilter: %s", ifc->name, pcap_geterr(p));
			goto fail;
		}
	}
	if (pcap_setnonblock(p, 1, perr) < 0 || (ifc->fd = pcap_get_selectable_fd(p)) < 0) {
		snprintf(errbuf, errlen, "%s: no selectable fd", ifc->name);
		goto fail;
	}
	ifc->pcap = p;
	return 0;
fail:
	pcap_close(p);
	return err;
}

static void pcap_refresh_drops(struct live_if *ifc)
{
	struct pcap_stat ps;
	if (ifc->pcap && !ifc->dead && pcap_stats(ifc->pcap, &ps) == 0)
		ifc->kdrops = (uint64_t)ps.ps_drop + ps.ps_ifdrop;
}

struct pcap_ctx {
	struct cap_live *l;
	struct live_if *ifc;
};

static void on_pcap(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	struct pcap_ctx *c = (struct pcap_ctx *)user;
	struct cap_packet pkt = {
		.data = bytes,
		.caplen = h->caplen,
		.wirelen = h->len,
		.ts_us = (uint64_t)h->ts.tv_sec * 1000000u + (uint64_t)h->ts.tv_usec,
		.linktype = DC_LINK_ETHERNET,
		.ifindex = c->ifc->ifindex,
		.tag = c->ifc->tag,
		.dir = CAP_DIR_UNKNOWN,
	};
	c->ifc->received++;
	c->l->received++;
	c->l->fn(c->l->fn_arg, &pkt);
}

static int pcap_poll_all(struct cap_live *l, int timeout_ms)
{
	struct pollfd pfd[LIVE_MAX_IFACES];
	struct live_if *map[LIVE_MAX_IFACES];
	nfds_t n = 0;
	for (size_t i = 0; i < l->n_ifs; i++) {
		if (l->ifs[i]->dead || !l->ifs[i]->pcap)
			continue;
		pfd[n] = (struct pollfd){.fd = l->ifs[i]->fd, .events = POLLIN};
		map[n++] = l->ifs[i];
	}
	if (!n) {
		if (timeout_ms > 0)
			usleep((useconds_t)timeout_ms * 1000u);
		return 0;
	}
	int r = poll(pfd, n, timeout_ms);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	int total = 0;
	for (nfds_t i = 0; i < n; i++) {
		if (!(pfd[i].revents & (POLLIN | POLLERR | POLLHUP)))
			continue;
		struct pcap_ctx c = {l, map[i]};
		int got = pcap_dispatch(map[i]->pcap, -1, on_pcap, (u_char *)&c);
		if (got < 0) {
			/* Typically "the interface went down" when a pod's veth is deleted. */
			map[i]->dead = 1;
			continue;
		}
		total += got;
	}
	return total;
}

/* ---- common -------------------------------------------------------------- */

int cap_live_check_filter(const char *filter, char *errbuf, size_t errlen)
{
	struct bpf_program prog;
	pcap_t *p = pcap_open_dead(DC_LINK_ETHERNET, 65535);
	int rc = 0;
	if (!p) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		snprintf(errbuf, errlen, "filter '%s': %s", filter, pcap_geterr(p));
		rc = -EINVAL;
	} else {
		pcap_freecode(&prog);
	}
	pcap_close(p);
	return rc;
}

int cap_live_open(const struct cap_live_config *cfg, struct cap_live **out, char *errbuf, size_t errlen)
{
	struct cap_live *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	l->cfg = *cfg;
	if (!l->cfg.snaplen || l->cfg.snaplen > 262144)
		l->cfg.snaplen = 2048;
	if (!l->cfg.buffer_bytes)
		l->cfg.buffer_bytes = 8u << 20;
	if (!l->cfg.max_flows)
		l->cfg.max_flows = 65536;
	l->backend = CAP_BACKEND_PCAP;
	if (cfg->backend == CAP_BACKEND_EBPF) {
		char why[200] = "";
		int err = lb_open(l, why, sizeof(why));
		if (!err) {
			l->backend = CAP_BACKEND_EBPF;
		} else if (cfg->no_fallback) {
			snprintf(errbuf, errlen, "%s", why);
			free(l);
			return err;
		} else {
			snprintf(l->fallback, sizeof(l->fallback), "%s", why);
		}
	}
	*out = l;
	return 0;
}

static void close_if(struct cap_live *l, struct live_if *ifc);

void live_index_add(struct cap_live *l, struct live_if *ifc)
{
	size_t i = live_slot(ifc->ifindex);
	while (l->by_index[i])
		i = (i + 1) % LIVE_IF_SLOTS;
	l->by_index[i] = ifc;
}

void live_index_del(struct cap_live *l, struct live_if *ifc)
{
	size_t i = live_slot(ifc->ifindex);
	while (l->by_index[i] && l->by_index[i] != ifc)
		i = (i + 1) % LIVE_IF_SLOTS;
	if (!l->by_index[i])
		return;
	l->by_index[i] = NULL;
	/* Backward-shift: move later entries of the cluster whose home slot is not
	 * between the hole and them, so every probe sequence stays unbroken. */
	for (size_t j = (i + 1) % LIVE_IF_SLOTS; l->by_index[j]; j = (j + 1) % LIVE_IF_SLOTS) {
		size_t home = live_slot(l->by_index[j]->ifindex);
		if ((j + LIVE_IF_SLOTS - home) % LIVE_IF_SLOTS >= (j + LIVE_IF_SLOTS - i) % LIVE_IF_SLOTS) {
			l->by_index[i] = l->by_index[j];
			l->by_index[j] = NULL;
			i = j;
		}
	}
}

/* Takes ifc out of the list and the index (the caller frees it). */
static void live_unlink(struct cap_live *l, struct live_if *ifc)
{
	long pos = live_pos(l, ifc);
	if (pos >= 0)
		l->ifs[pos] = l->ifs[--l->n_ifs];
	live_index_del(l, ifc);
}

int cap_live_add(struct cap_live *l, const char *ifname, uint32_t tag, char *errbuf, size_t errlen)
{
	uint32_t ifindex = if_nametoindex(ifname);
	int err;
	if (!ifindex) {
		snprintf(errbuf, errlen, "%s: no such interface", ifname);
		return -ENODEV;
	}
	struct live_if *old = find_if(l, ifindex);
	if (old && !old->dead) {
		snprintf(errbuf, errlen, "%s: already captured", ifname);
		return -EEXIST;
	}
	if (old) {
		/* libpcap gave up on it when it went down; it is back: start over. */
		live_unlink(l, old);
		close_if(l, old);
	}
	if (l->n_ifs >= LIVE_MAX_IFACES) {
		snprintf(errbuf, errlen, "more than %d interfaces", LIVE_MAX_IFACES);
		return -ENOSPC;
	}
	struct live_if *ifc = calloc(1, sizeof(*ifc));
	if (!ifc) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(ifc->name, sizeof(ifc->name), "%s", ifname);
	ifc->ifindex = ifindex;
	ifc->tag = tag;
	ifc->fd = -1;
	if (l->backend == CAP_BACKEND_EBPF)
		err = lb_attach(l, ifc, errbuf, errlen);
	else
		err = pcap_attach_if(l, ifc, errbuf, errlen);
	if (err) {
		free(ifc);
		return err;
	}
	l->ifs[l->n_ifs++] = ifc;
	live_index_add(l, ifc);
	return 0;
}

static void close_if(struct cap_live *l, struct live_if *ifc)
{
	if (l->backend == CAP_BACKEND_EBPF)
		lb_detach(l, ifc);
	if (ifc->pcap) {
		pcap_refresh_drops(ifc);
		l->kdrops_removed += ifc->kdrops;
		pcap_close(ifc->pcap);
		ifc->pcap = NULL;
	}
	free(ifc);
}

int cap_live_remove(struct cap_live *l, uint32_t ifindex)
{
	struct live_if *ifc = find_if(l, ifindex);
	if (!ifc)
		return -ENOENT;
	live_unlink(l, ifc);
	close_if(l, ifc);
	return 0;
}

int cap_live_poll(struct cap_live *l, int timeout_ms, cap_live_fn fn, void *arg)
{
	l->fn = fn;
	l->fn_arg = arg;
	if (l->backend == CAP_BACKEND_EBPF)
		return lb_poll(l, timeout_ms);
	return pcap_poll_all(l, timeout_ms);
}

int cap_live_set_recording(struct cap_live *l, int on)
{
	if (l->backend == CAP_BACKEND_EBPF)
		lb_set_recording(l, on);
	/* libpcap sees every packet anyway. */
	return 0;
}

int cap_live_set_streamed(struct cap_live *l, uint32_t ifindex, int on)
{
	struct live_if *ifc = find_if(l, ifindex);
	if (!ifc)
		return -ENOENT;
	if (l->backend != CAP_BACKEND_EBPF)
		return 0; /* libpcap sees every packet anyway */
	return lb_set_streamed(l, ifc, on);
}

void cap_live_stats(struct cap_live *l, struct cap_live_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->received = l->received;
	out->bad_records = l->bad_records;
	out->wirelen_clamped = l->wirelen_clamped;
	out->kernel_drops = l->kdrops_removed;
	for (size_t i = 0; i < l->n_ifs; i++) {
		pcap_refresh_drops(l->ifs[i]);
		out->kernel_drops += l->ifs[i]->kdrops;
	}
	if (l->backend == CAP_BACKEND_EBPF)
		lb_stats(l, out);
}

size_t cap_live_iface_stats(struct cap_live *l, struct cap_live_iface_stats *out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < l->n_ifs && n < max; i++, n++) {
		struct live_if *ifc = l->ifs[i];
		pcap_refresh_drops(ifc);
		memset(&out[n], 0, sizeof(out[n]));
		snprintf(out[n].name, sizeof(out[n].name), "%s", ifc->name);
		out[n].ifindex = ifc->ifindex;
		out[n].received = ifc->received;
		out[n].kernel_drops = ifc->kdrops;
	}
	return n;
}

int cap_live_counted(struct cap_live *l, uint32_t ifindex, int dir, uint64_t *pkts, uint64_t *bytes)
{
	if (l->backend == CAP_BACKEND_EBPF)
		return lb_counted(l, ifindex, dir, pkts, bytes);
	*pkts = *bytes = 0;
	return -EOPNOTSUPP;
}

int cap_live_sweep_counts(struct cap_live *l, uint64_t idle_us, int final, cap_counts_fn fn, void *arg)
{
	if (l->backend != CAP_BACKEND_EBPF)
		return 0;
	return lb_sweep(l, idle_us, final, fn, arg);
}

int cap_live_flow_counters(struct cap_live *l, uint32_t ifindex, const struct dc_tuple *t,
			   uint64_t *pkts, uint64_t *bytes)
{
	*pkts = *bytes = 0;
	if (l->backend != CAP_BACKEND_EBPF)
		return -EOPNOTSUPP;
	if (t->family != 4 && t->family != 6)
		return -EINVAL;
	return lb_flow_counters(l, ifindex, t, 0, pkts, bytes);
}

int cap_live_flow_take(struct cap_live *l, uint32_t ifindex, const struct dc_tuple *t, uint64_t *pkts,
		       uint64_t *bytes)
{
	*pkts = *bytes = 0;
	if (l->backend != CAP_BACKEND_EBPF)
		return -EOPNOTSUPP;
	if (t->family != 4 && t->family != 6)
		return -EINVAL;
	return lb_flow_counters(l, ifindex, t, 1, pkts, bytes);
}

void cap_live_close(struct cap_live *l)
{
	if (!l)
		return;
	while (l->n_ifs)
		close_if(l, l->ifs[--l->n_ifs]);
	lb_close(l);
	free(l);
}
