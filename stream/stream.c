/* stream — live pcapng streams as an engine packets sink (see stream.h).
 *
 * Two sides share a stream:
 *   - any thread opens, starts and cancels it and replaces its flow set, under
 *     the hub's lock, and bumps `changes`;
 *   - the sink's thread sees those changes at its next callback (sync), keeps
 *     the streams it serves in its own array, matches packets without any lock,
 *     writes blocks into the stream's buffer and offers them to the output.
 * A stream leaves the hub only on the sink's thread (reap), which then calls
 * its output's done() and frees it: the one place a stream dies. */
#include <errno.h>
#include <pcap/pcap.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"
#include "engine.h"
#include "pcapng.h"
#include "query.h"
#include "stream.h"

#define STRM_WRITE_DEFAULT (64u * 1024u)
#define STRM_WRITE_MIN 4096u
#define STRM_BUF_MIN (64u * 1024u)
#define STRM_PN_BUF (32u * 1024u)       /* the pcapng writer's own buffer */
#define STRM_MAX_FLOWS 1000000u
#define STRM_ISB_DROP_US 1000000u       /* an ISB at most this often while dropping */
#define STRM_SCRATCH (PN_PACKET_MAX + 64u)
#define STRM_EPB_OVERHEAD 64u           /* EPB header, flags option, padding, trailer */
#define STRM_OBS_BITS ((ENG_MAX_OBS + 8u) / 8u)

/* ---- flow id sets: open addressing, 0 = empty (no flow has id 0) ---- */

struct flowset {
	size_t mask;
	uint64_t *slot;
};

static size_t fs_hash(uint64_t id, size_t mask)
{
	return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}

static void fs_free(struct flowset *f)
{
	if (f) {
		free(f->slot);
		free(f);
	}
}

static struct flowset *fs_new(const uint64_t *ids, size_t n)
{
	struct flowset *f = calloc(1, sizeof(*f));
	size_t cap = 16;
	while (cap < 2 * n)
		cap <<= 1;
	if (!f || !(f->slot = calloc(cap, sizeof(*f->slot)))) {
		free(f);
		return NULL;
	}
	f->mask = cap - 1;
	for (size_t i = 0; i < n; i++) {
		if (!ids[i])
			continue;
		for (size_t j = fs_hash(ids[i], f->mask);; j = (j + 1) & f->mask) {
			if (f->slot[j] == ids[i])
				break;
			if (!f->slot[j]) {
				f->slot[j] = ids[i];
				break;
			}
		}
	}
	return f;
}

static int fs_has(const struct flowset *f, uint64_t id)
{
	if (!f || !id)
		return 0;
	for (size_t j = fs_hash(id, f->mask);; j = (j + 1) & f->mask) {
		if (f->slot[j] == id)
			return 1;
		if (!f->slot[j])
			return 0;
	}
}

/* ---- the hub and its streams ---- */

/* An observation point as the sink was told about it. */
struct obs_info {
	char *iface, *pod;
	int linktype;
};

/* One interface of a stream's file. */
struct strm_if {
	uint32_t obs;
	uint64_t matched, dropped, dropped_reported;
};

enum { S_WAIT = 0, S_LIVE, S_DRAIN, S_DEAD };

struct strm {
	struct strm_hub *hub;
	struct strm *next;          /* the hub's list (hub lock) */
	uint64_t id;
	/* the spec, fixed */
	uint8_t *obs_bits;          /* NULL = every observation point */
	uint32_t *obs;
	size_t nobs;
	int flows_only, inner, has_bpf;
	struct bpf_program prog;
	uint32_t snaplen;
	uint64_t max_packets, max_bytes, max_us;
	struct strm_output out;
	/* shared with other threads: hub lock */
	int started, cancelled;
	struct flowset *flows_new;
	int flows_pending;
	uint64_t gen_opened;
	/* the sink's thread only */
	int joined, state, complete, begin_pending;
	struct flowset *flows;
	struct pn_writer *w;
	uint8_t *buf;               /* blocks not yet taken: buf[head .. head+len) */
	size_t head, len, alloc, cap;
	uint32_t *if_of_obs;        /* observation point -> interface index + 1 */
	size_t if_of_obs_n;
	struct strm_if *ifs;
	size_t nifs, ifs_cap;
	uint64_t written, bytes, dropped, dropped_noted;
	uint64_t start_us, last_out_us, last_isb_us, drain_since_us;
	uint8_t *scratch;           /* inner frames */
};

struct strm_hub {
	struct strm_hub_config cfg;
	pthread_mutex_t lock;
	struct strm *list;
	size_t nlist;
	uint64_t next_id;
	uint64_t gen, armed_gen;
	int sink_closed;
	unsigned changes;           /* atomic: bumped under the lock for the sink */
	/* the sink's thread only */
	unsigned seen_changes;
	struct strm **live;
	size_t nlive, live_cap;
	struct obs_info *obsv;      /* by observation point id */
	size_t nobsv;
	/* counters (atomic) */
	uint64_t opened, packets, bytes, dropped;
	uint64_t open_now;
};

static uint64_t clock_us(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Limits and intervals run on the monotonic clock; blocks carry wall time. */
static uint64_t mono_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

static void bump(struct strm_hub *h)
{
	__atomic_add_fetch(&h->changes, 1, __ATOMIC_RELEASE);
}

void strm_hub_config_default(struct strm_hub_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_streams = 8;
	cfg->buffer_bytes = 4u << 20;
	cfg->quiet_ms = 2000;
	cfg->drain_ms = 30000;
}

struct strm_hub *strm_hub_open(const struct strm_hub_config *cfg_in)
{
	struct strm_hub_config cfg;
	if (cfg_in)
		cfg = *cfg_in;
	else
		strm_hub_config_default(&cfg);
	if (!cfg.max_streams)
		cfg.max_streams = 8;
	if (!cfg.buffer_bytes)
		cfg.buffer_bytes = 4u << 20;
	if (cfg.buffer_bytes < STRM_BUF_MIN)
		cfg.buffer_bytes = STRM_BUF_MIN;
	if (!cfg.quiet_ms)
		cfg.quiet_ms = 2000;
	if (!cfg.drain_ms)
		cfg.drain_ms = 30000;
	if (cfg.max_streams > 1024 || cfg.buffer_bytes > (1u << 30)) {
		errno = EINVAL;
		return NULL;
	}
	struct strm_hub *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->cfg = cfg;
	h->next_id = 1;
	pthread_mutex_init(&h->lock, NULL);
	return h;
}

static void strm_free(struct strm *s)
{
	if (!s)
		return;
	if (s->has_bpf)
		pcap_freecode(&s->prog);
	pn_close(s->w); /* into the buffer, which goes too: nothing is sent here */
	fs_free(s->flows);
	fs_free(s->flows_new);
	free(s->obs_bits);
	free(s->obs);
	free(s->buf);
	free(s->if_of_obs);
	free(s->ifs);
	free(s->scratch);
	free(s);
}

int strm_open(struct strm_hub *h, const struct strm_spec *spec, const struct strm_output *out,
	      struct strm **sp, char *err, size_t errlen)
{
	*sp = NULL;
	if (!out || !out->try_write || !out->done) {
		snprintf(err, errlen, "no output");
		return -EINVAL;
	}
	struct strm *s = calloc(1, sizeof(*s));
	if (!s)
		goto nomem;
	s->hub = h;
	s->out = *out;
	if (!s->out.max_write)
		s->out.max_write = STRM_WRITE_DEFAULT;
	s->flows_only = spec->flows_only;
	s->inner = spec->inner;
	s->snaplen = spec->snaplen > PN_PACKET_MAX ? PN_PACKET_MAX : spec->snaplen;
	s->max_packets = spec->max_packets;
	s->max_bytes = spec->max_bytes;
	s->max_us = spec->max_us;
	s->cap = h->cfg.buffer_bytes;
	if (spec->nobs) {
		if (!(s->obs_bits = calloc(1, STRM_OBS_BITS)) || !(s->obs = calloc(spec->nobs, sizeof(*s->obs))))
			goto nomem;
		for (size_t i = 0; i < spec->nobs; i++) {
			uint32_t o = spec->obs[i];
			if (!o || o > ENG_MAX_OBS) {
				snprintf(err, errlen, "observation point %u out of range", o);
				strm_free(s);
				return -EINVAL;
			}
			if (s->obs_bits[o / 8] & (1u << (o % 8)))
				continue;
			s->obs_bits[o / 8] |= (uint8_t)(1u << (o % 8));
			s->obs[s->nobs++] = o;
		}
	}
	if (s->inner && !(s->scratch = malloc(STRM_SCRATCH)))
		goto nomem;
	if (spec->bpf && *spec->bpf) {
		/* libpcap compiles for a link type; every frame a stream filters is
		 * Ethernet (live capture, and inner frames are made Ethernet). */
		pcap_t *p = pcap_open_dead(DLT_EN10MB, (int)PN_SNAPLEN_MAX);
		if (!p)
			goto nomem;
		if (pcap_compile(p, &s->prog, spec->bpf, 1, PCAP_NETMASK_UNKNOWN) < 0) {
			snprintf(err, errlen, "%s", pcap_geterr(p));
			pcap_close(p);
			strm_free(s);
			return -EINVAL;
		}
		pcap_close(p);
		s->has_bpf = 1;
	}
	pthread_mutex_lock(&h->lock);
	if (h->sink_closed) {
		pthread_mutex_unlock(&h->lock);
		snprintf(err, errlen, "the capture has stopped");
		strm_free(s);
		return -ESHUTDOWN;
	}
	if (h->nlist >= h->cfg.max_streams) {
		pthread_mutex_unlock(&h->lock);
		snprintf(err, errlen, "%u live streams are open already (the most this agent serves at once)",
			 h->cfg.max_streams);
		strm_free(s);
		return -EBUSY;
	}
	s->id = h->next_id++;
	s->gen_opened = ++h->gen;
	s->next = h->list;
	h->list = s;
	h->nlist++;
	pthread_mutex_unlock(&h->lock);
	__atomic_add_fetch(&h->opened, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&h->open_now, 1, __ATOMIC_RELAXED);
	*sp = s;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	strm_free(s);
	return -ENOMEM;
}

void strm_start(struct strm *s)
{
	pthread_mutex_lock(&s->hub->lock);
	s->started = 1;
	bump(s->hub);
	pthread_mutex_unlock(&s->hub->lock);
}

void strm_cancel(struct strm *s)
{
	pthread_mutex_lock(&s->hub->lock);
	if (!s->cancelled) {
		s->cancelled = 1;
		s->hub->gen++; /* its interfaces may go back to sampling */
		bump(s->hub);
	}
	pthread_mutex_unlock(&s->hub->lock);
}

int strm_set_flows(struct strm *s, const uint64_t *ids, size_t n)
{
	if (n > STRM_MAX_FLOWS)
		return -E2BIG;
	struct flowset *f = fs_new(ids, n), *old;
	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&s->hub->lock);
	old = s->flows_new;
	s->flows_new = f;
	s->flows_pending = 1;
	bump(s->hub);
	pthread_mutex_unlock(&s->hub->lock);
	fs_free(old);
	return 0;
}

uint64_t strm_id(const struct strm *s)
{
	return s->id;
}

/* ---- arming ---- */

uint64_t strm_hub_generation(struct strm_hub *h)
{
	pthread_mutex_lock(&h->lock);
	uint64_t g = h->gen;
	pthread_mutex_unlock(&h->lock);
	return g;
}

size_t strm_hub_wanted(struct strm_hub *h, uint32_t *obs, size_t max, int *all, uint64_t *gen)
{
	size_t n = 0;
	*all = 0;
	pthread_mutex_lock(&h->lock);
	for (struct strm *s = h->list; s; s = s->next) {
		if (s->cancelled)
			continue;
		if (!s->nobs)
			*all = 1;
		for (size_t i = 0; i < s->nobs; i++) {
			size_t j = 0;
			while (j < n && obs[j] != s->obs[i])
				j++;
			if (j == n && n < max)
				obs[n++] = s->obs[i];
		}
	}
	*gen = h->gen;
	pthread_mutex_unlock(&h->lock);
	return n;
}

void strm_hub_armed(struct strm_hub *h, uint64_t gen)
{
	pthread_mutex_lock(&h->lock);
	if (gen > h->armed_gen) {
		h->armed_gen = gen;
		bump(h);
	}
	pthread_mutex_unlock(&h->lock);
}

void strm_hub_stats(struct strm_hub *h, struct strm_hub_stats *out)
{
	out->open = __atomic_load_n(&h->open_now, __ATOMIC_RELAXED);
	out->opened = __atomic_load_n(&h->opened, __ATOMIC_RELAXED);
	out->packets = __atomic_load_n(&h->packets, __ATOMIC_RELAXED);
	out->bytes = __atomic_load_n(&h->bytes, __ATOMIC_RELAXED);
	out->dropped = __atomic_load_n(&h->dropped, __ATOMIC_RELAXED);
}

size_t strm_hub_active(struct strm_hub *h)
{
	return (size_t)__atomic_load_n(&h->open_now, __ATOMIC_RELAXED);
}

/* ---- the sink's thread: writing a stream ---- */

/* The pcapng writer's output: whole blocks into the stream's buffer.  Packets
 * were admitted against the buffer's size before they were written; control
 * blocks (interfaces, statistics) always go in, so the buffer may grow a little
 * beyond it. */
static int stage(void *arg, const uint8_t *b, size_t n)
{
	struct strm *s = arg;
	if (s->head && s->head + s->len + n > s->alloc) {
		memmove(s->buf, s->buf + s->head, s->len);
		s->head = 0;
	}
	if (s->len + n > s->alloc) {
		size_t na = s->len + n + STRM_BUF_MIN;
		uint8_t *nb = realloc(s->buf, na);
		if (!nb)
			return -ENOMEM;
		s->buf = nb;
		s->alloc = na;
	}
	memcpy(s->buf + s->head + s->len, b, n);
	s->len += n;
	return 0;
}

static void kill_stream(struct strm *s)
{
	s->state = S_DEAD;
	s->complete = 0;
}

/* The interface of observation point obs in s's file, declared on first use. */
static int if_of(struct strm_hub *h, struct strm *s, uint32_t obs, size_t *out)
{
	if (obs < s->if_of_obs_n && s->if_of_obs[obs]) {
		*out = s->if_of_obs[obs] - 1;
		return 0;
	}
	if (obs > ENG_MAX_OBS)
		return -EINVAL;
	if (obs >= s->if_of_obs_n) {
		size_t nn = obs + 64 > ENG_MAX_OBS + 1 ? ENG_MAX_OBS + 1 : obs + 64;
		uint32_t *n = realloc(s->if_of_obs, nn * sizeof(*n));
		if (!n)
			return -ENOMEM;
		memset(n + s->if_of_obs_n, 0, (nn - s->if_of_obs_n) * sizeof(*n));
		s->if_of_obs = n;
		s->if_of_obs_n = nn;
	}
	if (s->nifs == s->ifs_cap) {
		size_t nc = s->ifs_cap ? 2 * s->ifs_cap : 8;
		struct strm_if *n = realloc(s->ifs, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->ifs = n;
		s->ifs_cap = nc;
	}
	const struct obs_info *oi = obs < h->nobsv ? &h->obsv[obs] : NULL;
	char name[32];
	snprintf(name, sizeof(name), "obs%u", obs);
	uint32_t if_id;
	int rc = pn_add_interface(s->w, s->inner ? DC_LINK_ETHERNET : oi && oi->iface ? oi->linktype : DC_LINK_ETHERNET,
				  s->snaplen, oi && oi->iface ? oi->iface : name, oi ? oi->pod : NULL, &if_id);
	if (rc < 0)
		return rc;
	/* if ids count up from 0 in the order they are declared: if_id == nifs */
	memset(&s->ifs[s->nifs], 0, sizeof(s->ifs[0]));
	s->ifs[s->nifs].obs = obs;
	s->if_of_obs[obs] = (uint32_t)s->nifs + 1;
	*out = s->nifs++;
	(void)if_id;
	return 0;
}

/* Interface Statistics Blocks: for every interface, or those whose drops
 * changed since the last ones. */
static void write_isbs(struct strm *s, uint64_t now, int only_changed)
{
	uint64_t wall = clock_us(CLOCK_REALTIME);
	int wrote = 0;
	for (size_t i = 0; i < s->nifs && s->state != S_DEAD; i++) {
		struct strm_if *f = &s->ifs[i];
		if (only_changed && f->dropped == f->dropped_reported)
			continue;
		if (pn_write_stats(s->w, (uint32_t)i, wall * 1000u, f->matched, f->dropped) < 0)
			kill_stream(s);
		f->dropped_reported = f->dropped;
		wrote = 1;
	}
	/* Only a block written counts: the once-a-second look for new drops, when
	 * it finds none, must not hold back the quiet stream's keep-alive (it did:
	 * a client that left a quiet stream was never noticed). */
	if (wrote)
		s->last_isb_us = now;
}

/* Offers what the buffer holds to the output, as much as it takes now. */
static void push(struct strm_hub *h, struct strm *s, uint64_t now)
{
	if (s->state == S_DEAD || !s->w)
		return;
	if (pn_flush(s->w) < 0) {
		kill_stream(s);
		return;
	}
	while (s->len) {
		size_t chunk = s->len < s->out.max_write ? s->len : s->out.max_write;
		int rc;
		for (;;) {
			rc = s->out.try_write(s->out.arg, s->buf + s->head, chunk);
			/* A client queue with some room takes a smaller piece. */
			if (rc != -EAGAIN || chunk <= STRM_WRITE_MIN)
				break;
			chunk /= 4;
		}
		if (rc == -EAGAIN)
			break;
		if (rc < 0) {
			kill_stream(s);
			return;
		}
		s->head += chunk;
		s->len -= chunk;
		s->last_out_us = now;
		__atomic_add_fetch(&h->bytes, chunk, __ATOMIC_RELAXED);
	}
	if (!s->len)
		s->head = 0;
}

/* The stream's end: final statistics, then its last bytes drain. */
static void finish(struct strm_hub *h, struct strm *s, uint64_t now)
{
	if (s->state != S_LIVE)
		return;
	write_isbs(s, now, 0);
	if (s->state == S_DEAD)
		return;
	s->state = S_DRAIN;
	s->drain_since_us = now;
	push(h, s, now);
}

/* The stream's header: SHB (queued by pn_open_sink) and the interfaces it
 * covers that the sink knows now. */
static void begin(struct strm_hub *h, struct strm *s, uint64_t now)
{
	struct pn_config pc;
	pn_config_default(&pc);
	pc.bufsize = STRM_PN_BUF;
	s->alloc = s->cap + STRM_BUF_MIN;
	if (!(s->buf = malloc(s->alloc)) || !(s->w = pn_open_sink(stage, s, &pc))) {
		kill_stream(s);
		return;
	}
	s->state = S_LIVE;
	s->start_us = s->last_out_us = s->last_isb_us = now;
	size_t idx;
	if (s->nobs) {
		for (size_t i = 0; i < s->nobs; i++)
			if (s->obs[i] < h->nobsv && h->obsv[s->obs[i]].iface && if_of(h, s, s->obs[i], &idx) < 0)
				kill_stream(s);
	} else {
		for (uint32_t o = 1; o < h->nobsv; o++)
			if (h->obsv[o].iface && if_of(h, s, o, &idx) < 0)
				kill_stream(s);
	}
	push(h, s, now);
}

/* One packet for one stream. */
static void write_packet(struct strm_hub *h, struct strm *s, const struct eng_packet *p, uint64_t now)
{
	const uint8_t *data = p->frame;
	uint32_t caplen = p->dc.caplen, wirelen = p->dc.wirelen;
	int linktype = p->dc.linktype;
	if (s->inner && q_inner_frame(&p->dc, p->frame, s->scratch, STRM_SCRATCH, &caplen, &wirelen) == 1) {
		data = s->scratch;
		linktype = DC_LINK_ETHERNET;
	} else {
		caplen = p->dc.caplen;
		wirelen = p->dc.wirelen;
	}
	if (s->has_bpf) {
		if (linktype != DC_LINK_ETHERNET)
			return; /* the program reads Ethernet headers */
		struct pcap_pkthdr ph = {.caplen = caplen, .len = wirelen};
		if (!pcap_offline_filter(&s->prog, &ph, data))
			return;
	}
	size_t ifx;
	if (if_of(h, s, p->obs, &ifx) < 0) {
		kill_stream(s);
		return;
	}
	struct strm_if *f = &s->ifs[ifx];
	f->matched++;
	if (s->snaplen && caplen > s->snaplen)
		caplen = s->snaplen;
	char note[200];
	const char *comment = NULL;
	if (s->dropped > s->dropped_noted) {
		snprintf(note, sizeof(note), "podcap: %llu packets of this stream were not delivered before this one "
			 "(the client read too slowly); %llu in all so far",
			 (unsigned long long)(s->dropped - s->dropped_noted), (unsigned long long)s->dropped);
		comment = note;
	}
	size_t need = (size_t)caplen + STRM_EPB_OVERHEAD + (comment ? strlen(comment) + 8 : 0);
	size_t pending = (size_t)(pn_offset(s->w) - pn_written(s->w));
	if (s->len + pending + need > s->cap) {
		f->dropped++;
		s->dropped++;
		__atomic_add_fetch(&h->dropped, 1, __ATOMIC_RELAXED);
		return;
	}
	uint32_t flags = p->dir == CAP_DIR_IN ? PN_EPB_INBOUND : p->dir == CAP_DIR_OUT ? PN_EPB_OUTBOUND : 0;
	if (pn_write_packet_us(s->w, (uint32_t)ifx, p->ts_us, data, caplen, wirelen, flags, comment, NULL) < 0) {
		kill_stream(s);
		return;
	}
	if (comment)
		s->dropped_noted = s->dropped;
	s->written++;
	s->bytes += caplen;
	__atomic_add_fetch(&h->packets, 1, __ATOMIC_RELAXED);
	if ((s->max_packets && s->written >= s->max_packets) || (s->max_bytes && s->bytes >= s->max_bytes))
		finish(h, s, now);
}

/* ---- the sink's thread: bookkeeping ---- */

/* Takes what other threads changed: new and cancelled streams, arming, flow sets. */
static void sync_streams(struct strm_hub *h)
{
	unsigned c = __atomic_load_n(&h->changes, __ATOMIC_ACQUIRE);
	if (c == h->seen_changes)
		return;
	h->seen_changes = c;
	struct flowset *old[16];
	size_t nold = 0;
	pthread_mutex_lock(&h->lock);
	uint64_t armed = h->armed_gen;
	for (struct strm *s = h->list; s; s = s->next) {
		if (s->flows_pending && nold < 16) {
			old[nold++] = s->flows;
			s->flows = s->flows_new;
			s->flows_new = NULL;
			s->flows_pending = 0;
		}
		if (!s->joined && (s->started || s->cancelled)) {
			if (h->nlive == h->live_cap) {
				size_t nc = h->live_cap ? 2 * h->live_cap : 8;
				struct strm **n = realloc(h->live, nc * sizeof(*n));
				if (!n)
					continue; /* taken at the next change */
				h->live = n;
				h->live_cap = nc;
			}
			h->live[h->nlive++] = s;
			s->joined = 1;
		}
		if (s->cancelled)
			kill_stream(s);
		else if (s->joined && s->state == S_WAIT && !s->w && (!h->cfg.arm || armed >= s->gen_opened))
			s->begin_pending = 1; /* below, outside the lock */
	}
	pthread_mutex_unlock(&h->lock);
	for (size_t i = 0; i < nold; i++)
		fs_free(old[i]);
	uint64_t now = mono_us();
	for (size_t i = 0; i < h->nlive; i++)
		if (h->live[i]->begin_pending) {
			h->live[i]->begin_pending = 0;
			begin(h, h->live[i], now);
		}
}

/* Streams that ended leave: their output's last call, then they are freed. */
static void reap(struct strm_hub *h)
{
	for (size_t i = 0; i < h->nlive;) {
		struct strm *s = h->live[i];
		if (s->state != S_DEAD) {
			i++;
			continue;
		}
		h->live[i] = h->live[--h->nlive];
		pthread_mutex_lock(&h->lock);
		for (struct strm **pp = &h->list; *pp; pp = &(*pp)->next)
			if (*pp == s) {
				*pp = s->next;
				h->nlist--;
				break;
			}
		h->gen++; /* its interfaces may go back to sampling */
		pthread_mutex_unlock(&h->lock);
		__atomic_sub_fetch(&h->open_now, 1, __ATOMIC_RELAXED);
		s->out.done(s->out.arg, s->complete);
		strm_free(s);
	}
}

/* Time limits, statistics, keep-alives, drains; then the bytes go out. */
static void housekeeping(struct strm_hub *h, uint64_t now)
{
	for (size_t i = 0; i < h->nlive; i++) {
		struct strm *s = h->live[i];
		if (s->state == S_LIVE) {
			if (s->max_us && now - s->start_us >= s->max_us) {
				finish(h, s, now);
				continue;
			}
			if (now - s->last_isb_us >= STRM_ISB_DROP_US)
				write_isbs(s, now, 1);
			/* A quiet stream still says something now and then: over HTTP/1.1
			 * a client that left is only noticed at a write. */
			if (!s->len && now - s->last_out_us >= (uint64_t)h->cfg.quiet_ms * 1000u &&
			    now - s->last_isb_us >= (uint64_t)h->cfg.quiet_ms * 1000u) {
				/* ISBs need an interface: a stream whose points the sink
				 * has not seen yet (nothing captured there so far) declares
				 * its first one now, named "obsN" until then, so that a
				 * client that left is still noticed. */
				size_t idx;
				if (!s->nifs && if_of(h, s, s->nobs ? s->obs[0] : 0, &idx) < 0)
					kill_stream(s);
				write_isbs(s, now, 0);
			}
		}
		push(h, s, now);
		if (s->state == S_DRAIN) {
			if (!s->len) {
				s->state = S_DEAD;
				s->complete = 1;
			} else if (now - s->drain_since_us >= (uint64_t)h->cfg.drain_ms * 1000u) {
				kill_stream(s);
			}
		}
	}
	reap(h);
}

static int sink_obs_point(void *ctx, const struct eng_obs *o)
{
	struct strm_hub *h = ctx;
	if (o->id == 0 || o->id > ENG_MAX_OBS)
		return 0;
	if (o->id >= h->nobsv) {
		size_t nn = o->id + 64 > ENG_MAX_OBS + 1 ? ENG_MAX_OBS + 1 : o->id + 64;
		struct obs_info *n = realloc(h->obsv, nn * sizeof(*n));
		if (!n)
			return -ENOMEM;
		memset(n + h->nobsv, 0, (nn - h->nobsv) * sizeof(*n));
		h->obsv = n;
		h->nobsv = nn;
	}
	struct obs_info *oi = &h->obsv[o->id];
	char *iface = strdup(o->iface ? o->iface : ""), *pod = o->pod ? strdup(o->pod) : NULL;
	if (!iface || (o->pod && !pod)) {
		free(iface);
		free(pod);
		return -ENOMEM;
	}
	free(oi->iface);
	free(oi->pod);
	oi->iface = iface;
	oi->pod = pod;
	oi->linktype = o->linktype;
	return 0;
}

static int sink_packets(void *ctx, const struct eng_packet *pkts, size_t n)
{
	struct strm_hub *h = ctx;
	sync_streams(h);
	if (!h->nlive)
		return 0;
	uint64_t now = mono_us();
	for (size_t i = 0; i < h->nlive; i++) {
		struct strm *s = h->live[i];
		for (size_t k = 0; k < n && s->state == S_LIVE; k++) {
			const struct eng_packet *p = &pkts[k];
			if (s->obs_bits && (p->obs > ENG_MAX_OBS || !(s->obs_bits[p->obs / 8] & (1u << (p->obs % 8)))))
				continue;
			if (s->flows_only && !fs_has(s->flows, p->flow_id))
				continue;
			write_packet(h, s, p, now);
		}
	}
	housekeeping(h, now);
	return 0;
}

static int sink_tick(void *ctx, uint64_t now_us)
{
	struct strm_hub *h = ctx;
	(void)now_us; /* stream times are the wall clock's, read here */
	sync_streams(h);
	if (h->nlive)
		housekeeping(h, mono_us());
	return 0;
}

/* End of input (the agent stops): every stream ends with its statistics. */
static int sink_flush(void *ctx)
{
	struct strm_hub *h = ctx;
	sync_streams(h);
	uint64_t now = mono_us();
	for (size_t i = 0; i < h->nlive; i++)
		finish(h, h->live[i], now);
	housekeeping(h, now);
	return 0;
}

/* Ends every stream still there (on the calling thread) and refuses new ones. */
static void end_all(struct strm_hub *h)
{
	pthread_mutex_lock(&h->lock);
	h->sink_closed = 1;
	struct strm *list = h->list;
	h->list = NULL;
	h->nlist = 0;
	h->gen++;
	pthread_mutex_unlock(&h->lock);
	while (list) {
		struct strm *s = list;
		list = s->next;
		__atomic_sub_fetch(&h->open_now, 1, __ATOMIC_RELAXED);
		s->out.done(s->out.arg, s->state == S_DEAD && s->complete);
		strm_free(s);
	}
	free(h->live);
	h->live = NULL;
	h->nlive = h->live_cap = 0;
}

static void sink_close(void *ctx)
{
	end_all(ctx);
}

static const struct eng_sink_ops strm_sink_ops = {
	.name = "streams",
	.obs_point = sink_obs_point,
	.packets = sink_packets,
	.tick = sink_tick,
	.flush = sink_flush,
	.close = sink_close,
};

void strm_hub_sink(struct strm_hub *h, struct eng_sink *out)
{
	out->ops = &strm_sink_ops;
	out->ctx = h;
}

void strm_hub_close(struct strm_hub *h)
{
	if (!h)
		return;
	end_all(h);
	for (size_t i = 0; i < h->nobsv; i++) {
		free(h->obsv[i].iface);
		free(h->obsv[i].pod);
	}
	free(h->obsv);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
