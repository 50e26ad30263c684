/* capture — where packets come from: capture files (pcap and pcapng, through
 * libpcap), live interfaces (libpcap TPACKET_V3) and the eBPF tc backend.
 *
 * A cap_source hands out one packet at a time.  The bytes a cap_packet points to
 * are owned by the source and valid until the next cap_next() on it, or, when
 * cap_packet.stable is set (a mapped file), until cap_close().
 * One thread per source.  Errors: 0 / negative errno, message in errbuf.
 */
#ifndef PODCAP_CAPTURE_H
#define PODCAP_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

struct cap_source;

struct cap_packet {
	const uint8_t *data;
	uint32_t caplen, wirelen;
	uint64_t ts_us;     /* microseconds since the epoch */
	int linktype;       /* LINKTYPE_* (dc_linktype) */
	uint32_t ifindex;   /* pcapng interface id for files, kernel ifindex live */
	int stable;         /* data stays valid until cap_close(), not only until cap_next() */
};

/* A consumer that holds on to stable packets should keep what it holds within
 * this many bytes of the newest packet it got: the source hands older pages of
 * a mapped file back to the kernel, and a later touch has to fault them in again. */
#define CAP_STABLE_WINDOW (4u << 20)

struct cap_stats {
	uint64_t received;     /* packets handed out */
	uint64_t kernel_drops; /* live: pcap_stats ps_drop + ps_ifdrop */
	uint64_t bytes_read;   /* files: bytes consumed so far (for progress) */
	uint64_t file_size;    /* files: total size, 0 when unknown (pipe) */
};

/* Opens a pcap or pcapng file ("-" = stdin).  Refuses snaplen headers above
 * CAP_MAX_SNAPLEN and files that are not captures, with a message. */
#define CAP_MAX_SNAPLEN (256u * 1024u)
int cap_open_file(const char *path, struct cap_source **out, char *errbuf, size_t errlen);

/* Returns 1 and fills *pkt, 0 at the end of input, or a negative errno (then
 * errbuf-style text via cap_error()): a file truncated mid-packet is an error that
 * comes after every complete packet has been returned. */
int cap_next(struct cap_source *s, struct cap_packet *pkt);
const char *cap_error(const struct cap_source *s);
int cap_linktype(const struct cap_source *s);
/* Name of interface id ifindex, for pcapng files with several interfaces; NULL if
 * unknown. */
const char *cap_ifname(const struct cap_source *s, uint32_t ifindex);
void cap_stats(const struct cap_source *s, struct cap_stats *out);
void cap_close(struct cap_source *s);

#endif
