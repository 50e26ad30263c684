/* pcapng writer tests.  With an output directory argument the test also leaves
 * files there for tshark_check.sh to read back with Wireshark's readers. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pcapng.h"

static int failures;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: CHECK failed: %s\n", \
	__FILE__, __LINE__, #c); failures++; } } while (0)

static uint8_t frame[1600];

static void fill_frame(void)
{
	for (size_t i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)(i * 7 + 3);
}

/* Walks a pcapng file's blocks; returns the number of EPBs, -1 when malformed. */
static long walk_pcapng(const char *path, long *idbs)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	uint8_t *buf = malloc(1 << 20);
	size_t len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	long epbs = 0;
	*idbs = 0;
	size_t off = 0;
	while (off < len) {
		uint32_t type, blen, tail;
		if (len - off < 12) {
			epbs = -1;
			break;
		}
		memcpy(&type, buf + off, 4);
		memcpy(&blen, buf + off + 4, 4);
		if (blen < 12 || blen % 4 || blen > len - off) {
			epbs = -1;
			break;
		}
		memcpy(&tail, buf + off + blen - 4, 4);
		if (tail != blen) {
			epbs = -1;
			break;
		}
		if (off == 0 && type != PN_BT_SHB) {
			epbs = -1;
			break;
		}
		if (type == PN_BT_EPB)
			epbs++;
		if (type == PN_BT_IDB)
			(*idbs)++;
		off += blen;
	}
	free(buf);
	return epbs;
}

/* Writes the sample file tshark_check.sh expects (see its EXPECTED text). */
static void write_sample(const char *path, uint8_t tsresol, enum pn_format fmt)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	struct pn_config cfg;
	pn_config_default(&cfg);
	cfg.tsresol = tsresol;
	cfg.format = fmt;
	cfg.flags = PN_OWN_FD;
	cfg.bufsize = 4096; /* small: forces flushes mid-file */
	struct pn_writer *w = pn_open_fd(fd, &cfg);
	CHECK(w != NULL);
	uint32_t a, b;
	CHECK(pn_add_interface(w, 1, 0, "veth1234", "default/frontend-7d9", &a) == 0);
	CHECK(pn_add_interface(w, 1, 128, "cni0", NULL, &b) == 0);
	CHECK(a == 0 && b == 1);
	uint64_t t0 = 1700000000ull * 1000000000ull + 123456789ull;
	uint64_t off0, off1;
	CHECK(pn_write_packet(w, a, t0, frame, 60, 60, PN_EPB_INBOUND, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", &off0) == 0);
	CHECK(pn_write_packet(w, b, t0 + 1000, frame, 128, 1514, 0, NULL, &off1) == 0);
	CHECK(off1 > off0);
	CHECK(pn_write_packet(w, a, t0 + 2000, frame, 1514, 1514, PN_EPB_OUTBOUND, "flow 42", NULL) == 0);
	for (int i = 0; i < 20; i++) /* more than the buffer */
		CHECK(pn_write_packet(w, b, t0 + 3000 + (uint64_t)i, frame, 100, 200, 0, NULL, NULL) == 0);
	CHECK(pn_write_stats(w, a, t0 + 5000, 23, 0) == 0);
	CHECK(pn_write_packet(w, 7, t0, frame, 60, 60, 0, NULL, NULL) == -EINVAL);
	CHECK(pn_write_packet(w, a, t0, frame, PN_PACKET_MAX + 1, 60, 0, NULL, NULL) == -EINVAL);
	CHECK(pn_close(w) == 0);
}

static void test_pcap_mixed_linktypes(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	struct pn_config cfg;
	pn_config_default(&cfg);
	cfg.format = PN_FORMAT_PCAP;
	cfg.flags = PN_OWN_FD;
	struct pn_writer *w = pn_open_fd(fd, &cfg);
	uint32_t a, b;
	CHECK(pn_add_interface(w, 1, 0, "eth0", NULL, &a) == 0);
	CHECK(pn_add_interface(w, 1, 0, "eth1", NULL, &b) == 0);   /* same type: fine */
	CHECK(pn_add_interface(w, 101, 0, "tun0", NULL, &b) == -EPROTOTYPE);
	CHECK(pn_write_packet(w, a, 1000, frame, 60, 60, 0, "ignored", NULL) == 0);
	CHECK(pn_close(w) == 0);
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_size == 24 + 16 + 60);
}

static void test_empty_pcap(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	struct pn_config cfg;
	pn_config_default(&cfg);
	cfg.format = PN_FORMAT_PCAP;
	cfg.flags = PN_OWN_FD;
	CHECK(pn_close(pn_open_fd(fd, &cfg)) == 0);
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_size == 24);
}

/* FILE* output: whatever the caller printed through stdio comes first. */
static void test_file_stream(void)
{
	FILE *f = tmpfile();
	CHECK(f != NULL);
	fputs("X", f); /* buffered in stdio, must not land after our blocks */
	struct pn_writer *w = pn_open_file(f, NULL);
	CHECK(w != NULL);
	uint32_t a;
	CHECK(pn_add_interface(w, 1, 0, "eth0", NULL, &a) == 0);
	CHECK(pn_write_packet(w, a, 0, frame, 60, 60, 0, NULL, NULL) == 0);
	uint64_t end = pn_offset(w);
	CHECK(pn_close(w) == 0);
	struct stat st;
	CHECK(fstat(fileno(f), &st) == 0 && (uint64_t)st.st_size == 1 + end);
	char c = 0;
	CHECK(pread(fileno(f), &c, 1, 0) == 1 && c == 'X');
	fclose(f);
}

struct mem { uint8_t buf[8192]; size_t len; int calls, fail_after; };
static int mem_sink(void *arg, const uint8_t *b, size_t len)
{
	struct mem *m = arg;
	if (m->fail_after && ++m->calls > m->fail_after)
		return -ECONNRESET;
	if (m->len + len > sizeof(m->buf))
		return -ENOSPC;
	memcpy(m->buf + m->len, b, len);
	m->len += len;
	return 0;
}

/* Callback output (HTTP bodies): same bytes as a file would get. */
static void test_sink(void)
{
	struct mem m = {.len = 0};
	struct pn_config cfg;
	pn_config_default(&cfg);
	cfg.bufsize = 4096;
	struct pn_writer *w = pn_open_sink(mem_sink, &m, &cfg);
	CHECK(w != NULL);
	uint32_t a;
	CHECK(pn_add_interface(w, 1, 0, "eth0", "ns/pod", &a) == 0);
	for (int i = 0; i < 5; i++)
		CHECK(pn_write_packet(w, a, (uint64_t)i * 1000, frame, 1000, 1000, 0, "c", NULL) == 0);
	uint64_t end = pn_offset(w);
	CHECK(pn_close(w) == 0);
	CHECK(m.len == end);
	uint32_t type;
	memcpy(&type, m.buf, 4);
	CHECK(type == PN_BT_SHB);
	struct mem m2 = {.fail_after = 1};
	w = pn_open_sink(mem_sink, &m2, &cfg);
	CHECK(pn_add_interface(w, 1, 0, "eth0", NULL, &a) == 0);
	int rc = 0;
	for (int i = 0; i < 20 && rc == 0; i++)
		rc = pn_write_packet(w, a, 0, frame, 1000, 1000, 0, NULL, NULL);
	CHECK(rc == -ECONNRESET);
	CHECK(pn_close(w) == -ECONNRESET);
}

static void test_epipe(void)
{
	int p[2];
	CHECK(pipe(p) == 0);
	close(p[0]);
	struct pn_writer *w = pn_open_fd(p[1], NULL);
	uint32_t a;
	CHECK(pn_add_interface(w, 1, 0, "eth0", NULL, &a) == 0);
	CHECK(pn_write_packet(w, a, 0, frame, 60, 60, 0, NULL, NULL) == 0);
	CHECK(pn_flush(w) == -EPIPE);
	/* sticky */
	CHECK(pn_write_packet(w, a, 0, frame, 60, 60, 0, NULL, NULL) == -EPIPE);
	CHECK(strstr(pn_errmsg(w), "pipe") != NULL);
	CHECK(pn_written(w) == 0);
	CHECK(pn_close(w) == -EPIPE);
	close(p[1]);
}

static void test_enospc(void)
{
	int fd = open("/dev/full", O_WRONLY);
	if (fd < 0) {
		fprintf(stderr, "no /dev/full, ENOSPC case skipped\n");
		return;
	}
	struct pn_writer *w = pn_open_fd(fd, NULL);
	CHECK(pn_flush(w) == -ENOSPC);
	CHECK(pn_close(w) == -ENOSPC);
	close(fd);
}

/* A write cut short by the file size limit must leave only whole blocks. */
static void test_partial_block(const char *path)
{
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = {10000, 10000};
		setrlimit(RLIMIT_FSIZE, &rl);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		struct pn_config cfg;
		pn_config_default(&cfg);
		cfg.bufsize = 4096;
		cfg.flags = PN_OWN_FD;
		struct pn_writer *w = pn_open_fd(fd, &cfg);
		uint32_t a;
		int rc = pn_add_interface(w, 1, 0, "eth0", NULL, &a);
		for (int i = 0; i < 100 && rc == 0; i++)
			rc = pn_write_packet(w, a, (uint64_t)i * 1000, frame, 700, 700, 0, NULL, NULL);
		if (rc == 0)
			rc = pn_flush(w);
		uint64_t written = pn_written(w);
		struct stat st;
		fstat(fd, &st);
		pn_close(w);
		_exit(rc == -EFBIG && (uint64_t)st.st_size == written && written > 0 ? 0 : 1);
	}
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	long idbs, epbs = walk_pcapng(path, &idbs);
	CHECK(epbs > 0 && idbs == 1);
}

int main(int argc, char **argv)
{
	char dir[256], path[512];
	signal(SIGPIPE, SIG_IGN);
	fill_frame();
	if (argc > 1) {
		snprintf(dir, sizeof(dir), "%s", argv[1]);
	} else {
		snprintf(dir, sizeof(dir), "/tmp/pn-test-XXXXXX");
		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			return 1;
		}
	}
	long idbs;
	snprintf(path, sizeof(path), "%s/us.pcapng", dir);
	write_sample(path, 6, PN_FORMAT_PCAPNG);
	CHECK(walk_pcapng(path, &idbs) == 23 && idbs == 2);
	snprintf(path, sizeof(path), "%s/ns.pcapng", dir);
	write_sample(path, 9, PN_FORMAT_PCAPNG);
	CHECK(walk_pcapng(path, &idbs) == 23 && idbs == 2);
	snprintf(path, sizeof(path), "%s/us.pcap", dir);
	test_pcap_mixed_linktypes(path);
	snprintf(path, sizeof(path), "%s/empty.pcap", dir);
	test_empty_pcap(path);
	snprintf(path, sizeof(path), "%s/cut.pcapng", dir);
	test_partial_block(path);
	test_file_stream();
	test_sink();
	test_epipe();
	test_enospc();
	if (argc <= 1) {
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	if (failures)
		fprintf(stderr, "%d checks failed\n", failures);
	else
		printf("pcapng writer: all checks passed\n");
	return failures ? 1 : 0;
}
