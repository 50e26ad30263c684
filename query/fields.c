/* query — the field table: every filter field is one row here.
 *
 * A row gives the field's name, its type (how values parse, which operators
 * apply, what SQL a test becomes), the SQL column expression(s) on `flows f`,
 * an optional `exists` expression, an optional wrapper (for columns of another
 * table), the index that serves it (for documentation and GET /api/v1/fields)
 * and a one-sentence description.  Adding a column to the flow table and to the
 * language is one line, e.g.
 *     FIELD("src_pod", T_POD, RG | GL, 0, "flows_src_pod", "pod of the client", .col = {"f.src_pod"}),
 * Several columns are OR-ed (either end).  A family field (FAM, "label.KEY")
 * takes any "label.<key>"; the key becomes a bound parameter, never SQL text.
 * The SQL strings are constants of this file: nothing a user types gets here. */
#include <string.h>
#include <strings.h>

#include "internal.h"

/* type, its name for users, the operators it takes */
#define T_ADDR Q_TYPE_ADDR, "address", "== != in exists"
#define T_PORT Q_TYPE_PORT, "port", "== != < <= > >= in exists"
#define T_INT Q_TYPE_INT, "integer", "== != < <= > >= in exists"
#define T_ID Q_TYPE_ID, "id", "== != < <= > >= in exists"
#define T_COUNT Q_TYPE_COUNT, "count", "== != < <= > >= in exists"
#define T_SIZE Q_TYPE_SIZE, "size", "== != < <= > >= in exists"
#define T_DURATION Q_TYPE_DURATION, "duration", "== != < <= > >= in exists"
#define T_PROTO Q_TYPE_PROTO, "protocol", "== != < <= > >= in exists"
#define T_TEXT Q_TYPE_TEXT, "string", "== != in exists"
#define T_GLOB Q_TYPE_TEXT, "string", "== != ~ !~ in exists"
#define T_APP Q_TYPE_APP, "app", "== != ~ !~ in exists"
#define T_POD Q_TYPE_POD, "pod", "== != ~ !~ in exists"
#define T_NS Q_TYPE_NS, "namespace", "== != ~ !~ in exists"
#define T_RISK Q_TYPE_RISK, "risk", "== != < <= > >= ~ !~ in exists"
#define T_WORKLOAD Q_TYPE_POD, "workload", "== != ~ !~ in exists"
#define T_LABEL Q_TYPE_LABEL, "label", "== != ~ !~ in exists"
#define T_SERVICE Q_TYPE_SERVICE, "service", "== != ~ !~ in exists"
#define T_CONF Q_TYPE_CONF, "confidence", "== != in exists"

/* The extra level lets the T_ macros expand into three arguments. */
#define FIELD(...) FIELD_(__VA_ARGS__)
#define FIELD_(name_, type_, tname_, ops_, flags_, max_, index_, desc_, ...)                   \
	{ .info = { name_, tname_, ops_, desc_, index_ }, .type = type_, .flags = flags_,      \
	  .max = max_, __VA_ARGS__ }

#define NC Q_F_NOCASE
#define GL Q_F_GLOB
#define RG Q_F_RANGE
#define FAM Q_F_FAMILY
#define OBS_WRAP "f.obs_id IN (SELECT op.id FROM observation_points op WHERE %s)"

const struct q_field_def q_field_defs[] = {
	FIELD("id", T_ID, 0, 0, "PRIMARY KEY", "flow id (as in the API and `podcap export --flow`)",
	      .col = {"f.id"}),
	/* addresses and ports of the (inner) flow: src is the client, dst the server */
	FIELD("src", T_ADDR, RG, 0, "flows_src_dport", "client address (the flow's initiator); CIDR allowed",
	      .col = {"f.src"}),
	FIELD("dst", T_ADDR, RG, 0, "flows_dst_dport", "server address; CIDR allowed", .col = {"f.dst"}),
	FIELD("ip", T_ADDR, RG, 0, "flows_src_dport, flows_dst_dport", "either address, src or dst",
	      .col = {"f.src", "f.dst"}),
	FIELD("sport", T_PORT, 0, 0, NULL, "client port", .col = {"f.sport"}),
	FIELD("dport", T_PORT, 0, 0, "flows_dport", "server port", .col = {"f.dport"}),
	FIELD("port", T_PORT, 0, 0, NULL, "either port, sport or dport",
	      .col = {"f.sport", "f.dport"}),
	FIELD("proto", T_PROTO, 0, 0, NULL, "IP protocol: tcp, udp, icmp, icmpv6, sctp, ... or a number",
	      .col = {"f.ip_proto"}),
	FIELD("family", T_INT, 0, 255, NULL, "IP version of the flow, 4 or 6", .col = {"f.family"}),
	FIELD("vlan", T_INT, 0, 4095, NULL, "VLAN id (exists: the flow was tagged)", .col = {"f.vlan"},
	      .exists = "f.vlan <> 0"),
	/* classification */
	FIELD("app", T_APP, NC | GL, 0, "flows_app", "nDPI protocol: \"TLS\" matches TLS and TLS.*, "
	      "\"Facebook\" also TLS.Facebook, \"TLS.Facebook\" needs both parts "
	      "(exists: classified, not Unknown)",
	      .col = {"f.app_name", "f.master_name", "f.proto_name"},
	      .exists = "(f.app_name IS NOT NULL AND f.app_name <> 'Unknown')"),
	FIELD("category", T_GLOB, NC | GL, 0, NULL, "nDPI category (Web, Media, Network, ...)",
	      .col = {"f.category"}),
	FIELD("host", T_GLOB, NC | GL, 0, NULL, "TLS SNI, HTTP Host or DNS query name", .col = {"f.host"}),
	FIELD("url", T_GLOB, GL, 0, NULL, "HTTP request URL", .col = {"f.url"}),
	FIELD("http_status", T_INT, 0, 999, NULL, "HTTP response status code", .col = {"f.http_status"}),
	FIELD("dns_rcode", T_INT, 0, 65535, NULL, "DNS response code (0 = no error, 3 = NXDOMAIN)",
	      .col = {"f.dns_rcode"}),
	FIELD("ja3c", T_TEXT, NC, 0, NULL, "JA3 hash of the TLS client hello", .col = {"f.ja3c"}),
	FIELD("ja3s", T_TEXT, NC, 0, NULL, "JA3S hash of the TLS server hello", .col = {"f.ja3s"}),
	FIELD("risk", T_RISK, NC | GL, INT64_MAX, NULL, "an nDPI risk name the flow has "
	      "(\"Self-signed Certificate\"), or the risk bitmap as a number (risk > 0)",
	      .col = {"f.risk", "f.risk_names"}, .exists = "f.risk <> 0"),
	FIELD("community_id", T_TEXT, 0, 0, NULL, "Community ID flow hash (\"1:...=\"; quote it)",
	      .col = {"f.community_id"}),
	FIELD("confidence", T_CONF, 0, 0, NULL, "how nDPI named the app: dpi, dpi-cache, by-port, by-ip, "
	      "unknown; guess = by-port or by-ip (exists: classified or given up)", .col = {"f.confidence"}),
	/* Kubernetes: who the ends are (by address at the flow's time) */
	FIELD("pod", T_POD, RG | GL, 0, "flows_src_pod, flows_dst_pod, flows_pod", "a pod at either end "
	      "(the client's, the server's, or the observation point's), \"namespace/name\", or "
	      "\"name\" in any namespace", .col = {"f.src_pod", "f.dst_pod", "f.pod"}),
	FIELD("src_pod", T_POD, RG | GL, 0, "flows_src_pod", "pod of the client address",
	      .col = {"f.src_pod"}),
	FIELD("dst_pod", T_POD, RG | GL, 0, "flows_dst_pod", "pod of the server address (after DNAT: "
	      "the Service's backend)", .col = {"f.dst_pod"}),
	FIELD("ns", T_NS, RG | GL, 0, "flows_src_pod, flows_dst_pod, flows_pod", "namespace of a pod at "
	      "either end", .col = {"f.src_pod", "f.dst_pod", "f.pod"}),
	FIELD("src_ns", T_NS, RG | GL, 0, "flows_src_pod", "namespace of the client's pod",
	      .col = {"f.src_pod"}),
	FIELD("dst_ns", T_NS, RG | GL, 0, "flows_dst_pod", "namespace of the server's pod",
	      .col = {"f.dst_pod"}),
	FIELD("workload", T_WORKLOAD, GL, 0, NULL, "owner of a pod at either end: \"Deployment/web\", "
	      "or \"web\" of any kind", .col = {"f.src_workload", "f.dst_workload"}),
	FIELD("src_workload", T_WORKLOAD, GL, 0, NULL, "owner of the client's pod", .col = {"f.src_workload"}),
	FIELD("dst_workload", T_WORKLOAD, GL, 0, NULL, "owner of the server's pod", .col = {"f.dst_workload"}),
	FIELD("label.KEY", T_LABEL, GL | FAM, 0, NULL, "label KEY of a pod at either end: label.app == web",
	      .col = {"f.src_labels", "f.dst_labels"}),
	FIELD("src_label.KEY", T_LABEL, GL | FAM, 0, NULL, "label KEY of the client's pod",
	      .col = {"f.src_labels"}),
	FIELD("dst_label.KEY", T_LABEL, GL | FAM, 0, NULL, "label KEY of the server's pod",
	      .col = {"f.dst_labels"}),
	FIELD("service", T_SERVICE, GL, 0, NULL, "the Service a ClusterIP, external IP or NodePort led to: "
	      "\"namespace/name:port\", \"namespace/name\" (any port) or \"name\"",
	      .col = {"f.service"}),
	FIELD("node", T_GLOB, GL, 0, NULL, "node of either end: a pod's node, or the node whose address it is",
	      .col = {"f.src_node", "f.dst_node"}),
	FIELD("src_node", T_GLOB, GL, 0, NULL, "node of the client", .col = {"f.src_node"}),
	FIELD("dst_node", T_GLOB, GL, 0, NULL, "node of the server", .col = {"f.dst_node"}),
	FIELD("outer.node", T_GLOB, GL, 0, NULL, "node of either outer (tunnel) address",
	      .col = {"f.outer_src_node", "f.outer_dst_node"}),
	/* where the flow was seen: its observation point */
	FIELD("obs.pod", T_POD, RG | GL, 0, "flows_pod", "pod of the observation point (the veth's pod), "
	      "\"namespace/name\", or \"name\" in any namespace", .col = {"f.pod"}),
	FIELD("obs.ns", T_NS, RG | GL, 0, "flows_pod", "namespace of the observation point's pod",
	      .col = {"f.pod"}),
	FIELD("iface", T_GLOB, GL, 0, NULL, "interface (or input file) of the observation point",
	      .col = {"op.iface"}, .wrap = OBS_WRAP, .exists = "f.obs_id IS NOT NULL"),
	FIELD("direction", T_TEXT, NC, 0, NULL, "direction of the observation point",
	      .col = {"op.direction"}, .wrap = OBS_WRAP, .exists = "f.obs_id IS NOT NULL"),
	/* tunnels: the outer (underlay) header of an encapsulated flow */
	FIELD("tunnel", T_TEXT, NC, 0, NULL, "encapsulation (the outermost): none, vxlan, geneve, gre, erspan, "
	      "ipip, 6in4, 4in6, 6in6, gtp-u, gtp-v0, gtp-prime, gre-udp, mpls, vxlan-gpe, teredo, ayiya, wccp, "
	      "capwap (exists: not none)", .col = {"f.tunnel"},
	      .exists = "f.tunnel <> 'none'"),
	FIELD("vni", T_INT, 0, 4294967295, NULL, "tunnel id: VXLAN/Geneve VNI, GRE key, ERSPAN session",
	      .col = {"f.vni"}),
	FIELD("outer.src", T_ADDR, RG, 0, "flows_outer_src", "outer source address", .col = {"f.outer_src"}),
	FIELD("outer.dst", T_ADDR, RG, 0, "flows_outer_dst", "outer destination address",
	      .col = {"f.outer_dst"}),
	FIELD("outer.ip", T_ADDR, RG, 0, "flows_outer_src, flows_outer_dst", "either outer address",
	      .col = {"f.outer_src", "f.outer_dst"}),
	FIELD("outer.sport", T_PORT, 0, 0, NULL, "outer source port", .col = {"f.outer_sport"}),
	FIELD("outer.dport", T_PORT, 0, 0, NULL, "outer destination port (4789, 8472, 6081, ...)",
	      .col = {"f.outer_dport"}),
	FIELD("outer.port", T_PORT, 0, 0, NULL, "either outer port",
	      .col = {"f.outer_sport", "f.outer_dport"}),
	FIELD("outer.proto", T_PROTO, 0, 0, NULL, "outer IP protocol (udp, gre, ipip = 4, ...)",
	      .col = {"f.outer_proto"}),
	/* counters, both directions added */
	FIELD("bytes", T_SIZE, 0, 0, NULL, "bytes on the wire, both directions",
	      .col = {"(f.c2s_bytes + f.s2c_bytes)"}),
	FIELD("payload", T_SIZE, 0, 0, NULL, "L4 payload bytes, both directions",
	      .col = {"(f.c2s_payload + f.s2c_payload)"}),
	FIELD("packets", T_COUNT, 0, 0, NULL, "packets, both directions", .col = {"(f.c2s_pkts + f.s2c_pkts)"}),
	FIELD("duration", T_DURATION, 0, 0, NULL, "last packet time - first packet time",
	      .col = {"(f.last_us - f.first_us)"}),
	FIELD("rtt", T_DURATION, 0, 0, NULL, "TCP handshake round-trip time (exists: measured)",
	      .col = {"f.rtt_us"}),
	FIELD("retrans", T_COUNT, 0, 0, NULL, "TCP retransmissions, both directions",
	      .col = {"(f.c2s_retrans + f.s2c_retrans)"}),
	FIELD("ooo", T_COUNT, 0, 0, NULL, "TCP out-of-order segments, both directions",
	      .col = {"(f.c2s_ooo + f.s2c_ooo)"}),
	FIELD("frags", T_COUNT, 0, 0, NULL, "IP fragments", .col = {"f.frags"}),
	FIELD("syn", T_COUNT, 0, 0, NULL, "TCP SYN packets (without ACK)", .col = {"f.syn"}),
	FIELD("synack", T_COUNT, 0, 0, NULL, "TCP SYN+ACK packets", .col = {"f.synack"}),
	FIELD("fin", T_COUNT, 0, 0, NULL, "TCP FIN packets", .col = {"f.fin"}),
	FIELD("rst", T_COUNT, 0, 0, NULL, "TCP RST packets", .col = {"f.rst"}),
	FIELD("end", T_TEXT, NC, 0, NULL, "why the record was written: active, idle, tcp, evicted, flush, counts (kernel counters only: none of its packets reached user space)",
	      .col = {"f.end_reason"}),
};
const size_t q_nfields = sizeof(q_field_defs) / sizeof(q_field_defs[0]);

size_t q_field_count(void)
{
	return q_nfields;
}

const struct q_field_info *q_field(size_t i)
{
	return i < q_nfields ? &q_field_defs[i].info : NULL;
}

const struct q_field_def *q_field_find(const char *name, size_t len, size_t *keyoff)
{
	if (keyoff)
		*keyoff = 0;
	for (size_t i = 0; i < q_nfields; i++) {
		const char *n = q_field_defs[i].info.name;
		if (q_field_defs[i].flags & Q_F_FAMILY) {
			/* "label.KEY": the prefix up to and with the '.', then a key */
			size_t pl = (size_t)(strchr(n, '.') - n) + 1;
			if (len > pl && strncasecmp(n, name, pl) == 0) {
				if (keyoff)
					*keyoff = pl;
				return &q_field_defs[i];
			}
			continue;
		}
		if (strlen(n) == len && strncasecmp(n, name, len) == 0)
			return &q_field_defs[i];
	}
	return NULL;
}

int q_label_key_ok(const char *key, size_t len)
{
	if (!len || len > Q_LABEL_KEY_MAX)
		return 0;
	int slashes = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c == '/') {
			if (++slashes > 1 || i == 0 || i + 1 == len)
				return 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* nDPI 4.2's confidence names (ndpi_confidence_get_name) and ours. */
static const struct {
	const char *alias, *canon;
} conf_names[] = {
	{"dpi", "dpi"}, {"dpi-cache", "dpi-cache"}, {"by-port", "by-port"}, {"by-ip", "by-ip"},
	{"unknown", "unknown"}, {"guess", "guess"},
	{"DPI (cache)", "dpi-cache"}, {"cache", "dpi-cache"}, {"Match by port", "by-port"},
	{"port", "by-port"}, {"Match by IP", "by-ip"}, {"ip", "by-ip"}, {"guessed", "guess"},
};

const char *q_confidence_canon(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof(conf_names) / sizeof(conf_names[0]); i++)
		if (strlen(conf_names[i].alias) == n && strncasecmp(conf_names[i].alias, s, n) == 0)
			return conf_names[i].canon;
	return NULL;
}

/* Optimal string alignment distance, ASCII case folded, capped: names are short. */
static unsigned edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
	enum { MAXN = 24 };
	if (la > MAXN || lb > MAXN)
		return 99;
	unsigned d[MAXN + 1][MAXN + 1];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (unsigned)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			char ca = a[i - 1] | (char)((a[i - 1] >= 'A' && a[i - 1] <= 'Z') ? 0x20 : 0);
			char cb = b[j - 1] | (char)((b[j - 1] >= 'A' && b[j - 1] <= 'Z') ? 0x20 : 0);
			unsigned cost = ca != cb;
			unsigned v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

/* Names people bring from Wireshark, tcpdump and Hubble. */
static const struct {
	const char *alias, *field;
} aliases[] = {
	{"ip.src", "src"}, {"ip.dst", "dst"}, {"ip.addr", "ip"}, {"addr", "ip"},
	{"host.ip", "ip"}, {"tcp.port", "port"}, {"udp.port", "port"},
	{"tcp.srcport", "sport"}, {"tcp.dstport", "dport"}, {"udp.srcport", "sport"},
	{"udp.dstport", "dport"}, {"protocol", "app"}, {"l7", "app"}, {"sni", "host"},
	{"namespace", "ns"}, {"interface", "iface"}, {"dev", "iface"}, {"cid", "community_id"},
	{"size", "bytes"}, {"len", "bytes"}, {"pkts", "packets"}, {"srcport", "sport"},
	{"dstport", "dport"}, {"src_port", "sport"}, {"dst_port", "dport"},
	{"src.pod", "src_pod"}, {"dst.pod", "dst_pod"}, {"svc", "service"}, {"k8s.pod", "pod"},
	{"labels", "label.KEY"},
};

const char *q_field_suggest(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
		if (strlen(aliases[i].alias) == len && strncasecmp(aliases[i].alias, name, len) == 0)
			return aliases[i].field;
	const char *best = NULL;
	unsigned bestd = 3;
	for (size_t i = 0; i < q_nfields; i++) {
		const char *n = q_field_defs[i].info.name;
		unsigned d = edit_distance(name, len, n, strlen(n));
		/* One edit in a two-letter name makes any word look close: demand less. */
		if (d < bestd && d < strlen(n)) {
			bestd = d;
			best = n;
		}
	}
	return best;
}

const char *q_type_name(enum q_type t)
{
	static const char *const names[Q_TYPE_N] = {
		[Q_TYPE_ADDR] = "address", [Q_TYPE_PORT] = "port", [Q_TYPE_INT] = "integer",
		[Q_TYPE_ID] = "id", [Q_TYPE_COUNT] = "count", [Q_TYPE_SIZE] = "size",
		[Q_TYPE_DURATION] = "duration", [Q_TYPE_PROTO] = "protocol", [Q_TYPE_TEXT] = "string",
		[Q_TYPE_APP] = "app", [Q_TYPE_POD] = "pod", [Q_TYPE_NS] = "namespace",
		[Q_TYPE_RISK] = "risk", [Q_TYPE_LABEL] = "label", [Q_TYPE_SERVICE] = "service",
		[Q_TYPE_CONF] = "confidence",
	};
	return (unsigned)t < Q_TYPE_N ? names[t] : "?";
}
