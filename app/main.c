/* podcap — packet capture and traffic analysis for Kubernetes nodes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "server.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{"decode", cmd_decode, "print one line per packet of a capture file (outer -> inner, tunnel, malformed reason)"},
	{"read", cmd_read, "read capture files into flow records (SQLite) and, optionally, packet segments"},
	{"flows", cmd_flows, "list stored flows (table, JSON or CSV) with simple filters"},
	{"top", cmd_top, "the applications, addresses, ports or pods with the most traffic among a filter's flows"},
	{"export", cmd_export, "write the packets of a flow or of a filter's flows as pcapng or pcap"},
	{"run", cmd_run, "the node agent: live capture -> flows -> store"},
	{"store", cmd_store, "check a packet store: what can and cannot be exported"},
	{"serve", cmd_serve, "the query API and the web page over an existing flow database"},
	{"sniff", cmd_sniff, "a pod's packets live from an agent, as pcapng (| wireshark -k -i -)"},
	{"extcap", cmd_extcap, "Wireshark's extcap program for an agent (installed as podcapdump)"},
};

static void help(FILE *f)
{
	fprintf(f, "usage: podcap <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'podcap <command> --help' describes a command's options.\n");
}

int app_usage(const char *usage)
{
	fprintf(stderr, "usage: podcap %s\n(see 'podcap %.*s --help')\n", usage,
		(int)strcspn(usage, " "), usage);
	return 2;
}

/* Numbers on the command line are digits only: strtoull alone would take a
 * leading space, a '+' or a '-' (which wraps around), so " 5" or "-1" are refused
 * here before it sees them. */
static int all_digits_start(const char *s)
{
	return s && *s >= '0' && *s <= '9';
}

int app_parse_uint(const char *s, unsigned long long min, unsigned long long max,
		   unsigned long long *out)
{
	char *end;
	if (!all_digits_start(s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int app_parse_size(const char *s, unsigned long long *out)
{
	char *end;
	if (!all_digits_start(s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	unsigned long long mul = 1;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': mul = 1ULL << 10; end++; break;
	case 'm': case 'M': mul = 1ULL << 20; end++; break;
	case 'g': case 'G': mul = 1ULL << 30; end++; break;
	case 't': case 'T': mul = 1ULL << 40; end++; break;
	default: return -EINVAL;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || v > ~0ULL / mul)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

int app_check_path(const char *cmd, const char *opt, const char *val)
{
	if (val && *val && *val != '-')
		return 0;
	if (!val || !*val)
		fprintf(stderr, "podcap %s: %s needs a path, got an empty one\n", cmd, opt);
	else
		fprintf(stderr, "podcap %s: %s '%s': a path may not start with '-' (a missing value?); "
			"write ./%s for a file named so\n", cmd, opt, val, val);
	return -EINVAL;
}

int app_check_server(const char *cmd, const char *url)
{
	/* what libcurl would refuse later as a runtime error (exit 1), or send
	 * somewhere unexpected (ftp://, a bare word taken as a host name) */
	const char *host = !strncasecmp(url, "http://", 7) ? url + 7 : !strncasecmp(url, "https://", 8) ? url + 8 : NULL;
	if (host && *host && *host != '/' && *host != ':' && *host != '?')
		return 0;
	fprintf(stderr, "podcap %s: --server '%s': expected http://HOST[:PORT] or https://HOST[:PORT]\n", cmd, url);
	return -EINVAL;
}

int app_check_listen(const char *cmd, const char *addr)
{
	char err[256];
	if (srv_listen_check(addr, err, sizeof(err)) == 0)
		return 0;
	fprintf(stderr, "podcap %s: --listen: %s\n", cmd, err);
	return -EINVAL;
}

int main(int argc, char **argv)
{
	/* Installed under Wireshark's extcap folder as "podcapdump", a link to this
	 * binary: Wireshark calls it with its own options and no subcommand. */
	const char *base = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
	base = base ? base + 1 : argc > 0 && argv[0] ? argv[0] : "";
	if (!strcmp(base, "podcapdump"))
		return cmd_extcap(argc, argv);
	if (argc < 2) {
		help(stderr);
		return 2;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
		/* "podcap help read" is "podcap read --help" */
		for (size_t i = 0; argc == 3 && i < sizeof(commands) / sizeof(commands[0]); i++)
			if (!strcmp(argv[2], commands[i].name)) {
				char prog[64], help_opt[] = "--help";
				snprintf(prog, sizeof(prog), "podcap %s", argv[2]);
				char *hargv[] = {prog, help_opt, NULL};
				return commands[i].run(2, hargv);
			}
		if (argc == 3) {
			fprintf(stderr, "podcap: no command '%s'\n", argv[2]);
			help(stderr);
			return 2;
		}
		help(stdout);
		return 0;
	}
	if (!strcmp(name, "--version") || !strcmp(name, "version")) {
		printf("podcap %s\n", PODCAP_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(name, commands[i].name)) {
			/* getopt prefixes its messages with argv[0]: make it "podcap read". */
			char prog[64];
			snprintf(prog, sizeof(prog), "podcap %s", name);
			argv[1] = prog;
			return commands[i].run(argc - 1, argv + 1);
		}
	fprintf(stderr, "podcap: unknown command '%s'\n", name);
	help(stderr);
	return 2;
}
