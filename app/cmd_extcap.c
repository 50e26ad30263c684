/* podcapdump — Wireshark's extcap interface to a podcap agent, so Wireshark's own
 * capture dialog lists an agent's pods and interfaces and captures from them live.
 * Installed as a link to the podcap binary named podcapdump in Wireshark's extcap
 * folder (main.c dispatches on the name); `podcap extcap ...` is the same thing.
 *
 * Wireshark calls it the way it calls its own sshdump:
 *     podcapdump --extcap-interfaces [--extcap-version=4.0]
 *     podcapdump --extcap-interface IF --extcap-dlts
 *     podcapdump --extcap-interface IF --extcap-config
 *     podcapdump --extcap-interface IF --capture --fifo PATH
 *                [--extcap-capture-filter BPF] [--server URL] [--token-file F] ...
 * and ends a capture with SIGTERM.  The capture is `podcap sniff ... -w PATH`, so
 * the fifo gets whole pcapng blocks and a valid end.
 *
 * Interfaces: "podcap" (what to capture is an option: a pod, an interface or a
 * flow filter), and, when the agent answers GET /api/v1/interfaces at listing
 * time, "podcap-pod-NS.NAME" for every pod and "podcap-if-IFACE" for every
 * interface it captures now.  At listing time Wireshark passes no options, so the
 * agent listed is $PODCAP_SERVER (or http://127.0.0.1:7070) with the token file
 * $PODCAP_TOKEN_FILE; the capture itself goes where --server says.  Names from the
 * agent are hostile: only those of plain characters are listed (extcap's syntax
 * has no escapes). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "app.h"

#define EXTCAP_USAGE "extcap --extcap-interfaces | --extcap-interface IF (--extcap-dlts | --extcap-config | " \
	"--capture --fifo PATH [--extcap-capture-filter BPF]) [--server URL] [--token-file FILE] [--cacert FILE] " \
	"[--target TARGET] [--inner] [--snaplen N] [--count N]"
#define EXTCAP_DEFAULT_SERVER "http://127.0.0.1:7070"
#define EXTCAP_LIST_MAX (1u << 20)   /* bytes of /api/v1/interfaces read */
#define EXTCAP_NAME_MAX 253
#define EXTCAP_PREFIX_POD "podcap-pod-"
#define EXTCAP_PREFIX_IF "podcap-if-"

struct body {
	char *buf;
	size_t len, cap;
};

static int body_write(void *arg, const void *data, size_t len)
{
	struct body *b = arg;
	if (len > EXTCAP_LIST_MAX - b->len)
		return -1;
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		while (cap < b->len + len + 1)
			cap *= 2;
		char *n = realloc(b->buf, cap);
		if (!n)
			return -1;
		b->buf = n;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, data, len);
	b->len += len;
	b->buf[b->len] = '\0';
	return 0;
}

/* Only names extcap's {…} syntax and Wireshark's interface lists carry as they are. */
static int plain(const char *s, const char *extra)
{
	size_t n = 0;
	if (!s || !*s)
		return 0;
	for (; *s; s++, n++) {
		unsigned char c = (unsigned char)*s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.' || c == '@' || strchr(extra, c)))
			return 0;
	}
	return n <= EXTCAP_NAME_MAX;
}

static int seen(json_t *set, const char *name)
{
	if (json_object_get(set, name))
		return 1;
	json_object_set_new(set, name, json_true());
	return 0;
}

/* The agent's pods and live interfaces, as extcap interface lines; quiet (a
 * line on stderr) when the agent does not answer: the generic interface stays. */
static void list_agent(const char *server, const char *token)
{
	struct body b = {0};
	struct app_get g = {.cmd = "extcap", .server = server, .path = "/api/v1/interfaces", .token_file = token,
			    .write = body_write, .arg = &b, .timeout_s = 3};
	int rc = app_get(&g);
	app_get_done(&g);
	json_t *arr = NULL, *pods = json_object(), *ifs = json_object();
	json_error_t je;
	if (rc != 0 || !b.buf || !(arr = json_loadb(b.buf, b.len, 0, &je)) || !json_is_array(arr) || !pods || !ifs) {
		if (rc == 0)
			fprintf(stderr, "podcapdump: %s/api/v1/interfaces: not a list of interfaces\n", server);
		goto out;
	}
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o) {
		json_t *live = json_object_get(o, "live");
		if (!json_is_object(live))
			continue; /* an interface the agent saw once, not one it captures now */
		const char *pod = json_string_value(json_object_get(live, "pod"));
		const char *iface = json_string_value(json_object_get(live, "iface"));
		const char *slash = pod ? strchr(pod, '/') : NULL;
		/* NS.NAME is split at the first dot: a namespace (a DNS label) has none */
		if (slash && plain(pod, "/") && !strchr(slash + 1, '/') && !memchr(pod, '.', (size_t)(slash - pod)) &&
		    !seen(pods, pod))
			printf("interface {value=" EXTCAP_PREFIX_POD "%.*s.%s}{display=podcap: pod %s (%s)}\n",
			       (int)(slash - pod), pod, slash + 1, pod, server);
		if (plain(iface, "") && !seen(ifs, iface)) {
			if (pod && plain(pod, "/"))
				printf("interface {value=" EXTCAP_PREFIX_IF "%s}{display=podcap: interface %s of pod %s (%s)}\n",
				       iface, iface, pod, server);
			else
				printf("interface {value=" EXTCAP_PREFIX_IF "%s}{display=podcap: interface %s (%s)}\n", iface,
				       iface, server);
		}
	}
out:
	json_decref(arr);
	json_decref(pods);
	json_decref(ifs);
	free(b.buf);
}

static void print_config(const char *iface, const char *server)
{
	int n = 0;
	printf("arg {number=%d}{call=--server}{display=Agent URL}{type=string}{default=%s}"
	       "{tooltip=The agent's API: podcap run --listen, or a port-forward to it}{group=Agent}\n", n++, server);
	printf("arg {number=%d}{call=--token-file}{display=Token file}{type=fileselect}{mustexist=true}"
	       "{tooltip=A file whose first line is the agent's bearer token}{group=Agent}\n", n++);
	printf("arg {number=%d}{call=--cacert}{display=CA certificate}{type=fileselect}{mustexist=true}"
	       "{tooltip=The CA of the agent's https certificate (PEM)}{group=Agent}\n", n++);
	if (!strcmp(iface, "podcap"))
		printf("arg {number=%d}{call=--target}{display=Pod, interface or flow filter}{type=string}{required=true}"
		       "{tooltip=namespace/pod, an interface the agent captures, or a flow filter such as "
		       "'dport == 53'}{group=Capture}\n", n++);
	printf("arg {number=%d}{call=--inner}{display=Decapsulate tunnels}{type=boolflag}{default=false}"
	       "{tooltip=Write VXLAN/Geneve/IPIP packets as the pods' own packets}{group=Capture}\n", n++);
	printf("arg {number=%d}{call=--snaplen}{display=Snap length}{type=unsigned}{range=1,262144}"
	       "{tooltip=Bytes kept of each packet (empty: as captured)}{group=Capture}\n", n++);
	printf("arg {number=%d}{call=--count}{display=Packet count}{type=unsigned}"
	       "{tooltip=Stop after this many packets (empty: until stopped)}{group=Capture}\n", n++);
}

int cmd_extcap(int argc, char **argv)
{
	enum { O_IFACES = 256, O_VERSION, O_DLTS, O_IFACE, O_CONFIG, O_CAPTURE, O_FIFO, O_CFILTER, O_CTL_IN, O_CTL_OUT,
	       O_DEBUG, O_DEBUG_FILE, O_SERVER, O_TOKEN, O_CACERT, O_TARGET, O_INNER, O_SNAPLEN, O_COUNT, O_HELP,
	       O_RELOAD };
	static const struct option opts[] = {
		{"extcap-interfaces", no_argument, NULL, O_IFACES},
		{"extcap-version", optional_argument, NULL, O_VERSION},
		{"extcap-dlts", no_argument, NULL, O_DLTS},
		{"extcap-interface", required_argument, NULL, O_IFACE},
		{"extcap-config", no_argument, NULL, O_CONFIG},
		{"extcap-reload-option", required_argument, NULL, O_RELOAD},
		{"capture", no_argument, NULL, O_CAPTURE},
		{"fifo", required_argument, NULL, O_FIFO},
		{"extcap-capture-filter", required_argument, NULL, O_CFILTER},
		{"extcap-control-in", required_argument, NULL, O_CTL_IN},
		{"extcap-control-out", required_argument, NULL, O_CTL_OUT},
		{"debug", no_argument, NULL, O_DEBUG},
		{"debug-file", required_argument, NULL, O_DEBUG_FILE},
		{"server", required_argument, NULL, O_SERVER},
		{"token-file", required_argument, NULL, O_TOKEN},
		{"cacert", required_argument, NULL, O_CACERT},
		{"target", required_argument, NULL, O_TARGET},
		{"inner", no_argument, NULL, O_INNER},
		{"snaplen", required_argument, NULL, O_SNAPLEN},
		{"count", required_argument, NULL, O_COUNT},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	const char *server = getenv("PODCAP_SERVER"), *token = getenv("PODCAP_TOKEN_FILE"), *cacert = NULL;
	const char *iface = NULL, *fifo = NULL, *cfilter = NULL, *target = NULL, *snaplen = NULL, *count = NULL;
	int list = 0, dlts = 0, config = 0, capture = 0, inner = 0, c;

	if (!server || !*server)
		server = EXTCAP_DEFAULT_SERVER;
	if (token && !*token)
		token = NULL;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_IFACES: list = 1; break;
		case O_VERSION: case O_RELOAD: case O_CTL_IN: case O_CTL_OUT: case O_DEBUG: case O_DEBUG_FILE: break;
		case O_DLTS: dlts = 1; break;
		case O_IFACE: iface = optarg; break;
		case O_CONFIG: config = 1; break;
		case O_CAPTURE: capture = 1; break;
		case O_FIFO: fifo = optarg; break;
		case O_CFILTER: cfilter = *optarg ? optarg : NULL; break;
		case O_SERVER: server = optarg; break;
		case O_TOKEN: token = *optarg ? optarg : NULL; break;
		case O_CACERT: cacert = *optarg ? optarg : NULL; break;
		case O_TARGET: target = *optarg ? optarg : NULL; break;
		case O_INNER: inner = 1; break;
		case O_SNAPLEN: snaplen = *optarg ? optarg : NULL; break;
		case O_COUNT: count = *optarg && strcmp(optarg, "0") ? optarg : NULL; break;
		case 'h': case O_HELP:
			printf("usage: podcapdump %s\n\nWireshark's extcap program for a podcap agent (see docs/sniff.md):\n"
			       "Wireshark lists the agent's pods and interfaces and captures them live.\n"
			       "Listing asks $PODCAP_SERVER (default " EXTCAP_DEFAULT_SERVER "), with the token\n"
			       "file $PODCAP_TOKEN_FILE.\n", strchr(EXTCAP_USAGE, ' ') + 1);
			return 0;
		default:
			fprintf(stderr, "podcapdump: unknown or incomplete option '%s'\n", argv[optind - 1]);
			fprintf(stderr, "usage: podcapdump %s\n", strchr(EXTCAP_USAGE, ' ') + 1);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "podcapdump: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (list) {
		/* (no {help=}: the project has no public URL; docs/sniff.md describes it) */
		printf("extcap {version=%s}{display=podcap: live capture from a Kubernetes node's podcap agent}\n",
		       PODCAP_VERSION);
		printf("interface {value=podcap}{display=podcap: a pod, interface or flow filter of an agent "
		       "(set in the interface's options)}\n");
		list_agent(server, token);
		return 0;
	}
	if (!iface) {
		fprintf(stderr, "podcapdump: --extcap-interface is needed (or --extcap-interfaces)\n");
		return 2;
	}
	const char *pod_or_if = NULL;
	int is_if = 0;
	char pod[EXTCAP_NAME_MAX + 2];
	if (!strncmp(iface, EXTCAP_PREFIX_POD, strlen(EXTCAP_PREFIX_POD))) {
		/* NS.NAME: a namespace has no dots, a pod name may */
		const char *v = iface + strlen(EXTCAP_PREFIX_POD), *dot = strchr(v, '.');
		if (!dot || dot == v || !dot[1] || strlen(v) > EXTCAP_NAME_MAX) {
			fprintf(stderr, "podcapdump: bad interface '%s' (podcap-pod-NAMESPACE.NAME)\n", iface);
			return 2;
		}
		snprintf(pod, sizeof(pod), "%.*s/%s", (int)(dot - v), v, dot + 1);
		pod_or_if = pod;
	} else if (!strncmp(iface, EXTCAP_PREFIX_IF, strlen(EXTCAP_PREFIX_IF)) && iface[strlen(EXTCAP_PREFIX_IF)]) {
		pod_or_if = iface + strlen(EXTCAP_PREFIX_IF);
		is_if = 1;
	} else if (strcmp(iface, "podcap")) {
		fprintf(stderr, "podcapdump: unknown interface '%s'\n", iface);
		return 2;
	}
	if (dlts) {
		/* The fifo carries pcapng, whose interface blocks give each packet's link
		 * type; Ethernet is what the agent writes for pods. */
		printf("dlt {number=1}{name=EN10MB}{display=Ethernet (pcapng: per interface)}\n");
		return 0;
	}
	if (config) {
		print_config(iface, server);
		return 0;
	}
	if (!capture || !fifo) {
		fprintf(stderr, "podcapdump: give --extcap-dlts, --extcap-config or --capture --fifo PATH\n");
		return 2;
	}
	if (pod_or_if && target) {
		fprintf(stderr, "podcapdump: --target is for the interface 'podcap'; '%s' names what it captures\n", iface);
		return 2;
	}
	if (!pod_or_if && !target) {
		fprintf(stderr, "podcapdump: interface 'podcap' needs --target (a pod, an interface or a flow filter)\n");
		return 2;
	}
	char *args[32];
	int n = 0;
	args[n++] = "podcapdump";
	if (is_if) {
		args[n++] = "-i";
		args[n++] = (char *)pod_or_if;
	}
	args[n++] = "-w";
	args[n++] = (char *)fifo;
	args[n++] = "--server";
	args[n++] = (char *)server;
	if (token) {
		args[n++] = "--token-file";
		args[n++] = (char *)token;
	}
	if (cacert) {
		args[n++] = "--cacert";
		args[n++] = (char *)cacert;
	}
	if (cfilter) {
		args[n++] = "-f";
		args[n++] = (char *)cfilter;
	}
	if (inner)
		args[n++] = "--inner";
	if (snaplen) {
		args[n++] = "-s";
		args[n++] = (char *)snaplen;
	}
	if (count) {
		args[n++] = "-c";
		args[n++] = (char *)count;
	}
	if (!is_if) {
		/* last, after "--": a target (or a flow filter) that starts with '-'
		 * is not an option */
		args[n++] = "--";
		args[n++] = (char *)(pod_or_if ? pod_or_if : target);
	}
	args[n] = NULL;
	return cmd_sniff(n, args);
}
