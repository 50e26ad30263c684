/* pcapng — writes capture files: pcapng (default) or classic pcap.
 *
 * A pn_writer turns packets into Section Header, Interface Description, Enhanced
 * Packet and Interface Statistics Blocks (pcapng) or into a pcap file header plus
 * per-packet records (pcap).  It depends on nothing beyond libc.
 *
 * Output goes through the writer's own buffer to a file descriptor with write(2),
 * or to a callback (pn_open_sink); every write's result is checked.  Blocks enter the buffer whole, so what has
 * reached the fd is always a sequence of complete blocks, except when a write fails
 * midway: then, when the fd is seekable, the file is cut back to the end of the last
 * complete block, so no partial block is ever left claimed as written.  The first
 * write error is sticky: every later call returns it (e.g. -EPIPE when a reader of
 * stdout went away, -ENOSPC on a full disk).
 *
 * Ownership: the writer never owns the fd or FILE* unless opened with
 * PN_OWN_FD; pn_close() flushes, then closes only what it owns.  The caller's
 * packet bytes and strings are copied before a call returns.
 *
 * Threads: one thread at a time per writer; no global state.
 *
 * Timestamps are nanoseconds since the epoch; the file stores them with the
 * resolution chosen in pn_config.tsresol (6 = microseconds, 9 = nanoseconds).
 */
#ifndef PODCAP_PCAPNG_H
#define PODCAP_PCAPNG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct pn_writer;

enum pn_format {
	PN_FORMAT_PCAPNG = 0,
	PN_FORMAT_PCAP,   /* classic pcap: one link type per file */
};

enum {
	PN_OWN_FD = 1,    /* pn_close() closes the fd */
};

/* Default and largest snaplen written into headers when an interface has none. */
#define PN_SNAPLEN_MAX 262144u
/* Largest packet accepted: same as Wireshark's limit for most link types. */
#define PN_PACKET_MAX 262144u

struct pn_config {
	enum pn_format format;
	uint8_t tsresol;       /* 6 (µs, default) or 9 (ns) */
	const char *userappl;  /* SHB shb_userappl; default "podcap" */
	size_t bufsize;        /* output buffer bytes; default 256 KiB */
	unsigned flags;        /* PN_OWN_FD */
	/* Sees every run of bytes once it is on the fd: offset (from the writer's
	 * start), bytes, length; e.g. to checksum a file as it is written.  May be
	 * NULL; not called for sinks. */
	void (*tap)(void *arg, uint64_t offset, const uint8_t *buf, size_t len);
	void *tap_arg;
};
void pn_config_default(struct pn_config *cfg);

/* Starts a writer on fd and queues the file header (SHB for pcapng; for pcap the
 * header waits for the first interface, which fixes the link type).  Returns NULL
 * and sets errno (EINVAL, ENOMEM) on failure. */
struct pn_writer *pn_open_fd(int fd, const struct pn_config *cfg);
/* Same on a FILE*: flushes the stdio buffer first and then writes to fileno(f) directly. */
struct pn_writer *pn_open_file(FILE *f, const struct pn_config *cfg);

/* Same into a callback instead of an fd, e.g. an HTTP response body.  sink gets
 * whole blocks (at most the buffer size, or one block when bigger) and returns 0
 * or a negative errno, which becomes the writer's sticky error.  The bytes are
 * valid only during the call. */
typedef int (*pn_sink_fn)(void *arg, const uint8_t *buf, size_t len);
struct pn_writer *pn_open_sink(pn_sink_fn sink, void *arg, const struct pn_config *cfg);

/* Declares an interface (observation point).  name becomes if_name, description
 * (the pod, may be NULL) if_description; snaplen 0 means "no limit".  *if_id gets
 * the id to pass to pn_write_packet.  In pcap mode, the first interface sets the
 * file's link type; a later one with another link type returns -EPROTOTYPE (pcap
 * cannot mix link types) and the file stays valid. */
int pn_add_interface(struct pn_writer *w, int linktype, uint32_t snaplen,
		     const char *name, const char *description, uint32_t *if_id);

/* Writes one packet: caplen captured bytes of a packet of wirelen bytes on the wire
 * (wirelen < caplen is raised to caplen).  flags, when not 0, becomes the EPB's
 * epb_flags option (direction in bits 0-1: PN_EPB_INBOUND / PN_EPB_OUTBOUND); comment
 * (may be NULL) becomes the EPB opt_comment; pcap has no place for either and drops
 * them.  -EINVAL for an unknown
 * if_id or caplen > PN_PACKET_MAX. *offset, when given, gets the file offset at
 * which the block starts (bytes queued before it, starting at 0 for the SHB). */
int pn_write_packet(struct pn_writer *w, uint32_t if_id, uint64_t ts_ns,
		    const uint8_t *data, uint32_t caplen, uint32_t wirelen,
		    uint32_t flags, const char *comment, uint64_t *offset);

/* Same with a timestamp in microseconds: exact for µs files whatever the value
 * (capture timestamps are not always sane), saturating for ns files. */
int pn_write_packet_us(struct pn_writer *w, uint32_t if_id, uint64_t ts_us,
		       const uint8_t *data, uint32_t caplen, uint32_t wirelen,
		       uint32_t flags, const char *comment, uint64_t *offset);

/* Interface Statistics Block (pcapng only; a no-op returning 0 for pcap).
 * received / dropped: packets seen / lost by the capture, UINT64_MAX = unknown. */
int pn_write_stats(struct pn_writer *w, uint32_t if_id, uint64_t ts_ns,
		   uint64_t received, uint64_t dropped);

/* Writes the buffer to the fd.  Returns 0 or the sticky negative errno. */
int pn_flush(struct pn_writer *w);
/* Bytes queued or written so far: the offset of the next block. */
uint64_t pn_offset(const struct pn_writer *w);
/* Bytes known to be on the fd (complete blocks). */
uint64_t pn_written(const struct pn_writer *w);
/* Number of interfaces declared. */
uint32_t pn_interface_count(const struct pn_writer *w);
/* Text of the first error, "" if none.  Valid while the writer lives. */
const char *pn_errmsg(const struct pn_writer *w);

/* Flushes and frees the writer; closes the fd when PN_OWN_FD.  Returns 0 or the
 * first error seen (write or close).  w may be NULL. */
int pn_close(struct pn_writer *w);
/* Frees the writer without writing what is still queued (closes the fd when
 * PN_OWN_FD): for an answer that turns into an error before its first byte.
 * w may be NULL. */
void pn_discard(struct pn_writer *w);

/* pcapng block types and constants shared with readers of our own files. */
#define PN_BT_SHB 0x0A0D0D0Au
#define PN_BT_IDB 0x00000001u
#define PN_BT_EPB 0x00000006u
#define PN_BT_ISB 0x00000005u
#define PN_BYTE_ORDER_MAGIC 0x1A2B3C4Du
/* EPB fixed part: type, total length, interface id, ts high, ts low, caplen, wirelen. */
#define PN_EPB_HDR_LEN 28u
/* EPB option codes and epb_flags direction values (RFC draft, section 4.3.1). */
#define PN_OPT_COMMENT 1u
#define PN_OPT_EPB_FLAGS 2u
#define PN_EPB_INBOUND 1u
#define PN_EPB_OUTBOUND 2u

#endif
