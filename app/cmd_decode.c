/* podcap decode — one line per packet of a capture file: what the decoder sees.
 *
 * This is the golden format of the decode tests, so it is stable and plain:
 *
 *   N CAPLEN/WIRELEN [vlan A[,B]] [mpls TOP[,+N][,BOTTOM]] [nsh spi S si I]
 *       OUTER [| TUNNEL [ID K] [depth D] | INNER]
 *       [flags [S.]] [frag first|later] len PAYLOAD[ cap CAPTURED] [malformed REASON]
 *
 * ID names the tunnel's identifier (dc_tunnel_id_name(): vni, teid, label, ...);
 * a GTP TEID is shown in hex, as 3GPP tools do.  mpls is the outermost label stack
 * (first label, how many between, last), nsh the first service path.
 *
 * OUTER/INNER are dc_tuple_format() tuples; for an untunnelled packet only OUTER is
 * shown.  Non-IP frames print "not-ip", unknown link types "unsupported".  A summary
 * (packets, per tunnel, per reason) follows the packets; -q prints only the summary.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "capture.h"
#include "decode.h"

#define USAGE "decode [-q] [--vxlan-port N]... [--no-decap] [--max-tunnel-depth N] FILE"

static void tcp_flags_str(uint8_t f, char *s)
{
	/* tcpdump's letters and order, so the output reads like tcpdump's. */
	static const struct { uint8_t bit; char c; } tab[] = {
		{DC_TCP_FIN, 'F'}, {DC_TCP_SYN, 'S'}, {DC_TCP_RST, 'R'}, {DC_TCP_PSH, 'P'},
		{DC_TCP_URG, 'U'}, {DC_TCP_CWR, 'W'}, {DC_TCP_ECE, 'E'}, {DC_TCP_ACK, '.'},
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
		if (f & tab[i].bit)
			s[n++] = tab[i].c;
	s[n] = '\0';
	if (!n)
		strcpy(s, "none");
}

static void print_packet(FILE *f, uint64_t n, const struct dc_packet *p)
{
	char a[DC_TUPLE_STRLEN], b[DC_TUPLE_STRLEN];

	fprintf(f, "%llu %u/%u", (unsigned long long)n, p->caplen, p->wirelen);
	if (p->vlan_depth) {
		fprintf(f, " vlan %u", p->vlan[0]);
		for (unsigned i = 1; i < p->vlan_depth && i < DC_MAX_VLANS; i++)
			fprintf(f, ",%u", p->vlan[i]);
		if (p->vlan_depth > DC_MAX_VLANS)
			fprintf(f, ",+%u", p->vlan_depth - DC_MAX_VLANS);
	}
	if (p->mpls_depth) {
		fprintf(f, " mpls %u", p->mpls_top);
		if (p->mpls_depth > 2)
			fprintf(f, ",+%u", p->mpls_depth - 2);
		if (p->mpls_depth > 1)
			fprintf(f, ",%u", p->mpls_bottom);
	}
	if (p->has_nsh)
		fprintf(f, " nsh spi %u si %u", p->nsh_path >> 8, p->nsh_path & 0xff);
	if (p->outer.family == 0) {
		/* Nothing at IP level: the reason is the whole story. */
		if (dc_is_malformed(p->reason))
			fprintf(f, " malformed %s\n", dc_reason_name(p->reason));
		else
			fprintf(f, " %s\n", dc_reason_name(p->reason));
		return;
	}
	fprintf(f, " %s", dc_tuple_format(&p->outer, a, sizeof a));
	if (p->tunnel != DC_TUN_NONE) {
		fprintf(f, " | %s", dc_tunnel_name(p->tunnel));
		if (p->has_vni && (p->tunnel == DC_TUN_GTPU))
			fprintf(f, " %s 0x%08x", dc_tunnel_id_name(p->tunnel), p->vni);
		else if (p->has_vni)
			fprintf(f, " %s %u", dc_tunnel_id_name(p->tunnel), p->vni);
		if (p->tunnel_depth > 1)
			fprintf(f, " depth %u", p->tunnel_depth);
		fprintf(f, " | %s", memcmp(&p->inner, &p->outer, sizeof p->inner) ?
			dc_tuple_format(&p->inner, b, sizeof b) : "-");
	}
	if (p->inner.proto == 6 && p->l4_off && p->reason != DC_R_TRUNC_TCP) {
		char fl[10];
		tcp_flags_str(p->tcp_flags, fl);
		fprintf(f, " [%s]", fl);
	}
	if (p->frag == DC_FRAG_FIRST)
		fprintf(f, " frag first");
	else if (p->frag == DC_FRAG_LATER)
		fprintf(f, " frag later");
	if (p->reason == DC_OK) {
		fprintf(f, " len %u", p->payload_wire);
		if (p->payload_len != p->payload_wire)
			fprintf(f, " cap %u", p->payload_len);
	} else if (dc_is_malformed(p->reason)) {
		fprintf(f, " malformed %s", dc_reason_name(p->reason));
	} else {
		fprintf(f, " %s", dc_reason_name(p->reason));
	}
	fputc('\n', f);
}

static void print_summary(FILE *f, const struct dc_counters *c)
{
	uint64_t bad = 0;
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		bad += c->by_reason[r];
	fprintf(f, "summary: packets %llu malformed %llu\n", (unsigned long long)c->packets,
		(unsigned long long)bad);
	for (int t = 1; t < DC_TUN__COUNT; t++)
		if (c->by_tunnel[t])
			fprintf(f, "summary: tunnel %s %llu\n", dc_tunnel_name(t),
				(unsigned long long)c->by_tunnel[t]);
	for (int r = 0; r < DC_R__COUNT; r++)
		if (c->by_reason[r])
			fprintf(f, "summary: reason %s %llu\n", dc_reason_name(r),
				(unsigned long long)c->by_reason[r]);
}

int cmd_decode(int argc, char **argv)
{
	static const struct option opts[] = {
		{"vxlan-port", required_argument, NULL, 'v'},
		{"no-decap", no_argument, NULL, 'n'},
		{"max-tunnel-depth", required_argument, NULL, 'd'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0, 0, 0, 0},
	};
	struct dc_config cfg;
	unsigned long long v;
	int quiet = 0, c;

	dc_config_default(&cfg);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			if (app_parse_uint(optarg, 1, 65535, &v) ||
			    dc_config_add_vxlan_port(&cfg, (uint16_t)v)) {
				fprintf(stderr, "podcap decode: bad or too many --vxlan-port '%s'\n", optarg);
				return app_usage(USAGE);
			}
			break;
		case 'n':
			cfg.decap = 0;
			break;
		case 'd':
			if (app_parse_uint(optarg, 0, 16, &v)) {
				fprintf(stderr, "podcap decode: --max-tunnel-depth wants 0..16\n");
				return app_usage(USAGE);
			}
			cfg.max_tunnel_depth = (uint8_t)v;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'h':
			printf("usage: podcap " USAGE "\n"
			       "Prints one line per packet: number, caplen/wirelen, vlan, outer tuple,\n"
			       "tunnel and VNI, inner tuple, TCP flags, payload length or the malformed\n"
			       "reason; then a summary.  -q: summary only.\n");
			return 0;
		default:
			/* unknown option, or one missing its argument */
			fprintf(stderr, "podcap decode: bad option '%s'\n", argv[optind - 1]);
			return app_usage(USAGE);
		}
	}
	if (optind != argc - 1)
		return app_usage(USAGE);

	const char *path = argv[optind];
	char err[256];
	struct cap_source *src = NULL;
	int rc = cap_open_file(path, &src, err, sizeof err);
	if (rc < 0) {
		/* cap_open_file's message already names the file */
		if (err[0])
			fprintf(stderr, "podcap decode: %s\n", err);
		else
			fprintf(stderr, "podcap decode: %s: %s\n", path, strerror(-rc));
		return 1;
	}

	struct dc_counters counters;
	memset(&counters, 0, sizeof counters);
	struct cap_packet pkt;
	struct dc_packet dp;
	uint64_t n = 0;
	int status = 0;
	while ((rc = cap_next(src, &pkt)) == 1) {
		dc_decode(&cfg, pkt.linktype, pkt.data, pkt.caplen, pkt.wirelen, &dp);
		dc_count(&counters, &dp);
		if (!quiet)
			print_packet(stdout, ++n, &dp);
	}
	if (rc < 0) {
		/* Every complete packet has been shown; say why the rest could not be. */
		fprintf(stderr, "podcap decode: %s: %s\n", path, cap_error(src));
		status = 1;
	}
	print_summary(stdout, &counters);
	cap_close(src);
	if (fflush(stdout) != 0)
		status = 1;
	return status;
}
