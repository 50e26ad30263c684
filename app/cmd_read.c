/* podcap read FILE... --db PATH — capture files to classified flow records. */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Reads one file into the engine; 0, 1 when the file is damaged (the next files
 * are still read), -1 when the engine failed (stop). */
static int read_file(struct engine *e, struct cap_source *src, const char *path, int progress)
{
	char *tmp = strdup(path);
	uint32_t obs;
	int rc = tmp ? eng_obs_point(e, basename(tmp), "file", NULL, cap_linktype(src), 0, &obs) : -ENOMEM;
	free(tmp);
	if (rc < 0) {
		fprintf(stderr, "podcap read: %s: observation point: %s\n", path, strerror(-rc));
		return -1;
	}
	struct cap_packet pkt;
	uint64_t n = 0, last_draw = now_ms();
	while ((rc = cap_next(src, &pkt)) == 1) {
		if (eng_packet(e, obs, &pkt) < 0) {
			fprintf(stderr, "podcap read: %s\n", eng_error(e));
			return -1;
		}
		if (progress && (++n & 0xffff) == 0) {
			uint64_t t = now_ms();
			if (t - last_draw >= 250) {
				struct cap_stats cs;
				cap_stats(src, &cs);
				fprintf(stderr, "\r%s: %3.0f%%  %llu packets  ", path,
					cs.file_size ? 100.0 * (double)cs.bytes_read / (double)cs.file_size : 0.0,
					(unsigned long long)cs.received);
				last_draw = t;
			}
		}
	}
	if (rc < 0) {
		/* Everything before the damage is kept and the next files are still
		 * read; the exit status says an input was bad. */
		fprintf(stderr, "%spodcap read: %s: %s\n", progress ? "\n" : "", path, cap_error(src));
		return 1;
	}
	return 0;
}

int cmd_read(int argc, char **argv)
{
	struct app_opts o;
	struct app_sinks sinks;
	struct engine *e = NULL;
	struct app_names *names = NULL;
	struct cap_source **src = NULL;
	int first, status = 0;
	char err[1024];

	app_opts_default(APP_READ, &o);
	int rc = app_opts_parse(APP_READ, argc, argv, &o, &first);
	if (rc)
		return rc == 1 ? 0 : rc;
	int nfiles = argc - first;
	if (nfiles <= 0) {
		fprintf(stderr, "podcap read: no capture file given\n");
		return app_usage(app_opts_usage(APP_READ));
	}
	/* Open every file before touching the database, so a typo or a non-capture
	 * file costs nothing and leaves no half-filled store behind. */
	if (!(src = calloc((size_t)nfiles, sizeof(*src)))) {
		fprintf(stderr, "podcap read: out of memory\n");
		return 1;
	}
	for (int i = 0; i < nfiles; i++) {
		if (cap_open_file(argv[first + i], &src[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "podcap read: %s\n", err);
			status = 1;
			goto out;
		}
	}
	/* Names of both ends from the inventory (--inventory), by the packets'
	 * own times. */
	if (app_names_open("read", &o, 0, &names)) {
		status = 1;
		goto out;
	}
	if (names) {
		o.eng.record_hook = app_names_hook;
		o.eng.record_hook_arg = names;
		o.fdb.names = app_names_dict(names);
	}
	if (app_open_sinks("read", &o, &sinks)) {
		status = 1;
		goto out;
	}
	if (eng_open(&o.eng, sinks.sink, sinks.n, &e, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap read: %s\n", err);
		status = 1;
		goto out;
	}

	int progress = !o.quiet && isatty(STDERR_FILENO);
	uint64_t t0 = now_ms();
	for (int i = 0; i < nfiles; i++) {
		int r = read_file(e, src[i], argv[first + i], progress);
		if (r)
			status = 1;
		if (r < 0)
			break;
	}
	if (progress)
		fprintf(stderr, "\r\033[K");
	if (eng_finish(e) < 0) {
		fprintf(stderr, "podcap read: %s\n", eng_error(e));
		status = 1;
	}
	if (sinks.pks) {
		struct pks_stats ps;
		pks_sink_stats(sinks.pks, &ps);
		if (ps.write_errors) {
			/* The flows are all recorded; the packets the user asked to keep
			 * are not all there, and the flows concerned say "partial". */
			fprintf(stderr, "podcap read: packet store: %llu write errors (disk full or I/O error): "
				"not every packet was kept; the flows concerned are marked partial\n",
				(unsigned long long)ps.write_errors);
			status = 1;
		}
		if (ps.warnings) {
			/* damage found in the store (e.g. an index moved aside): said above,
			 * and the run does not pass for a clean one */
			fprintf(stderr, "podcap read: packet store: %llu problem(s) reported above\n",
				(unsigned long long)ps.warnings);
			status = 1;
		}
	}
	if (!o.quiet) {
		double secs = (double)(now_ms() - t0) / 1000.0;
		struct eng_stats s;
		eng_stats(e, &s);
		app_print_summary(e, &sinks, eng_thread_cpu_us(), stdout);
		/* records whose claimed wire length was cut (capture.h: CAP_MAX_WIRE_EXCESS) */
		uint64_t clamped = 0;
		for (int i = 0; i < nfiles; i++) {
			struct cap_stats cs;
			cap_stats(src[i], &cs);
			clamped += cs.wirelen_clamped;
		}
		printf("wire lengths clamped %llu (records claiming more than %u KiB beyond their captured bytes)\n",
		       (unsigned long long)clamped, CAP_MAX_WIRE_EXCESS / 1024);
		app_names_print(names, "", stdout);
		printf("%.2f s, %.0f packets/s\n", secs, secs > 0 ? (double)s.packets / secs : 0.0);
	}
out:
	eng_close(e);
	app_names_close(names);
	if (src)
		for (int i = 0; i < nfiles; i++)
			cap_close(src[i]);
	free(src);
	return status;
}
