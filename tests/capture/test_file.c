/* capture/file.c against libpcap: our mmap reader of classic pcap files must hand
 * out exactly what libpcap reads (bytes, lengths, times) and stop with an error
 * where libpcap does, after the same number of packets.
 *
 *   test_file [CORPUS_PCAP_DIR]
 *
 * Crafted files (written to a temporary directory, removed at the end): both byte orders, micro- and nanosecond
 * magics, a cut inside a record header, a cut inside packet data, a 300 KiB caplen,
 * an empty-bodied file (header only), LINKTYPE 12.  Then every classic pcap file of
 * the corpus directory, when given and present.
 */
#include <dirent.h>
#include <errno.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture.h"

static int failures, checks;

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		checks++;                                                  \
		if (!(cond)) {                                             \
			failures++;                                        \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                      \
			fputc('\n', stderr);                               \
		}                                                          \
	} while (0)

/* Compares one file read both ways.  want_err: 1 if the file must end in an error.
 * Returns the number of packets, or -1 when it could not be compared. */
static long compare(const char *path, int want_err, const char *err_substr)
{
	char perr[PCAP_ERRBUF_SIZE], err[512];
	pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_MICRO, perr);
	struct cap_source *s = NULL;
	int rc = cap_open_file(path, &s, err, sizeof(err));
	if (!p) {
		CHECK(rc < 0, "%s: libpcap refuses it (%s) but cap_open_file accepts it", path, perr);
		if (s)
			cap_close(s);
		return -1;
	}
	CHECK(rc == 0, "%s: cap_open_file: %s", path, err);
	if (rc < 0) {
		pcap_close(p);
		return -1;
	}
	long n = 0;
	int prc, crc;
	for (;;) {
		struct pcap_pkthdr *h;
		const u_char *d;
		struct cap_packet pk;
		prc = pcap_next_ex(p, &h, &d);
		crc = cap_next(s, &pk);
		if (prc != 1 || crc != 1)
			break;
		n++;
		uint64_t sec = h->ts.tv_sec < 0 ? (uint64_t)(uint32_t)h->ts.tv_sec : (uint64_t)h->ts.tv_sec;
		uint64_t ts = sec * 1000000u + (uint64_t)(uint32_t)h->ts.tv_usec;
		int clamped;
		uint32_t wire = cap_wirelen(h->caplen, h->len, &clamped);
		if (pk.caplen != h->caplen || pk.wirelen != wire || pk.ts_us != ts ||
		    memcmp(pk.data, d, h->caplen) != 0) {
			CHECK(0, "%s: packet %ld differs (caplen %u/%u wire %u/%u ts %llu/%llu)", path, n,
			      pk.caplen, h->caplen, pk.wirelen, wire, (unsigned long long)pk.ts_us,
			      (unsigned long long)ts);
			break;
		}
	}
	CHECK((prc == 1) == (crc == 1), "%s: after %ld packets libpcap says %d, cap_next %d", path, n, prc, crc);
	int lib_err = prc == PCAP_ERROR, our_err = crc < 0;
	CHECK(lib_err == our_err, "%s: libpcap %s, cap_next %s (%s)", path, lib_err ? "error" : "end",
	      our_err ? "error" : "end", our_err ? cap_error(s) : "");
	CHECK(our_err == want_err || want_err < 0, "%s: expected %s, got %s", path,
	      want_err ? "an error" : "a clean end", our_err ? cap_error(s) : "a clean end");
	if (our_err && err_substr)
		CHECK(strstr(cap_error(s), err_substr) != NULL, "%s: message '%s' lacks '%s'", path,
		      cap_error(s), err_substr);
	pcap_close(p);
	cap_close(s);
	return n;
}

static void put32(FILE *f, uint32_t v, int swap)
{
	if (swap)
		v = __builtin_bswap32(v);
	fwrite(&v, 4, 1, f);
}

/* Writes a classic pcap with npk packets of size len (bytes i+k), then cut bytes
 * removed from the end.  Returns the path. */
static const char *craft(const char *dir, const char *name, uint32_t magic, int swap, uint32_t linktype,
			 int npk, uint32_t len, uint32_t cap_override, long cut)
{
	static char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		exit(1);
	}
	put32(f, magic, swap);
	uint16_t v[2] = {2, 4};
	if (swap) {
		v[0] = __builtin_bswap16(v[0]);
		v[1] = __builtin_bswap16(v[1]);
	}
	fwrite(v, 2, 2, f);
	put32(f, 0, swap);
	put32(f, 0, swap);
	put32(f, 65535, swap);
	put32(f, linktype, swap);
	for (int k = 0; k < npk; k++) {
		uint32_t caplen = cap_override ? cap_override : len;
		put32(f, 1700000000u + (uint32_t)k, swap);
		put32(f, (magic == 0xa1b23c4d ? 123456789u : 123456u) + (uint32_t)k, swap);
		put32(f, caplen, swap);
		put32(f, len + 10, swap);
		for (uint32_t i = 0; i < caplen; i++)
			fputc((int)((i + (uint32_t)k) & 0xff), f);
	}
	long size = ftell(f);
	fclose(f);
	if (cut && truncate(path, size - cut) != 0) {
		perror("truncate");
		exit(1);
	}
	return path;
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/podcap-test-file-XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}

	CHECK(compare(craft(dir, "le.pcap", 0xa1b2c3d4, 0, 1, 50, 60, 0, 0), 0, NULL) == 50, "le");
	CHECK(compare(craft(dir, "be.pcap", 0xa1b2c3d4, 1, 1, 50, 61, 0, 0), 0, NULL) == 50, "be");
	CHECK(compare(craft(dir, "ns.pcap", 0xa1b23c4d, 0, 1, 20, 70, 0, 0), 0, NULL) == 20, "ns");
	CHECK(compare(craft(dir, "ns-be.pcap", 0xa1b23c4d, 1, 1, 20, 70, 0, 0), 0, NULL) == 20, "ns-be");
	CHECK(compare(craft(dir, "empty.pcap", 0xa1b2c3d4, 0, 1, 0, 60, 0, 0), 0, NULL) == 0, "header only");
	CHECK(compare(craft(dir, "cut-data.pcap", 0xa1b2c3d4, 0, 1, 10, 100, 0, 30), 1,
		      "truncated dump file") == 9, "cut inside data");
	CHECK(compare(craft(dir, "cut-hdr.pcap", 0xa1b2c3d4, 0, 1, 10, 100, 0, 100 + 10), 1,
		      "truncated dump file") == 9, "cut inside a record header");
	CHECK(compare(craft(dir, "huge.pcap", 0xa1b2c3d4, 0, 1, 2, 60, 300 * 1024, 0), 1,
		      "bigger than snaplen") == 0, "300 KiB caplen");

	/* a damaged nanosecond field >= 2^31: the same (odd) time as libpcap gives */
	{
		const char *ns = craft(dir, "ns-big.pcap", 0xa1b23c4d, 0, 1, 2, 60, 0, 0);
		FILE *f = fopen(ns, "r+b");
		uint32_t frac = 0xF0000000u;
		if (f && fseek(f, 24 + 4, SEEK_SET) == 0)
			fwrite(&frac, 4, 1, f);
		if (f)
			fclose(f);
		CHECK(compare(ns, 0, NULL) == 2, "ns >= 2^31");
	}
	/* a record longer than the header's snaplen */
	CHECK(compare(craft(dir, "over-snap.pcap", 0xa1b2c3d4, 0, 1, 3, 100, 70000, 0), -1, NULL) >= 0, "over snaplen");

	/* A record claiming a 4 GB wire length (issue 17: a 276 MB file reported 41 GB):
	 * cut to caplen + CAP_MAX_WIRE_EXCESS and counted, on the mapped path (2.4)
	 * and through libpcap (2.3); a plausible claim passes as it is. */
	for (int minor = 4; minor >= 3; minor--) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/wire-2.%d.pcap", dir, minor);
		FILE *f = fopen(path, "wb");
		uint32_t hdr[6] = {0xa1b2c3d4, 2u | (uint32_t)minor << 16, 0, 0, 65535, 1};
		uint32_t recs[2][4] = {{1700000000u, 0, 60, 0xffffffffu}, {1700000001u, 0, 60, 60 + CAP_MAX_WIRE_EXCESS}};
		uint8_t body[60] = {0};
		if (!f)
			continue;
		fwrite(hdr, 4, 6, f);
		for (int r = 0; r < 2; r++) {
			fwrite(recs[r], 4, 4, f);
			fwrite(body, 1, sizeof(body), f);
		}
		fclose(f);
		struct cap_source *s;
		struct cap_packet pk;
		struct cap_stats cs;
		char err[256];
		CHECK(cap_open_file(path, &s, err, sizeof(err)) == 0, "open %s: %s", path, err);
		CHECK(cap_next(s, &pk) == 1 && pk.caplen == 60 && pk.wirelen == 60 + CAP_MAX_WIRE_EXCESS,
		      "2.%d: 4 GB wire length read as %u", minor, pk.wirelen);
		CHECK(cap_next(s, &pk) == 1 && pk.wirelen == 60 + CAP_MAX_WIRE_EXCESS, "2.%d: 256 KiB + 60 read as %u",
		      minor, pk.wirelen);
		cap_stats(s, &cs);
		CHECK(cs.wirelen_clamped == 1, "2.%d: %llu records counted as clamped, want 1", minor,
		      (unsigned long long)cs.wirelen_clamped);
		cap_close(s);
		unlink(path);
	}

	/* stable is what lets the pipeline skip a copy: set for a mapped file only */
	{
		struct cap_source *s;
		struct cap_packet pk;
		char err[256];
		const char *le = craft(dir, "raw12.pcap", 0xa1b2c3d4, 0, 12, 3, 40, 0, 0);
		CHECK(cap_open_file(le, &s, err, sizeof(err)) == 0, "open raw12: %s", err);
		CHECK(cap_linktype(s) == 101, "LINKTYPE 12 reads as %d, want 101 (raw IP)", cap_linktype(s));
		CHECK(cap_next(s, &pk) == 1 && pk.stable, "mapped packet must be stable");
		const uint8_t *first = pk.data;
		uint8_t copy[40];
		memcpy(copy, first, sizeof(copy));
		while (cap_next(s, &pk) == 1)
			;
		CHECK(!memcmp(first, copy, sizeof(copy)), "stable bytes changed after later packets");
		struct cap_stats cs;
		cap_stats(s, &cs);
		CHECK(cs.bytes_read == cs.file_size && cs.received == 3, "progress %llu of %llu, %llu packets",
		      (unsigned long long)cs.bytes_read, (unsigned long long)cs.file_size,
		      (unsigned long long)cs.received);
		cap_close(s);
	}

	/* A mapped file cut short by someone else while we read it: the pages past the
	 * new end fault; cap_open_file's handler must say so and exit 1, not crash. */
	{
		const char *big = craft(dir, "shrinks.pcap", 0xa1b2c3d4, 0, 1, 4000, 1000, 0, 0);
		int fds[2];
		if (pipe(fds) == 0) {
			pid_t pid = fork();
			if (pid == 0) {
				dup2(fds[1], STDERR_FILENO);
				struct cap_source *s;
				struct cap_packet pk;
				char err[256];
				if (cap_open_file(big, &s, err, sizeof(err)) < 0)
					_exit(3);
				if (cap_next(s, &pk) != 1 || truncate(big, 4096) != 0)
					_exit(4);
				while (cap_next(s, &pk) == 1)
					; /* faults on a page past the new end */
				_exit(5);
			}
			close(fds[1]);
			char msg[512] = "";
			ssize_t n = read(fds[0], msg, sizeof(msg) - 1);
			msg[n > 0 ? n : 0] = 0;
			close(fds[0]);
			int st = 0;
			waitpid(pid, &st, 0);
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "shrunk file: child status 0x%x (want exit 1)", st);
			CHECK(strstr(msg, "truncated by another process") != NULL, "shrunk file: message '%s'", msg);
		}
	}

	long files = 0, packets = 0;
	if (argc > 1) {
		DIR *d = opendir(argv[1]);
		if (!d) {
			printf("corpus %s absent: corpus comparison skipped\n", argv[1]);
		} else {
			struct dirent *e;
			while ((e = readdir(d))) {
				char path[4096];
				uint32_t magic = 0;
				snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
				FILE *f = fopen(path, "rb");
				if (!f)
					continue;
				size_t got = fread(&magic, 4, 1, f);
				fclose(f);
				if (got != 1 || (magic != 0xa1b2c3d4 && magic != 0xd4c3b2a1 && magic != 0xa1b23c4d &&
						 magic != 0x4d3cb2a1))
					continue; /* pcapng and others go through libpcap anyway */
				long n = compare(path, -1, NULL);
				if (n >= 0) {
					files++;
					packets += n;
				}
			}
			closedir(d);
			printf("corpus: %ld classic pcap files, %ld packets read identically by libpcap and cap_next\n",
			       files, packets);
		}
	}
	const char *made[] = {"le", "be", "ns", "ns-be", "empty", "cut-data", "cut-hdr", "huge", "raw12", "over-snap", "shrinks", "ns-big"};
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s.pcap", dir, made[i]);
		unlink(path);
	}
	rmdir(dir);
	printf("%d checks, %d failures\n", checks, failures);
	return failures ? 1 : 0;
}
