/* flow — nDPI classification.
 *
 * Driven the way nDPI's own reader (example/reader_util.c of nDPI 4.2, what
 * Debian's ndpiReader runs) drives it, so both classify a flow alike:
 *  - one detection module per table, all protocols enabled, no preferences;
 *  - each packet's innermost IP datagram (as captured) with its time in ms;
 *  - detection is complete when nDPI names an application protocol and has no
 *    further dissection to do (certificate, HTTP response, DNS answer, ...), or
 *    when the flow has more packets than the budget (80 for TCP, 24 for UDP by
 *    default, as ndpiReader): then ndpi_detection_giveup() with guessing on;
 *  - at flow end an unfinished flow gets ndpi_detection_giveup() too, so nDPI's
 *    guess (by port / IP) counts, as ndpiReader does when it prints.
 * Non-first IP fragments are not given to nDPI (ndpiReader drops them).
 *
 * The nDPI flow state (~700 bytes plus what dissectors allocate) lives only while
 * a flow is being classified: the results are copied into the flow entry and the
 * state is freed at once, so a long-lived flow costs nDPI nothing.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <ndpi_api.h>

#include "flow_int.h"

/* nDPI says its module initialisation must not run in parallel (it sets up
 * process-wide state); tables may be created from several worker threads. */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

int fl_dpi_init(struct fl_table *t)
{
	pthread_mutex_lock(&init_lock);
	struct ndpi_detection_module_struct *m = ndpi_init_detection_module(ndpi_no_prefs);
	if (m) {
		NDPI_PROTOCOL_BITMASK all;
		NDPI_BITMASK_SET_ALL(all);
		ndpi_set_protocol_detection_bitmask2(m, &all);
		ndpi_finalize_initialization(m);
	}
	pthread_mutex_unlock(&init_lock);
	if (!m)
		return -ENOMEM;
	t->ndpi = m;
	return 0;
}

void fl_dpi_fini(struct fl_table *t)
{
	if (t->ndpi) {
		pthread_mutex_lock(&init_lock);
		ndpi_exit_detection_module(t->ndpi);
		pthread_mutex_unlock(&init_lock);
	}
	t->ndpi = NULL;
}

void fl_dpi_release(struct fl_flow *f)
{
	if (f->ndpi) {
		ndpi_free_flow(f->ndpi);
		f->ndpi = NULL;
	}
	free(f->str);
	f->str = NULL;
}

static size_t bounded_len(const char *s, size_t cap)
{
	if (!s)
		return 0;
	const char *z = memchr(s, 0, cap);
	return z ? (size_t)(z - s) : cap;
}

/* Copies what the flow record needs out of nDPI's flow state. */
static void collect(struct fl_table *t, struct fl_flow *f, ndpi_protocol proto)
{
	struct ndpi_flow_struct *n = f->ndpi;

	f->master_proto = proto.master_protocol;
	f->app_proto = proto.app_protocol;
	f->category = (uint16_t)proto.category;
	if (f->category == 0)
		f->category = (uint16_t)ndpi_get_proto_category(t->ndpi, proto);
	f->risk = (uint64_t)n->risk;

	int is_http = proto.master_protocol == NDPI_PROTOCOL_HTTP || proto.app_protocol == NDPI_PROTOCOL_HTTP;
	int is_dns = proto.master_protocol == NDPI_PROTOCOL_DNS || proto.app_protocol == NDPI_PROTOCOL_DNS;
	if (is_http)
		f->http_status = n->http.response_status_code;
	if (is_dns && !n->protos.dns.is_query)
		f->dns_rcode = n->protos.dns.reply_code;

	size_t host = bounded_len(n->host_server_name, sizeof(n->host_server_name));
	size_t url = is_http ? bounded_len(n->http.url, FL_URL_LEN - 1) : 0;
	size_t ja3c = bounded_len(n->protos.tls_quic.ja3_client, sizeof(n->protos.tls_quic.ja3_client) - 1);
	size_t ja3s = bounded_len(n->protos.tls_quic.ja3_server, sizeof(n->protos.tls_quic.ja3_server) - 1);
	if (host >= FL_HOST_LEN)
		host = FL_HOST_LEN - 1;
	if (host + url + ja3c + ja3s == 0)
		return;

	struct fl_dpi_str *s = malloc(sizeof(*s) + host + url + ja3c + ja3s + 4);
	if (!s)
		return; /* strings are an extra; the classification itself is kept */
	size_t o = 0;
	memcpy(s->s + o, n->host_server_name, host);
	o += host;
	s->s[o++] = 0;
	s->url_off = (uint16_t)o;
	if (url)
		memcpy(s->s + o, n->http.url, url);
	o += url;
	s->s[o++] = 0;
	s->ja3c_off = (uint16_t)o;
	memcpy(s->s + o, n->protos.tls_quic.ja3_client, ja3c);
	o += ja3c;
	s->s[o++] = 0;
	s->ja3s_off = (uint16_t)o;
	memcpy(s->s + o, n->protos.tls_quic.ja3_server, ja3s);
	o += ja3s;
	s->s[o] = 0;
	free(f->str);
	f->str = s;
}

/* nDPI 4.2's ndpi_confidence_t, in the record's own terms (flow.h keeps nDPI's
 * headers out of its users).  A value a later nDPI adds is "unknown" until
 * mapped here. */
static uint8_t confidence_of(ndpi_confidence_t c)
{
	switch (c) {
	case NDPI_CONFIDENCE_MATCH_BY_PORT: return FL_CONF_BY_PORT;
	case NDPI_CONFIDENCE_MATCH_BY_IP: return FL_CONF_BY_IP;
	case NDPI_CONFIDENCE_DPI_CACHE: return FL_CONF_DPI_CACHE;
	case NDPI_CONFIDENCE_DPI: return FL_CONF_DPI;
	default: return FL_CONF_UNKNOWN;
	}
}

static void finish(struct fl_table *t, struct fl_flow *f, ndpi_protocol proto, int gave_up)
{
	if (gave_up) {
		uint8_t guessed = 0;
		proto = ndpi_detection_giveup(t->ndpi, f->ndpi, 1, &guessed);
		FL_STAT_ADD(t, dpi_giveup, 1);
	}
	collect(t, f, proto);
	f->confidence = confidence_of(f->ndpi->confidence);
	f->dpi_done = gave_up ? 2 : 1;
	ndpi_free_flow(f->ndpi);
	f->ndpi = NULL;
}

void fl_dpi_packet(struct fl_table *t, struct fl_flow *f, const struct dc_packet *p,
		   const uint8_t *frame, uint64_t ts_us)
{
	if (p->frag == DC_FRAG_LATER || !frame || p->l3_len == 0)
		return;
	if (!f->ndpi) {
		f->ndpi = ndpi_flow_malloc(SIZEOF_FLOW_STRUCT);
		if (!f->ndpi) {
			FL_STAT_ADD(t, dpi_alloc_fail, 1);
			f->dpi_done = 2;
			f->confidence = FL_CONF_UNKNOWN;
			return;
		}
		memset(f->ndpi, 0, SIZEOF_FLOW_STRUCT);
	}

	uint32_t len = p->l3_len > 0xffff ? 0xffff : p->l3_len;
	FL_STAT_ADD(t, dpi_packets, 1);
	ndpi_protocol proto = ndpi_detection_process_packet(t->ndpi, f->ndpi, frame + p->l3_off,
							    (unsigned short)len, ts_us / 1000);

	uint64_t total = f->pkts[0] + f->pkts[1];
	uint32_t budget = f->key.proto == 17 ? t->cfg.dpi_packets_udp : t->cfg.dpi_packets;
	int enough = total > budget;
	if (!enough && proto.app_protocol == NDPI_PROTOCOL_UNKNOWN)
		return;
	if (!enough && ndpi_extra_dissection_possible(t->ndpi, f->ndpi))
		return; /* e.g. waiting for the certificate or the response */
	finish(t, f, proto, proto.app_protocol == NDPI_PROTOCOL_UNKNOWN);
}

void fl_dpi_end(struct fl_table *t, struct fl_flow *f)
{
	if (f->dpi_done)
		return;
	if (f->ndpi && t->ndpi) {
		ndpi_protocol none = NDPI_PROTOCOL_NULL;
		finish(t, f, none, 1);
	} else if (t->ndpi) {
		f->dpi_done = 2; /* nothing nDPI could look at (e.g. only later fragments) */
		f->confidence = FL_CONF_UNKNOWN;
	}
}

/* Copies a NUL-terminated string into dst[cap], truncating. */
static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = bounded_len(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = 0;
}

void fl_dpi_fill(struct fl_table *t, const struct fl_flow *f, struct fl_record *r)
{
	r->master_proto = f->master_proto;
	r->app_proto = f->app_proto;
	r->risk = f->risk;
	r->http_status = f->http_status;
	r->dns_rcode = f->dns_rcode;
	r->dpi_done = f->dpi_done;
	r->confidence = f->dpi_done ? f->confidence : FL_CONF_NONE;
	if (t->ndpi && f->dpi_done) {
		uint32_t key = (uint32_t)f->master_proto << 16 | f->app_proto;
		uint32_t slot = (key * 0x9e3779b1u) >> 24;
		if (!t->names[slot].valid || t->names[slot].key != key) {
			ndpi_protocol proto = { f->master_proto, f->app_proto, (ndpi_protocol_category_t)f->category };
			ndpi_protocol2name(t->ndpi, proto, t->names[slot].name, sizeof(t->names[slot].name));
			t->names[slot].key = key;
			t->names[slot].valid = 1;
		}
		copy_str(r->proto, sizeof(r->proto), t->names[slot].name);
		const char *cat = ndpi_category_get_name(t->ndpi, (ndpi_protocol_category_t)f->category);
		copy_str(r->category, sizeof(r->category), cat ? cat : "");
	} else {
		copy_str(r->proto, sizeof(r->proto), "Unknown");
	}
	if (f->str) {
		const char *s = f->str->s;
		copy_str(r->host, sizeof(r->host), s);
		copy_str(r->url, sizeof(r->url), s + f->str->url_off);
		copy_str(r->ja3c, sizeof(r->ja3c), s + f->str->ja3c_off);
		copy_str(r->ja3s, sizeof(r->ja3s), s + f->str->ja3s_off);
	}
}
