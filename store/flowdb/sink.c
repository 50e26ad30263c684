/* flowdb sink — an engine's flow records into a flow database (see flowdb.h).
 *
 * Runs on the engine's thread for this sink: every callback below is called
 * there, one at a time, so the fdb handle is used by one thread only.  Commits
 * come from the handle's batch size (fdb_config.batch), from the clock (a live
 * agent's records are visible within about a second, whether traffic is steady
 * or the queue goes quiet: record() and tick() both look at the clock), and at
 * flush, which also builds the indexes a bulk load deferred.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "flowdb.h"

struct fdb_sink {
	struct fdb *db;
	uint32_t *obs_map;       /* engine observation point id -> database id */
	uint64_t last_commit_ms;
	int dirty;               /* rows since the last commit */
	pthread_mutex_t lock;    /* guards pub */
	struct fdb_sink_stats pub;
	struct fdb_sink_stats st;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void publish(struct fdb_sink *s)
{
	struct fdb_stats fs;
	fdb_stats(s->db, &fs);
	s->st.rows = fs.rows;
	s->st.commits = fs.commits;
	s->st.retained = fs.retained;
	s->st.index_us = fs.index_us;
	s->st.names_expired = fs.names_expired;
	pthread_mutex_lock(&s->lock);
	s->pub = s->st;
	pthread_mutex_unlock(&s->lock);
}

/* A failed commit loses the rows of its transaction: say how many. */
static int commit(struct fdb_sink *s)
{
	uint32_t pending = fdb_pending(s->db);
	int rc = fdb_commit(s->db);
	if (rc < 0)
		s->st.lost += pending;
	s->dirty = 0;
	s->last_commit_ms = mono_ms();
	publish(s);
	return rc;
}

static int sink_max_flow_id(void *ctx, uint64_t *out)
{
	struct fdb_sink *s = ctx;
	return fdb_max_flow_id(s->db, out);
}

static int sink_obs_point(void *ctx, const struct eng_obs *o)
{
	struct fdb_sink *s = ctx;
	uint32_t id;
	int rc = fdb_obs_point(s->db, o->iface, o->direction, o->pod, o->linktype, &id);
	if (rc < 0)
		return rc;
	s->obs_map[o->id] = id;
	/* visible to readers (export, the API) at once */
	return commit(s);
}

static int sink_record(void *ctx, const struct fl_record *rec)
{
	struct fdb_sink *s = ctx;
	struct fl_record r = *rec;
	r.obs_id = rec->obs_id <= ENG_MAX_OBS ? s->obs_map[rec->obs_id] : 0;
	uint32_t pending = fdb_pending(s->db);
	int rc = fdb_put_flow(s->db, &r);
	if (rc < 0) {
		/* this row, and the transaction's others when SQLite rolled it back
		 * (an I/O error, a full disk: nothing is pending any more) */
		s->st.lost += 1 + (fdb_pending(s->db) == 0 ? pending : 0);
		publish(s);
		return rc;
	}
	s->dirty = 1;
	/* Under steady traffic the queue is never idle: commit on the clock too. */
	if (mono_ms() - s->last_commit_ms >= 1000)
		return commit(s);
	return 0;
}

static int sink_tick(void *ctx, uint64_t now_us)
{
	struct fdb_sink *s = ctx;
	(void)now_us;
	if (s->dirty && mono_ms() - s->last_commit_ms >= 1000)
		return commit(s);
	publish(s);
	return 0;
}

static int sink_flush(void *ctx)
{
	struct fdb_sink *s = ctx;
	int rc = commit(s);
	if (rc == 0)
		rc = fdb_build_indexes(s->db);
	publish(s);
	return rc;
}

static void sink_close(void *ctx)
{
	struct fdb_sink *s = ctx;
	if (!s)
		return;
	fdb_close(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s->obs_map);
	free(s);
}

static const char *sink_errmsg(void *ctx)
{
	struct fdb_sink *s = ctx;
	return fdb_errmsg(s->db);
}

static const struct eng_sink_ops fdb_sink_ops = {
	.name = "flowdb",
	.max_flow_id = sink_max_flow_id,
	.obs_point = sink_obs_point,
	.record = sink_record,
	.tick = sink_tick,
	.flush = sink_flush,
	.close = sink_close,
	.errmsg = sink_errmsg,
};

int fdb_sink_open(const char *path, const struct fdb_config *cfg, const char *packet_store_dir,
		  struct fdb_sink **out, struct eng_sink *as_sink, char *errbuf, size_t errlen)
{
	struct fdb_sink *s = calloc(1, sizeof(*s));
	int rc;
	*out = NULL;
	if (!s || !(s->obs_map = calloc(ENG_MAX_OBS + 1, sizeof(*s->obs_map)))) {
		free(s);
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	if ((rc = fdb_open(path, cfg, &s->db, errbuf, errlen)) < 0)
		goto fail;
	if (packet_store_dir) {
		/* export finds the packets of this database's flows through this key */
		char abs[PATH_MAX];
		const char *dir = realpath(packet_store_dir, abs) ? abs : packet_store_dir;
		if ((rc = fdb_meta_set(s->db, "packet_store_dir", dir)) < 0 ||
		    (rc = fdb_commit(s->db)) < 0) {
			snprintf(errbuf, errlen, "%s", fdb_errmsg(s->db));
			goto fail;
		}
	}
	s->last_commit_ms = mono_ms();
	publish(s);
	*out = s;
	*as_sink = (struct eng_sink){.ops = &fdb_sink_ops, .ctx = s};
	return 0;
fail:
	if (s->db)
		fdb_close(s->db);
	s->db = NULL;
	pthread_mutex_destroy(&s->lock);
	free(s->obs_map);
	free(s);
	return rc;
}

void fdb_sink_stats(struct fdb_sink *s, struct fdb_sink_stats *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->pub;
	pthread_mutex_unlock(&s->lock);
}
