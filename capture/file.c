/* Capture files through libpcap (pcap and pcapng).
 *
 * libpcap does the parsing; we add what it leaves out: a check of the file header
 * before libpcap sees it (libpcap silently clamps an absurd snaplen and reports a
 * non-capture file as "unknown file format", which is fine, but a 2 GB snaplen is
 * a sign of a corrupt or hostile file and we refuse it with our own words), and
 * progress figures for big files.
 */
#include <errno.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "capture.h"

#define CAP_FILE_IOBUF (1u << 20)

struct cap_source {
	pcap_t *pcap;
	FILE *fp; /* owned by pcap once pcap_fopen_offline succeeds */
	char *iobuf; /* stdio buffer of fp; freed after the FILE is closed */
	int linktype;
	uint64_t received;
	uint64_t file_size;
	char err[PCAP_ERRBUF_SIZE + 128];
};

static uint32_t rd32(const uint8_t *b, int swap)
{
	uint32_t v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	return swap ? __builtin_bswap32(v) : v;
}

/* Looks at the first bytes: classic pcap (4 magics) or pcapng (SHB).  Returns 0 or
 * -EINVAL with a message.  The stream position is restored. */
static int check_header(FILE *fp, const char *path, char *err, size_t errlen)
{
	uint8_t h[24];
	size_t n = fread(h, 1, sizeof(h), fp);
	if (fseek(fp, 0, SEEK_SET) != 0) {
		snprintf(err, errlen, "%s: cannot seek: %s", path, strerror(errno));
		return -errno;
	}
	if (n < 4) {
		snprintf(err, errlen, "%s: not a capture file (%zu bytes)", path, n);
		return -EINVAL;
	}
	uint32_t magic = rd32(h, 0);
	if (magic == 0x0a0d0d0a)
		return 0; /* pcapng: libpcap checks block lengths; per-block snaplen is per IDB */
	int swap;
	if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d)
		swap = 0;
	else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1)
		swap = 1;
	else {
		snprintf(err, errlen, "%s: not a pcap or pcapng file (magic 0x%08x)", path, magic);
		return -EINVAL;
	}
	if (n < 24) {
		snprintf(err, errlen, "%s: truncated pcap file header (%zu of 24 bytes)", path, n);
		return -EINVAL;
	}
	uint32_t snaplen = rd32(h + 16, swap);
	if (snaplen > CAP_MAX_SNAPLEN) {
		snprintf(err, errlen, "%s: pcap header snaplen %u is larger than %u: corrupt or hostile file",
			 path, snaplen, CAP_MAX_SNAPLEN);
		return -EINVAL;
	}
	return 0;
}

int cap_open_file(const char *path, struct cap_source **out, char *errbuf, size_t errlen)
{
	struct cap_source *s = calloc(1, sizeof(*s));
	char perr[PCAP_ERRBUF_SIZE] = "";
	int rc;

	*out = NULL;
	if (!s) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!strcmp(path, "-")) {
		/* A pipe cannot be rewound for our header check; libpcap's own checks apply. */
		s->fp = stdin;
	} else {
		struct stat st;
		s->fp = fopen(path, "rb");
		if (!s->fp) {
			rc = -errno;
			snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if (fstat(fileno(s->fp), &st) == 0) {
			if (S_ISDIR(st.st_mode)) {
				rc = -EISDIR;
				snprintf(errbuf, errlen, "%s: is a directory", path);
				goto fail;
			}
			if (S_ISREG(st.st_mode))
				s->file_size = (uint64_t)st.st_size;
		}
		/* libpcap reads through stdio; the default 4 KiB buffer costs a read()
		 * per 4 KiB, a big one cuts syscalls 256-fold.  glibc ignores the size
		 * unless we hand it the buffer. */
		s->iobuf = malloc(CAP_FILE_IOBUF);
		if (s->iobuf)
			setvbuf(s->fp, s->iobuf, _IOFBF, CAP_FILE_IOBUF);
		if (s->file_size && (rc = check_header(s->fp, path, errbuf, errlen)) < 0)
			goto fail;
		if (!s->file_size) {
			rc = -EINVAL;
			snprintf(errbuf, errlen, "%s: empty file, not a capture", path);
			goto fail;
		}
	}
	s->pcap = pcap_fopen_offline_with_tstamp_precision(s->fp, PCAP_TSTAMP_PRECISION_MICRO, perr);
	if (!s->pcap) {
		rc = -EINVAL;
		snprintf(errbuf, errlen, "%s: %s", path, perr);
		goto fail;
	}
	s->fp = NULL; /* pcap_close() closes it now */
	s->linktype = pcap_datalink(s->pcap);
	/* pcap_datalink() reports DLT values; map the Linux DLT_RAW alias to the file's
	 * LINKTYPE so callers see one number per link type. */
	if (s->linktype == DLT_RAW)
		s->linktype = 101;
	*out = s;
	return 0;
fail:
	if (s->fp && s->fp != stdin)
		fclose(s->fp);
	free(s->iobuf);
	free(s);
	return rc;
}

int cap_next(struct cap_source *s, struct cap_packet *pkt)
{
	struct pcap_pkthdr *h;
	const u_char *data;
	int rc = pcap_next_ex(s->pcap, &h, &data);
	if (rc == 1) {
		pkt->data = data;
		pkt->caplen = h->caplen;
		pkt->wirelen = h->len < h->caplen ? h->caplen : h->len;
		/* Classic pcap seconds are unsigned 32-bit; libpcap sign-extends them
		 * into time_t, which turns times after 2038 negative. */
		uint64_t sec = h->ts.tv_sec < 0 ? (uint64_t)(uint32_t)h->ts.tv_sec : (uint64_t)h->ts.tv_sec;
		pkt->ts_us = sec * 1000000u + (uint64_t)h->ts.tv_usec;
		pkt->linktype = s->linktype;
		pkt->ifindex = 0;
		s->received++;
		return 1;
	}
	if (rc == PCAP_ERROR_BREAK)
		return 0;
	snprintf(s->err, sizeof(s->err), "%s (after %llu packets)", pcap_geterr(s->pcap),
		 (unsigned long long)s->received);
	return -EIO;
}

const char *cap_error(const struct cap_source *s) { return s->err; }
int cap_linktype(const struct cap_source *s) { return s->linktype; }

const char *cap_ifname(const struct cap_source *s, uint32_t ifindex)
{
	(void)s; (void)ifindex;
	return NULL; /* libpcap does not expose pcapng interface names */
}

void cap_stats(const struct cap_source *s, struct cap_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->received = s->received;
	out->file_size = s->file_size;
	FILE *fp = s->pcap ? pcap_file(s->pcap) : NULL;
	if (fp) {
		long pos = ftell(fp);
		if (pos > 0)
			out->bytes_read = (uint64_t)pos;
	}
}

void cap_close(struct cap_source *s)
{
	if (!s)
		return;
	if (s->pcap)
		pcap_close(s->pcap);
	free(s->iobuf);
	free(s);
}
