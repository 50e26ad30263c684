/* podcap store check DIR — verifies a packet store and says what can and cannot
 * be exported.  Read-only: safe beside a running agent. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "pktstore.h"

#define STORE_USAGE "store check DIR"

static void line(void *arg, const char *msg)
{
	(void)arg;
	printf("  %s\n", msg);
}

int cmd_store(int argc, char **argv)
{
	int want_help = 0;
	for (int i = 1; i < argc; i++)
		want_help |= !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
	if (want_help) {
		printf("usage: podcap " STORE_USAGE "\n\n"
		       "Verifies the packet store in DIR: its index, every segment file (present, as long as\n"
		       "the index says, its chunk checksums) and which stored packets can no longer be\n"
		       "exported.  Exit status: 0 sound, 1 damage found or the check failed, 2 bad usage.\n");
		return 0;
	}
	if (argc != 3 || strcmp(argv[1], "check")) {
		if (argc > 3 && !strcmp(argv[1], "check"))
			fprintf(stderr, "podcap store: unexpected argument '%s' (one DIR)\n", argv[3]);
		else
			fprintf(stderr, "podcap store: %s\n", argc < 2 ? "what to do? (check)" :
				strcmp(argv[1], "check") ? "unknown action (check)" : "DIR is required");
		return app_usage(STORE_USAGE);
	}
	if (app_check_path("store", "check", argv[2]) < 0)
		return app_usage(STORE_USAGE);
	struct pks_config cfg;
	pks_config_default(&cfg);
	cfg.readonly = 1;
	struct pks *s;
	char err[512];
	if (pks_open(argv[2], &cfg, &s, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap store: %s\n", err);
		return 1;
	}
	printf("store %s:\n", argv[2]);
	struct pks_check c;
	int rc = pks_check(s, line, NULL, &c);
	if (rc < 0) {
		fprintf(stderr, "podcap store: %s\n", pks_errmsg(s));
		pks_close(s);
		return 1;
	}
	printf("index %s; %" PRIu64 " segments (%" PRIu64 " bytes), %" PRIu64 " damaged, %" PRIu64
	       " without checksums; %" PRIu64 " packets of %" PRIu64 " flows indexed, %" PRIu64
	       " cannot be exported%s\n",
	       c.index_ok ? "ok" : "DAMAGED", c.segments, c.bytes, c.segments_bad, c.segments_unchecked,
	       c.packets, c.flows, c.packets_lost, rc ? "" : ": sound");
	pks_close(s);
	return rc ? 1 : 0;
}
