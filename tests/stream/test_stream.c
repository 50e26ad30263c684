/* Unit tests of stream/: the hub driven through its sink callbacks, as the
 * engine would (one thread: a callback that blocked would hang the test), with
 * an output that keeps what it is given and can refuse (a slow client) or fail
 * (a client gone).
 *   test_stream [OUTDIR]   (OUTDIR: the streams written, for tshark checks)
 * Checks: a stream's file (SHB, IDBs named by interface and pod, EPBs with the
 * direction), only its observation points; a libpcap filter and its error;
 * drops counted and told (comment, ISB) while the client reads nothing, and the
 * stream going on when it reads again; limits ending a stream completely; a
 * cancel and a client gone ending it incomplete; flow sets; inner frames;
 * arming; the stream limit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decode.h"
#include "engine.h"
#include "pcapng.h"
#include "stream.h"

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)

static const char *outdir;

/* ---- an output that keeps everything ---- */

struct client {
	uint8_t *buf;
	size_t len, cap;
	int refuse;        /* -EAGAIN for every write */
	int gone;          /* -EPIPE for every write */
	int done, complete;
	uint64_t writes, refused;
};

static int c_write(void *arg, const void *b, size_t n)
{
	struct client *c = arg;
	if (c->done)
		return -EINVAL; /* must never happen: checked below */
	if (c->gone)
		return -EPIPE;
	if (c->refuse) {
		c->refused++;
		return -EAGAIN;
	}
	if (c->len + n > c->cap) {
		c->cap = (c->len + n) * 2;
		c->buf = realloc(c->buf, c->cap);
	}
	memcpy(c->buf + c->len, b, n);
	c->len += n;
	c->writes++;
	return 0;
}

static void c_done(void *arg, int complete)
{
	struct client *c = arg;
	c->done++;
	c->complete = complete;
}

/* ---- reading what a client got ---- */

struct parsed {
	int shb, idb, epb, isb, bad;
	char ifname[8][32], ifdesc[8][64];
	uint32_t flags[1024];
	uint32_t caplen[1024], iface[1024];
	char comment[1024][200];
	uint64_t isb_recv[8], isb_drop[8];
	uint8_t first_byte[1024][64];
};

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void parse(const struct client *c, struct parsed *r)
{
	memset(r, 0, sizeof(*r));
	size_t off = 0;
	while (off + 12 <= c->len) {
		const uint8_t *b = c->buf + off;
		uint32_t type = rd32(b), len = rd32(b + 4);
		if (len < 12 || len % 4 || off + len > c->len || rd32(b + len - 4) != len) {
			r->bad++;
			return;
		}
		/* options from this offset */
		uint32_t opt = 0;
		if (type == PN_BT_SHB) {
			r->shb++;
		} else if (type == PN_BT_IDB) {
			opt = 16;
			r->idb++;
		} else if (type == PN_BT_EPB) {
			uint32_t cl = rd32(b + 20);
			if (r->epb < 1024) {
				r->caplen[r->epb] = cl;
				r->iface[r->epb] = rd32(b + 8);
				memcpy(r->first_byte[r->epb], b + 28, cl < 64 ? cl : 64);
			}
			opt = 28 + ((cl + 3) & ~3u);
			r->epb++;
		} else if (type == PN_BT_ISB) {
			opt = 20;
			r->isb++;
		}
		for (uint32_t p = opt; opt && p + 4 <= len - 4;) {
			uint16_t code, ol;
			memcpy(&code, b + p, 2);
			memcpy(&ol, b + p + 2, 2);
			if (!code)
				break;
			const uint8_t *v = b + p + 4;
			int n = r->idb - 1, e = r->epb - 1;
			if (type == PN_BT_IDB && n < 8 && code == 2)
				snprintf(r->ifname[n], sizeof(r->ifname[n]), "%.*s", ol, (const char *)v);
			if (type == PN_BT_IDB && n < 8 && code == 3)
				snprintf(r->ifdesc[n], sizeof(r->ifdesc[n]), "%.*s", ol, (const char *)v);
			if (type == PN_BT_EPB && e < 1024 && code == PN_OPT_EPB_FLAGS && ol == 4)
				r->flags[e] = rd32(v);
			if (type == PN_BT_EPB && e < 1024 && code == PN_OPT_COMMENT)
				snprintf(r->comment[e], sizeof(r->comment[e]), "%.*s", ol, (const char *)v);
			if (type == PN_BT_ISB && ol == 8) {
				uint32_t id = rd32(b + 8);
				uint64_t x;
				memcpy(&x, v, 8);
				if (id < 8 && code == 4)
					r->isb_recv[id] = x;
				if (id < 8 && code == 5)
					r->isb_drop[id] = x;
			}
			p += 4 + ((ol + 3u) & ~3u);
		}
		off += len;
	}
}

static void save(const struct client *c, const char *name)
{
	if (!outdir)
		return;
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.pcapng", outdir, name);
	FILE *f = fopen(path, "wb");
	if (f) {
		fwrite(c->buf, 1, c->len, f);
		fclose(f);
	}
}

/* ---- packets as the engine hands them ---- */

static const struct dc_config *dcc(void)
{
	static struct dc_config cfg;
	static int init;
	if (!init) {
		dc_config_default(&cfg);
		init = 1;
	}
	return &cfg;
}

/* Ethernet + IPv4 + UDP (or TCP) from 10.0.0.1:sport to 10.0.0.2:80. */
static uint32_t make_frame(uint8_t *b, uint16_t sport, int tcp, size_t payload)
{
	memset(b, 0, 14 + 20 + 20 + payload);
	memcpy(b, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01", 12);
	b[12] = 0x08;
	uint8_t *ip = b + 14;
	uint32_t l4 = tcp ? 20 : 8, tot = 20 + l4 + (uint32_t)payload;
	ip[0] = 0x45;
	ip[2] = (uint8_t)(tot >> 8);
	ip[3] = (uint8_t)tot;
	ip[8] = 64;
	ip[9] = tcp ? 6 : 17;
	memcpy(ip + 12, "\x0a\x00\x00\x01\x0a\x00\x00\x02", 8);
	uint8_t *l = ip + 20;
	l[0] = (uint8_t)(sport >> 8);
	l[1] = (uint8_t)sport;
	l[3] = 80;
	if (tcp) {
		l[12] = 0x50;
		l[13] = 0x10;
	} else {
		l[4] = (uint8_t)((8 + payload) >> 8);
		l[5] = (uint8_t)(8 + payload);
	}
	return 14 + tot;
}

/* The same UDP frame inside VXLAN (VNI 1, port 8472) between two nodes. */
static uint32_t make_vxlan(uint8_t *b, uint16_t sport)
{
	uint8_t inner[1024];
	uint32_t il = make_frame(inner, sport, 0, 10);
	memset(b, 0, 14 + 20 + 8 + 8);
	memcpy(b, "\x02\x00\x00\x00\x00\x0b\x02\x00\x00\x00\x00\x0a", 12);
	b[12] = 0x08;
	uint8_t *ip = b + 14;
	uint32_t tot = 20 + 8 + 8 + il;
	ip[0] = 0x45;
	ip[2] = (uint8_t)(tot >> 8);
	ip[3] = (uint8_t)tot;
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, "\xac\x12\x00\x0b\xac\x12\x00\x0c", 8);
	uint8_t *u = ip + 20;
	u[0] = 0x9c;
	u[1] = 0x40;
	u[2] = 0x21; /* 8472 */
	u[3] = 0x18;
	u[4] = (uint8_t)((8 + 8 + il) >> 8);
	u[5] = (uint8_t)(8 + 8 + il);
	uint8_t *vx = u + 8;
	vx[0] = 0x08;
	vx[6] = 1; /* VNI 1 in bytes 4..6 */
	memcpy(vx + 8, inner, il);
	return 14 + tot;
}

struct batch {
	struct eng_packet p[64];
	uint8_t frames[64][512];
	size_t n;
};

static void add(struct batch *bt, uint32_t obs, uint64_t flow, int kind, uint16_t sport, uint8_t dir)
{
	struct eng_packet *p = &bt->p[bt->n];
	uint8_t *f = bt->frames[bt->n];
	uint32_t len = kind == 2 ? make_vxlan(f, sport) : make_frame(f, sport, kind == 1, 16);
	memset(p, 0, sizeof(*p));
	dc_decode(dcc(), DC_LINK_ETHERNET, f, len, len, &p->dc);
	p->frame = f;
	p->ts_us = 1700000000000000ull + bt->n;
	p->flow_id = flow;
	p->obs = obs;
	p->dir = dir;
	bt->n++;
}

/* ---- the hub as the engine drives it ---- */

struct fixture {
	struct strm_hub *h;
	struct eng_sink sink;
};

static void fx_open(struct fixture *fx, size_t buffer, int arm)
{
	struct strm_hub_config cfg;
	strm_hub_config_default(&cfg);
	cfg.buffer_bytes = buffer;
	cfg.arm = arm;
	cfg.max_streams = 3;
	fx->h = strm_hub_open(&cfg);
	strm_hub_sink(fx->h, &fx->sink);
	struct eng_obs o1 = {.id = 1, .iface = "vethaaaa", .direction = "both", .pod = "default/web-1",
			     .linktype = DC_LINK_ETHERNET, .ifindex = 7};
	struct eng_obs o2 = {.id = 2, .iface = "eth0", .direction = "both", .pod = NULL,
			     .linktype = DC_LINK_ETHERNET, .ifindex = 2};
	fx->sink.ops->obs_point(fx->sink.ctx, &o1);
	fx->sink.ops->obs_point(fx->sink.ctx, &o2);
}

static void fx_packets(struct fixture *fx, struct batch *bt)
{
	CHECK(fx->sink.ops->packets(fx->sink.ctx, bt->p, bt->n) == 0, "packets");
	bt->n = 0;
}

static void fx_tick(struct fixture *fx)
{
	CHECK(fx->sink.ops->tick(fx->sink.ctx, 0) == 0, "tick");
}

static void fx_close(struct fixture *fx)
{
	fx->sink.ops->flush(fx->sink.ctx);
	fx->sink.ops->close(fx->sink.ctx);
	strm_hub_close(fx->h);
}

static struct strm *open_stream(struct fixture *fx, struct client *c, const struct strm_spec *spec)
{
	struct strm_output out = {.try_write = c_write, .done = c_done, .arg = c, .max_write = 65536};
	struct strm *s = NULL;
	char err[1024];
	int rc = strm_open(fx->h, spec, &out, &s, err, sizeof(err));
	CHECK(rc == 0, "strm_open: %d %s", rc, err);
	if (s)
		strm_start(s);
	return s;
}

/* ---- cases ---- */

static void t_basic(void)
{
	struct fixture fx;
	struct client c = {0};
	struct batch bt = {0};
	fx_open(&fx, 1 << 20, 0);
	uint32_t obs[] = {1};
	struct strm_spec spec = {.obs = obs, .nobs = 1};
	open_stream(&fx, &c, &spec);
	fx_tick(&fx);
	add(&bt, 1, 11, 0, 1000, CAP_DIR_IN);
	add(&bt, 2, 12, 0, 1001, CAP_DIR_IN); /* another point: not this stream's */
	add(&bt, 1, 11, 1, 1002, CAP_DIR_OUT);
	fx_packets(&fx, &bt);
	struct parsed r;
	parse(&c, &r);
	CHECK(!r.bad && r.shb == 1 && r.idb == 1 && r.epb == 2, "basic: shb %d idb %d epb %d bad %d", r.shb, r.idb,
	      r.epb, r.bad);
	CHECK(!strcmp(r.ifname[0], "vethaaaa") && !strcmp(r.ifdesc[0], "default/web-1"), "basic: IDB '%s' '%s'",
	      r.ifname[0], r.ifdesc[0]);
	CHECK(r.flags[0] == PN_EPB_INBOUND && r.flags[1] == PN_EPB_OUTBOUND, "basic: flags %u %u", r.flags[0],
	      r.flags[1]);
	CHECK(!c.done, "basic: not ended yet");
	fx_close(&fx);
	CHECK(c.done == 1 && c.complete == 1, "basic: ended once, completely (%d, %d)", c.done, c.complete);
	parse(&c, &r);
	CHECK(r.isb >= 1 && r.isb_recv[0] == 2 && r.isb_drop[0] == 0, "basic: final ISB recv %llu drop %llu",
	      (unsigned long long)r.isb_recv[0], (unsigned long long)r.isb_drop[0]);
	save(&c, "basic");
	free(c.buf);
}

static void t_bpf(void)
{
	struct fixture fx;
	struct client c = {0};
	struct batch bt = {0};
	fx_open(&fx, 1 << 20, 0);
	struct strm_output out = {.try_write = c_write, .done = c_done, .arg = &c};
	struct strm_spec bad = {.bpf = "tcp portt 80"};
	struct strm *s = NULL;
	char err[1024] = "";
	int rc = strm_open(fx.h, &bad, &out, &s, err, sizeof(err));
	CHECK(rc == -EINVAL && s == NULL && strstr(err, "syntax error"), "bpf: bad filter %d '%s'", rc, err);
	struct strm_spec spec = {.bpf = "tcp and dst port 80"};
	open_stream(&fx, &c, &spec);
	fx_tick(&fx);
	add(&bt, 1, 1, 0, 1000, CAP_DIR_IN);
	add(&bt, 2, 2, 1, 1001, CAP_DIR_IN);
	add(&bt, 1, 3, 1, 1002, CAP_DIR_IN);
	fx_packets(&fx, &bt);
	fx_close(&fx);
	struct parsed r;
	parse(&c, &r);
	/* every point of the sink at the start, the TCP packets only */
	CHECK(r.idb == 2 && r.epb == 2, "bpf: idb %d epb %d", r.idb, r.epb);
	CHECK(c.done == 1, "bpf: done %d", c.done);
	free(c.buf);
}

static void t_slow_client(void)
{
	struct fixture fx;
	struct client c = {0};
	struct batch bt = {0};
	fx_open(&fx, 64 * 1024, 0);
	uint32_t obs[] = {1};
	struct strm_spec spec = {.obs = obs, .nobs = 1};
	open_stream(&fx, &c, &spec);
	fx_tick(&fx);
	size_t header = c.len;
	c.refuse = 1;
	/* far more than 64 KiB: each batch returns at once, the rest is dropped */
	for (int b = 0; b < 200; b++) {
		for (int i = 0; i < 32; i++)
			add(&bt, 1, 5, 0, (uint16_t)(2000 + i), CAP_DIR_IN);
		fx_packets(&fx, &bt);
	}
	CHECK(c.len == header, "slow: nothing taken while refusing");
	c.refuse = 0;
	fx_tick(&fx); /* what the buffer held goes out */
	add(&bt, 1, 5, 0, 3000, CAP_DIR_IN);
	fx_packets(&fx, &bt);
	struct parsed r;
	parse(&c, &r);
	int kept = r.epb;
	CHECK(kept > 10 && kept < 6400, "slow: %d packets delivered of 6401", kept);
	CHECK(strstr(r.comment[kept - 1 < 1023 ? kept - 1 : 1023], "were not delivered") != NULL,
	      "slow: the first packet after the drops says so: '%s'", r.comment[kept - 1 < 1023 ? kept - 1 : 1023]);
	fx_close(&fx);
	parse(&c, &r);
	CHECK(r.isb_recv[0] == 6401 && r.isb_drop[0] == (uint64_t)(6401 - kept),
	      "slow: ISB recv %llu drop %llu (kept %d)", (unsigned long long)r.isb_recv[0],
	      (unsigned long long)r.isb_drop[0], kept);
	CHECK(c.done == 1 && c.complete == 1, "slow: done %d complete %d", c.done, c.complete);
	save(&c, "slow");
	free(c.buf);
}

static void t_limits(void)
{
	struct fixture fx;
	struct client c = {0}, g = {0}, x = {0};
	struct batch bt = {0};
	fx_open(&fx, 1 << 20, 0);
	struct strm_spec spec = {.max_packets = 3};
	open_stream(&fx, &c, &spec);
	struct strm_spec all = {0};
	struct strm *sg = open_stream(&fx, &g, &all);
	struct strm *sx = open_stream(&fx, &x, &all);
	struct client extra = {0};
	struct strm_output out = {.try_write = c_write, .done = c_done, .arg = &extra};
	struct strm *s4 = NULL;
	char err[1024];
	CHECK(strm_open(fx.h, &all, &out, &s4, err, sizeof(err)) == -EBUSY, "limits: a 4th stream of 3");
	fx_tick(&fx);
	for (int i = 0; i < 10; i++)
		add(&bt, 1, 9, 0, 4000, CAP_DIR_IN);
	g.gone = 1; /* this client left: the stream ends at its next write */
	fx_packets(&fx, &bt);
	fx_tick(&fx);
	CHECK(c.done == 1 && c.complete == 1, "limits: count reached: done %d complete %d", c.done, c.complete);
	struct parsed r;
	parse(&c, &r);
	CHECK(r.epb == 3 && r.isb >= 1, "limits: %d packets, %d ISBs", r.epb, r.isb);
	CHECK(g.done == 1 && g.complete == 0, "limits: client gone: done %d complete %d", g.done, g.complete);
	strm_cancel(sx);
	CHECK(!x.done, "limits: done() never from strm_cancel");
	fx_tick(&fx);
	CHECK(x.done == 1 && x.complete == 0, "limits: cancelled: done %d complete %d", x.done, x.complete);
	(void)sg;
	/* slots came free */
	struct strm *s5 = open_stream(&fx, &extra, &all);
	CHECK(s5 != NULL, "limits: a new stream once others ended");
	fx_close(&fx);
	CHECK(extra.done == 1, "limits: closed with the hub");
	free(c.buf);
	free(g.buf);
	free(x.buf);
	free(extra.buf);
}

static void t_flows_inner_arm(void)
{
	struct fixture fx;
	struct client c = {0}, v = {0};
	struct batch bt = {0};
	fx_open(&fx, 1 << 20, 1);
	struct strm_spec spec = {.flows_only = 1};
	struct strm *s = open_stream(&fx, &c, &spec);
	uint32_t obs[] = {2};
	struct strm_spec inner = {.obs = obs, .nobs = 1, .inner = 1};
	open_stream(&fx, &v, &inner);
	fx_tick(&fx);
	CHECK(c.len == 0 && v.len == 0, "arm: nothing before the capture is armed");
	uint32_t want[8];
	int all = 0;
	uint64_t gen = 0;
	size_t n = strm_hub_wanted(fx.h, want, 8, &all, &gen);
	CHECK(all == 1 && n == 1 && want[0] == 2 && gen > 0, "arm: wanted all %d n %zu", all, n);
	strm_hub_armed(fx.h, gen);
	uint64_t ids[] = {21, 23};
	CHECK(strm_set_flows(s, ids, 2) == 0, "flows: set");
	fx_tick(&fx);
	CHECK(c.len > 0 && v.len > 0, "arm: headers once armed");
	add(&bt, 1, 21, 0, 5000, CAP_DIR_IN);
	add(&bt, 1, 22, 0, 5001, CAP_DIR_IN);
	add(&bt, 2, 23, 2, 5002, CAP_DIR_IN); /* VXLAN on the underlay */
	fx_packets(&fx, &bt);
	fx_close(&fx);
	struct parsed r;
	parse(&c, &r);
	CHECK(r.epb == 2, "flows: %d packets of flows 21 and 23", r.epb);
	parse(&v, &r);
	/* inner: Ethernet (the inner frame's own addresses) + IPv4 + UDP */
	CHECK(r.epb == 1 && r.caplen[0] == 14 + 20 + 8 + 10 && r.first_byte[0][12] == 0x08 &&
	      r.first_byte[0][23] == 17 && !memcmp(r.first_byte[0], "\x02\x00\x00\x00\x00\x02", 6),
	      "inner: %d packets, caplen %u", r.epb, r.caplen[0]);
	save(&v, "inner");
	free(c.buf);
	free(v.buf);
}

/* A stream on a point nothing was captured at yet still writes now and then,
 * so a client that left is noticed (found in the lab: sniff -i lo -f 'udp port
 * 9', Ctrl-C, the agent kept the stream open until a packet matched). */
static void t_quiet_gone(void)
{
	struct fixture fx;
	struct client c = {0};
	struct strm_hub_config cfg;
	strm_hub_config_default(&cfg);
	cfg.quiet_ms = 1;
	fx.h = strm_hub_open(&cfg);
	strm_hub_sink(fx.h, &fx.sink);
	uint32_t obs[] = {5}; /* not announced by the engine yet */
	struct strm_spec spec = {.obs = obs, .nobs = 1};
	open_stream(&fx, &c, &spec);
	fx_tick(&fx);
	size_t before = c.len;
	usleep(3000);
	fx_tick(&fx);
	struct parsed r;
	parse(&c, &r);
	CHECK(c.len > before && r.idb == 1 && r.isb >= 1 && !r.bad, "quiet: a keep-alive (len %zu -> %zu, idb %d isb %d)",
	      before, c.len, r.idb, r.isb);
	c.gone = 1;
	usleep(3000);
	fx_tick(&fx);
	CHECK(c.done == 1 && c.complete == 0, "quiet: a client that left is noticed without packets (done %d)", c.done);
	fx_close(&fx);
	free(c.buf);
}

/* The same on a known point, with the keep-alive slower than the once-a-second
 * look for new drops: that look, finding none, held the keep-alive back for
 * ever (the lab's sniff -i lo case). */
static void t_quiet_known(void)
{
	struct fixture fx;
	struct client c = {0};
	struct strm_hub_config cfg;
	strm_hub_config_default(&cfg);
	cfg.quiet_ms = 1200;
	fx.h = strm_hub_open(&cfg);
	strm_hub_sink(fx.h, &fx.sink);
	struct eng_obs o1 = {.id = 1, .iface = "lo", .direction = "both", .linktype = DC_LINK_ETHERNET, .ifindex = 1};
	fx.sink.ops->obs_point(fx.sink.ctx, &o1);
	uint32_t obs[] = {1};
	struct strm_spec spec = {.obs = obs, .nobs = 1};
	open_stream(&fx, &c, &spec);
	fx_tick(&fx);
	size_t before = c.len;
	for (int i = 0; i < 30 && c.len == before; i++) {
		usleep(100000);
		fx_tick(&fx);
	}
	struct parsed r;
	parse(&c, &r);
	CHECK(c.len > before && r.isb >= 1, "quiet known: a keep-alive ISB within 3 s (len %zu -> %zu)", before, c.len);
	fx_close(&fx);
	free(c.buf);
}

int main(int argc, char **argv)
{
	outdir = argc > 1 ? argv[1] : NULL;
	t_basic();
	t_bpf();
	t_slow_client();
	t_limits();
	t_flows_inner_arm();
	t_quiet_gone();
	t_quiet_known();
	if (failures) {
		printf("%d failure(s)\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
