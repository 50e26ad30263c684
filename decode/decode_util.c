/* decode — configuration, names, counters and formatting: everything that is not
 * on the per-packet walk (kept apart so decode.c stays one tight unit). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "decode.h"

void dc_config_default(struct dc_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->vxlan_ports[0] = 4789; /* IANA */
	cfg->vxlan_ports[1] = 8472; /* Linux kernel default, flannel */
	cfg->geneve_port = 6081;
	cfg->max_tunnel_depth = 3;
	cfg->decap = 1;
}

int dc_config_add_vxlan_port(struct dc_config *cfg, uint16_t port)
{
	if (port == 0)
		return -EINVAL;
	for (unsigned i = 0; i < DC_MAX_VXLAN_PORTS; i++)
		if (cfg->vxlan_ports[i] == port)
			return 0;
	for (unsigned i = 0; i < DC_MAX_VXLAN_PORTS; i++) {
		if (cfg->vxlan_ports[i] == 0) {
			cfg->vxlan_ports[i] = port;
			return 0;
		}
	}
	return -ENOSPC;
}

static const char *const reason_names[DC_R__COUNT] = {
	[DC_OK] = "ok",
	[DC_NOT_IP] = "not-ip",
	[DC_UNSUPPORTED] = "unsupported",
	[DC_R_TRUNC_LINK] = "truncated-link",
	[DC_R_TRUNC_VLAN] = "truncated-vlan",
	[DC_R_VLAN_DEPTH] = "vlan-depth",
	[DC_R_TRUNC_IPV4] = "truncated-ipv4",
	[DC_R_IPV4_VERSION] = "bad-ipv4-version",
	[DC_R_BAD_IHL] = "bad-ihl",
	[DC_R_IPV4_LEN] = "bad-ipv4-len",
	[DC_R_TRUNC_IPV6] = "truncated-ipv6",
	[DC_R_IPV6_VERSION] = "bad-ipv6-version",
	[DC_R_TRUNC_IPV6_EXT] = "truncated-ipv6-ext",
	[DC_R_IPV6_EXT_DEPTH] = "ipv6-ext-depth",
	[DC_R_TRUNC_TCP] = "truncated-tcp",
	[DC_R_TCP_OFFSET] = "bad-tcp-offset",
	[DC_R_TRUNC_UDP] = "truncated-udp",
	[DC_R_UDP_LEN] = "bad-udp-len",
	[DC_R_TRUNC_ICMP] = "truncated-icmp",
	[DC_R_TRUNC_SCTP] = "truncated-sctp",
	[DC_R_TRUNC_VXLAN] = "truncated-vxlan",
	[DC_R_VXLAN_FLAGS] = "vxlan-flags",
	[DC_R_TRUNC_GENEVE] = "truncated-geneve",
	[DC_R_GENEVE_VERSION] = "geneve-version",
	[DC_R_GENEVE_OPTLEN] = "geneve-optlen",
	[DC_R_TRUNC_GRE] = "truncated-gre",
	[DC_R_GRE_VERSION] = "gre-version",
	[DC_R_TRUNC_ERSPAN] = "truncated-erspan",
	[DC_R_ERSPAN_VERSION] = "erspan-version",
	[DC_R_TUNNEL_DEPTH] = "tunnel-depth",
	[DC_R_TRUNC_GTP] = "truncated-gtp",
	[DC_R_GTP_VERSION] = "gtp-version",
	[DC_R_GTP_LEN] = "gtp-len",
	[DC_R_GTP_EXT] = "gtp-ext",
	[DC_R_TRUNC_MPLS] = "truncated-mpls",
	[DC_R_MPLS_DEPTH] = "mpls-depth",
	[DC_R_TRUNC_VXLAN_GPE] = "truncated-vxlan-gpe",
	[DC_R_VXLAN_GPE_FLAGS] = "vxlan-gpe-flags",
	[DC_R_TRUNC_NSH] = "truncated-nsh",
	[DC_R_NSH_VERSION] = "nsh-version",
	[DC_R_NSH_LEN] = "nsh-len",
	[DC_R_TRUNC_TEREDO] = "truncated-teredo",
	[DC_R_TRUNC_AYIYA] = "truncated-ayiya",
	[DC_R_TRUNC_WCCP] = "truncated-wccp",
	[DC_R_TRUNC_CMD] = "truncated-cmd",
	[DC_R_TRUNC_WLAN] = "truncated-wlan",
	[DC_R_TRUNC_CAPWAP] = "truncated-capwap",
	[DC_R_CAPWAP_HLEN] = "capwap-hlen",
	[DC_R_IPV6_JUMBO] = "bad-ipv6-jumbo",
	[DC_R_LAYER_DEPTH] = "layer-depth",
};

const char *dc_reason_name(int reason)
{
	if (reason < 0 || reason >= DC_R__COUNT || !reason_names[reason])
		return "unknown";
	return reason_names[reason];
}

static const char *const tunnel_names[DC_TUN__COUNT] = {
	[DC_TUN_NONE] = "none",
	[DC_TUN_VXLAN] = "vxlan",
	[DC_TUN_GENEVE] = "geneve",
	[DC_TUN_GRE] = "gre",
	[DC_TUN_ERSPAN] = "erspan",
	[DC_TUN_IPIP] = "ipip",
	[DC_TUN_6IN4] = "6in4",
	[DC_TUN_4IN6] = "4in6",
	[DC_TUN_6IN6] = "6in6",
	[DC_TUN_GTPU] = "gtp-u",
	[DC_TUN_GTPV0] = "gtp-v0",
	[DC_TUN_GTP_PRIME] = "gtp-prime",
	[DC_TUN_GRE_UDP] = "gre-udp",
	[DC_TUN_MPLS] = "mpls",
	[DC_TUN_VXLAN_GPE] = "vxlan-gpe",
	[DC_TUN_TEREDO] = "teredo",
	[DC_TUN_AYIYA] = "ayiya",
	[DC_TUN_WCCP] = "wccp",
	[DC_TUN_CAPWAP] = "capwap",
};

const char *dc_tunnel_name(int tunnel)
{
	if (tunnel < 0 || tunnel >= DC_TUN__COUNT || !tunnel_names[tunnel])
		return "unknown";
	return tunnel_names[tunnel];
}

const char *dc_tunnel_id_name(int tunnel)
{
	/* The tunnels that existed first print "vni" for all their identifiers (the
	 * golden format); the later ones say what theirs is. */
	switch (tunnel) {
	case DC_TUN_GTPU: return "teid";
	case DC_TUN_GTPV0: return "flow";
	case DC_TUN_MPLS: return "label";
	case DC_TUN_WCCP: return "service";
	default: return "vni";
	}
}

void dc_count(struct dc_counters *c, const struct dc_packet *p)
{
	c->packets++;
	if (p->reason < DC_R__COUNT)
		c->by_reason[p->reason]++;
	if (p->tunnel < DC_TUN__COUNT)
		c->by_tunnel[p->tunnel]++;
}

const char *dc_proto_name(int proto, int family)
{
	switch (proto) {
	case 1: return "ICMP";
	case 2: return "IGMP";
	case 4: return "IPIP";
	case 6: return "TCP";
	case 17: return "UDP";
	case 41: return "IPv6";
	case 47: return "GRE";
	case 50: return "ESP";
	case 51: return "AH";
	case 58: return "ICMPv6";
	case 59: return family == 6 ? "NoNext" : "proto-59";
	case 89: return "OSPF";
	case 103: return "PIM";
	case 112: return "VRRP";
	case 132: return "SCTP";
	case 137: return "MPLS";
	default: return NULL;
	}
}

/* Writes an address, IPv6 in brackets so a following ":port" stays readable. */
static int put_addr(char *buf, size_t len, int family, const uint8_t *a)
{
	char s[INET6_ADDRSTRLEN];
	if (family == 4) {
		inet_ntop(AF_INET, a, s, sizeof s);
		return snprintf(buf, len, "%s", s);
	}
	inet_ntop(AF_INET6, a, s, sizeof s);
	return snprintf(buf, len, "[%s]", s);
}

char *dc_tuple_format(const struct dc_tuple *t, char *buf, size_t len)
{
	if (!len)
		return buf;
	buf[0] = '\0';
	if (t->family != 4 && t->family != 6) {
		snprintf(buf, len, "-");
		return buf;
	}
	/* Ports are shown for the protocols that have them; ICMP shows type/code. */
	int ports = t->proto == 6 || t->proto == 17 || t->proto == 132;
	int icmp = t->proto == 1 || t->proto == 58;
	size_t n = 0;
	int k;
#define PUT(expr) do { k = (expr); if (k < 0) return buf; n += (size_t)k; if (n >= len) return buf; } while (0)
	PUT(put_addr(buf + n, len - n, t->family, t->src));
	if (ports)
		PUT(snprintf(buf + n, len - n, ":%u", t->sport));
	PUT(snprintf(buf + n, len - n, " -> "));
	PUT(put_addr(buf + n, len - n, t->family, t->dst));
	if (ports)
		PUT(snprintf(buf + n, len - n, ":%u", t->dport));
	const char *name = dc_proto_name(t->proto, t->family);
	if (name)
		PUT(snprintf(buf + n, len - n, " %s", name));
	else
		PUT(snprintf(buf + n, len - n, " proto-%u", t->proto));
	if (icmp)
		PUT(snprintf(buf + n, len - n, " %u/%u", t->sport, t->dport));
#undef PUT
	return buf;
}
