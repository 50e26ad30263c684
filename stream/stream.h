/* stream — live pcapng streams: the packets an agent captures, as they pass, to
 * any number of clients at once (GET /api/v1/stream, `podcap sniff`, the
 * Wireshark extcap; docs/sniff.md).
 *
 * A strm_hub is an engine packets sink.  Streams come and go while the engine
 * runs.  On the sink's thread every batch of packets is matched against the
 * open streams — by observation point (an interface, a pod's veth), by flow id
 * (a flow filter, resolved by the caller into ids), by a libpcap filter on the
 * frame as written — and each match becomes an Enhanced Packet Block in the
 * stream's own bounded buffer, which is handed to the stream's output (an HTTP
 * answer) without ever waiting: the output's try_write takes what fits now.
 * A client that reads too slowly fills its buffer and then loses packets —
 * counted per interface, and told in the stream itself (a comment on the next
 * packet it does get, Interface Statistics Blocks with isb_ifdrop) — and
 * never slows the engine, the other sinks or the other streams.  So the sink's
 * thread never blocks on a client, and the engine's queues (which block when
 * full) never wait for one.
 *
 * What a stream writes: a Section Header Block; one Interface Description Block
 * per observation point it covers (if_name the interface, if_description the
 * pod), at its start for the points known then and before the first packet of
 * any point that appears later; the packets, with their direction in
 * epb_flags; an Interface Statistics Block per interface (packets matched,
 * packets dropped) every second while it drops, every few seconds while it is
 * quiet (so a client that left is noticed), and at its end.  With `inner` every
 * packet is written as q_inner_frame() makes it (the decapsulated packet, as
 * Ethernet) and every interface is Ethernet.  The libpcap filter sees the frame
 * as written (so with inner, the pods' packet), compiled for Ethernet.
 *
 * Bytes leave the buffer whenever the sink runs: after each batch, on each
 * engine tick (the agent ticks every 20 ms while a stream is open, so nothing
 * waits in a buffer or a half-filled batch for more than that), on flush.
 *
 * Arming (eBPF): the kernel program sends only the first packets of each flow
 * to user space unless told to send every packet of an interface.  With
 * cfg.arm, the capture thread asks the hub what streams want
 * (strm_hub_wanted), tells the capture backend, then acknowledges
 * (strm_hub_armed); a stream writes its first bytes only after that, so a
 * client that sees the header knows that every packet from then on is sent.
 *
 * Threads:
 *   any thread     strm_open, strm_start, strm_cancel, strm_set_flows,
 *                  strm_hub_stats, strm_hub_active
 *   capture thread strm_hub_generation, strm_hub_wanted, strm_hub_armed
 *   sink thread    the sink's callbacks, and every call of a stream's output
 *                  (try_write, done) — also strm_hub_close's and the sink
 *                  close's thread for streams still open then
 *   owner          strm_hub_open, strm_hub_sink, strm_hub_close
 *
 * Ownership: the hub owns its streams.  strm_open's handle stays valid until
 * the stream's output got done(); done() is called exactly once for every
 * stream strm_open returned, never from inside strm_open, strm_start,
 * strm_cancel or strm_set_flows, and the hub frees the stream after done()
 * returned.  The caller's spec and output are copied.  The engine owns the
 * sink (its close ends every stream) but not the hub: strm_hub_close, after
 * eng_close, frees it.
 *
 * Errors: 0 / negative errno; strm_open explains in errbuf.
 */
#ifndef PODCAP_STREAM_H
#define PODCAP_STREAM_H

#include <stddef.h>
#include <stdint.h>

struct strm_hub;
struct strm;
struct eng_sink;

struct strm_hub_config {
	unsigned max_streams;   /* open at once (default 8); strm_open beyond: -EBUSY */
	size_t buffer_bytes;    /* each stream's buffer of blocks its client has not taken
	                         * yet (default 4 MiB; at least 64 KiB) */
	int arm;                /* 1: streams wait for strm_hub_armed() (see Arming) */
	unsigned quiet_ms;      /* an ISB after this long without output (default 2000) */
	unsigned drain_ms;      /* an ended stream whose client does not take its last
	                         * bytes is cut after this long (default 30000) */
};
void strm_hub_config_default(struct strm_hub_config *cfg);

/* NULL + errno (EINVAL, ENOMEM). */
struct strm_hub *strm_hub_open(const struct strm_hub_config *cfg);
/* The packets sink to give eng_open().  The engine calls its close(), which
 * ends every stream; the hub itself stays until strm_hub_close. */
void strm_hub_sink(struct strm_hub *h, struct eng_sink *out);
/* Ends streams still open (done(arg, 0) on this thread) and frees the hub.
 * After eng_close, or without an engine.  h may be NULL. */
void strm_hub_close(struct strm_hub *h);

/* Where a stream's bytes go.  Both run on the sink's thread. */
struct strm_output {
	/* Queues len bytes for the client without waiting: 0 once queued, -EAGAIN
	 * when they do not fit now (they are offered again later), any other
	 * negative errno when the client is gone (the stream ends). */
	int (*try_write)(void *arg, const void *buf, size_t len);
	/* The last call: the stream ended; complete = 1 when everything, up to the
	 * final statistics, was queued (end the answer normally), 0 otherwise (cut
	 * it: the client should see that it is incomplete). */
	void (*done)(void *arg, int complete);
	void *arg;
	size_t max_write;       /* the largest len try_write accepts (0: 64 KiB) */
};

struct strm_spec {
	const uint32_t *obs;    /* observation points (engine ids); nobs 0 = every one */
	size_t nobs;
	int flows_only;         /* only packets of the flows strm_set_flows() names
	                         * (none until it is called) */
	const char *bpf;        /* libpcap filter (Ethernet) on the frame as written, NULL = all */
	uint32_t snaplen;       /* bytes kept per packet, 0 = as captured */
	uint64_t max_packets;   /* end after this many packets written, 0 = no limit */
	uint64_t max_bytes;     /* end after this many captured bytes written, 0 = no limit */
	uint64_t max_us;        /* end after this long, 0 = no limit */
	int inner;              /* write decapsulated inner frames (q_inner_frame) */
};

/* Opens a stream; nothing is written until strm_start.  -EINVAL with libpcap's
 * message for a filter that does not compile, -EBUSY beyond max_streams,
 * -ESHUTDOWN once the sink was closed, -ENOMEM. */
int strm_open(struct strm_hub *h, const struct strm_spec *spec, const struct strm_output *out,
	      struct strm **s, char *errbuf, size_t errlen);
/* The output may be used from now on (e.g. the HTTP answer has begun). */
void strm_start(struct strm *s);
/* The client is gone (or was never there): the stream ends without writing
 * more; done(arg, 0) follows on the sink's thread. */
void strm_cancel(struct strm *s);
/* The flows a flows_only stream passes, replacing the previous set (ids of
 * this engine's flows; at most 1,000,000).  -ENOMEM, -E2BIG. */
int strm_set_flows(struct strm *s, const uint64_t *ids, size_t n);
/* This stream's number (1.., for logs and headers). */
uint64_t strm_id(const struct strm *s);

/* --- the capture thread (arming, see above) --- */

/* Changes whenever the set of wanted observation points may have changed. */
uint64_t strm_hub_generation(struct strm_hub *h);
/* The observation points streams want every packet of, into obs[0..return)
 * (at most max, no duplicates); *all = 1 when a stream wants every point.
 * *gen gets the generation this answer belongs to. */
size_t strm_hub_wanted(struct strm_hub *h, uint32_t *obs, size_t max, int *all, uint64_t *gen);
/* The capture now sends every packet of what generation gen wanted. */
void strm_hub_armed(struct strm_hub *h, uint64_t gen);

/* --- counters --- */

struct strm_hub_stats {
	uint64_t open;          /* streams open now */
	uint64_t opened;        /* since the hub opened */
	uint64_t packets;       /* packets written to streams (each stream counts) */
	uint64_t bytes;         /* bytes handed to outputs */
	uint64_t dropped;       /* packets matched but not delivered: a client too slow */
};
void strm_hub_stats(struct strm_hub *h, struct strm_hub_stats *out);
/* Streams open now (cheap: the agent asks on every loop). */
size_t strm_hub_active(struct strm_hub *h);

#endif
