/* podcap sniff — a pod's (or an interface's, or a flow filter's) packets, live,
 * from an agent's GET /api/v1/stream, as pcapng on stdout or into a file:
 *
 *     podcap sniff web-1 | wireshark -k -i -
 *
 * The agent streams pcapng blocks; this client writes only whole blocks, so the
 * output is a valid capture file whenever it stops: Ctrl-C (or SIGTERM, as
 * Wireshark stops an extcap), the stream's own end (-c, --seconds), the reader
 * going away, or the agent cutting the stream.  It counts the packets it wrote
 * and the packets the agent says it could not deliver (Interface Statistics
 * Blocks), and prints them as one line at the end. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "fsio.h"
#include "pcapng.h"
#include "query.h"

#define SNIFF_USAGE "sniff [TARGET] [-n NAMESPACE] [-i IFACE]... [-f BPF] [-s SNAPLEN] [-c COUNT] " \
	"[--seconds N] [--filter FLOWFILTER] [--inner] [-w FILE|-] [--server URL] [--token-file FILE] [--cacert FILE]"
#define SNIFF_DEFAULT_SERVER "http://127.0.0.1:7070"
#define SNIFF_MAX_IFACES 8
#define SNIFF_BLOCK_MAX (16u << 20)   /* larger than any block the agent writes */
#define SNIFF_MAX_IFS 4096            /* interfaces of one stream we keep counts for */

static volatile int stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void sniff_help(void)
{
	printf("usage: podcap " SNIFF_USAGE "\n\n"
	       "Writes the packets an agent captures now, as they pass, as pcapng: those of a\n"
	       "pod (all its interfaces on the agent's node), of an interface, or of the flows\n"
	       "a filter matches, e.g.\n"
	       "    podcap sniff web-1 | wireshark -k -i -\n"
	       "    podcap sniff -n kube-system coredns -f 'udp port 53' -c 100 -w dns.pcapng\n\n"
	       "  TARGET         a pod name (namespace/name, or name with -n), or an interface\n"
	       "                 the agent captures; with spaces or operators, a flow filter\n"
	       "  -n NAMESPACE   the pod's namespace (default: any, if the name is unique)\n"
	       "  -i IFACE       an interface the agent captures (may be repeated)\n"
	       "  -f BPF         a libpcap filter on each packet (as written: the inner packet\n"
	       "                 with --inner), e.g. 'tcp port 80'\n"
	       "  -s SNAPLEN     bytes kept of each packet (default: as captured)\n"
	       "  -c COUNT       stop after COUNT packets\n"
	       "  --seconds N    stop after N seconds;  --bytes N  after N captured bytes\n"
	       "  --filter FILTER  only the flows FILTER matches (docs/filters.md); flows join\n"
	       "                 once the agent has a record of them (first packets missed)\n"
	       "  --inner        write tunnelled packets decapsulated (VXLAN, Geneve, IPIP...):\n"
	       "                 the pods' own packets, as Ethernet\n"
	       "  -w FILE|-      output (default '-': stdout, never a terminal); a file is\n"
	       "                 written beside FILE and renamed into place when the capture\n"
	       "                 ends (mode 0640, group $PODCAP_GROUP if set; a symbolic link\n"
	       "                 is refused); a named pipe is written in place\n"
	       "  --server URL   the agent's API (default $PODCAP_SERVER or " SNIFF_DEFAULT_SERVER ")\n"
	       "  --token-file FILE  its bearer token;  --cacert FILE  its CA for https\n\n"
	       "Ctrl-C ends the capture with a valid file and a line of counts on stderr.\n"
	       "Exit status: 0 when the capture ended (Ctrl-C, a limit, the reader left),\n"
	       "1 on errors (unknown pod, agent unreachable, stream cut), 2 on bad usage or a\n"
	       "filter the agent refused.\n");
}

/* ---- the pcapng stream: whole blocks out, counts kept ---- */

struct sniff_if {
	uint64_t recv, drop;   /* the last ISB's isb_ifrecv / isb_ifdrop */
};

struct sniff_out {
	int fd;
	uint8_t *buf;          /* bytes received, not yet a whole block */
	size_t len, cap;
	uint8_t *out;          /* whole blocks waiting for write() */
	size_t olen, ocap;
	int swap;              /* the section's byte order is not ours */
	int started, bad, write_err;
	uint64_t packets, bytes;
	struct sniff_if *ifs;
	uint32_t nifs;
	char msg[160];
};

static uint32_t rd32(const struct sniff_out *o, const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return o->swap ? __builtin_bswap32(v) : v;
}

static uint64_t rd64(const struct sniff_out *o, const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return o->swap ? __builtin_bswap64(v) : v;
}

static int grow(uint8_t **b, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap : 65536;
	while (nc < need)
		nc *= 2;
	uint8_t *n = realloc(*b, nc);
	if (!n)
		return -ENOMEM;
	*b = n;
	*cap = nc;
	return 0;
}

/* Reads what a block says about the capture: interfaces, packets, ISBs. */
static void account(struct sniff_out *o, uint32_t type, const uint8_t *b, uint32_t len)
{
	if (type == PN_BT_IDB) {
		if (o->nifs < SNIFF_MAX_IFS) {
			struct sniff_if *n = realloc(o->ifs, (o->nifs + 1) * sizeof(*n));
			if (n) {
				o->ifs = n;
				memset(&o->ifs[o->nifs++], 0, sizeof(*n));
			}
		}
	} else if (type == PN_BT_EPB && len >= PN_EPB_HDR_LEN + 4) {
		o->packets++;
		o->bytes += rd32(o, b + 20);
	} else if (type == PN_BT_ISB && len >= 24) {
		uint32_t id = rd32(o, b + 8);
		/* options: code(2) length(2) value, padded to 4 */
		for (uint32_t pos = 20; pos + 4 <= len - 4;) {
			uint16_t code, olen;
			memcpy(&code, b + pos, 2);
			memcpy(&olen, b + pos + 2, 2);
			if (o->swap) {
				code = __builtin_bswap16(code);
				olen = __builtin_bswap16(olen);
			}
			if (code == 0 || pos + 4 + olen > len - 4)
				break;
			if (olen == 8 && id < o->nifs) {
				if (code == 4)
					o->ifs[id].recv = rd64(o, b + pos + 4);
				else if (code == 5)
					o->ifs[id].drop = rd64(o, b + pos + 4);
			}
			pos += 4 + ((olen + 3u) & ~3u);
		}
	}
}

static int flush_out(struct sniff_out *o)
{
	const uint8_t *p = o->out;
	size_t left = o->olen;
	while (left) {
		ssize_t n = write(o->fd, p, left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			o->write_err = errno;
			return -errno;
		}
		p += n;
		left -= (size_t)n;
	}
	o->olen = 0;
	return 0;
}

/* The body as it arrives: cut into blocks; whole ones go out. */
static int sniff_write(void *arg, const void *data, size_t len)
{
	struct sniff_out *o = arg;
	if (o->bad || o->write_err)
		return -1;
	if (grow(&o->buf, &o->cap, o->len + len) < 0) {
		snprintf(o->msg, sizeof(o->msg), "out of memory");
		o->bad = 1;
		return -1;
	}
	memcpy(o->buf + o->len, data, len);
	o->len += len;
	size_t off = 0;
	while (o->len - off >= 12) {
		const uint8_t *b = o->buf + off;
		uint32_t type, blen;
		memcpy(&type, b, 4);
		if (type == PN_BT_SHB) {
			uint32_t magic;
			memcpy(&magic, b + 8, 4);
			if (magic == PN_BYTE_ORDER_MAGIC)
				o->swap = 0;
			else if (magic == __builtin_bswap32(PN_BYTE_ORDER_MAGIC))
				o->swap = 1;
			else {
				snprintf(o->msg, sizeof(o->msg), "the agent's answer is not pcapng");
				o->bad = 1;
				return -1;
			}
			o->started = 1;
		} else if (!o->started) {
			snprintf(o->msg, sizeof(o->msg), "the agent's answer is not pcapng");
			o->bad = 1;
			return -1;
		}
		type = rd32(o, b);
		blen = rd32(o, b + 4);
		if (blen < 12 || blen % 4 || blen > SNIFF_BLOCK_MAX) {
			snprintf(o->msg, sizeof(o->msg), "bad pcapng block (length %u) in the agent's answer", blen);
			o->bad = 1;
			return -1;
		}
		if (o->len - off < blen)
			break;
		account(o, type, b, blen);
		if (grow(&o->out, &o->ocap, o->olen + blen) < 0) {
			snprintf(o->msg, sizeof(o->msg), "out of memory");
			o->bad = 1;
			return -1;
		}
		memcpy(o->out + o->olen, b, blen);
		o->olen += blen;
		off += blen;
	}
	if (off) {
		memmove(o->buf, o->buf + off, o->len - off);
		o->len -= off;
	}
	if (o->olen && flush_out(o) < 0) {
		/* the reader went away (wireshark closed, | head): the end, not an error */
		stop_requested = 1;
		return -1;
	}
	return stop_requested ? -1 : 0;
}

/* Does TARGET read as a flow filter rather than a name? */
static int looks_like_filter(const char *t)
{
	return strpbrk(t, " =<>~()!\"") != NULL;
}

int cmd_sniff(int argc, char **argv)
{
	enum { O_INNER = 256, O_SERVER, O_TOKEN, O_CACERT, O_SECONDS, O_BYTES, O_FILTER, O_HELP };
	static const struct option opts[] = {
		{"namespace", required_argument, NULL, 'n'},
		{"iface", required_argument, NULL, 'i'},
		{"inner", no_argument, NULL, O_INNER},
		{"server", required_argument, NULL, O_SERVER},
		{"token-file", required_argument, NULL, O_TOKEN},
		{"cacert", required_argument, NULL, O_CACERT},
		{"seconds", required_argument, NULL, O_SECONDS},
		{"bytes", required_argument, NULL, O_BYTES},
		{"filter", required_argument, NULL, O_FILTER},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	const char *ns = NULL, *bpf = NULL, *out_path = "-", *flow_filter = NULL, *target = NULL;
	const char *server = getenv("PODCAP_SERVER"), *token = NULL, *cacert = NULL;
	const char *ifaces[SNIFF_MAX_IFACES];
	char snaplen[24] = "", count[24] = "", seconds[24] = "", bytes[24] = "";
	int nifaces = 0, inner = 0, c, status = 1;
	unsigned long long v;

	if (!server || !*server)
		server = SNIFF_DEFAULT_SERVER;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "n:i:f:s:c:w:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': ns = optarg; break;
		case 'i':
			if (nifaces == SNIFF_MAX_IFACES) {
				fprintf(stderr, "podcap sniff: at most %d -i\n", SNIFF_MAX_IFACES);
				return app_usage(SNIFF_USAGE);
			}
			ifaces[nifaces++] = optarg;
			break;
		case 'f': bpf = optarg; break;
		case 's':
			if (app_parse_uint(optarg, 1, PN_SNAPLEN_MAX, &v) < 0) {
				fprintf(stderr, "podcap sniff: bad snap length '%s' (1..%u)\n", optarg, PN_SNAPLEN_MAX);
				return app_usage(SNIFF_USAGE);
			}
			snprintf(snaplen, sizeof(snaplen), "%llu", v);
			break;
		case 'c':
			if (app_parse_uint(optarg, 1, UINT64_MAX, &v) < 0) {
				fprintf(stderr, "podcap sniff: bad count '%s'\n", optarg);
				return app_usage(SNIFF_USAGE);
			}
			snprintf(count, sizeof(count), "%llu", v);
			break;
		case O_SECONDS:
			if (app_parse_uint(optarg, 1, 366ull * 86400, &v) < 0) {
				fprintf(stderr, "podcap sniff: bad --seconds '%s'\n", optarg);
				return app_usage(SNIFF_USAGE);
			}
			snprintf(seconds, sizeof(seconds), "%llu", v);
			break;
		case O_BYTES:
			if (app_parse_size(optarg, &v) < 0 || !v) {
				fprintf(stderr, "podcap sniff: bad --bytes '%s'\n", optarg);
				return app_usage(SNIFF_USAGE);
			}
			snprintf(bytes, sizeof(bytes), "%llu", v);
			break;
		case O_FILTER: flow_filter = optarg; break;
		case 'w':
			/* "-" is standard output; "-w --server" is a value left out */
			if (strcmp(optarg, "-") && app_check_path("sniff", "-w", optarg) < 0)
				return app_usage(SNIFF_USAGE);
			out_path = optarg;
			break;
		case O_INNER: inner = 1; break;
		case O_SERVER:
			if (app_check_server("sniff", optarg) < 0)
				return app_usage(SNIFF_USAGE);
			server = optarg;
			break;
		case O_TOKEN: token = optarg; break;
		case O_CACERT: cacert = optarg; break;
		case 'h': case O_HELP:
			sniff_help();
			return 0;
		default:
			fprintf(stderr, "podcap sniff: unknown or incomplete option '%s'\n", argv[optind - 1]);
			return app_usage(SNIFF_USAGE);
		}
	}
	if (optind < argc)
		target = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "podcap sniff: unexpected argument '%s' (quote a filter with spaces)\n", argv[optind]);
		return app_usage(SNIFF_USAGE);
	}
	if (target && looks_like_filter(target)) {
		if (flow_filter) {
			fprintf(stderr, "podcap sniff: give the flow filter once (TARGET or --filter)\n");
			return app_usage(SNIFF_USAGE);
		}
		flow_filter = target;
		target = NULL;
	}
	if (!target && !nifaces && !flow_filter && !bpf) {
		fprintf(stderr, "podcap sniff: what to capture? give a pod, -i IFACE, a filter or -f BPF\n");
		return app_usage(SNIFF_USAGE);
	}
	if (flow_filter) {
		/* the agent parses it with the same parser: a syntax error is said
		 * here with its position, without a connection (as flows and top) */
		struct q_filter *qf = NULL;
		struct q_error qe;
		if (q_parse(flow_filter, strlen(flow_filter), NULL, &qf, &qe) < 0) {
			app_filter_error("sniff", flow_filter, &qe);
			return app_usage(SNIFF_USAGE);
		}
		q_filter_free(qf);
	}
	if (ns && !target) {
		fprintf(stderr, "podcap sniff: -n goes with a pod name\n");
		return app_usage(SNIFF_USAGE);
	}
	if (target && nifaces) {
		fprintf(stderr, "podcap sniff: give a pod or interface as TARGET, or -i, not both\n");
		return app_usage(SNIFF_USAGE);
	}
	if (!strcmp(out_path, "-") && isatty(STDOUT_FILENO)) {
		fprintf(stderr, "podcap sniff: not writing a capture to a terminal; pipe it "
			"(| wireshark -k -i -, | tshark -r -) or use -w FILE\n");
		return app_usage(SNIFF_USAGE);
	}
	/* The capture holds pods' payloads: a file is made 0640 (with $PODCAP_GROUP),
	 * written beside FILE and renamed into place when the capture ends, never
	 * through a symbolic link; a named pipe (Wireshark's extcap fifo) is written
	 * in place, as stdout is (fsio.h). */
	char err[512];
	const char *group = getenv("PODCAP_GROUP");
	if (group && *group && fsio_set_group(group, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap sniff: PODCAP_GROUP: %s\n", err);
		return app_usage(SNIFF_USAGE);
	}
	struct fsio_output *output = NULL;
	if (fsio_output_open(out_path, FSIO_FILE_MODE, &output, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap sniff: %s\n", err);
		return 1;
	}
	int fd = fsio_output_fd(output);

	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct sniff_out o = {.fd = fd};
	struct app_get g = {.cmd = "sniff", .server = server, .path = "/api/v1/stream", .token_file = token,
			    .cacert = cacert, .write = sniff_write, .arg = &o, .stop = &stop_requested,
			    .filter_text = flow_filter};
#define PARAM(n, val) do { g.params[g.nparams].name = (n); g.params[g.nparams++].value = (val); } while (0)
	if (target)
		PARAM("target", target);
	if (ns)
		PARAM("namespace", ns);
	for (int i = 0; i < nifaces; i++)
		PARAM("iface", ifaces[i]);
	if (flow_filter)
		PARAM("filter", flow_filter);
	if (bpf)
		PARAM("bpf", bpf);
	if (snaplen[0])
		PARAM("snaplen", snaplen);
	if (count[0])
		PARAM("count", count);
	if (seconds[0])
		PARAM("seconds", seconds);
	if (bytes[0])
		PARAM("bytes", bytes);
	if (inner)
		PARAM("inner", "1");
#undef PARAM
	int rc = app_get(&g);
	app_get_done(&g);
	if (o.olen)
		flush_out(&o);
	uint64_t dropped = 0, matched = 0;
	for (uint32_t i = 0; i < o.nifs; i++) {
		dropped += o.ifs[i].drop;
		matched += o.ifs[i].recv;
	}
	/* A write error on a file is an error (a full disk); on a pipe it is the
	 * reader leaving (wireshark closed, | head): the end of the capture. */
	struct stat fst;
	int regular = fstat(fd, &fst) == 0 && S_ISREG(fst.st_mode);
	if (rc > 0) {
		status = rc == 400 ? 2 : 1;
	} else if (rc < 0 && !o.nifs && !o.packets) {
		status = 1; /* no stream at all (could not connect): said above */
	} else if (o.write_err && regular) {
		fprintf(stderr, "podcap sniff: %s: %s; the file was not written\n", out_path, strerror(o.write_err));
		status = 1;
	} else if (o.bad) {
		fprintf(stderr, "podcap sniff: %s\n", o.msg);
	} else {
		const char *why = o.write_err ? "the reader went away" : stop_requested ? "stopped" :
				  rc == 0 ? "the stream ended" : "the stream was cut";
		fprintf(stderr, "podcap sniff: %" PRIu64 " packets (%" PRIu64 " bytes) written to %s, %" PRIu64
			" not delivered by the agent (client too slow)%s; %s\n", o.packets, o.bytes,
			strcmp(out_path, "-") ? out_path : "stdout", dropped, o.len ? "; a partial block left out" : "",
			why);
		(void)matched;
		status = rc == 0 ? 0 : 1;
	}
	/* Whatever whole blocks were written are a valid capture: kept, even when the
	 * stream was cut; nothing is left behind when the agent refused the stream. */
	if (!o.started || o.write_err) {
		fsio_output_abort(output);
	} else if (fsio_output_commit(output, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap sniff: %s\n", err);
		status = 1;
	}
	free(o.buf);
	free(o.out);
	free(o.ifs);
	return status;
}
