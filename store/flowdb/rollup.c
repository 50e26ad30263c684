/* rollup — the writer's in-memory side of the per-minute totals (rollup.h).
 *
 * Three open-addressing hash tables, all power-of-two sized with linear probing:
 * interned key strings, pending deltas by (dim, minute, key), and the flows whose
 * last written record was periodic, by id.  A record costs three string lookups
 * and at most six delta updates, well under a microsecond; the deltas of a
 * whole transaction become a few dozen upserts at commit.  Deletion from the flow
 * table uses backward-shift deletion, so no tombstones build up. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rollup.h"

struct ru_flow {
	uint64_t id;           /* 0 = empty slot */
	int64_t bucket_us;
	uint32_t key[RU_DIMS]; /* interned key indexes */
	int64_t packets, bytes;
};

struct ru_pend {
	uint32_t used;
	uint32_t dim, key;
	int64_t bucket_us;
	int64_t flows, packets, bytes;
};

struct ru_str {
	uint64_t hash;
	char *s;               /* NULL = empty slot */
	uint32_t idx;
};

struct ru {
	struct ru_str *strs;   /* hash table of interned strings */
	size_t str_cap, nstr;
	char **by_idx;         /* index -> string */
	struct ru_pend *pend;
	size_t pend_cap, npend;
	struct ru_flow *flows;
	size_t flow_cap, nflows;
	uint64_t untracked;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h ? h : 1;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

struct ru *ru_new(void)
{
	struct ru *ru = calloc(1, sizeof(*ru));
	if (!ru)
		return NULL;
	ru->str_cap = 256;
	ru->pend_cap = 256;
	ru->flow_cap = 1024;
	ru->strs = calloc(ru->str_cap, sizeof(*ru->strs));
	ru->by_idx = calloc(ru->str_cap, sizeof(*ru->by_idx));
	ru->pend = calloc(ru->pend_cap, sizeof(*ru->pend));
	ru->flows = calloc(ru->flow_cap, sizeof(*ru->flows));
	if (!ru->strs || !ru->by_idx || !ru->pend || !ru->flows) {
		ru_free(ru);
		return NULL;
	}
	return ru;
}

void ru_free(struct ru *ru)
{
	if (!ru)
		return;
	for (size_t i = 0; i < ru->str_cap; i++)
		free(ru->strs[i].s);
	free(ru->strs);
	free(ru->by_idx);
	free(ru->pend);
	free(ru->flows);
	free(ru);
}

/* ---- interned strings ---- */

static int str_grow(struct ru *ru)
{
	size_t cap = ru->str_cap * 2;
	struct ru_str *n = calloc(cap, sizeof(*n));
	char **bi = realloc(ru->by_idx, cap * sizeof(*bi));
	if (!n || !bi) {
		free(n);
		if (bi)
			ru->by_idx = bi;
		return -ENOMEM;
	}
	ru->by_idx = bi;
	for (size_t i = 0; i < ru->str_cap; i++) {
		if (!ru->strs[i].s)
			continue;
		size_t j = ru->strs[i].hash & (cap - 1);
		while (n[j].s)
			j = (j + 1) & (cap - 1);
		n[j] = ru->strs[i];
	}
	free(ru->strs);
	ru->strs = n;
	ru->str_cap = cap;
	return 0;
}

/* The index of s (len bytes), interning it; -ENOSPC beyond RU_MAX_KEYS. */
static int64_t intern(struct ru *ru, const char *s, size_t len)
{
	uint64_t h = hash_bytes(s, len);
	size_t j = h & (ru->str_cap - 1);
	while (ru->strs[j].s) {
		if (ru->strs[j].hash == h && !strncmp(ru->strs[j].s, s, len) && ru->strs[j].s[len] == '\0')
			return ru->strs[j].idx;
		j = (j + 1) & (ru->str_cap - 1);
	}
	if (ru->nstr >= RU_MAX_KEYS)
		return -ENOSPC;
	if ((ru->nstr + 1) * 2 > ru->str_cap) {
		if (str_grow(ru) < 0)
			return -ENOMEM;
		return intern(ru, s, len);
	}
	char *copy = strndup(s, len);
	if (!copy)
		return -ENOMEM;
	ru->strs[j] = (struct ru_str){.hash = h, .s = copy, .idx = (uint32_t)ru->nstr};
	ru->by_idx[ru->nstr] = copy;
	return (int64_t)ru->nstr++;
}

/* ---- pending deltas ---- */

static size_t pend_slot(const struct ru_pend *t, size_t cap, uint32_t dim, int64_t b, uint32_t key)
{
	size_t j = mix(((uint64_t)dim << 56) ^ ((uint64_t)key << 24) ^ (uint64_t)(b / RU_BUCKET_US)) & (cap - 1);
	while (t[j].used && !(t[j].dim == dim && t[j].bucket_us == b && t[j].key == key))
		j = (j + 1) & (cap - 1);
	return j;
}

static int pend_add(struct ru *ru, uint32_t dim, int64_t b, uint32_t key, int64_t f, int64_t p, int64_t by)
{
	if ((ru->npend + 1) * 2 > ru->pend_cap) {
		size_t cap = ru->pend_cap * 2;
		struct ru_pend *n = calloc(cap, sizeof(*n));
		if (!n)
			return -ENOMEM;
		for (size_t i = 0; i < ru->pend_cap; i++)
			if (ru->pend[i].used)
				n[pend_slot(n, cap, ru->pend[i].dim, ru->pend[i].bucket_us, ru->pend[i].key)] = ru->pend[i];
		free(ru->pend);
		ru->pend = n;
		ru->pend_cap = cap;
	}
	size_t j = pend_slot(ru->pend, ru->pend_cap, dim, b, key);
	struct ru_pend *e = &ru->pend[j];
	if (!e->used) {
		*e = (struct ru_pend){.used = 1, .dim = dim, .key = key, .bucket_us = b};
		ru->npend++;
	}
	e->flows += f;
	e->packets += p;
	e->bytes += by;
	return 0;
}

/* ---- flows with a periodic record ---- */

static size_t flow_slot(const struct ru_flow *t, size_t cap, uint64_t id)
{
	size_t j = mix(id) & (cap - 1);
	while (t[j].id && t[j].id != id)
		j = (j + 1) & (cap - 1);
	return j;
}

static void flow_delete(struct ru *ru, size_t j)
{
	/* backward-shift: move later members of the probe run into the hole */
	size_t cap = ru->flow_cap, i = j;
	ru->flows[j].id = 0;
	for (;;) {
		i = (i + 1) & (cap - 1);
		if (!ru->flows[i].id)
			break;
		size_t home = mix(ru->flows[i].id) & (cap - 1);
		/* can ru->flows[i] move to the hole j? only if home is not in (j, i] */
		if ((i > j && (home <= j || home > i)) || (i < j && home <= j && home > i)) {
			ru->flows[j] = ru->flows[i];
			ru->flows[i].id = 0;
			j = i;
		}
	}
	ru->nflows--;
}

static int flow_grow(struct ru *ru)
{
	size_t cap = ru->flow_cap * 2;
	struct ru_flow *n = calloc(cap, sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < ru->flow_cap; i++)
		if (ru->flows[i].id)
			n[flow_slot(n, cap, ru->flows[i].id)] = ru->flows[i];
	free(ru->flows);
	ru->flows = n;
	ru->flow_cap = cap;
	return 0;
}

int ru_add_row(struct ru *ru, int64_t last_us, const char *app, const char *cat, uint32_t obs_id, int64_t packets,
	       int64_t bytes)
{
	int64_t b = (last_us / RU_BUCKET_US) * RU_BUCKET_US;
	char o[16];
	int n = snprintf(o, sizeof(o), "%u", (unsigned)obs_id);
	int64_t k[RU_DIMS] = {
		intern(ru, app ? app : "", app ? strlen(app) : 0),
		intern(ru, cat ? cat : "", cat ? strlen(cat) : 0),
		obs_id ? intern(ru, o, (size_t)n) : intern(ru, "", 0),
	};
	for (int d = 0; d < RU_DIMS; d++) {
		if (k[d] < 0) {
			ru->untracked++;
			return k[d] == -ENOMEM ? -ENOMEM : 0;
		}
		if (pend_add(ru, (uint32_t)d, b, (uint32_t)k[d], 1, packets, bytes) < 0)
			return -ENOMEM;
	}
	return 0;
}

int ru_record(struct ru *ru, const struct fl_record *r)
{
	int64_t b = ((int64_t)r->last_us / RU_BUCKET_US) * RU_BUCKET_US;
	int64_t k[RU_DIMS];
	char obs[16];
	int n = snprintf(obs, sizeof(obs), "%u", (unsigned)r->obs_id);
	k[0] = intern(ru, r->proto, strnlen(r->proto, sizeof(r->proto)));
	k[1] = intern(ru, r->category, strnlen(r->category, sizeof(r->category)));
	k[2] = r->obs_id ? intern(ru, obs, (size_t)n) : intern(ru, "", 0);
	for (int d = 0; d < RU_DIMS; d++)
		if (k[d] < 0) {
			ru->untracked++;
			return k[d] == -ENOMEM ? -ENOMEM : 0;
		}
	int64_t p = (int64_t)(r->pkts[0] + r->pkts[1]), by = (int64_t)(r->bytes[0] + r->bytes[1]);
	size_t j = flow_slot(ru->flows, ru->flow_cap, r->id);
	struct ru_flow *f = ru->flows[j].id ? &ru->flows[j] : NULL;
	if (f)
		for (int d = 0; d < RU_DIMS; d++)
			if (pend_add(ru, (uint32_t)d, f->bucket_us, f->key[d], -1, -f->packets, -f->bytes) < 0)
				return -ENOMEM;
	for (int d = 0; d < RU_DIMS; d++)
		if (pend_add(ru, (uint32_t)d, b, (uint32_t)k[d], 1, p, by) < 0)
			return -ENOMEM;
	if (r->end != FL_END_ACTIVE) {
		if (f)
			flow_delete(ru, j);
		return 0;
	}
	if (!f) {
		if (ru->nflows >= RU_MAX_FLOWS) {
			/* its next record will be counted on top of this one */
			ru->untracked++;
			return 0;
		}
		if ((ru->nflows + 1) * 2 > ru->flow_cap) {
			if (flow_grow(ru) < 0) {
				ru->untracked++;
				return 0;
			}
			j = flow_slot(ru->flows, ru->flow_cap, r->id);
		}
		f = &ru->flows[j];
		ru->nflows++;
	}
	*f = (struct ru_flow){.id = r->id, .bucket_us = b, .packets = p, .bytes = by};
	for (int d = 0; d < RU_DIMS; d++)
		f->key[d] = (uint32_t)k[d];
	return 0;
}

void ru_forget(struct ru *ru, uint64_t id)
{
	size_t j = flow_slot(ru->flows, ru->flow_cap, id);
	if (ru->flows[j].id)
		flow_delete(ru, j);
}

int ru_each(struct ru *ru, int (*fn)(void *arg, const struct ru_delta *d), void *arg)
{
	for (size_t i = 0; i < ru->pend_cap; i++) {
		const struct ru_pend *e = &ru->pend[i];
		if (!e->used || (!e->flows && !e->packets && !e->bytes))
			continue;
		struct ru_delta d = {.dim = (int)e->dim, .bucket_us = e->bucket_us, .key = ru->by_idx[e->key],
				     .flows = e->flows, .packets = e->packets, .bytes = e->bytes};
		int rc = fn(arg, &d);
		if (rc)
			return rc;
	}
	return 0;
}

void ru_clear(struct ru *ru)
{
	if (ru->npend)
		memset(ru->pend, 0, ru->pend_cap * sizeof(*ru->pend));
	ru->npend = 0;
}

uint64_t ru_untracked(const struct ru *ru)
{
	return ru->untracked;
}

size_t ru_tracked(const struct ru *ru)
{
	return ru->nflows;
}
