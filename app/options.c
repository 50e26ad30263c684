/* The options of `podcap read` and `podcap run`, in one table: each option is
 * parsed, checked and documented once, and the two commands take the same
 * spelling and ranges for what they share.  `run --config FILE` reads the same
 * names as 'key = value' lines. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "fsio.h"
#include "kube.h"

#define DEFAULT_INVENTORY "/run/podcap/lab-pods.json"

enum opt_id {
	O_DB = 1, O_STORE, O_STORE_SNAPLEN, O_STORE_FIRST, O_STORE_CAP, O_DB_CAP, O_DB_MAX_AGE,
	O_VXLAN_PORT, O_NO_DECAP, O_IDLE, O_ACTIVE, O_MAX_FLOWS, O_DPI_PACKETS, O_NO_DPI,
	O_WORKERS, O_QUIET, O_CONFIG, O_BACKEND, O_NETNS, O_IFACE, O_ALL_IFACES, O_INVENTORY,
	O_DURATION, O_STATS, O_FILTER, O_SNAPLEN, O_FLOW_PACKETS, O_BUFFER, O_LISTEN, O_TOKEN_FILE,
	O_TLS_CERT, O_TLS_KEY, O_HELP,
	O_KUBERNETES, O_KUBECONFIG, O_KUBE_CONTEXT, O_KUBE_PODS, O_NODE, O_NO_CONNTRACK,
	O_FRAG_TIMEOUT, O_FRAG_MEMORY, O_NO_REASSEMBLY, O_GROUP,
};

struct app_option {
	const char *name;
	int id;
	const char *arg;   /* the value's name in help, NULL for a flag */
	unsigned cmds;     /* APP_READ | APP_RUN */
	const char *help;  /* may span lines ("\n" + indentation added) */
};

static const struct app_option options[] = {
	{"db", O_DB, "PATH", APP_READ | APP_RUN, "flow database (created if missing)"},
	{"config", O_CONFIG, "FILE", APP_RUN, "options as 'key = value' lines (same names as the long options;\n"
						"a switch alone or '= yes' / '= no'); the command line wins"},
	{"backend", O_BACKEND, "B", APP_RUN, "ebpf (default; tc clsact + ring buffer, falls back to pcap) or pcap"},
	{"netns", O_NETNS, "NAME", APP_RUN, "capture inside network namespace NAME (/run/netns/NAME), e.g. a node"},
	{"iface", O_IFACE, "IF", APP_RUN, "capture on IF (repeatable); default: every pod veth, overlay and NIC,\n"
	 "following interfaces that appear and disappear"},
	{"all-ifaces", O_ALL_IFACES, NULL, APP_RUN, "with the default selection, bridges too"},
	{"inventory", O_INVENTORY, "FILE", APP_READ | APP_RUN, "pod inventory (the lab's): names the veths (run) and, without\n"
	 "--kubernetes/--kubeconfig, the pods, Services and nodes at both ends\n"
	 "of every flow (run: default " DEFAULT_INVENTORY " if present)"},
	{"kubernetes", O_KUBERNETES, "MODE", APP_RUN, "name both ends of every flow from the Kubernetes API: in-cluster\n"
	 "(service-account token and CA; see docs/kubernetes.md)"},
	{"kubeconfig", O_KUBECONFIG, "FILE", APP_RUN, "the same, with the API server and credentials of a kubeconfig file"},
	{"kube-context", O_KUBE_CONTEXT, "NAME", APP_RUN, "kubeconfig context (default: its current-context)"},
	{"kube-pods", O_KUBE_PODS, "SCOPE", APP_RUN, "all (default: every pod, with labels) or node (this node's pods;\n"
	 "remote ones only as EndpointSlices name them)"},
	{"node", O_NODE, "NAME", APP_RUN, "this node's name (default $NODE_NAME), for --kube-pods node"},
	{"no-conntrack", O_NO_CONNTRACK, NULL, APP_RUN, "do not read the node's conntrack table (Services are then named\n"
	 "only where the flow's destination is the VIP)"},
	{"duration", O_DURATION, "S", APP_RUN, "stop after S seconds (default: until SIGINT/SIGTERM)"},
	{"stats-interval", O_STATS, "S", APP_RUN, "print counters every S seconds (default 10, 0 = only at the end)"},
	{"filter", O_FILTER, "BPF", APP_RUN, "libpcap filter expression (pcap backend)"},
	{"snaplen", O_SNAPLEN, "N", APP_RUN, "bytes kept per packet (default 2048)"},
	{"flow-packets", O_FLOW_PACKETS, "N", APP_RUN, "eBPF: first N packets of each flow go to user space (default 16);\n"
	 "records of untunnelled flows take the kernel's exact per-flow\n"
	 "counts, tunnelled ones count what reached user space"},
	{"buffer", O_BUFFER, "SIZE", APP_RUN, "kernel buffer: libpcap ring per interface, or the eBPF ring buffer\n"
	 "(default 8M; 1M..1G)"},
	{"listen", O_LISTEN, "ADDR:PORT", APP_RUN, "serve the query API and the web page there, e.g. 127.0.0.1:7070\n"
	 "(off by default; docs/api.md)"},
	{"token-file", O_TOKEN_FILE, "FILE", APP_RUN, "bearer token for the API (first line, >= 16 characters); needed\n"
	 "when --listen is not a loopback address"},
	{"tls-cert", O_TLS_CERT, "FILE", APP_RUN, "serve the API over HTTPS with this PEM certificate (and --tls-key)"},
	{"tls-key", O_TLS_KEY, "FILE", APP_RUN, "the certificate's PEM private key"},
	{"store", O_STORE, "DIR", APP_READ | APP_RUN, "also keep the packets in rolling pcapng segments under DIR (eBPF: the\n"
	 "packets that reach user space, the first --flow-packets of a flow)"},
	{"store-snaplen", O_STORE_SNAPLEN, "N", APP_READ | APP_RUN, "keep at most N bytes of each stored packet (default: whole packets)"},
	{"store-first", O_STORE_FIRST, "N", APP_READ | APP_RUN, "keep only the first N packets of each flow"},
	{"store-cap", O_STORE_CAP, "SIZE", APP_READ | APP_RUN, "total size of the segments, oldest deleted first (default 2G; e.g. 50M)"},
	{"db-cap", O_DB_CAP, "SIZE", APP_READ | APP_RUN, "keep the flow database under SIZE, oldest flows deleted first"},
	{"db-max-age", O_DB_MAX_AGE, "S", APP_READ | APP_RUN, "delete flows older than S seconds (wall clock: not for old captures)"},
	{"vxlan-port", O_VXLAN_PORT, "N", APP_READ | APP_RUN, "decapsulate VXLAN on UDP port N too (4789 and 8472 always)"},
	{"no-decap", O_NO_DECAP, NULL, APP_READ | APP_RUN, "do not look into tunnels"},
	{"idle-timeout", O_IDLE, "S", APP_READ | APP_RUN, "end a flow after S seconds without packets (default 120)"},
	{"active-timeout", O_ACTIVE, "S", APP_READ | APP_RUN, "periodic record of long flows every S seconds (default 60)"},
	{"max-flows", O_MAX_FLOWS, "N", APP_READ | APP_RUN, "flow table cap; older flows are evicted beyond it"},
	{"dpi-packets", O_DPI_PACKETS, "N", APP_READ | APP_RUN, "packets per flow given to nDPI before it gives up\n"
	 "(default 80 TCP, 24 UDP, as ndpiReader)"},
	{"no-dpi", O_NO_DPI, NULL, APP_READ | APP_RUN, "no nDPI classification"},
	{"frag-timeout", O_FRAG_TIMEOUT, "S", APP_READ | APP_RUN, "give up an IP datagram whose fragments are not all in within S seconds\n"
	 "of the first (default 30, as Linux; packet time); its fragments go on alone"},
	{"frag-memory", O_FRAG_MEMORY, "SIZE", APP_READ | APP_RUN, "memory for fragments held for reassembly (default 64M; 1M..4G);\n"
	 "the oldest datagrams are given up beyond it (counted)"},
	{"no-reassembly", O_NO_REASSEMBLY, NULL, APP_READ | APP_RUN, "do not reassemble IP fragments: each goes to its flow as it is"},
	{"workers", O_WORKERS, "N", APP_READ | APP_RUN, "flow worker threads (default: read cores - 1, at least 1; run 2 on 2+\n"
	 "cores, so capture never waits on nDPI; 0 = inline)"},
	{"group", O_GROUP, "NAME", APP_READ | APP_RUN, "the group that may read the database, the store and what they hold:\n"
	 "files are created 0640 and directories 0750 with that group (a name or\n"
	 "a number; default $PODCAP_GROUP, else the process's own)"},
	{"quiet", O_QUIET, NULL, APP_READ | APP_RUN, "no progress line and no summary (run: only errors and the final counters)"},
	{"help", O_HELP, NULL, APP_READ | APP_RUN, "this help"},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

#define READ_USAGE "read FILE... --db PATH [--store DIR] [--inventory FILE] [--vxlan-port N]... [--no-decap] " \
	"[--store-snaplen N] [--store-first N] [--store-cap SIZE] [--db-cap SIZE] [--db-max-age S] [--idle-timeout S] " \
	"[--active-timeout S] [--max-flows N] [--dpi-packets N] [--no-dpi] [--frag-timeout S] [--frag-memory SIZE] " \
	"[--no-reassembly] [--workers N] [--group NAME] [--quiet]"
#define RUN_USAGE "run --db PATH [--config FILE] [--backend ebpf|pcap] [--netns NAME] [--iface IF]... " \
	"[--inventory FILE] [--kubernetes in-cluster | --kubeconfig FILE [--kube-context NAME]] " \
	"[--kube-pods all|node] [--node NAME] [--no-conntrack] [--duration S] [--stats-interval S] [--filter BPF] [--snaplen N] " \
	"[--flow-packets N] [--buffer SIZE] [--workers N] [--all-ifaces] [--store DIR] [--store-cap SIZE] " \
	"[--store-first N] [--store-snaplen N] [--db-cap SIZE] [--db-max-age S] [--vxlan-port N]... [--no-decap] " \
	"[--idle-timeout S] [--active-timeout S] [--max-flows N] [--dpi-packets N] [--no-dpi] [--frag-timeout S] " \
	"[--frag-memory SIZE] [--no-reassembly] [--listen ADDR:PORT] [--token-file FILE] [--tls-cert FILE --tls-key FILE] " \
	"[--group NAME] [--quiet]"

const char *app_opts_usage(enum app_cmd cmd)
{
	return cmd == APP_READ ? READ_USAGE : RUN_USAGE;
}

static const char *cmd_name(enum app_cmd cmd) { return cmd == APP_READ ? "read" : "run"; }

void app_opts_default(enum app_cmd cmd, struct app_opts *o)
{
	memset(o, 0, sizeof(*o));
	eng_config_default(&o->eng);
	fdb_config_default(&o->fdb);
	pks_config_default(&o->pks);
	cap_live_config_default(&o->live);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (cmd == APP_READ) {
		/* A bulk load into an empty database builds its indexes once at the
		 * end (about 3x cheaper per index); an agent keeps them live instead. */
		o->fdb.defer_indexes = 1;
		o->pks.defer_index = 1;
		/* The caller's thread only reads and decodes (~0.1 s per 750k packets
		 * from a mapped file); flow work goes to workers, each sink has its own
		 * thread.  Measured on 2 cores (753k packets, no expiry): inline 0.33 s,
		 * 1 worker 0.26 s, 2 workers 0.29 s and 10 MB more; with default
		 * timeouts 0.74 / 0.69 / 0.67 s.  Above 2 cores one worker per core but
		 * the caller's. */
		o->eng.workers = ncpu > 2 ? (unsigned)(ncpu - 1 < ENG_MAX_WORKERS ? ncpu - 1 : ENG_MAX_WORKERS) : 1;
	} else {
		/* The capture thread decodes; flow work (nDPI) goes to workers when
		 * there are cores for them. */
		o->eng.workers = ncpu >= 2 ? 2 : 0;
		o->stats_s = 10;
		o->inventory = DEFAULT_INVENTORY;
	}
}

static int bad(enum app_cmd cmd, const char *name, const char *val, const char *range)
{
	fprintf(stderr, "podcap %s: bad --%s '%s' (%s)\n", cmd_name(cmd), name, val, range);
	return 2;
}

/* Applies one option.  Returns 0, or 2 after a message for a bad value. */
static int apply(enum app_cmd cmd, struct app_opts *o, const struct app_option *op, char *val)
{
	unsigned long long v;
	const char *n = op->name;
	/* "--db -" or "--store --db": a path that starts with '-' is a value left
	 * out, not a file to create */
	if (op->arg && (!strcmp(op->arg, "PATH") || !strcmp(op->arg, "DIR") || !strcmp(op->arg, "FILE"))) {
		char opt[48];
		snprintf(opt, sizeof(opt), "--%s", n);
		if (app_check_path(cmd_name(cmd), opt, val) < 0)
			return 2;
	}
	switch (op->id) {
	case O_DB: o->db_path = val; break;
	case O_STORE: o->store_dir = val; break;
	case O_STORE_SNAPLEN:
	case O_STORE_FIRST:
		if (app_parse_uint(val, 1, 1u << 20, &v) < 0)
			return bad(cmd, n, val, "1..1048576");
		if (op->id == O_STORE_SNAPLEN)
			o->pks.snaplen = (uint32_t)v;
		else
			o->pks.flow_packets = (uint32_t)v;
		break;
	case O_STORE_CAP:
	case O_DB_CAP:
		if (app_parse_size(val, &v) < 0 || v < (1u << 20))
			return bad(cmd, n, val, "a size of at least 1M, e.g. 50M");
		if (op->id == O_STORE_CAP)
			o->pks.max_bytes = v;
		else
			o->fdb.retain_bytes = v;
		break;
	case O_DB_MAX_AGE:
		if (app_parse_uint(val, 60, 86400ull * 3650, &v) < 0)
			return bad(cmd, n, val, "seconds, 60..315360000");
		o->fdb.retain_age_s = v;
		break;
	case O_VXLAN_PORT:
		if (app_parse_uint(val, 1, 65535, &v) < 0 || dc_config_add_vxlan_port(&o->eng.dc, (uint16_t)v) < 0) {
			char range[64];
			snprintf(range, sizeof(range), "1..65535, at most %d ports", DC_MAX_VXLAN_PORTS);
			return bad(cmd, n, val, range);
		}
		break;
	case O_NO_DECAP: o->eng.dc.decap = 0; break;
	case O_IDLE:
	case O_ACTIVE:
		if (app_parse_uint(val, 1, 10000000000ULL, &v) < 0)
			return bad(cmd, n, val, "seconds, 1..10000000000");
		if (op->id == O_IDLE)
			o->eng.fl.idle_timeout_us = v * 1000000u;
		else
			o->eng.fl.active_timeout_us = v * 1000000u;
		break;
	case O_MAX_FLOWS:
		if (app_parse_uint(val, 16, 1u << 26, &v) < 0)
			return bad(cmd, n, val, "16..67108864");
		o->eng.fl.max_flows = (uint32_t)v;
		break;
	case O_DPI_PACKETS:
		if (app_parse_uint(val, 1, 10000, &v) < 0)
			return bad(cmd, n, val, "1..10000");
		o->eng.fl.dpi_packets = (uint32_t)v;
		break;
	case O_NO_DPI: o->eng.fl.dpi = 0; break;
	case O_FRAG_TIMEOUT:
		if (app_parse_uint(val, 1, 3600, &v) < 0)
			return bad(cmd, n, val, "seconds, 1..3600");
		o->eng.frag.timeout_us = v * 1000000u;
		break;
	case O_FRAG_MEMORY:
		if (app_parse_size(val, &v) < 0 || v < (1u << 20) || v > (4ull << 30))
			return bad(cmd, n, val, "1M..4G");
		o->eng.frag.max_bytes = v;
		break;
	case O_NO_REASSEMBLY: o->eng.no_reassembly = 1; break;
	case O_WORKERS: {
		char range[16];
		snprintf(range, sizeof(range), "0..%d", ENG_MAX_WORKERS);
		if (app_parse_uint(val, 0, ENG_MAX_WORKERS, &v) < 0)
			return bad(cmd, n, val, range);
		o->eng.workers = (unsigned)v;
		break;
	}
	case O_QUIET: o->quiet = 1; break;
	case O_GROUP: {
		char err[256];
		if (!*val || fsio_set_group(val, err, sizeof(err)) < 0)
			return bad(cmd, n, val, "a group of this system");
		o->group_given = 1;
		break;
	}
	case O_BACKEND:
		if (!strcmp(val, "ebpf"))
			o->live.backend = CAP_BACKEND_EBPF;
		else if (!strcmp(val, "pcap"))
			o->live.backend = CAP_BACKEND_PCAP;
		else
			return bad(cmd, n, val, "ebpf or pcap");
		break;
	case O_NETNS: o->netns = val; break;
	case O_IFACE:
		if (o->n_ifaces >= APP_MAX_IFACES) {
			fprintf(stderr, "podcap %s: more than %d --iface\n", cmd_name(cmd), APP_MAX_IFACES);
			return 2;
		}
		o->ifaces[o->n_ifaces++] = val;
		break;
	case O_ALL_IFACES: o->all_ifaces = 1; break;
	case O_INVENTORY:
		o->inventory = val;
		o->inventory_given = 1;
		break;
	case O_KUBERNETES:
		if (strcmp(val, "in-cluster"))
			return bad(cmd, n, val, "in-cluster; for another cluster use --kubeconfig FILE");
		o->kubernetes = val;
		break;
	case O_KUBECONFIG: o->kubeconfig = val; break;
	case O_KUBE_CONTEXT: o->kube_context = val; break;
	case O_KUBE_PODS: {
		int scope = kube_pod_scope_parse(val);
		if (scope < 0)
			return bad(cmd, n, val, "all or node");
		o->kube_pods = scope;
		break;
	}
	case O_NODE:
		if (!*val || strlen(val) > 253)
			return bad(cmd, n, val, "a node name");
		o->node = val;
		break;
	case O_NO_CONNTRACK: o->no_conntrack = 1; break;
	case O_DURATION:
	case O_STATS:
		if (app_parse_uint(val, 0, 86400u * 365, &v) < 0)
			return bad(cmd, n, val, "seconds");
		if (op->id == O_DURATION)
			o->duration_s = v;
		else
			o->stats_s = v;
		break;
	case O_FILTER: o->live.filter = val; break;
	case O_LISTEN:
		if (app_check_listen(cmd_name(cmd), val) < 0)
			return 2;
		o->listen = val;
		break;
	case O_TOKEN_FILE: o->token_file = val; break;
	case O_TLS_CERT: o->tls_cert = val; break;
	case O_TLS_KEY: o->tls_key = val; break;
	case O_SNAPLEN:
		if (app_parse_uint(val, 64, 262144, &v) < 0)
			return bad(cmd, n, val, "64..262144");
		o->live.snaplen = (uint32_t)v;
		break;
	case O_FLOW_PACKETS:
		if (app_parse_uint(val, 1, 1000000, &v) < 0)
			return bad(cmd, n, val, "1..1000000");
		o->live.flow_packets = (uint32_t)v;
		break;
	case O_BUFFER:
		if (app_parse_size(val, &v) < 0 || v < (1u << 20) || v > (1u << 30))
			return bad(cmd, n, val, "1M..1G");
		o->live.buffer_bytes = (uint32_t)v;
		break;
	default:
		return 2;
	}
	return 0;
}

static const struct app_option *find_option(enum app_cmd cmd, const char *name)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if ((options[i].cmds & cmd) && !strcmp(options[i].name, name))
			return &options[i];
	return NULL;
}

static void print_help(enum app_cmd cmd)
{
	printf("usage: podcap %s\n\n", app_opts_usage(cmd));
	if (cmd == APP_READ)
		printf("Reads pcap/pcapng files (any link type decode supports), tracks bidirectional flows,\n"
		       "classifies them with nDPI and stores flow records in the SQLite database PATH.\n\n");
	else
		printf("Captures live traffic on a node's pod veths, overlay devices and NIC, turns it into\n"
		       "classified flow records and stores them in the SQLite database PATH.  Needs root.\n\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct app_option *op = &options[i];
		if (!(op->cmds & cmd) || op->id == O_HELP)
			continue;
		char left[40];
		snprintf(left, sizeof(left), "--%s%s%s", op->name, op->arg ? " " : "", op->arg ? op->arg : "");
		printf("  %-19s ", left);
		for (const char *h = op->help; *h; h++) {
			putchar(*h);
			if (*h == '\n')
				printf("%22s", "");
		}
		putchar('\n');
	}
}

/* A switch (an option without a value) in a config file: "key", "key = yes"
 * (true, on, 1) sets it, "key = no" (false, off, 0) leaves it as it was; 1 for
 * anything else. */
static int config_switch(const char *val, int *on)
{
	static const char *const yes[] = {"", "yes", "true", "on", "1"}, *const no[] = {"no", "false", "off", "0"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!strcasecmp(val, yes[i]))
			return *on = 1, 0;
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (!strcasecmp(val, no[i]))
			return *on = 0, 0;
	return 1;
}

/* Reads 'key = value' lines; '#' starts a comment.  The strings are kept for the
 * life of the process (options point into them). */
static int load_config(enum app_cmd cmd, struct app_opts *o, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int lineno = 0;
	struct stat sb;
	if (!f) {
		fprintf(stderr, "podcap %s: --config %s: %s\n", cmd_name(cmd), path, strerror(errno));
		return 2;
	}
	/* fopen opens a directory for reading; fgets then fails at once, which
	 * looked like an empty file: the agent ran on its defaults */
	if (fstat(fileno(f), &sb) < 0 || !S_ISREG(sb.st_mode)) {
		int st_err = errno;
		fprintf(stderr, "podcap %s: --config %s: %s\n", cmd_name(cmd), path,
			fstat(fileno(f), &sb) < 0 ? strerror(st_err) :
			S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
		fclose(f);
		return 2;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *k = line + strspn(line, " \t\r\n");
		if (!*k)
			continue;
		char *eq = strchr(k, '=');
		char *val = eq ? eq + 1 : (char *)"";
		if (eq)
			*eq = '\0';
		size_t kl = strcspn(k, " \t\r\n");
		k[kl] = '\0';
		val += strspn(val, " \t");
		val[strcspn(val, "\r\n")] = '\0';
		for (size_t n = strlen(val); n && (val[n - 1] == ' ' || val[n - 1] == '\t'); n--)
			val[n - 1] = '\0';
		const struct app_option *op = find_option(cmd, k);
		int on = 1, bad_switch = op && !op->arg && config_switch(val, &on);
		if (op && !op->arg && !bad_switch && !on)
			continue; /* "no-dpi = no": the default stays */
		/* a value is kept for the life of the process (options point into it);
		 * a switch has none */
		char *vv = op && op->arg ? strdup(val) : NULL;
		if (!op || op->id == O_CONFIG || op->id == O_HELP || (op->arg && (!vv || !*vv)) || bad_switch ||
		    apply(cmd, o, op, op->arg ? vv : (char *)"")) {
			if (!op)
				fprintf(stderr, "podcap %s: unknown option '%s'\n", cmd_name(cmd), k);
			else if (bad_switch)
				fprintf(stderr, "podcap %s: %s takes no value, or yes / no (not '%s')\n", cmd_name(cmd), k,
					val);
			fprintf(stderr, "podcap %s: %s:%d: bad line\n", cmd_name(cmd), path, lineno);
			free(vv);
			fclose(f);
			return 2;
		}
	}
	if (ferror(f)) {
		fprintf(stderr, "podcap %s: --config %s: %s\n", cmd_name(cmd), path, strerror(errno ? errno : EIO));
		fclose(f);
		return 2;
	}
	fclose(f);
	return 0;
}

int app_opts_parse(enum app_cmd cmd, int argc, char **argv, struct app_opts *o, int *first_arg)
{
	struct option lo[N_OPTIONS + 1];
	size_t n = 0;
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].cmds & cmd)
			lo[n++] = (struct option){options[i].name, options[i].arg ? required_argument : no_argument,
						  NULL, (int)(1000 + i)};
	lo[n] = (struct option){0, 0, 0, 0};

	int c;
	/* --config first, so command-line options override the file: a quiet
	 * pass of getopt itself, which knows every spelling (--config F,
	 * --config=F, an abbreviation such as --conf F); the pass below reports
	 * the errors. */
	if (cmd == APP_RUN) {
		optind = 0;
		opterr = 0;
		while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1)
			if (c >= 1000 && c < 1000 + (int)N_OPTIONS && options[c - 1000].id == O_CONFIG &&
			    (app_check_path(cmd_name(cmd), "--config", optarg) < 0 || load_config(cmd, o, optarg)))
				return app_usage(app_opts_usage(cmd));
	}
	optind = 0; /* 0, not 1: glibc's getopt starts over (a pass above) */
	opterr = 1;
	while ((c = getopt_long(argc, argv, cmd == APP_READ ? "hq" : "h", lo, NULL)) != -1) {
		if (c == 'h') {
			print_help(cmd);
			return 1;
		}
		if (c == 'q' && cmd == APP_READ) {
			o->quiet = 1;
			continue;
		}
		if (c < 1000 || c >= 1000 + (int)N_OPTIONS)
			return app_usage(app_opts_usage(cmd));
		const struct app_option *op = &options[c - 1000];
		if (op->id == O_HELP) {
			print_help(cmd);
			return 1;
		}
		if (op->id == O_CONFIG)
			continue;
		if (apply(cmd, o, op, optarg ? optarg : (char *)""))
			return app_usage(app_opts_usage(cmd));
	}
	if (!o->group_given && getenv("PODCAP_GROUP") && *getenv("PODCAP_GROUP")) {
		char err[256];
		if (fsio_set_group(getenv("PODCAP_GROUP"), err, sizeof(err)) < 0) {
			fprintf(stderr, "podcap %s: PODCAP_GROUP: %s\n", cmd_name(cmd), err);
			return app_usage(app_opts_usage(cmd));
		}
	}
	if (!o->db_path) {
		fprintf(stderr, "podcap %s: --db PATH is required\n", cmd_name(cmd));
		return app_usage(app_opts_usage(cmd));
	}
	if (!o->tls_cert != !o->tls_key) {
		fprintf(stderr, "podcap %s: --tls-cert and --tls-key go together\n", cmd_name(cmd));
		return app_usage(app_opts_usage(cmd));
	}
	if (!o->listen && (o->token_file || o->tls_cert)) {
		fprintf(stderr, "podcap %s: --token-file and --tls-cert need --listen\n", cmd_name(cmd));
		return app_usage(app_opts_usage(cmd));
	}
	if (o->kubernetes && o->kubeconfig) {
		fprintf(stderr, "podcap %s: --kubernetes in-cluster and --kubeconfig exclude each other\n", cmd_name(cmd));
		return app_usage(app_opts_usage(cmd));
	}
	if (o->kube_context && !o->kubeconfig) {
		fprintf(stderr, "podcap %s: --kube-context needs --kubeconfig\n", cmd_name(cmd));
		return app_usage(app_opts_usage(cmd));
	}
	if (!o->node && getenv("NODE_NAME") && *getenv("NODE_NAME"))
		o->node = getenv("NODE_NAME");
	if (o->kube_pods == KUBE_PODS_NODE && !o->node) {
		fprintf(stderr, "podcap %s: --kube-pods node needs --node NAME (or NODE_NAME)\n", cmd_name(cmd));
		return app_usage(app_opts_usage(cmd));
	}
	/* Names of the ends: the API when asked for, else the inventory (run: the
	 * default file when it exists). */
	if (!o->kubernetes && !o->kubeconfig && o->inventory &&
	    (o->inventory_given || access(o->inventory, R_OK) == 0))
		o->names_inventory = o->inventory;
	*first_arg = optind;
	return 0;
}

/* ---- sinks and summary ---------------------------------------------------- */

/* The packet store's messages (damaged index moved aside, segments it cannot
 * delete, a full disk, files it does not know) go to stderr in every command. */
static void store_log(void *arg, const char *msg)
{
	fprintf(stderr, "podcap %s: packet store: %s\n", (const char *)arg, msg);
}

int app_open_sinks(const char *cmd, const struct app_opts *o, struct app_sinks *out)
{
	char err[1024];
	memset(out, 0, sizeof(*out));
	struct pks_config pc = o->pks;
	pc.log = store_log;
	pc.log_arg = (void *)cmd;
	/* The packet store first: the flow database records where it is. */
	if (o->store_dir && pks_sink_open(o->store_dir, &pc, &out->pks, &out->sink[out->n], err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap %s: %s\n", cmd, err);
		return 1;
	}
	if (o->store_dir)
		out->n++;
	if (fdb_sink_open(o->db_path, &o->fdb, o->store_dir, &out->fdb, &out->sink[out->n], err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap %s: %s\n", cmd, err);
		for (size_t i = 0; i < out->n; i++)
			out->sink[i].ops->close(out->sink[i].ctx);
		out->n = 0;
		return 1;
	}
	out->n++;
	return 0;
}

void app_print_summary(struct engine *e, const struct app_sinks *s, uint64_t caller_cpu_us, FILE *f)
{
	struct eng_stats st;
	struct fdb_sink_stats fs;
	uint64_t malformed = 0;

	eng_stats(e, &st);
	fdb_sink_stats(s->fdb, &fs);
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		malformed += st.dc.by_reason[r];
	fprintf(f, "packets %llu, bytes %llu, flows %llu, flow records %llu\n",
		(unsigned long long)st.packets, (unsigned long long)st.bytes,
		(unsigned long long)st.fl.flows_created, (unsigned long long)st.fl.records);
	fprintf(f, "not ip %llu, unsupported %llu, malformed %llu",
		(unsigned long long)st.dc.by_reason[DC_NOT_IP],
		(unsigned long long)st.dc.by_reason[DC_UNSUPPORTED], (unsigned long long)malformed);
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		if (st.dc.by_reason[r])
			fprintf(f, ", %s %llu", dc_reason_name(r), (unsigned long long)st.dc.by_reason[r]);
	fputc('\n', f);
	int any = 0;
	for (int t = 1; t < DC_TUN__COUNT; t++)
		if (st.dc.by_tunnel[t]) {
			fprintf(f, "%s%s %llu", any ? ", " : "tunnelled: ", dc_tunnel_name(t),
				(unsigned long long)st.dc.by_tunnel[t]);
			any = 1;
		}
	if (any)
		fputc('\n', f);
	if (st.fr.fragments)
		fprintf(f, "ip fragments %llu: %llu datagrams reassembled; given up (their fragments went on "
			"alone): timed out %llu, overlapping %llu, evicted %llu, too big %llu, bad %llu, "
			"incomplete at end %llu; passed: duplicates %llu, cut by snaplen %llu; "
			"peak memory %llu bytes\n",
			(unsigned long long)st.fr.fragments, (unsigned long long)st.fr.reassembled,
			(unsigned long long)st.fr.timed_out, (unsigned long long)st.fr.overlapping,
			(unsigned long long)st.fr.evicted, (unsigned long long)st.fr.too_big,
			(unsigned long long)st.fr.bad, (unsigned long long)st.fr_unfinished,
			(unsigned long long)st.fr.duplicates, (unsigned long long)st.fr.uncaptured,
			(unsigned long long)st.fr.bytes_peak);
	fprintf(f, "evicted flows %llu, dpi gave up %llu, dpi alloc failures %llu, store errors %llu\n",
		(unsigned long long)st.fl.evicted, (unsigned long long)st.fl.dpi_giveup,
		(unsigned long long)st.fl.dpi_alloc_fail, (unsigned long long)fs.lost);
	/* the caller's own thread: reading, decoding, and the flow work when inline */
	fprintf(f, "cpu: this thread %.2f s, flow workers %.2f s", (double)caller_cpu_us / 1e6,
		(double)st.cpu_us_workers / 1e6);
	for (size_t i = 0; i < st.nsinks; i++)
		fprintf(f, ", %s %.2f s", st.sink[i].name, (double)st.sink[i].cpu_us / 1e6);
	fputc('\n', f);
	if (st.cpu_us_workers)
		/* the only locks on the packet path: one round per batch */
		fprintf(f, "workers: %llu batches handed over, the reader waited for a worker %llu times, "
			"workers waited for work %llu times\n", (unsigned long long)st.batches,
			(unsigned long long)st.caller_waits, (unsigned long long)st.worker_waits);
	if (s->pks) {
		struct pks_stats ss;
		pks_sink_stats(s->pks, &ss);
		fprintf(f, "packet store: %llu packets stored, %llu skipped by per-flow limit, %llu refused "
			"(disk), %llu segments deleted by the cap, %llu bytes on disk, "
			"index %llu rows (%.2f s CPU)%s\n",
			(unsigned long long)ss.packets, (unsigned long long)ss.skipped_limit,
			(unsigned long long)ss.write_errors, (unsigned long long)ss.segments_deleted,
			(unsigned long long)ss.disk_bytes, (unsigned long long)ss.index_rows,
			(double)ss.index_us / 1e6, ss.warnings ? ", warnings on stderr" : "");
	}
}
