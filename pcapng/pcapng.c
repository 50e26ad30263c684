/* pcapng — pcapng / pcap writer.  See pcapng.h for the contract.
 *
 * Layout references: draft-ietf-opsawg-pcapng (SHB, IDB, EPB, ISB and their
 * options) and the classic pcap file format (draft-ietf-opsawg-pcap).  Files are
 * written in host byte order, which both formats allow (readers look at the magic).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pcapng.h"

#define PN_DEFAULT_BUF (256u * 1024u)
#define PN_MAX_IFACES 65535u
/* Option values are length-prefixed by 16 bits; we keep strings well under that. */
#define PN_MAX_OPT_STR 4096u
#define PN_MAX_COMMENT 65000u

struct pn_iface {
	int linktype;
	uint32_t snaplen;
};

struct pn_writer {
	int fd;                /* -1 with a sink */
	pn_sink_fn sink;
	void *sink_arg;
	unsigned flags;
	enum pn_format format;
	uint8_t tsresol;
	int seekable;          /* fd is a regular file: a failed flush can be cut back */
	off_t base;            /* fd position when the writer started */
	uint8_t *buf;
	size_t buflen, bufcap;
	uint64_t written;      /* bytes that reached the fd, always whole blocks */
	int err;               /* first error, sticky (negative errno) */
	int pcap_header_done;
	int pcap_linktype;
	struct pn_iface *ifaces;
	uint32_t nif, ifcap;
	void (*tap)(void *arg, uint64_t offset, const uint8_t *buf, size_t len);
	void *tap_arg;
	char errmsg[160];
};

void pn_config_default(struct pn_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->format = PN_FORMAT_PCAPNG;
	cfg->tsresol = 6;
	cfg->userappl = "podcap";
	cfg->bufsize = PN_DEFAULT_BUF;
}

static int fail(struct pn_writer *w, int err, const char *fmt, ...)
{
	if (w->err)
		return w->err;
	w->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->errmsg, sizeof(w->errmsg), fmt, ap);
	va_end(ap);
	return err;
}

int pn_flush(struct pn_writer *w)
{
	if (w->err)
		return w->err;
	if (w->sink) {
		size_t len = w->buflen;
		int rc = len ? w->sink(w->sink_arg, w->buf, len) : 0;
		w->buflen = 0;
		if (rc < 0)
			return fail(w, rc, "output: %s", strerror(-rc));
		w->written += len;
		return 0;
	}
	size_t done = 0;
	while (done < w->buflen) {
		ssize_t n = write(w->fd, w->buf + done, w->buflen - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			/* The buffer holds whole blocks but the write may have stopped
			 * inside one.  Cut the file back to where this buffer began so
			 * the fd only ever holds complete blocks; the buffered blocks
			 * are reported as not written. */
			if (done && w->seekable &&
			    ftruncate(w->fd, w->base + (off_t)w->written) < 0)
				e = errno;
			w->buflen = 0;
			return fail(w, -e, "write: %s", strerror(e));
		}
		done += (size_t)n;
	}
	if (w->tap && w->buflen)
		w->tap(w->tap_arg, w->written, w->buf, w->buflen);
	w->written += w->buflen;
	w->buflen = 0;
	return 0;
}

/* Makes room for a block of len bytes and returns where to build it; the block
 * counts as queued only after commit_block(). */
static uint8_t *reserve(struct pn_writer *w, size_t len)
{
	if (w->buflen + len > w->bufcap) {
		if (pn_flush(w) < 0)
			return NULL;
		if (len > w->bufcap) {
			uint8_t *nb = realloc(w->buf, len);
			if (!nb) {
				fail(w, -ENOMEM, "out of memory");
				return NULL;
			}
			w->buf = nb;
			w->bufcap = len;
		}
	}
	return w->buf + w->buflen;
}

static inline void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline size_t pad4(size_t n) { return (n + 3) & ~(size_t)3; }

/* Size of a string option (header + padded value), 0 when s is NULL or empty. */
static size_t str_opt_len(const char *s, size_t max, size_t *vlen)
{
	*vlen = 0;
	if (!s || !*s)
		return 0;
	*vlen = strnlen(s, max);
	return 4 + pad4(*vlen);
}

static uint8_t *put_opt(uint8_t *p, uint16_t code, const void *v, size_t len)
{
	put16(p, code);
	put16(p + 2, (uint16_t)len);
	memcpy(p + 4, v, len);
	memset(p + 4 + len, 0, pad4(len) - len);
	return p + 4 + pad4(len);
}

static int queue_shb(struct pn_writer *w, const char *userappl)
{
	size_t ulen, olen = str_opt_len(userappl, PN_MAX_OPT_STR, &ulen);
	size_t len = 28 + (olen ? olen + 4 : 0);
	uint8_t *p = reserve(w, len), *q;
	if (!p)
		return w->err;
	put32(p, PN_BT_SHB);
	put32(p + 4, (uint32_t)len);
	put32(p + 8, PN_BYTE_ORDER_MAGIC);
	put16(p + 12, 1);
	put16(p + 14, 0);
	put64(p + 16, UINT64_MAX); /* section length unknown: we stream */
	q = p + 24;
	if (olen) {
		q = put_opt(q, 4, userappl, ulen); /* shb_userappl */
		put32(q, 0);                       /* opt_endofopt */
		q += 4;
	}
	put32(q, (uint32_t)len);
	w->buflen += len;
	return 0;
}

static int queue_pcap_header(struct pn_writer *w, int linktype, uint32_t snaplen)
{
	uint8_t *p = reserve(w, 24);
	if (!p)
		return w->err;
	put32(p, w->tsresol == 9 ? 0xa1b23c4du : 0xa1b2c3d4u);
	put16(p + 4, 2);
	put16(p + 6, 4);
	put32(p + 8, 0);
	put32(p + 12, 0);
	put32(p + 16, snaplen ? snaplen : PN_SNAPLEN_MAX);
	put32(p + 20, (uint32_t)linktype);
	w->buflen += 24;
	w->pcap_header_done = 1;
	w->pcap_linktype = linktype;
	return 0;
}

static struct pn_writer *open_common(int fd, const struct pn_config *cfg)
{
	struct pn_config def;
	if (!cfg) {
		pn_config_default(&def);
		cfg = &def;
	}
	if ((fd < 0 && fd != -2) || (cfg->tsresol != 6 && cfg->tsresol != 9) ||
	    (cfg->format != PN_FORMAT_PCAPNG && cfg->format != PN_FORMAT_PCAP)) {
		errno = EINVAL;
		return NULL;
	}
	struct pn_writer *w = calloc(1, sizeof(*w));
	if (!w) {
		errno = ENOMEM;
		return NULL;
	}
	w->fd = fd;
	w->flags = cfg->flags;
	w->format = cfg->format;
	w->tsresol = cfg->tsresol;
	w->tap = cfg->tap;
	w->tap_arg = cfg->tap_arg;
	w->bufcap = cfg->bufsize >= 4096 ? cfg->bufsize : PN_DEFAULT_BUF;
	w->buf = malloc(w->bufcap);
	if (!w->buf) {
		free(w);
		errno = ENOMEM;
		return NULL;
	}
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		off_t pos = lseek(fd, 0, SEEK_CUR);
		if (pos >= 0) {
			w->seekable = 1;
			w->base = pos;
		}
	}
	if (w->format == PN_FORMAT_PCAPNG)
		queue_shb(w, cfg->userappl ? cfg->userappl : "podcap");
	return w;
}

struct pn_writer *pn_open_fd(int fd, const struct pn_config *cfg)
{
	return open_common(fd, cfg);
}

struct pn_writer *pn_open_sink(pn_sink_fn sink, void *arg, const struct pn_config *cfg)
{
	if (!sink) {
		errno = EINVAL;
		return NULL;
	}
	/* -2 tells open_common there is no fd; nothing may queue before the sink
	 * is set, and only the SHB is queued, which waits for the first flush. */
	struct pn_writer *w = open_common(-2, cfg);
	if (!w)
		return NULL;
	w->fd = -1;
	w->flags &= ~(unsigned)PN_OWN_FD;
	w->sink = sink;
	w->sink_arg = arg;
	return w;
}

struct pn_writer *pn_open_file(FILE *f, const struct pn_config *cfg)
{
	if (!f) {
		errno = EINVAL;
		return NULL;
	}
	/* Anything the caller printed through stdio must land before our blocks. */
	if (fflush(f) != 0)
		return NULL;
	return open_common(fileno(f), cfg);
}

int pn_add_interface(struct pn_writer *w, int linktype, uint32_t snaplen,
		     const char *name, const char *description, uint32_t *if_id)
{
	if (w->err)
		return w->err;
	if (linktype < 0 || linktype > 0xffff)
		return -EINVAL;
	if (w->nif >= PN_MAX_IFACES)
		return -ENOSPC;
	if (w->format == PN_FORMAT_PCAP) {
		if (!w->pcap_header_done) {
			int rc = queue_pcap_header(w, linktype, snaplen);
			if (rc < 0)
				return rc;
		} else if (w->pcap_linktype != linktype) {
			/* Not sticky: the file already written stays valid. */
			return -EPROTOTYPE;
		}
	}
	if (w->nif == w->ifcap) {
		uint32_t ncap = w->ifcap ? w->ifcap * 2 : 8;
		struct pn_iface *ni = realloc(w->ifaces, ncap * sizeof(*ni));
		if (!ni)
			return -ENOMEM;
		w->ifaces = ni;
		w->ifcap = ncap;
	}
	if (w->format == PN_FORMAT_PCAPNG) {
		size_t nlen, dlen;
		size_t nopt = str_opt_len(name, PN_MAX_OPT_STR, &nlen);
		size_t dopt = str_opt_len(description, PN_MAX_OPT_STR, &dlen);
		size_t len = 20 + nopt + dopt + 8 /* if_tsresol */ + 4 /* end */;
		uint8_t *p = reserve(w, len), *q;
		if (!p)
			return w->err;
		put32(p, PN_BT_IDB);
		put32(p + 4, (uint32_t)len);
		put16(p + 8, (uint16_t)linktype);
		put16(p + 10, 0);
		put32(p + 12, snaplen);
		q = p + 16;
		if (nopt)
			q = put_opt(q, 2, name, nlen);         /* if_name */
		if (dopt)
			q = put_opt(q, 3, description, dlen);  /* if_description */
		q = put_opt(q, 9, &w->tsresol, 1);         /* if_tsresol */
		put32(q, 0);
		put32(q + 4, (uint32_t)len);
		w->buflen += len;
	}
	w->ifaces[w->nif].linktype = linktype;
	w->ifaces[w->nif].snaplen = snaplen;
	*if_id = w->nif++;
	return 0;
}

/* ts is in the file's unit (µs or ns, as tsresol says). */
static int write_packet(struct pn_writer *w, uint32_t if_id, uint64_t ts,
			const uint8_t *data, uint32_t caplen, uint32_t wirelen,
			uint32_t flags, const char *comment, uint64_t *offset)
{
	if (w->err)
		return w->err;
	if (if_id >= w->nif || caplen > PN_PACKET_MAX || (caplen && !data))
		return -EINVAL;
	if (wirelen < caplen)
		wirelen = caplen;
	uint64_t off = w->written + w->buflen;
	if (w->format == PN_FORMAT_PCAP) {
		uint8_t *p = reserve(w, 16 + (size_t)caplen);
		if (!p)
			return w->err;
		off = w->written + w->buflen;
		uint64_t div = w->tsresol == 9 ? 1000000000u : 1000000u;
		put32(p, (uint32_t)(ts / div));
		put32(p + 4, (uint32_t)(ts % div));
		put32(p + 8, caplen);
		put32(p + 12, wirelen);
		memcpy(p + 16, data, caplen);
		w->buflen += 16 + (size_t)caplen;
	} else {
		size_t clen, copt = str_opt_len(comment, PN_MAX_COMMENT, &clen);
		size_t fopt = flags ? 8 : 0; /* epb_flags: code, length, 4 bytes */
		size_t len = PN_EPB_HDR_LEN + pad4(caplen) + (copt || fopt ? copt + fopt + 4 : 0) + 4;
		uint8_t *p = reserve(w, len), *q;
		if (!p)
			return w->err;
		off = w->written + w->buflen;
		put32(p, PN_BT_EPB);
		put32(p + 4, (uint32_t)len);
		put32(p + 8, if_id);
		put32(p + 12, (uint32_t)(ts >> 32));
		put32(p + 16, (uint32_t)ts);
		put32(p + 20, caplen);
		put32(p + 24, wirelen);
		q = p + PN_EPB_HDR_LEN;
		memcpy(q, data, caplen);
		memset(q + caplen, 0, pad4(caplen) - caplen);
		q += pad4(caplen);
		if (copt)
			q = put_opt(q, 1, comment, clen); /* opt_comment */
		if (fopt) {
			uint8_t fl[4];
			put32(fl, flags);
			q = put_opt(q, 2, fl, 4);         /* epb_flags */
		}
		if (copt || fopt) {
			put32(q, 0);                      /* opt_endofopt */
			q += 4;
		}
		put32(q, (uint32_t)len);
		w->buflen += len;
	}
	if (offset)
		*offset = off;
	return 0;
}

int pn_write_packet(struct pn_writer *w, uint32_t if_id, uint64_t ts_ns,
		    const uint8_t *data, uint32_t caplen, uint32_t wirelen,
		    uint32_t flags, const char *comment, uint64_t *offset)
{
	return write_packet(w, if_id, w->tsresol == 9 ? ts_ns : ts_ns / 1000, data, caplen,
			    wirelen, flags, comment, offset);
}

int pn_write_packet_us(struct pn_writer *w, uint32_t if_id, uint64_t ts_us,
		       const uint8_t *data, uint32_t caplen, uint32_t wirelen,
		       uint32_t flags, const char *comment, uint64_t *offset)
{
	/* Saturate instead of wrapping: ns since the epoch end in the year 2554. */
	uint64_t ts = w->tsresol == 6 ? ts_us : ts_us > UINT64_MAX / 1000 ? UINT64_MAX : ts_us * 1000;
	return write_packet(w, if_id, ts, data, caplen, wirelen, flags, comment, offset);
}

int pn_write_stats(struct pn_writer *w, uint32_t if_id, uint64_t ts_ns,
		   uint64_t received, uint64_t dropped)
{
	if (w->err)
		return w->err;
	if (if_id >= w->nif)
		return -EINVAL;
	if (w->format != PN_FORMAT_PCAPNG)
		return 0;
	uint64_t ts = w->tsresol == 9 ? ts_ns : ts_ns / 1000;
	size_t len = 20 + (received != UINT64_MAX ? 12 : 0) +
		     (dropped != UINT64_MAX ? 12 : 0) + 4 + 4;
	uint8_t *p = reserve(w, len), *q;
	if (!p)
		return w->err;
	put32(p, PN_BT_ISB);
	put32(p + 4, (uint32_t)len);
	put32(p + 8, if_id);
	put32(p + 12, (uint32_t)(ts >> 32));
	put32(p + 16, (uint32_t)ts);
	q = p + 20;
	if (received != UINT64_MAX)
		q = put_opt(q, 4, &received, 8); /* isb_ifrecv */
	if (dropped != UINT64_MAX)
		q = put_opt(q, 5, &dropped, 8);  /* isb_ifdrop */
	put32(q, 0);
	put32(q + 4, (uint32_t)len);
	w->buflen += len;
	return 0;
}

uint64_t pn_offset(const struct pn_writer *w) { return w->written + w->buflen; }
uint64_t pn_written(const struct pn_writer *w) { return w->written; }
uint32_t pn_interface_count(const struct pn_writer *w) { return w->nif; }
const char *pn_errmsg(const struct pn_writer *w) { return w->errmsg; }

int pn_close(struct pn_writer *w)
{
	if (!w)
		return 0;
	/* A pcap file with no interface still needs its header to be a valid file. */
	if (!w->err && w->format == PN_FORMAT_PCAP && !w->pcap_header_done)
		queue_pcap_header(w, 1 /* Ethernet */, 0);
	int rc = pn_flush(w);
	if ((w->flags & PN_OWN_FD) && close(w->fd) < 0 && rc == 0)
		rc = -errno;
	free(w->ifaces);
	free(w->buf);
	free(w);
	return rc;
}

void pn_discard(struct pn_writer *w)
{
	if (!w)
		return;
	if (w->flags & PN_OWN_FD)
		close(w->fd);
	free(w->ifaces);
	free(w->buf);
	free(w);
}
