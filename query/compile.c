/* query — AST → SQL boolean expression + bound parameters.
 *
 * The SQL text is assembled only from string constants of this file and of the
 * field table, and from parameter numbers; every value is a parameter.
 *
 * Two-valued logic: a test on a field without a value (NULL) is false, and
 * `not X` is true whenever X is not true.  SQL's AND and OR already agree with
 * that (NULL behaves like false in a WHERE unless negated), so only negation
 * needs care: it compiles to `(X) IS NOT 1`, which is 1 for false and NULL.
 * Hence `host != x` also matches flows without a host, like Wireshark's `!=`.
 *
 * Index use (checked by EXPLAIN QUERY PLAN in tests/query):
 *   - equality on an indexed column is `col = ?`; `ip == A` is `(f.src = ?1 OR
 *     f.dst = ?1)`, which SQLite answers with one index search per column;
 *   - an IPv4 CIDR on an octet boundary is a text range on the column
 *     (10.244.1.0/24 → col >= '10.244.1.' AND col < '10.244.1/': '/' follows '.'),
 *     an IPv6 CIDR on a group boundary likewise ('2001:db8:' .. '2001:db8;');
 *     other CIDRs add ip_in_net() to the enclosing range that the index narrows;
 *   - app names compare with COLLATE NOCASE, like the index on app_name;
 *   - prefix globs on case-sensitive indexed columns (pod, ns) add a range.
 * SQLite's parser has a stack of 100 entries: every '(' it is inside costs one,
 * and every pending "x AND" two more, so "((a AND b) OR c)" is cheap while
 * "(c OR (b AND a))" is not.  The compiler therefore writes the most deeply
 * nested operand of every and/or first, writes `not` as "(X) IS NOT 1" and drops
 * double negations; chains of up to 16 operands are written flat and longer ones
 * as balanced halves (so SQLite's expression height limit of 1000 is far away
 * too).  While emitting it follows the parser's stack use and refuses, with the
 * position of the culprit, a filter that would still not fit (Q_SQL_STACK). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flowdb.h"

#include "internal.h"

struct pstr {
	size_t off, len;       /* text parameters: an offset into the pool until the end */
};

struct comp {
	struct q_buf sql;
	struct q_param *params;
	struct pstr *ptext;
	size_t np, cap;
	struct q_buf pool;
	int first;
	int oom, toomany;
	/* the parser-stack estimate: one entry per open '(' plus two while an
	 * and/or at that level waits for its right operand */
	uint8_t pending[Q_SQL_STACK + 1];
	uint8_t weight[Q_SQL_STACK + 1];
	int levels, stack, stack_max;
	uint32_t pos, pos_max;       /* AST position being emitted / at the maximum */
};

/* The q_sql handed out, with the storage its parameters point into. */
struct sql_priv {
	struct q_sql pub;
	char *pool;
};

static int add_param(struct comp *c)
{
	if (c->np >= Q_MAX_PARAMS) {
		c->toomany = 1;
		return -1;
	}
	if (c->np == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct q_param *p = realloc(c->params, cap * sizeof(*p));
		if (!p) {
			c->oom = 1;
			return -1;
		}
		c->params = p;
		struct pstr *t = realloc(c->ptext, cap * sizeof(*t));
		if (!t) {
			c->oom = 1;
			return -1;
		}
		c->ptext = t;
		c->cap = cap;
	}
	memset(&c->params[c->np], 0, sizeof(c->params[0]));
	memset(&c->ptext[c->np], 0, sizeof(c->ptext[0]));
	return (int)c->np++;
}

/* Returns the parameter's number (?N), or 0 when out of room. */
static int param_int(struct comp *c, int64_t v)
{
	int k = add_param(c);
	if (k < 0)
		return 0;
	c->params[k].type = Q_PARAM_INT;
	c->params[k].i = v;
	return c->first + k;
}

/* A text parameter made of up to three pieces (prefix, body, suffix); with
 * fold, ASCII upper case is lowered, with glob the body's GLOB metacharacters
 * other than '*' are quoted. */
static int param_text3(struct comp *c, const char *pre, const char *s, size_t n, const char *post,
		       int fold, int glob)
{
	int k = add_param(c);
	if (k < 0)
		return 0;
	c->params[k].type = Q_PARAM_TEXT;
	size_t start = c->pool.len;
	q_buf_puts(&c->pool, pre);
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (fold && ch >= 'A' && ch <= 'Z')
			ch = (char)(ch + 32);
		if (glob && ch == '?')
			q_buf_puts(&c->pool, "[?]");
		else if (glob && ch == '[')
			q_buf_puts(&c->pool, "[[]");
		else
			q_buf_add(&c->pool, &ch, 1);
	}
	q_buf_puts(&c->pool, post);
	q_buf_add(&c->pool, "", 1); /* each string NUL-terminated in the pool */
	if (c->pool.oom) {
		c->oom = 1;
		return 0;
	}
	c->ptext[k].off = start;
	c->ptext[k].len = c->pool.len - start - 1;
	return c->first + k;
}

static int param_text(struct comp *c, const char *s, size_t n)
{
	return param_text3(c, "", s, n, "", 0, 0);
}

static void stack_add(struct comp *c, int n)
{
	c->stack += n;
	if (c->stack > c->stack_max) {
		c->stack_max = c->stack;
		c->pos_max = c->pos;
	}
}

/* Appends SQL and follows SQLite's parser stack through it: each '(' holds one
 * entry until its ')'; at each level, an and/or waiting for its right operand
 * holds two more, and a comparison, concatenation or argument list two more
 * (counted until the level closes: over-counting inside a test costs little,
 * since along the deepest path no operator comes before the nested operand). */
static void emit(struct comp *c, const char *s)
{
	static const char *const bool_ops[] = {" AND ", " OR "};
	static const char *const cmp_ops[] = {" = ", " >= ", " <= ", " < ", " > ", " GLOB ", " IN ",
					      " || ", ", ", " IS NOT "};
	q_buf_puts(&c->sql, s);
	for (const char *p = s; *p; p++) {
		if (*p == '(') {
			/* a function call holds its name and argument list too */
			int w = p > s && ((p[-1] | 0x20) >= 'a' && (p[-1] | 0x20) <= 'z') ? 3 : 1;
			if (c->levels < Q_SQL_STACK) {
				c->pending[c->levels] = 0;
				c->weight[c->levels] = (uint8_t)w;
			}
			c->levels++;
			stack_add(c, w);
			continue;
		}
		if (*p == ')') {
			if (c->levels > 0) {
				c->levels--;
				int in = c->levels < Q_SQL_STACK;
				uint8_t fl = in ? c->pending[c->levels] : 0;
				c->stack -= (in ? c->weight[c->levels] : 1) + 2 * !!(fl & 1) + 2 * !!(fl & 2);
			}
			continue;
		}
		if ((*p != ' ' && *p != ',') || c->levels == 0 || c->levels > Q_SQL_STACK)
			continue;
		uint8_t *fl = &c->pending[c->levels - 1];
		for (size_t i = 0; i < sizeof(bool_ops) / sizeof(bool_ops[0]) && !(*fl & 1); i++) {
			if (strncmp(p, bool_ops[i], strlen(bool_ops[i])) == 0) {
				*fl |= 1;
				stack_add(c, 2);
			}
		}
		for (size_t i = 0; i < sizeof(cmp_ops) / sizeof(cmp_ops[0]) && !(*fl & 2); i++) {
			if (strncmp(p, cmp_ops[i], strlen(cmp_ops[i])) == 0) {
				*fl |= 2;
				stack_add(c, 2);
			}
		}
	}
}

static void emit_p(struct comp *c, int num)
{
	q_buf_printf(&c->sql, "?%d", num);
}

/* --- lists of terms joined by OR, as balanced parentheses --- */

struct terms {
	char **t;
	size_t n, cap;
};

/* Moves the SQL emitted since mark into a new term. */
static void term_take(struct comp *c, struct terms *ts, size_t mark)
{
	if (c->sql.oom || c->oom)
		return;
	if (ts->n == ts->cap) {
		size_t cap = ts->cap ? 2 * ts->cap : 8;
		char **t = realloc(ts->t, cap * sizeof(*t));
		if (!t) {
			c->oom = 1;
			return;
		}
		ts->t = t;
		ts->cap = cap;
	}
	size_t len = c->sql.len - mark;
	char *s = malloc(len + 1);
	if (!s) {
		c->oom = 1;
		return;
	}
	memcpy(s, c->sql.p + mark, len);
	s[len] = 0;
	ts->t[ts->n++] = s;
	c->sql.len = mark;
	c->sql.p[mark] = 0;
}

#define SUBSELECT_STACK 6

/* n operands joined by sep: up to CHAIN flat in one pair of parentheses, more as
 * two balanced halves. */
#define CHAIN 16

static void terms_emit(struct comp *c, struct terms *ts, size_t lo, size_t hi, const char *sep)
{
	if (hi - lo == 1) {
		emit(c, ts->t[lo]);
		return;
	}
	emit(c, "(");
	if (hi - lo <= CHAIN) {
		for (size_t i = lo; i < hi; i++) {
			if (i > lo)
				emit(c, sep);
			emit(c, ts->t[i]);
		}
	} else {
		size_t mid = lo + (hi - lo) / 2;
		terms_emit(c, ts, lo, mid, sep);
		emit(c, sep);
		terms_emit(c, ts, mid, hi, sep);
	}
	emit(c, ")");
}

static void terms_flush(struct comp *c, struct terms *ts)
{
	if (ts->n && !c->oom)
		terms_emit(c, ts, 0, ts->n, " OR ");
	else if (!ts->n)
		emit(c, "0");
	for (size_t i = 0; i < ts->n; i++)
		free(ts->t[i]);
	free(ts->t);
	memset(ts, 0, sizeof(*ts));
}

/* --- helpers per type --- */

static int ncols(const struct q_field_def *fd)
{
	switch (fd->type) {
	case Q_TYPE_APP:
	case Q_TYPE_RISK:
	case Q_TYPE_CONF:
		return 1;
	default:
		return fd->col[2] ? 3 : fd->col[1] ? 2 : 1;
	}
}

/* col = ?a, or col IN (?a, ?b, ...) for the parameter numbers nums[0..n). */
static void emit_in(struct comp *c, const char *col, const char *collate, const int *nums, size_t n)
{
	emit(c, "(");
	emit(c, col);
	if (n == 1) {
		emit(c, " = ");
		emit_p(c, nums[0]);
		emit(c, collate);
	} else {
		emit(c, collate);
		emit(c, " IN (");
		for (size_t i = 0; i < n; i++) {
			if (i)
				emit(c, ", ");
			emit_p(c, nums[i]);
		}
		emit(c, ")");
	}
	emit(c, ")");
}

static const char *const sql_ops[] = {
	[Q_OP_LT] = " < ", [Q_OP_LE] = " <= ", [Q_OP_GT] = " > ", [Q_OP_GE] = " >= ",
};

/* The parts of an address or CIDR test: a text range on the column and/or the
 * ip_in_net() check. */
struct cidr_plan {
	char lo[48], hi[48];
	int range;       /* lo/hi valid */
	int exact;       /* the range alone is the answer */
};

static void cidr_plan(const struct q_value *v, struct cidr_plan *pl)
{
	memset(pl, 0, sizeof(*pl));
	if (v->family == 4) {
		int k = v->bits / 8;
		if (k >= 1) {
			size_t o = 0;
			/* at most 3 octets: 12 characters */
			for (int i = 0; i < k && i < 3; i++)
				o += (size_t)sprintf(pl->lo + o, "%u.", v->addr[i]);
			memcpy(pl->hi, pl->lo, o + 1);
			pl->hi[o - 1] = '/'; /* the character after '.' */
			pl->range = 1;
			pl->exact = v->bits % 8 == 0;
		}
		return;
	}
	/* IPv6 in inet_ntop form: groups in lower-case hex without leading zeros;
	 * "::" can replace only zero groups, so the leading non-zero groups of the
	 * prefix are printed as they are, each followed by ':'. */
	int full = v->bits / 16, j = 0;
	unsigned g[8];
	for (int i = 0; i < 8; i++)
		g[i] = (unsigned)v->addr[2 * i] << 8 | v->addr[2 * i + 1];
	while (j < full && g[j] != 0)
		j++;
	size_t o = 0;
	/* at most 7 groups of "ffff:": 35 characters */
	for (int i = 0; i < j && i < 7; i++)
		o += (size_t)sprintf(pl->lo + o, "%x:", g[i]);
	int pb = v->bits - 16 * full;
	if (j == full && full < 8 && pb >= 4 && (g[full] >> 12) != 0) {
		/* The next group has 4 digits whatever its low bits: its fixed high
		 * nibbles are a text prefix too. */
		char digits[16];
		snprintf(digits, sizeof(digits), "%04x", g[full] & 0xffffu);
		memcpy(pl->lo + o, digits, (size_t)(pb / 4));
		o += (size_t)(pb / 4);
		pl->lo[o] = 0;
	}
	if (o == 0)
		return;
	memcpy(pl->hi, pl->lo, o + 1);
	char last = pl->hi[o - 1];
	/* the next character: ':' → ';', '9' → ':', 'f' → 'g', other hex digits + 1 */
	pl->hi[o - 1] = (char)(last + 1);
	pl->range = 1;
	pl->exact = pb == 0 && j == full && full >= 1;
}

static void addr_text(const struct q_value *v, char *buf, size_t len)
{
	inet_ntop(v->family == 4 ? AF_INET : AF_INET6, v->addr, buf, (socklen_t)len);
}

static void emit_addr_match(struct comp *c, const struct q_field_def *fd, const struct q_value *vals,
			    size_t nv)
{
	int nc = ncols(fd);
	struct terms ts = {0};
	int *hosts = malloc((nv ? nv : 1) * sizeof(*hosts));
	if (!hosts) {
		c->oom = 1;
		return;
	}
	size_t nh = 0;
	for (size_t i = 0; i < nv; i++) {
		if (vals[i].bits == (vals[i].family == 4 ? 32 : 128)) {
			char buf[INET6_ADDRSTRLEN];
			addr_text(&vals[i], buf, sizeof(buf));
			hosts[nh++] = param_text(c, buf, strlen(buf));
		}
	}
	for (int k = 0; k < nc && nh; k++) {
		size_t mark = c->sql.len;
		emit_in(c, fd->col[k], "", hosts, nh);
		term_take(c, &ts, mark);
	}
	for (size_t i = 0; i < nv; i++) {
		const struct q_value *v = &vals[i];
		if (v->bits == (v->family == 4 ? 32 : 128))
			continue;
		struct cidr_plan pl;
		cidr_plan(v, &pl);
		int plo = 0, phi = 0, pnet = 0, pbits = 0;
		if (pl.range) {
			plo = param_text(c, pl.lo, strlen(pl.lo));
			phi = param_text(c, pl.hi, strlen(pl.hi));
		}
		if (!pl.exact) {
			char buf[INET6_ADDRSTRLEN];
			addr_text(v, buf, sizeof(buf));
			pnet = param_text(c, buf, strlen(buf));
			pbits = param_int(c, v->bits);
		}
		for (int k = 0; k < nc; k++) {
			size_t mark = c->sql.len;
			const char *col = fd->col[k];
			emit(c, "(");
			if (pl.range) {
				emit(c, col);
				emit(c, " >= ");
				emit_p(c, plo);
				emit(c, " AND ");
				emit(c, col);
				emit(c, " < ");
				emit_p(c, phi);
			}
			if (!pl.exact) {
				if (pl.range)
					emit(c, " AND ");
				emit(c, "ip_in_net(");
				emit(c, col);
				emit(c, ", ");
				emit_p(c, pnet);
				emit(c, ", ");
				emit_p(c, pbits);
				emit(c, ")");
			}
			emit(c, ")");
			term_take(c, &ts, mark);
		}
	}
	free(hosts);
	terms_flush(c, &ts);
}

static void emit_num_match(struct comp *c, const struct q_field_def *fd, const struct q_value *vals,
			   size_t nv)
{
	int *nums = malloc((nv ? nv : 1) * sizeof(*nums));
	if (!nums) {
		c->oom = 1;
		return;
	}
	for (size_t i = 0; i < nv; i++)
		nums[i] = param_int(c, vals[i].i);
	struct terms ts = {0};
	for (int k = 0; k < ncols(fd); k++) {
		size_t mark = c->sql.len;
		emit_in(c, fd->col[k], "", nums, nv);
		term_take(c, &ts, mark);
	}
	free(nums);
	terms_flush(c, &ts);
}

/* The literal text before the first '*' of a glob. */
static size_t glob_prefix(const char *s, size_t n)
{
	const char *star = memchr(s, '*', n);
	return star ? (size_t)(star - s) : n;
}

/* col >= lo AND col < hi for every string with the given prefix (BINARY order):
 * hi is the prefix with its last byte incremented (valid UTF-8 has no 0xFF). */
static void emit_prefix_range(struct comp *c, const char *col, const char *pre, size_t n,
			      const char *post)
{
	char hi[8];
	size_t pl = strlen(post);
	int plo = param_text3(c, "", pre, n, post, 0, 0);
	/* hi: (pre + post) with the last byte + 1 */
	int phi;
	if (pl) {
		size_t m = pl < sizeof(hi) - 1 ? pl : sizeof(hi) - 1;
		memcpy(hi, post, m);
		hi[m] = 0;
		hi[m - 1] = (char)(hi[m - 1] + 1);
		phi = param_text3(c, "", pre, n, hi, 0, 0);
	} else {
		/* n >= 1 here: the caller checks for an empty prefix */
		char last[2] = {(char)(pre[n - 1] + 1), 0};
		phi = param_text3(c, "", pre, n - 1, last, 0, 0);
	}
	emit(c, col);
	emit(c, " >= ");
	emit_p(c, plo);
	emit(c, " AND ");
	emit(c, col);
	emit(c, " < ");
	emit_p(c, phi);
}

static void emit_text_match(struct comp *c, const struct q_field_def *fd, const struct q_value *vals,
			    size_t nv)
{
	int nocase = (fd->flags & Q_F_NOCASE) != 0;
	const char *collate = nocase ? " COLLATE NOCASE" : "";
	struct terms ts = {0};
	int *exact = malloc((nv ? nv : 1) * sizeof(*exact));
	if (!exact) {
		c->oom = 1;
		return;
	}
	size_t ne = 0;
	for (size_t i = 0; i < nv; i++)
		if (vals[i].kind == Q_V_TEXT)
			exact[ne++] = param_text(c, vals[i].text, vals[i].len);
	for (int k = 0; k < ncols(fd) && ne; k++) {
		size_t mark = c->sql.len;
		emit_in(c, fd->col[k], collate, exact, ne);
		term_take(c, &ts, mark);
	}
	free(exact);
	for (size_t i = 0; i < nv; i++) {
		const struct q_value *v = &vals[i];
		if (v->kind != Q_V_GLOB)
			continue;
		int pat = param_text3(c, "", v->text, v->len, "", nocase, 1);
		size_t pre = glob_prefix(v->text, v->len);
		for (int k = 0; k < ncols(fd); k++) {
			size_t mark = c->sql.len;
			const char *col = fd->col[k];
			emit(c, "(");
			if (!nocase && (fd->flags & Q_F_RANGE) && pre > 0) {
				emit_prefix_range(c, col, v->text, pre, "");
				emit(c, " AND ");
			}
			emit(c, nocase ? "lower(" : "");
			emit(c, col);
			emit(c, nocase ? ") GLOB " : " GLOB ");
			emit_p(c, pat);
			emit(c, ")");
			term_take(c, &ts, mark);
		}
	}
	terms_flush(c, &ts);
}

/* app: col[0] app_name, col[1] master_name, col[2] proto_name.  A name without a
 * dot matches either part ("TLS" is stored as master TLS, app TLS; "TLS.Facebook"
 * as master TLS, app Facebook); "TLS.Facebook" needs both. */
static void emit_app_match(struct comp *c, const struct q_field_def *fd, const struct q_value *vals,
			   size_t nv)
{
	struct terms ts = {0};
	int *plain = malloc((nv ? nv : 1) * sizeof(*plain));
	if (!plain) {
		c->oom = 1;
		return;
	}
	size_t np = 0;
	for (size_t i = 0; i < nv; i++)
		if (vals[i].kind == Q_V_TEXT && !memchr(vals[i].text, '.', vals[i].len))
			plain[np++] = param_text(c, vals[i].text, vals[i].len);
	for (int k = 0; k < 2 && np; k++) {
		size_t mark = c->sql.len;
		emit_in(c, fd->col[k], " COLLATE NOCASE", plain, np);
		term_take(c, &ts, mark);
	}
	free(plain);
	for (size_t i = 0; i < nv; i++) {
		const struct q_value *v = &vals[i];
		size_t mark = c->sql.len;
		if (v->kind == Q_V_TEXT) {
			const char *dot = memchr(v->text, '.', v->len);
			if (!dot)
				continue;
			size_t ml = (size_t)(dot - v->text);
			int pm = param_text(c, v->text, ml);
			int pa = param_text(c, dot + 1, v->len - ml - 1);
			emit(c, "(");
			emit(c, fd->col[0]);
			emit(c, " = ");
			emit_p(c, pa);
			emit(c, " COLLATE NOCASE AND ");
			emit(c, fd->col[1]);
			emit(c, " = ");
			emit_p(c, pm);
			emit(c, " COLLATE NOCASE)");
		} else {
			int pat = param_text3(c, "", v->text, v->len, "", 1, 1);
			emit(c, "(");
			for (int k = 0; k < 3; k++) {
				emit(c, k ? " OR lower(" : "lower(");
				emit(c, fd->col[k]);
				emit(c, ") GLOB ");
				emit_p(c, pat);
			}
			emit(c, ")");
		}
		term_take(c, &ts, mark);
	}
	terms_flush(c, &ts);
}

/* pod: "namespace/name" exactly, or "name" in any namespace; globs likewise. */
static void emit_pod_match(struct comp *c, const struct q_field_def *fd, const struct q_value *vals,
			   size_t nv)
{
	struct terms ts = {0};
	for (size_t i = 0; i < nv * (size_t)ncols(fd); i++) {
		const char *col = fd->col[i % (size_t)ncols(fd)];
		const struct q_value *v = &vals[i / (size_t)ncols(fd)];
		int has_ns = memchr(v->text, '/', v->len) != NULL;
		size_t mark = c->sql.len;
		emit(c, "(");
		if (v->kind == Q_V_TEXT && has_ns) {
			emit(c, col);
			emit(c, " = ");
			emit_p(c, param_text(c, v->text, v->len));
		} else {
			size_t pre = glob_prefix(v->text, v->len);
			if (has_ns && pre > 0) {
				emit_prefix_range(c, col, v->text, pre, "");
				emit(c, " AND ");
			}
			emit(c, col);
			emit(c, " GLOB ");
			emit_p(c, param_text3(c, has_ns ? "" : "*/", v->text, v->len, "", 0, 1));
		}
		emit(c, ")");
		term_take(c, &ts, mark);
	}
	terms_flush(c, &ts);
}

/* ns: the part of the pod column before '/'; a range on the pod index. */
static void emit_ns_match(struct comp *c, const struct q_field_def *fd, const struct q_value *vals,
			  size_t nv)
{
	struct terms ts = {0};
	for (size_t i = 0; i < nv * (size_t)ncols(fd); i++) {
		const char *col = fd->col[i % (size_t)ncols(fd)];
		const struct q_value *v = &vals[i / (size_t)ncols(fd)];
		size_t mark = c->sql.len;
		emit(c, "(");
		if (v->kind == Q_V_TEXT) {
			/* "default/" <= pod < "default0": '0' follows '/' */
			emit_prefix_range(c, col, v->text, v->len, "/");
		} else {
			size_t pre = glob_prefix(v->text, v->len);
			if (pre > 0) {
				emit_prefix_range(c, col, v->text, pre, "");
				emit(c, " AND ");
			}
			emit(c, col);
			emit(c, " GLOB ");
			emit_p(c, param_text3(c, "", v->text, v->len, "/*", 0, 1));
		}
		emit(c, ")");
		term_take(c, &ts, mark);
	}
	terms_flush(c, &ts);
}

/* service: the column holds "namespace/name:port"; a value without '/' is a
 * name in any namespace, one without ':' any port of it.  Both given and no
 * '*': equality; otherwise a GLOB with the missing parts as '*'. */
static void emit_service_match(struct comp *c, const struct q_field_def *fd, const struct q_value *vals,
			       size_t nv)
{
	struct terms ts = {0};
	for (size_t i = 0; i < nv; i++) {
		const struct q_value *v = &vals[i];
		int has_ns = memchr(v->text, '/', v->len) != NULL;
		int has_port = memchr(v->text, ':', v->len) != NULL;
		size_t mark = c->sql.len;
		emit(c, "(");
		emit(c, fd->col[0]);
		if (v->kind == Q_V_TEXT && has_ns && has_port) {
			emit(c, " = ");
			emit_p(c, param_text(c, v->text, v->len));
		} else {
			emit(c, " GLOB ");
			emit_p(c, param_text3(c, has_ns ? "" : "*/", v->text, v->len, has_port ? "" : ":*", 0, 1));
		}
		emit(c, ")");
		term_take(c, &ts, mark);
	}
	terms_flush(c, &ts);
}

/* confidence: canonical names (the parser mapped nDPI's spellings); "guess"
 * is either guess nDPI makes. */
static void emit_conf_match(struct comp *c, const struct q_field_def *fd, const struct q_value *vals,
			    size_t nv)
{
	int *nums = malloc((2 * nv + 1) * sizeof(*nums));
	if (!nums) {
		c->oom = 1;
		return;
	}
	size_t n = 0;
	for (size_t i = 0; i < nv; i++) {
		if (!strcmp(vals[i].text, "guess")) {
			nums[n++] = param_text(c, "by-port", 7);
			nums[n++] = param_text(c, "by-ip", 5);
		} else {
			nums[n++] = param_text(c, vals[i].text, vals[i].len);
		}
	}
	emit_in(c, fd->col[0], "", nums, n);
	free(nums);
}

/* label.KEY: the key's value in the pod's labels (a JSON object); the JSON path
 * '$."KEY"' is a parameter like every value (the parser allowed only label-key
 * characters in KEY).  `exists`: the pod has the label. */
static void emit_label_test(struct comp *c, const struct q_node *n)
{
	const struct q_field_def *fd = n->field;
	int path = param_text3(c, "$.\"", n->key, n->keylen, "\"", 0, 0);
	int neg = n->op == Q_OP_NE || n->op == Q_OP_NOT_IN || n->op == Q_OP_NOT_MATCH;
	struct terms ts = {0};
	if (neg)
		emit(c, "(");
	for (int k = 0; k < ncols(fd); k++) {
		if (n->op == Q_OP_EXISTS) {
			size_t mark = c->sql.len;
			emit(c, "(json_extract(");
			emit(c, fd->col[k]);
			emit(c, ", ");
			emit_p(c, path);
			emit(c, ") IS NOT NULL)");
			term_take(c, &ts, mark);
			continue;
		}
		for (uint32_t i = 0; i < n->nvals; i++) {
			const struct q_value *v = &n->vals[i];
			size_t mark = c->sql.len;
			emit(c, "(json_extract(");
			emit(c, fd->col[k]);
			emit(c, ", ");
			emit_p(c, path);
			emit(c, v->kind == Q_V_GLOB ? ") GLOB " : ") = ");
			emit_p(c, v->kind == Q_V_GLOB ? param_text3(c, "", v->text, v->len, "", 0, 1)
						      : param_text(c, v->text, v->len));
			emit(c, ")");
			term_take(c, &ts, mark);
		}
	}
	terms_flush(c, &ts);
	if (neg)
		emit(c, ") IS NOT 1");
}

/* risk: a number compares the bitmap (col[0]); a name is looked up in the
 * comma-separated names (col[1]), ignoring case; a glob matches within them. */
static void emit_risk_match(struct comp *c, const struct q_field_def *fd, const struct q_value *vals,
			    size_t nv)
{
	struct terms ts = {0};
	int *nums = malloc((nv ? nv : 1) * sizeof(*nums));
	if (!nums) {
		c->oom = 1;
		return;
	}
	size_t nn = 0;
	for (size_t i = 0; i < nv; i++)
		if (vals[i].kind == Q_V_INT)
			nums[nn++] = param_int(c, vals[i].i);
	if (nn) {
		size_t mark = c->sql.len;
		emit_in(c, fd->col[0], "", nums, nn);
		term_take(c, &ts, mark);
	}
	free(nums);
	for (size_t i = 0; i < nv; i++) {
		const struct q_value *v = &vals[i];
		size_t mark = c->sql.len;
		if (v->kind == Q_V_TEXT) {
			emit(c, "(instr(',' || lower(");
			emit(c, fd->col[1]);
			emit(c, ") || ',', ");
			emit_p(c, param_text3(c, ",", v->text, v->len, ",", 1, 0));
			emit(c, ") > 0)");
		} else if (v->kind == Q_V_GLOB) {
			emit(c, "((',' || lower(");
			emit(c, fd->col[1]);
			emit(c, ") || ',') GLOB ");
			emit_p(c, param_text3(c, "*,", v->text, v->len, ",*", 1, 1));
			emit(c, ")");
		} else {
			continue;
		}
		term_take(c, &ts, mark);
	}
	terms_flush(c, &ts);
}

/* The positive form of a test with values: EQ, IN, MATCH. */
static void emit_match(struct comp *c, const struct q_field_def *fd, const struct q_value *vals, size_t nv)
{
	switch (fd->type) {
	case Q_TYPE_ADDR:
		emit_addr_match(c, fd, vals, nv);
		break;
	case Q_TYPE_TEXT:
		emit_text_match(c, fd, vals, nv);
		break;
	case Q_TYPE_APP:
		emit_app_match(c, fd, vals, nv);
		break;
	case Q_TYPE_POD:
		emit_pod_match(c, fd, vals, nv);
		break;
	case Q_TYPE_NS:
		emit_ns_match(c, fd, vals, nv);
		break;
	case Q_TYPE_RISK:
		emit_risk_match(c, fd, vals, nv);
		break;
	case Q_TYPE_SERVICE:
		emit_service_match(c, fd, vals, nv);
		break;
	case Q_TYPE_CONF:
		emit_conf_match(c, fd, vals, nv);
		break;
	default:
		emit_num_match(c, fd, vals, nv);
		break;
	}
}

static void emit_order(struct comp *c, const struct q_field_def *fd, enum q_op op, const struct q_value *v)
{
	int num = param_int(c, v->i);
	int nc = fd->type == Q_TYPE_RISK ? 1 : ncols(fd);
	emit(c, nc > 1 ? "(" : "");
	for (int k = 0; k < nc; k++) {
		emit(c, k ? " OR (" : "(");
		emit(c, fd->col[k]);
		emit(c, sql_ops[op]);
		emit_p(c, num);
		emit(c, ")");
	}
	emit(c, nc > 1 ? ")" : "");
}

static void emit_exists(struct comp *c, const struct q_field_def *fd)
{
	if (fd->exists) {
		emit(c, "(");
		emit(c, fd->exists);
		emit(c, ")");
		return;
	}
	int nc = ncols(fd);
	emit(c, "(");
	for (int k = 0; k < nc; k++) {
		emit(c, k ? " OR " : "");
		emit(c, fd->col[k]);
		emit(c, " IS NOT NULL");
	}
	emit(c, ")");
}

static void emit_node(struct comp *c, const struct q_node *n);

/* The parser-stack cost of a node's SQL, for ordering operands: the same rules
 * as the emission below, with a test counted as 4 (8 with a sub-select). */
static int node_cost(const struct q_node *n)
{
	switch (n->kind) {
	case Q_N_TEST:
		return n->field->wrap ? 8 : 4;
	case Q_N_NOT:
		if (n->kids[0]->kind == Q_N_NOT)
			return node_cost(n->kids[0]->kids[0]);
		return (n->kids[0]->kind == Q_N_TEST) + node_cost(n->kids[0]);
	default: {
		/* operands are emitted deepest first: the first costs one '(' more,
		 * every other one also its pending "x AND" */
		int c1 = 0, c2 = 0;
		for (uint32_t i = 0; i < n->nkids; i++) {
			int k = node_cost(n->kids[i]);
			if (k > c1) {
				c2 = c1;
				c1 = k;
			} else if (k > c2) {
				c2 = k;
			}
		}
		int extra = 0;
		for (uint32_t w = n->nkids; w > CHAIN; w = (w + 1) / 2)
			extra++;
		return 1 + extra + (c1 > c2 + 2 ? c1 : c2 + 2);
	}
	}
}

struct ranked {
	const struct q_node *node;
	int cost;
};

static int by_cost_desc(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;
	return x->cost != y->cost ? (x->cost > y->cost ? -1 : 1) : (x->node->pos > y->node->pos) - (x->node->pos < y->node->pos);
}

static void emit_chain(struct comp *c, const struct ranked *r, uint32_t lo, uint32_t hi, const char *sep)
{
	if (hi - lo == 1) {
		emit_node(c, r[lo].node);
		return;
	}
	emit(c, "(");
	if (hi - lo <= CHAIN) {
		for (uint32_t i = lo; i < hi; i++) {
			if (i > lo)
				emit(c, sep);
			emit_node(c, r[i].node);
		}
	} else {
		uint32_t mid = lo + (hi - lo) / 2;
		emit_chain(c, r, lo, mid, sep);
		emit(c, sep);
		emit_chain(c, r, mid, hi, sep);
	}
	emit(c, ")");
}

static void emit_kids(struct comp *c, const struct q_node *n, const char *sep)
{
	struct ranked *r = malloc(n->nkids * sizeof(*r));
	if (!r) {
		c->oom = 1;
		return;
	}
	for (uint32_t i = 0; i < n->nkids; i++) {
		r[i].node = n->kids[i];
		r[i].cost = node_cost(n->kids[i]);
	}
	qsort(r, n->nkids, sizeof(*r), by_cost_desc);
	emit_chain(c, r, 0, n->nkids, sep);
	free(r);
}

static void emit_test(struct comp *c, const struct q_node *n)
{
	const struct q_field_def *fd = n->field;
	if (fd->type == Q_TYPE_LABEL) {
		emit_label_test(c, n);
		return;
	}
	if (n->op == Q_OP_EXISTS) {
		emit_exists(c, fd);
		return;
	}
	int neg = n->op == Q_OP_NE || n->op == Q_OP_NOT_IN || n->op == Q_OP_NOT_MATCH;
	if (neg)
		emit(c, "(");
	const char *wrap_end = NULL;
	if (fd->wrap) {
		/* the part before "%s", emitted (and counted) as a fragment of its own */
		char head[160];
		const char *hole = strstr(fd->wrap, "%s");
		size_t hl = (size_t)(hole - fd->wrap);
		if (hl >= sizeof(head))
			hl = sizeof(head) - 1; /* a programming error: the field table is ours */
		memcpy(head, fd->wrap, hl);
		head[hl] = 0;
		emit(c, head);
		/* a sub-select's own parser states, beyond its parentheses (measured) */
		stack_add(c, SUBSELECT_STACK);
		wrap_end = hole + 2;
	}
	switch (n->op) {
	case Q_OP_LT:
	case Q_OP_LE:
	case Q_OP_GT:
	case Q_OP_GE:
		emit_order(c, fd, n->op, &n->vals[0]);
		break;
	default:
		emit_match(c, fd, n->vals, n->nvals);
		break;
	}
	if (wrap_end) {
		emit(c, wrap_end);
		c->stack -= SUBSELECT_STACK;
	}
	if (neg)
		emit(c, ") IS NOT 1");
}

/* Every form is self-delimiting as an operand of AND / OR ("(X) IS NOT 1" too:
 * IS binds more tightly than AND). */
static void emit_node(struct comp *c, const struct q_node *n)
{
	uint32_t saved = c->pos;
	c->pos = n->pos;
	switch (n->kind) {
	case Q_N_AND:
		emit_kids(c, n, " AND ");
		break;
	case Q_N_OR:
		emit_kids(c, n, " OR ");
		break;
	case Q_N_NOT:
		if (n->kids[0]->kind == Q_N_NOT) {
			/* not not X: X is true exactly when it is */
			emit_node(c, n->kids[0]->kids[0]);
			break;
		}
		if (n->kids[0]->kind == Q_N_AND || n->kids[0]->kind == Q_N_OR) {
			/* an and/or chain is already one parenthesised operand */
			emit_node(c, n->kids[0]);
			emit(c, " IS NOT 1");
			break;
		}
		emit(c, "(");
		emit_node(c, n->kids[0]);
		emit(c, ") IS NOT 1");
		break;
	case Q_N_TEST:
		emit_test(c, n);
		break;
	}
	c->pos = saved;
}

void q_compile_opts_default(struct q_compile_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->first_param = 1;
}

void q_sql_free(struct q_sql *sql)
{
	if (!sql)
		return;
	struct sql_priv *pv = (struct sql_priv *)sql;
	free(pv->pub.where);
	free(pv->pub.params);
	free(pv->pool);
	free(pv);
}

int q_compile(const struct q_filter *f, const struct q_compile_opts *opts, struct q_sql **out,
	      struct q_error *err)
{
	*out = NULL;
	struct q_compile_opts def;
	if (!opts) {
		q_compile_opts_default(&def);
		opts = &def;
	}
	if (opts->first_param < 1 || opts->first_param > Q_MAX_PARAMS) {
		q_err_setf(err, -EINVAL, NULL, 0, 0, "", "", "first parameter number %d out of range",
			   opts->first_param);
		return -EINVAL;
	}
	struct comp c;
	memset(&c, 0, sizeof(c));
	c.first = opts->first_param;
	emit(&c, "(");
	int parts = 0;
	if (f && f->root) {
		emit_node(&c, f->root);
		parts++;
	}
	if (opts->range.has_from) {
		emit(&c, parts++ ? " AND f.last_us >= " : "f.last_us >= ");
		emit_p(&c, param_int(&c, opts->range.from_us));
	}
	if (opts->range.has_to) {
		emit(&c, parts++ ? " AND f.first_us <= " : "f.first_us <= ");
		emit_p(&c, param_int(&c, opts->range.to_us));
	}
	if (!parts)
		emit(&c, "1");
	emit(&c, ")");
	struct sql_priv *pv = NULL;
	int rc = 0;
	if (c.stack_max > Q_SQL_STACK) {
		q_err_setf(err, -E2BIG, f ? f->text : NULL, f ? f->len : 0, c.pos_max, "deeper nesting", "less nesting",
			   "filter nested too deeply for the database's SQL parser; use fewer levels of "
			   "parentheses or shorter lists inside them");
		rc = -E2BIG;
		goto out;
	}
	if (c.toomany) {
		q_err_setf(err, -E2BIG, NULL, 0, 0, "", "", "filter needs more than %d SQL parameters",
			   Q_MAX_PARAMS);
		rc = -E2BIG;
		goto out;
	}
	if (c.oom || c.sql.oom || c.pool.oom || !(pv = calloc(1, sizeof(*pv)))) {
		q_err_setf(err, -ENOMEM, NULL, 0, 0, "", "", "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	/* Parameters point into the pool, which stops moving now. */
	for (size_t k = 0; k < c.np; k++) {
		if (c.params[k].type == Q_PARAM_TEXT) {
			c.params[k].text = c.pool.p + c.ptext[k].off;
			c.params[k].len = c.ptext[k].len;
		}
	}
	pv->pub.where = c.sql.p;
	pv->pub.where_len = c.sql.len;
	pv->pub.params = c.params;
	pv->pub.nparams = c.np;
	pv->pub.first_param = c.first;
	pv->pool = c.pool.p;
	c.sql.p = NULL;
	c.params = NULL;
	c.pool.p = NULL;
	*out = &pv->pub;
out:
	free(c.sql.p);
	free(c.params);
	free(c.ptext);
	free(c.pool.p);
	return rc;
}

int q_compile_text(const char *text, size_t len, const struct q_limits *lim,
		   const struct q_compile_opts *opts, struct q_sql **out, struct q_error *err)
{
	struct q_filter *f;
	*out = NULL;
	int rc = q_parse(text, len, lim, &f, err);
	if (rc)
		return rc;
	rc = q_compile(f, opts, out, err);
	q_filter_free(f);
	return rc;
}

void q_sql_params(const struct q_sql *sql, struct fdb_param *out)
{
	for (size_t i = 0; i < sql->nparams; i++) {
		const struct q_param *p = &sql->params[i];
		switch (p->type) {
		case Q_PARAM_INT: out[i] = (struct fdb_param){.type = FDB_INT, .i = p->i}; break;
		case Q_PARAM_DOUBLE: out[i] = (struct fdb_param){.type = FDB_REAL, .d = p->d}; break;
		default:
			/* text is NUL-terminated too, so an empty one binds as "" */
			out[i] = (struct fdb_param){.type = FDB_TEXT, .s = p->text, .len = p->len};
			break;
		}
	}
}
