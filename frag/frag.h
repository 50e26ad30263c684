/* frag — IPv4 and IPv6 fragment reassembly, before the flow layer.
 *
 * The engine decodes every frame (dc_decode()) and gives the fragments (dc_packet.frag
 * != DC_FRAG_NONE) to fr_add() before anything else looks at them.  The fragmented IP
 * header is always the innermost one decode reached (decode does not open a
 * fragmented carrier), so the same call serves a fragmented carrier (VXLAN on an
 * underlay with a small MTU) and a fragmented packet inside a tunnel.  When the last
 * missing piece arrives, fr_add() hands back a rebuilt frame: the first fragment's
 * bytes up to its IP header (link header, and for an inner packet the carrier's
 * headers, their length fields adjusted), the IP header with the fragment fields
 * cleared and the lengths fixed, the whole payload, then whatever followed the first
 * fragment's datagram in its frame.  The caller decodes that frame again with
 * dc_decode() and the same configuration: the flow gets the whole datagram, ports,
 * payload and all.  The datagram also lists the original frames that made it, so the
 * packet store can keep what was on the wire.
 *
 * Nothing given to fr_add() is lost: every frame either comes back at once (FR_PASS:
 * the caller handles it as it would without reassembly), or is held and comes back
 * later exactly once, in a completed datagram (FR_COMPLETE) or through the release
 * callback when its datagram is given up (timeout, eviction, overlap, ...): its
 * first fragment first, then the others in arrival order.
 *
 * Overlaps are handled as Linux does since 4.19 (net/ipv4/inet_fragment.c,
 * inet_frag_queue_insert(), for IPv4 and IPv6 alike): a fragment whose bytes all lie
 * within data already held is a duplicate, dropped while the datagram goes on; any
 * other overlap discards the whole datagram (RFC 5722 for IPv6; Linux applies it to
 * IPv4 too, where older kernels trimmed).  Like Linux, a final fragment that
 * disagrees with the length already known, a fragment past a known end, an empty
 * fragment, or a datagram longer than 65535 bytes is refused; a non-final IPv4
 * fragment whose length is not a multiple of 8 is trimmed to one, an IPv6 one is
 * refused (RFC 8200).  IPv6 atomic fragments (offset 0, no more) never get here:
 * decode treats them as whole packets.
 *
 * Memory is bounded in every case: max_datagrams datagrams in progress, max_bytes for
 * all held copies (frames + bookkeeping), max_datagram_bytes and max_fragments per
 * datagram, plus one rebuild buffer of at most max_datagram_bytes + 64 KiB.  When a
 * new fragment would go over a cap, the oldest datagrams are evicted.  Lookups are
 * O(1): a hash table keyed by (observation point, VLAN, tunnel and id, addresses,
 * IPv4 protocol, IP id), seeded per table.  Time is packet time: a datagram older than
 * timeout_us (counted from its first fragment, as Linux does) is dropped by
 * fr_expire() or by the next fr_add() that sees a later time.
 *
 * Threads: a table is used by one thread (the decoding thread); the release callback
 * runs on it, inside fr_add()/fr_expire()/fr_flush()/fr_free(), and must not call fr_*.
 * Ownership: fr_add() copies what it keeps; everything an fr_datagram or a released
 * fr_fragment points to belongs to the table and is valid until the next fr_* call.
 */
#ifndef PODCAP_FRAG_H
#define PODCAP_FRAG_H

#include <stddef.h>
#include <stdint.h>

#include "decode.h"

/* One original frame, as given to fr_add(). */
struct fr_fragment {
	const uint8_t *frame;  /* a copy owned by the table */
	uint32_t caplen, wirelen;
	uint64_t ts_us;
	uint32_t obs;          /* the caller's observation point id, as given */
	uint16_t linktype;
};

/* Why a held fragment comes back through the release callback, or why fr_add()
 * returned FR_PASS (fr_datagram.why). */
enum fr_why {
	FR_WHY_NONE = 0,   /* FR_PASS: not a fragment */
	FR_WHY_UNCAPTURED, /* FR_PASS: the capture cut the fragment; cannot be reassembled */
	FR_WHY_DUPLICATE,  /* FR_PASS: its bytes are all held already */
	FR_WHY_OVERLAP,    /* its datagram had overlapping fragments: discarded */
	FR_WHY_TOO_BIG,    /* over 65535 bytes, max_datagram_bytes or max_fragments */
	FR_WHY_BAD,        /* empty, inconsistent with the datagram's known end, malformed */
	FR_WHY_TIMEOUT,    /* not complete within timeout_us */
	FR_WHY_EVICTED,    /* given up to stay under max_datagrams / max_bytes */
	FR_WHY_FLUSH,      /* fr_flush() or fr_free() */
	FR_WHY__COUNT
};

struct fr_config {
	struct dc_config dc;          /* what the caller decodes with (for the rebuild) */
	uint32_t max_datagrams;       /* in progress; default 4096 */
	uint64_t max_bytes;           /* all held copies; default 64 MiB */
	uint32_t max_datagram_bytes;  /* one datagram's copies; default 256 KiB */
	uint32_t max_fragments;       /* fragments in one datagram; default 256 */
	uint64_t timeout_us;          /* default 30 s (Linux's ipfrag_time) */
	/* Called for every held fragment of a datagram given up: the first fragment
	 * (offset 0) first when it is held, then the others oldest first, so that a
	 * flow table joining later fragments to their first one's flow finds it; may
	 * be NULL (the fragments are then just freed, still counted). */
	void (*release)(void *ctx, const struct fr_fragment *f, enum fr_why why);
	void *release_ctx;
};

/* Fills the defaults above; dc is dc_config_default(). */
void fr_config_default(struct fr_config *cfg);

enum { FR_HELD = 0, FR_COMPLETE = 1, FR_PASS = 2 };

/* A completed datagram (FR_COMPLETE), or why a frame was passed (FR_PASS). */
struct fr_datagram {
	const uint8_t *frame;  /* the rebuilt frame; decode it with dc_decode() */
	uint32_t len;          /* its captured length */
	uint32_t wirelen;      /* its length on the wire: more than len when the capture
	                        * cut the first fragment's frame after its datagram */
	uint16_t linktype;
	uint32_t obs;
	uint64_t ts_us;        /* time of the fragment that completed it */
	const struct fr_fragment *frags; /* the original frames, in arrival order */
	unsigned nfrags;
	enum fr_why why;       /* FR_PASS only */
};

struct fr_stats {
	uint64_t fragments;    /* given to fr_add() as fragments */
	uint64_t reassembled;  /* datagrams completed */
	uint64_t timed_out;    /* datagrams given up: timeout */
	uint64_t overlapping;  /* datagrams given up: overlapping fragments */
	uint64_t duplicates;   /* fragments passed: duplicates */
	uint64_t evicted;      /* datagrams given up: caps */
	uint64_t too_big;      /* fragments passed or datagrams given up: too big */
	uint64_t bad;          /* fragments passed or datagrams given up: malformed */
	uint64_t uncaptured;   /* fragments passed: cut by the snaplen */
	uint64_t released;     /* fragments handed to the release callback */
	uint32_t in_progress;  /* datagrams held now */
	uint64_t bytes;        /* memory held now (copies and bookkeeping) */
	uint64_t bytes_peak;
};

struct fr_table;

/* NULL and errno (EINVAL for a zero cap, ENOMEM) on failure. */
struct fr_table *fr_new(const struct fr_config *cfg);
/* Releases (FR_WHY_FLUSH) and frees everything. */
void fr_free(struct fr_table *t);

/* Offers one decoded frame: p must be dc_decode()'s result for frame (p->caplen bytes)
 * with the table's dc config.  Call it for every packet whose p->frag is not
 * DC_FRAG_NONE, before looking at p->reason: a first fragment too short for its L4
 * header is malformed for decode but a fine fragment here.  obs is the caller's
 * observation point (fragments seen at different points never mix).  Returns FR_HELD,
 * FR_COMPLETE (*out filled) or FR_PASS (out->why says why; the caller keeps handling
 * the frame). */
int fr_add(struct fr_table *t, uint32_t obs, const struct dc_packet *p, const uint8_t *frame,
	   uint64_t ts_us, struct fr_datagram *out);

/* Gives up the datagrams whose first fragment is older than now_us - timeout_us.
 * Returns how many. */
unsigned fr_expire(struct fr_table *t, uint64_t now_us);
/* Gives up every datagram in progress (end of a capture file). */
unsigned fr_flush(struct fr_table *t);

void fr_stats(const struct fr_table *t, struct fr_stats *s);
const char *fr_why_name(enum fr_why why); /* "timeout", "overlap", ... */

#endif
