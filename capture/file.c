/* Capture files: classic pcap from a regular file is read through mmap by us,
 * everything else (pcapng, pipes, the rare pcap variants) through libpcap.
 *
 * Why our own classic-pcap reader: through libpcap each packet is copied twice
 * (kernel → stdio buffer → libpcap buffer), ~0.15 s of a 276 MB file, and the bytes
 * live only until the next packet, so the pipeline must copy them a third time to
 * hand them to a flow worker.  A mapping costs no copy and its bytes stay valid
 * until cap_close() (cap_packet.stable), so workers read them in place.  The
 * format is 24 + 16 bytes of header; every length is checked against what is
 * mapped before it is used, and the messages match libpcap's.
 *
 * For libpcap we add what it leaves out: a check of the file header before libpcap
 * sees it (a 2 GB snaplen is a sign of a corrupt or hostile file and we refuse it
 * with our own words), and progress figures for big files.
 *
 * A mapped file that another process truncates while we read it would fault
 * (SIGBUS) on the vanished pages: cap_open_file installs a handler that says so
 * and exits 1 — the flow database is SQLite WAL, so the uncommitted tail is lost
 * and nothing else.
 */
#include <errno.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture.h"

#define CAP_FILE_IOBUF (1u << 20)
/* Mapped pages behind the reader are handed back (MADV_DONTNEED), else a whole
 * file would count in our resident size.  Consumers keep what they hold within
 * CAP_STABLE_WINDOW of the newest packet (capture.h), so only pages twice that far
 * behind are dropped, every CAP_MAP_STEP; a consumer that lags further faults its
 * page back in from the page cache (correct, only slower; the page then stays). */
#define CAP_MAP_STEP (1u << 20)
#define CAP_MAP_LAG (2 * (size_t)CAP_STABLE_WINDOW)

struct cap_source {
	pcap_t *pcap;
	FILE *fp; /* owned by pcap once pcap_fopen_offline succeeds */
	char *iobuf; /* stdio buffer of fp; freed after the FILE is closed */
	/* mapped classic pcap (pcap == NULL) */
	const uint8_t *map;
	size_t map_len, pos;
	size_t next_drop; /* offset at which the next MADV_DONTNEED step runs */
	size_t dropped;   /* pages below this offset were handed back */
	size_t page;      /* the system's page size */
	int swap, nsec;
	uint32_t snaplen; /* longer records are cut to this, as libpcap does */
	int linktype;
	uint64_t received;
	uint64_t file_size;
	uint64_t wirelen_clamped;
	char err[PCAP_ERRBUF_SIZE + 128];
};

/* ---- SIGBUS on a mapped file that shrank --------------------------------- */

/* The mappings the handler vouches for.  Slots are claimed and released with
 * atomics; the handler only reads them. */
#define CAP_MAX_MAPS 64
static struct {
	uintptr_t start, end;
} bus_maps[CAP_MAX_MAPS];
static int bus_installed; /* atomic */

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	uintptr_t a = (uintptr_t)si->si_addr;
	for (int i = 0; i < CAP_MAX_MAPS; i++) {
		uintptr_t st = __atomic_load_n(&bus_maps[i].start, __ATOMIC_ACQUIRE);
		if (st && a >= st && a < __atomic_load_n(&bus_maps[i].end, __ATOMIC_ACQUIRE)) {
			static const char msg[] = "podcap: a capture file could not be read any more "
						  "(truncated by another process while mapped, or an I/O "
						  "error); stopping\n";
			ssize_t r = write(STDERR_FILENO, msg, sizeof(msg) - 1);
			(void)r;
			_exit(1);
		}
	}
	/* not ours: what would have happened without us (returning re-faults) */
	signal(sig, SIG_DFL);
}

/* Registers [m, m+len) with the SIGBUS handler (installed on first use).  Returns
 * 0, or -1 when no slot is free (the file is then read through libpcap). */
static int bus_register(const void *m, size_t len)
{
	for (int i = 0; i < CAP_MAX_MAPS; i++) {
		uintptr_t zero = 0;
		if (__atomic_compare_exchange_n(&bus_maps[i].start, &zero, (uintptr_t)1, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE)) {
			__atomic_store_n(&bus_maps[i].end, (uintptr_t)m + len, __ATOMIC_RELEASE);
			__atomic_store_n(&bus_maps[i].start, (uintptr_t)m, __ATOMIC_RELEASE);
			if (!__atomic_exchange_n(&bus_installed, 1, __ATOMIC_ACQ_REL)) {
				struct sigaction sa;
				memset(&sa, 0, sizeof(sa));
				sa.sa_sigaction = on_sigbus;
				sa.sa_flags = SA_SIGINFO;
				sigemptyset(&sa.sa_mask);
				sigaction(SIGBUS, &sa, NULL);
			}
			return 0;
		}
	}
	return -1;
}

static void bus_unregister(const void *m)
{
	for (int i = 0; i < CAP_MAX_MAPS; i++)
		if (__atomic_load_n(&bus_maps[i].start, __ATOMIC_ACQUIRE) == (uintptr_t)m) {
			__atomic_store_n(&bus_maps[i].end, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&bus_maps[i].start, 0, __ATOMIC_RELEASE);
			return;
		}
}

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

/* Maps a classic pcap file whose header check_header() accepted.  Returns 1 when
 * mapped, 0 to let libpcap read it (a variant we do not parse, or mmap refused). */
static int map_pcap(struct cap_source *s)
{
	uint8_t h[24];
	if (s->file_size < 24 || fread(h, 1, 24, s->fp) != 24 || fseek(s->fp, 0, SEEK_SET) != 0)
		return 0;
	uint32_t magic = rd32(h, 0);
	switch (magic) {
	case 0xa1b2c3d4: s->swap = 0; s->nsec = 0; break;
	case 0xa1b23c4d: s->swap = 0; s->nsec = 1; break;
	case 0xd4c3b2a1: s->swap = 1; s->nsec = 0; break;
	case 0x4d3cb2a1: s->swap = 1; s->nsec = 1; break;
	default: return 0;
	}
	/* Versions before 2.4 may have caplen and len swapped, which libpcap
	 * untangles by heuristics; such files are rare enough to leave to it. */
	uint16_t major = (uint16_t)(h[4] | h[5] << 8), minor = (uint16_t)(h[6] | h[7] << 8);
	if (s->swap) {
		major = __builtin_bswap16(major);
		minor = __builtin_bswap16(minor);
	}
	if (major != 2 || minor != 4)
		return 0;
	if (s->file_size > SIZE_MAX)
		return 0;
	/* D-Bus, EBHSCR and USBPcap allow records above 256 KiB in libpcap: leave
	 * them to it rather than refuse what it reads */
	int lt = (int)(rd32(h + 20, s->swap) & 0xffff);
	if (lt == 231 || lt == 279 || lt == 249)
		return 0;
	void *m = mmap(NULL, (size_t)s->file_size, PROT_READ, MAP_PRIVATE, fileno(s->fp), 0);
	if (m == MAP_FAILED)
		return 0;
	if (bus_register(m, (size_t)s->file_size) < 0) {
		munmap(m, (size_t)s->file_size);
		return 0;
	}
	/* one pass front to back: let the kernel read ahead aggressively */
	madvise(m, (size_t)s->file_size, MADV_SEQUENTIAL);
	long pg = sysconf(_SC_PAGESIZE);
	s->page = pg > 0 ? (size_t)pg : 4096;
	s->map = m;
	s->map_len = (size_t)s->file_size;
	s->pos = 24;
	/* the link type is the low 16 bits; the rest is FCS information */
	s->linktype = (int)(rd32(h + 20, s->swap) & 0xffff);
	s->snaplen = rd32(h + 16, s->swap);
	if (s->snaplen == 0 || s->snaplen > CAP_MAX_SNAPLEN)
		s->snaplen = CAP_MAX_SNAPLEN;
	if (s->linktype == DLT_RAW) /* read as LINKTYPE_RAW, as on the libpcap path */
		s->linktype = 101;
	fclose(s->fp);
	s->fp = NULL;
	return 1;
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
		if (map_pcap(s)) {
			free(s->iobuf);
			s->iobuf = NULL;
			*out = s;
			return 0;
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

static int map_next(struct cap_source *s, struct cap_packet *pkt)
{
	size_t left = s->map_len - s->pos;
	if (left == 0)
		return 0;
	if (left < 16) {
		snprintf(s->err, sizeof(s->err), "truncated dump file; tried to read 16 header bytes, only got %zu "
			 "(after %llu packets)", left, (unsigned long long)s->received);
		return -EIO;
	}
	const uint8_t *h = s->map + s->pos;
	uint32_t sec = rd32(h, s->swap), frac = rd32(h + 4, s->swap);
	uint32_t caplen = rd32(h + 8, s->swap), len = rd32(h + 12, s->swap);
	if (caplen > CAP_MAX_SNAPLEN) {
		snprintf(s->err, sizeof(s->err), "invalid packet capture length %u, bigger than snaplen of %u "
			 "(after %llu packets)", caplen, CAP_MAX_SNAPLEN, (unsigned long long)s->received);
		return -EIO;
	}
	if (left - 16 < caplen) {
		snprintf(s->err, sizeof(s->err), "truncated dump file; tried to read %u captured bytes, only got %zu "
			 "(after %llu packets)", caplen, left - 16, (unsigned long long)s->received);
		return -EIO;
	}
	pkt->data = h + 16;
	pkt->caplen = caplen > s->snaplen ? s->snaplen : caplen;
	/* bounded by what is handed out, as on the libpcap path below */
	int clamped;
	pkt->wirelen = cap_wirelen(pkt->caplen, len, &clamped);
	s->wirelen_clamped += (uint64_t)clamped;
	/* seconds are unsigned 32-bit; sub-second part as libpcap gives it (a nanosecond
	 * file is read at microsecond precision, truncated) */
	/* A sub-second field >= 1 s only occurs in damaged files; we do what libpcap
	 * does with it (a signed 32-bit field, divided by 1000 for nanoseconds) so
	 * both paths give the same time. */
	uint32_t sub = s->nsec ? (uint32_t)((int32_t)frac / 1000) : frac;
	pkt->ts_us = (uint64_t)sec * 1000000u + sub;
	pkt->linktype = s->linktype;
	pkt->ifindex = 0;
	pkt->tag = 0;
	pkt->dir = CAP_DIR_UNKNOWN;
	pkt->stable = 1;
	s->pos += 16 + (size_t)caplen;
	if (s->pos >= s->next_drop) {
		s->next_drop = s->pos + CAP_MAP_STEP;
		if (s->pos > CAP_MAP_LAG) {
			size_t end = (s->pos - CAP_MAP_LAG) & ~(s->page - 1);
			if (end > s->dropped) {
				madvise((void *)(s->map + s->dropped), end - s->dropped, MADV_DONTNEED);
				s->dropped = end;
			}
		}
	}
	s->received++;
	return 1;
}

int cap_next(struct cap_source *s, struct cap_packet *pkt)
{
	if (s->map)
		return map_next(s, pkt);
	struct pcap_pkthdr *h;
	const u_char *data;
	int rc = pcap_next_ex(s->pcap, &h, &data);
	if (rc == 1) {
		pkt->data = data;
		pkt->caplen = h->caplen;
		int clamped;
		pkt->wirelen = cap_wirelen(h->caplen, h->len, &clamped);
		s->wirelen_clamped += (uint64_t)clamped;
		/* Classic pcap seconds are unsigned 32-bit; libpcap sign-extends them
		 * into time_t, which turns times after 2038 negative. */
		uint64_t sec = h->ts.tv_sec < 0 ? (uint64_t)(uint32_t)h->ts.tv_sec : (uint64_t)h->ts.tv_sec;
		pkt->ts_us = sec * 1000000u + (uint64_t)(uint32_t)h->ts.tv_usec;
		pkt->linktype = s->linktype;
		pkt->ifindex = 0;
		pkt->tag = 0;
		pkt->dir = CAP_DIR_UNKNOWN;
		pkt->stable = 0;
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
	out->wirelen_clamped = s->wirelen_clamped;
	if (s->map) {
		out->bytes_read = s->pos;
		return;
	}
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
	if (s->map) {
		munmap((void *)s->map, s->map_len);
		bus_unregister(s->map);
	}
	if (s->fp && s->fp != stdin)
		fclose(s->fp);
	free(s->iobuf);
	free(s);
}
