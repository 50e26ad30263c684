/* query — the filter parser: bytes → tokens → AST, with typed values.
 *
 * Recursive descent over a lazily lexed token stream with one token of
 * lookahead.  Only parentheses and `not` recurse, and both count against
 * max_depth; chains of `and` / `or` are loops that build n-ary nodes.  Every
 * value is checked against its field's type here, so the compiler and printer
 * never see a malformed one.  All memory of a filter lives in one arena, so an
 * error anywhere frees everything with it.
 *
 * The lexer has one piece of context: when a value is expected, a single '=' is
 * part of the word (base64 such as a Community ID ends in '='), while elsewhere
 * it is a mistyped '=='. */
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* --- arena --- */

struct q_arena_block {
	struct q_arena_block *next;
	size_t used, cap;
	alignas(16) unsigned char data[];
};
struct q_arena {
	struct q_arena_block *head;
};

static void *arena_alloc(struct q_arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	struct q_arena_block *b = a->head;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 4096 ? n : 4096;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->next = a->head;
		b->used = 0;
		b->cap = cap;
		a->head = b;
	}
	void *p = b->data + b->used;
	b->used += n;
	memset(p, 0, n);
	return p;
}

static void arena_free(struct q_arena *a)
{
	if (!a)
		return;
	struct q_arena_block *b = a->head;
	while (b) {
		struct q_arena_block *next = b->next;
		free(b);
		b = next;
	}
	free(a);
}

/* --- limits --- */

void q_limits_default(struct q_limits *lim)
{
	lim->max_len = 4096;
	lim->max_depth = 64;
	lim->max_list = 256;
	lim->max_values = 1024;
}

static void limits_clamp(const struct q_limits *in, struct q_limits *out)
{
	q_limits_default(out);
	if (!in)
		return;
	*out = *in;
	if (out->max_len > Q_MAX_LEN_CEIL)
		out->max_len = Q_MAX_LEN_CEIL;
	if (out->max_depth > Q_MAX_DEPTH_CEIL)
		out->max_depth = Q_MAX_DEPTH_CEIL;
	if (out->max_values > Q_MAX_VALUES_CEIL)
		out->max_values = Q_MAX_VALUES_CEIL;
	if (out->max_list > out->max_values)
		out->max_list = out->max_values;
}

/* --- tokens --- */

enum tk {
	TK_EOF, TK_WORD, TK_STRING, TK_LPAREN, TK_RPAREN, TK_LBRACK, TK_RBRACK, TK_LBRACE,
	TK_RBRACE, TK_COMMA, TK_EQ, TK_NE, TK_LT, TK_LE, TK_GT, TK_GE, TK_MATCH, TK_NMATCH,
	TK_AND, TK_OR, TK_NOT,
};

struct tok {
	enum tk kind;
	size_t pos, len;  /* the raw span in the text */
	char *str;        /* TK_STRING: the decoded value (arena), slen bytes */
	size_t slen;
};

struct parser {
	const char *s;
	size_t n;
	struct q_limits lim;
	struct q_error *err;
	struct q_arena *arena;
	size_t i;              /* lexer position */
	struct tok la;         /* lookahead, valid when have */
	int have;
	int value_mode;
	uint32_t depth, maxdepth, nvalues;
	int rc;                /* first error; parsing stops at it */
};

static int fail(struct parser *p, int code, size_t pos, const char *found, const char *expected)
{
	if (!p->rc) {
		p->rc = code;
		q_err_set(p->err, code, p->s, p->n, pos, found, expected);
	}
	return p->rc;
}

static int fail_tok(struct parser *p, const struct tok *t, const char *expected)
{
	char found[64];
	if (t->kind == TK_EOF)
		snprintf(found, sizeof(found), "end of filter");
	else
		q_describe(found, sizeof(found), p->s + t->pos, t->len);
	return fail(p, -EINVAL, t->pos, found, expected);
}

static int fail_oom(struct parser *p)
{
	if (!p->rc) {
		p->rc = -ENOMEM;
		q_err_setf(p->err, -ENOMEM, NULL, 0, 0, "", "", "out of memory");
	}
	return p->rc;
}

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_delim(unsigned char c)
{
	return is_space(c) || strchr("()[]{},\"'!<>~&|=", c) != NULL;
}

/* First pass over the whole text: NUL and control bytes and broken UTF-8 are
 * errors at their own position, so the lexer and every message after this deal
 * in valid, printable UTF-8. */
static int check_bytes(struct parser *p)
{
	const unsigned char *s = (const unsigned char *)p->s;
	size_t n = p->n;
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		if (c == 0)
			return fail(p, -EINVAL, i, "a NUL byte", "filter text");
		if ((c < 0x20 && !is_space((unsigned char)c)) || c == 0x7f) {
			char found[32];
			snprintf(found, sizeof(found), "control character 0x%02x", c);
			return fail(p, -EINVAL, i, found, "filter text");
		}
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t need;
		unsigned min;
		if (c >= 0xC2 && c <= 0xDF)
			need = 1, min = 0x80;
		else if (c >= 0xE0 && c <= 0xEF)
			need = 2, min = 0x800;
		else if (c >= 0xF0 && c <= 0xF4)
			need = 3, min = 0x10000;
		else
			goto bad;
		if (n - i <= need)
			goto bad;
		unsigned cp = c & (0x3F >> need);
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				goto bad;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			goto bad;
		i += need + 1;
		continue;
bad:;
		char found[32];
		snprintf(found, sizeof(found), "byte 0x%02x", c);
		return fail(p, -EINVAL, i, found, "valid UTF-8 text");
	}
	return 0;
}

static int lex_string(struct parser *p, struct tok *t)
{
	const char *s = p->s;
	char q = s[p->i];
	size_t start = p->i++;
	/* the decoded string is never longer than the raw one */
	char *out = arena_alloc(p->arena, p->n - start + 1);
	if (!out)
		return fail_oom(p);
	size_t o = 0;
	while (p->i < p->n) {
		char c = s[p->i];
		if (c == q) {
			p->i++;
			out[o] = 0;
			t->kind = TK_STRING;
			t->pos = start;
			t->len = p->i - start;
			t->str = out;
			t->slen = o;
			return 0;
		}
		if (c == '\\') {
			char e = p->i + 1 < p->n ? s[p->i + 1] : 0;
			if (e != '"' && e != '\'' && e != '\\') {
				char found[64];
				if (p->i + 1 >= p->n)
					snprintf(found, sizeof(found), "end of filter");
				else
					q_describe(found, sizeof(found), s + p->i, (s[p->i + 1] & 0x80) ? 1 : 2);
				return fail(p, -EINVAL, p->i, found, "\\\", \\' or \\\\ (the only escapes)");
			}
			out[o++] = e;
			p->i += 2;
			continue;
		}
		out[o++] = c;
		p->i++;
	}
	char expected[64];
	snprintf(expected, sizeof(expected), "%c to close the string", q);
	return fail(p, -EINVAL, start, "end of filter", expected);
}

static int lex(struct parser *p, struct tok *t)
{
	const char *s = p->s;
	while (p->i < p->n && is_space((unsigned char)s[p->i]))
		p->i++;
	memset(t, 0, sizeof(*t));
	t->pos = p->i;
	if (p->i >= p->n) {
		t->kind = TK_EOF;
		return 0;
	}
	char c = s[p->i], d = p->i + 1 < p->n ? s[p->i + 1] : 0;
	size_t len = 1;
	switch (c) {
	case '(': t->kind = TK_LPAREN; break;
	case ')': t->kind = TK_RPAREN; break;
	case '[': t->kind = TK_LBRACK; break;
	case ']': t->kind = TK_RBRACK; break;
	case '{': t->kind = TK_LBRACE; break;
	case '}': t->kind = TK_RBRACE; break;
	case ',': t->kind = TK_COMMA; break;
	case '~': t->kind = TK_MATCH; break;
	case '<':
		t->kind = d == '=' ? TK_LE : TK_LT;
		len = d == '=' ? 2 : 1;
		break;
	case '>':
		t->kind = d == '=' ? TK_GE : TK_GT;
		len = d == '=' ? 2 : 1;
		break;
	case '!':
		if (d == '=')
			t->kind = TK_NE, len = 2;
		else if (d == '~')
			t->kind = TK_NMATCH, len = 2;
		else
			t->kind = TK_NOT;
		break;
	case '&':
		if (d != '&')
			return fail(p, -EINVAL, p->i, "'&'", "'&&' or 'and'");
		t->kind = TK_AND, len = 2;
		break;
	case '|':
		if (d != '|')
			return fail(p, -EINVAL, p->i, "'|'", "'||' or 'or'");
		t->kind = TK_OR, len = 2;
		break;
	case '"':
	case '\'':
		return lex_string(p, t);
	case '=':
		if (d == '=') {
			t->kind = TK_EQ, len = 2;
			break;
		}
		if (!p->value_mode)
			return fail(p, -EINVAL, p->i, "'='", "'==' (comparison is written ==)");
		/* a value that starts with '=' */
		__attribute__((fallthrough));
	default: {
		size_t j = p->i;
		while (j < p->n) {
			unsigned char b = (unsigned char)s[j];
			if (b == '=' && p->value_mode && !(j + 1 < p->n && s[j + 1] == '=')) {
				j++;
				continue;
			}
			if (is_delim(b))
				break;
			j++;
		}
		t->kind = TK_WORD;
		len = j - p->i;
		break;
	}
	}
	t->len = len;
	p->i += len;
	return 0;
}

static const struct tok *peek(struct parser *p)
{
	if (!p->have && !p->rc) {
		if (lex(p, &p->la) == 0)
			p->have = 1;
	}
	if (p->rc) {
		/* callers check p->rc after every step; give them an inert token */
		static const struct tok eof = {TK_EOF, 0, 0, NULL, 0};
		return &eof;
	}
	return &p->la;
}

static struct tok next(struct parser *p)
{
	struct tok t = *peek(p);
	p->have = 0;
	return t;
}

static int word_is(const struct parser *p, const struct tok *t, const char *kw)
{
	return t->kind == TK_WORD && t->len == strlen(kw) && strncasecmp(p->s + t->pos, kw, t->len) == 0;
}

static int is_and(const struct parser *p, const struct tok *t)
{
	return t->kind == TK_AND || word_is(p, t, "and");
}

static int is_or(const struct parser *p, const struct tok *t)
{
	return t->kind == TK_OR || word_is(p, t, "or");
}

static int is_not(const struct parser *p, const struct tok *t)
{
	return t->kind == TK_NOT || word_is(p, t, "not");
}

/* --- values --- */

static void expected_for(const struct q_field_def *fd, enum q_op op, char *buf, size_t len)
{
	const char *name = fd->info.name;
	switch (fd->type) {
	case Q_TYPE_ADDR:
		snprintf(buf, len, "an IPv4 or IPv6 address or CIDR for '%s'", name);
		break;
	case Q_TYPE_PORT:
		snprintf(buf, len, "a port number (0-65535) for '%s'", name);
		break;
	case Q_TYPE_INT:
		snprintf(buf, len, "a number (0-%lld) for '%s'", (long long)fd->max, name);
		break;
	case Q_TYPE_ID:
		snprintf(buf, len, "a flow id (0-18446744073709551615) for '%s'", name);
		break;
	case Q_TYPE_COUNT:
		snprintf(buf, len, "a count (e.g. 10, 5k, 2M) for '%s'", name);
		break;
	case Q_TYPE_SIZE:
		snprintf(buf, len, "a size in bytes (e.g. 1500, 10k, 1M, 1MiB) for '%s'", name);
		break;
	case Q_TYPE_DURATION:
		snprintf(buf, len, "a duration with a unit (e.g. 200ms, 5s, 1m, 2h) for '%s'", name);
		break;
	case Q_TYPE_PROTO:
		snprintf(buf, len, "a protocol (tcp, udp, icmp, icmpv6, sctp, ... or 0-255) for '%s'", name);
		break;
	case Q_TYPE_RISK:
		if (op == Q_OP_LT || op == Q_OP_LE || op == Q_OP_GT || op == Q_OP_GE)
			snprintf(buf, len, "a number (the risk bitmap) for '%s' with an ordering", name);
		else
			snprintf(buf, len, "a risk name or number for '%s'", name);
		break;
	case Q_TYPE_CONF:
		snprintf(buf, len, "a confidence (dpi, dpi-cache, by-port, by-ip, unknown, guess) for '%s'", name);
		break;
	default:
		snprintf(buf, len, "a value for '%s'", name);
		break;
	}
}

static int has_star(const char *s, size_t n)
{
	return memchr(s, '*', n) != NULL;
}

static int all_digits(const char *s, size_t n)
{
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* Parses one value token for a field; on success *v is filled (text in the arena). */
static int parse_value(struct parser *p, const struct q_field_def *fd, enum q_op op,
		       const struct tok *t, struct q_value *v)
{
	if (t->kind != TK_WORD && t->kind != TK_STRING) {
		char exp[200];
		expected_for(fd, op, exp, sizeof(exp));
		return fail_tok(p, t, exp);
	}
	const char *s = t->kind == TK_STRING ? t->str : p->s + t->pos;
	size_t n = t->kind == TK_STRING ? t->slen : t->len;
	memset(v, 0, sizeof(*v));
	v->pos = (uint32_t)t->pos;
	int rc = 0;
	uint64_t u;
	switch (fd->type) {
	case Q_TYPE_ADDR:
		v->kind = Q_V_ADDR;
		rc = q_parse_addr(s, n, v->addr, &v->family, &v->bits);
		break;
	case Q_TYPE_PORT:
		v->kind = Q_V_INT;
		if (!(rc = q_parse_uint(s, n, 65535, &u)))
			v->i = (int64_t)u;
		break;
	case Q_TYPE_INT:
		v->kind = Q_V_INT;
		if (!(rc = q_parse_uint(s, n, (uint64_t)fd->max, &u)))
			v->i = (int64_t)u;
		break;
	case Q_TYPE_ID:
		v->kind = Q_V_INT;
		if (!(rc = q_parse_uint(s, n, UINT64_MAX, &u)))
			v->i = (int64_t)u; /* the stored bit pattern */
		break;
	case Q_TYPE_COUNT:
	case Q_TYPE_SIZE:
		v->kind = Q_V_INT;
		rc = q_parse_size(s, n, fd->type == Q_TYPE_SIZE, &v->i);
		break;
	case Q_TYPE_DURATION:
		v->kind = Q_V_INT;
		rc = q_parse_duration(s, n, &v->i);
		break;
	case Q_TYPE_PROTO: {
		v->kind = Q_V_INT;
		int num = q_proto_number(s, n);
		if (num >= 0)
			v->i = num;
		else if (!(rc = q_parse_uint(s, n, 255, &u)))
			v->i = (int64_t)u;
		break;
	}
	case Q_TYPE_CONF: {
		const char *canon = q_confidence_canon(s, n);
		if (!canon) {
			rc = -EINVAL;
			break;
		}
		v->kind = Q_V_TEXT;
		v->len = (uint32_t)strlen(canon);
		if (!(v->text = arena_alloc(p->arena, v->len + 1)))
			return fail_oom(p);
		memcpy(v->text, canon, v->len + 1);
		break;
	}
	case Q_TYPE_RISK:
		if (all_digits(s, n) || (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))) {
			v->kind = Q_V_INT;
			if (!(rc = q_parse_uint(s, n, (uint64_t)fd->max, &u)))
				v->i = (int64_t)u;
			break;
		}
		if (op == Q_OP_LT || op == Q_OP_LE || op == Q_OP_GT || op == Q_OP_GE) {
			rc = -EINVAL;
			break;
		}
		/* a risk name */
		__attribute__((fallthrough));
	case Q_TYPE_TEXT:
	case Q_TYPE_APP:
	case Q_TYPE_POD:
	case Q_TYPE_NS:
	case Q_TYPE_LABEL:
	case Q_TYPE_SERVICE:
		v->kind = (fd->flags & Q_F_GLOB) && has_star(s, n) ? Q_V_GLOB : Q_V_TEXT;
		v->text = arena_alloc(p->arena, n + 1);
		if (!v->text)
			return fail_oom(p);
		memcpy(v->text, s, n);
		v->text[n] = 0;
		v->len = (uint32_t)n;
		break;
	default:
		rc = -EINVAL;
		break;
	}
	if (rc) {
		char exp[200], found[100];
		expected_for(fd, op, exp, sizeof(exp));
		q_describe(found, sizeof(found) - 16, p->s + t->pos, t->len);
		if (rc == -ERANGE)
			strcat(found, " (out of range)");
		return fail(p, -EINVAL, t->pos, found, exp);
	}
	return 0;
}

static int count_value(struct parser *p, const struct tok *t)
{
	if (++p->nvalues > p->lim.max_values) {
		if (!p->rc) {
			p->rc = -E2BIG;
			q_err_setf(p->err, -E2BIG, p->s, p->n, t->pos, "another value", "at most the limit of values",
				   "filter has more than %u values", p->lim.max_values);
		}
		return p->rc;
	}
	return 0;
}

/* --- grammar --- */

static struct q_node *parse_or(struct parser *p);

static struct q_node *new_node(struct parser *p, enum q_nkind kind, size_t pos)
{
	struct q_node *nd = arena_alloc(p->arena, sizeof(*nd));
	if (!nd) {
		fail_oom(p);
		return NULL;
	}
	nd->kind = kind;
	nd->pos = (uint32_t)pos;
	return nd;
}

static int op_allowed(const struct q_field_def *fd, enum q_op op)
{
	switch (op) {
	case Q_OP_LT:
	case Q_OP_LE:
	case Q_OP_GT:
	case Q_OP_GE:
		switch (fd->type) {
		case Q_TYPE_PORT: case Q_TYPE_INT: case Q_TYPE_ID: case Q_TYPE_COUNT:
		case Q_TYPE_SIZE: case Q_TYPE_DURATION: case Q_TYPE_PROTO: case Q_TYPE_RISK:
			return 1;
		default:
			return 0;
		}
	case Q_OP_MATCH:
	case Q_OP_NOT_MATCH:
		return (fd->flags & Q_F_GLOB) != 0;
	default:
		return 1;
	}
}

static const char *const op_text[] = {
	[Q_OP_EQ] = "==", [Q_OP_NE] = "!=", [Q_OP_LT] = "<", [Q_OP_LE] = "<=", [Q_OP_GT] = ">",
	[Q_OP_GE] = ">=", [Q_OP_IN] = "in", [Q_OP_NOT_IN] = "not in", [Q_OP_MATCH] = "~",
	[Q_OP_NOT_MATCH] = "!~", [Q_OP_EXISTS] = "exists",
};

/* The operator after a field, or -1 when the token is none. */
static int token_op(const struct parser *p, const struct tok *t)
{
	switch (t->kind) {
	case TK_EQ: return Q_OP_EQ;
	case TK_NE: return Q_OP_NE;
	case TK_LT: return Q_OP_LT;
	case TK_LE: return Q_OP_LE;
	case TK_GT: return Q_OP_GT;
	case TK_GE: return Q_OP_GE;
	case TK_MATCH: return Q_OP_MATCH;
	case TK_NMATCH: return Q_OP_NOT_MATCH;
	default: break;
	}
	/* Wireshark's spelled-out operators */
	static const struct {
		const char *w;
		enum q_op op;
	} words[] = {
		{"eq", Q_OP_EQ}, {"ne", Q_OP_NE}, {"lt", Q_OP_LT}, {"le", Q_OP_LE},
		{"gt", Q_OP_GT}, {"ge", Q_OP_GE}, {"in", Q_OP_IN}, {"exists", Q_OP_EXISTS},
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (word_is(p, t, words[i].w))
			return (int)words[i].op;
	return -1;
}

static int parse_list(struct parser *p, struct q_node *nd)
{
	const struct q_field_def *fd = nd->field;
	size_t cap = 8, nv = 0;
	struct q_value *vals = malloc(cap * sizeof(*vals));
	if (!vals)
		return fail_oom(p);
	p->value_mode = 1;
	const struct tok *t = peek(p);
	enum tk close = TK_EOF;
	if (t->kind == TK_LBRACK)
		close = TK_RBRACK;
	else if (t->kind == TK_LPAREN)
		close = TK_RPAREN;
	else if (t->kind == TK_LBRACE)
		close = TK_RBRACE;
	const char *close_text = close == TK_RBRACK ? "']'" : close == TK_RPAREN ? "')'" : "'}'";
	if (close != TK_EOF) {
		next(p);
		for (;;) {
			t = peek(p);
			if (p->rc)
				break;
			if (t->kind == close && nv > 0) {
				next(p);
				break;
			}
			int after_comma = 0;
			if (t->kind == TK_COMMA && nv > 0) {
				next(p);
				after_comma = 1;
				t = peek(p);
				if (t->kind == close) {
					next(p);
					break;
				}
			}
			if (t->kind != TK_WORD && t->kind != TK_STRING) {
				char exp[240];
				if (nv == 0) {
					char e[200];
					expected_for(fd, Q_OP_IN, e, sizeof(e));
					snprintf(exp, sizeof(exp), "%s in the list", e);
				} else if (after_comma) {
					snprintf(exp, sizeof(exp), "a value or %s after ','", close_text);
				} else {
					snprintf(exp, sizeof(exp), "',', a value or %s", close_text);
				}
				fail_tok(p, t, exp);
				break;
			}
			if (nv >= p->lim.max_list) {
				p->rc = -E2BIG;
				q_err_setf(p->err, -E2BIG, p->s, p->n, t->pos, "another value", "a shorter list",
					   "list longer than %u values", p->lim.max_list);
				break;
			}
			if (count_value(p, t))
				break;
			if (nv == cap) {
				struct q_value *nvv = realloc(vals, 2 * cap * sizeof(*vals));
				if (!nvv) {
					fail_oom(p);
					break;
				}
				vals = nvv;
				cap *= 2;
			}
			struct tok vt = next(p);
			if (parse_value(p, fd, Q_OP_IN, &vt, &vals[nv]))
				break;
			nv++;
		}
	} else {
		/* `src in 10.0.0.0/8`: one value without brackets */
		struct tok vt = next(p);
		if (!p->rc && !count_value(p, &vt) && !parse_value(p, fd, Q_OP_IN, &vt, &vals[0]))
			nv = 1;
	}
	p->value_mode = 0;
	if (!p->rc) {
		nd->vals = arena_alloc(p->arena, nv * sizeof(*vals));
		if (!nd->vals)
			fail_oom(p);
		else
			memcpy(nd->vals, vals, nv * sizeof(*vals));
		nd->nvals = (uint32_t)nv;
	}
	free(vals);
	return p->rc;
}

static struct q_node *parse_test(struct parser *p)
{
	struct tok ft = next(p);
	if (p->rc)
		return NULL;
	if (ft.kind != TK_WORD || word_is(p, &ft, "and") || word_is(p, &ft, "or") ||
	    word_is(p, &ft, "in") || word_is(p, &ft, "exists")) {
		fail_tok(p, &ft, "a field name, 'not' or '('");
		return NULL;
	}
	size_t keyoff = 0;
	const struct q_field_def *fd = q_field_find(p->s + ft.pos, ft.len, &keyoff);
	if (fd && keyoff && !q_label_key_ok(p->s + ft.pos + keyoff, ft.len - keyoff)) {
		char found[64];
		q_describe(found, sizeof(found), p->s + ft.pos + keyoff, ft.len - keyoff);
		fail(p, -EINVAL, ft.pos + keyoff, found,
		     "a label key ([prefix/]name of letters, digits, '.', '_', '-')");
		return NULL;
	}
	if (!fd && ft.len > 1 && p->s[ft.pos + ft.len - 1] == '.') {
		/* "label." with the key missing (or quoted: keys are bare words) */
		for (size_t i = 0; i < q_nfields; i++) {
			const char *fn = q_field_defs[i].info.name;
			if ((q_field_defs[i].flags & Q_F_FAMILY) && strchr(fn, '.') &&
			    (size_t)(strchr(fn, '.') - fn) + 1 == ft.len && !strncasecmp(fn, p->s + ft.pos, ft.len)) {
				char exp[96];
				snprintf(exp, sizeof(exp), "a label key after '%.*s' (a bare word: label.app)",
					 (int)ft.len, p->s + ft.pos);
				fail_tok(p, peek(p), exp);
				return NULL;
			}
		}
	}
	if (!fd) {
		char found[64], exp[120];
		q_describe(found, sizeof(found), p->s + ft.pos, ft.len);
		const char *sug = q_field_suggest(p->s + ft.pos, ft.len);
		if (sug)
			snprintf(exp, sizeof(exp), "a field name (did you mean '%s'?)", sug);
		else
			snprintf(exp, sizeof(exp), "a field name (see docs/filters.md; for a protocol write app == %.*s)",
				 ft.len > 24 ? 24 : (int)ft.len, p->s + ft.pos);
		/* the app hint quotes user text: only when it is a plain word */
		unsigned char c0 = (unsigned char)p->s[ft.pos];
		if (!sug && !((c0 | 0x20) >= 'a' && (c0 | 0x20) <= 'z'))
			snprintf(exp, sizeof(exp), "a field name (see docs/filters.md)");
		for (size_t i = 0; !sug && i < ft.len && i < 24; i++) {
			unsigned char c = (unsigned char)p->s[ft.pos + i];
			if (!(c == '_' || c == '-' || c == '.' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))) {
				snprintf(exp, sizeof(exp), "a field name (see docs/filters.md)");
				break;
			}
		}
		fail(p, -EINVAL, ft.pos, found, exp);
		return NULL;
	}
	struct q_node *nd = new_node(p, Q_N_TEST, ft.pos);
	if (!nd)
		return NULL;
	nd->field = fd;
	if (keyoff) {
		char *key = arena_alloc(p->arena, ft.len - keyoff + 1);
		if (!key) {
			fail_oom(p);
			return NULL;
		}
		memcpy(key, p->s + ft.pos + keyoff, ft.len - keyoff);
		key[ft.len - keyoff] = 0;
		nd->key = key;
		nd->keylen = (uint32_t)(ft.len - keyoff);
	}
	const struct tok *t = peek(p);
	if (p->rc)
		return NULL;
	int op = token_op(p, t);
	if (op < 0 && is_not(p, t) && t->kind == TK_WORD) {
		/* `field not in [...]` */
		next(p);
		t = peek(p);
		if (!word_is(p, t, "in")) {
			char exp[64];
			snprintf(exp, sizeof(exp), "'in' after '%s not'", fd->info.name);
			fail_tok(p, t, exp);
			return NULL;
		}
		op = Q_OP_NOT_IN;
	}
	if (op < 0) {
		/* A bare field is `field exists`, as in Wireshark (`rtt and ...`). */
		if (t->kind == TK_EOF || t->kind == TK_RPAREN || is_and(p, t) || is_or(p, t)) {
			nd->op = Q_OP_EXISTS;
			return nd;
		}
		char exp[160];
		snprintf(exp, sizeof(exp), "an operator (%s) after '%s'", fd->info.operators, fd->info.name);
		fail_tok(p, t, exp);
		return NULL;
	}
	struct tok optok = next(p);
	nd->op = (enum q_op)op;
	if (!op_allowed(fd, nd->op)) {
		char exp[160];
		snprintf(exp, sizeof(exp), "one of %s after '%s' (%s)", fd->info.operators, fd->info.name,
			 fd->info.type);
		fail_tok(p, &optok, exp);
		return NULL;
	}
	if (nd->op == Q_OP_EXISTS)
		return nd;
	if (nd->op == Q_OP_IN || nd->op == Q_OP_NOT_IN) {
		if (parse_list(p, nd))
			return NULL;
		return nd;
	}
	p->value_mode = 1;
	const struct tok *vt = peek(p);
	p->value_mode = 0;
	if (p->rc)
		return NULL;
	if (vt->kind != TK_WORD && vt->kind != TK_STRING) {
		char exp[64];
		snprintf(exp, sizeof(exp), "a value after '%s'", op_text[op]);
		fail_tok(p, vt, exp);
		return NULL;
	}
	struct tok vtok = next(p);
	if (count_value(p, &vtok))
		return NULL;
	nd->vals = arena_alloc(p->arena, sizeof(*nd->vals));
	if (!nd->vals) {
		fail_oom(p);
		return NULL;
	}
	nd->nvals = 1;
	if (parse_value(p, fd, nd->op, &vtok, &nd->vals[0]))
		return NULL;
	return nd;
}

static int enter(struct parser *p, size_t pos)
{
	if (p->depth >= p->lim.max_depth) {
		if (!p->rc) {
			p->rc = -E2BIG;
			q_err_setf(p->err, -E2BIG, p->s, p->n, pos, "deeper nesting", "less nesting",
				   "filter nested deeper than %u levels of '(' and 'not'", p->lim.max_depth);
		}
		return p->rc;
	}
	if (++p->depth > p->maxdepth)
		p->maxdepth = p->depth;
	return 0;
}

static struct q_node *parse_unary(struct parser *p)
{
	const struct tok *t = peek(p);
	if (p->rc)
		return NULL;
	if (is_not(p, t)) {
		struct tok nt = next(p);
		if (enter(p, nt.pos))
			return NULL;
		struct q_node *kid = parse_unary(p);
		p->depth--;
		if (!kid)
			return NULL;
		struct q_node *nd = new_node(p, Q_N_NOT, nt.pos);
		if (!nd)
			return NULL;
		nd->kids = arena_alloc(p->arena, sizeof(*nd->kids));
		if (!nd->kids) {
			fail_oom(p);
			return NULL;
		}
		nd->kids[0] = kid;
		nd->nkids = 1;
		return nd;
	}
	if (t->kind == TK_LPAREN) {
		struct tok lp = next(p);
		if (enter(p, lp.pos))
			return NULL;
		struct q_node *nd = parse_or(p);
		p->depth--;
		if (!nd)
			return NULL;
		t = peek(p);
		if (p->rc)
			return NULL;
		if (t->kind != TK_RPAREN) {
			char exp[96];
			snprintf(exp, sizeof(exp), "')' to close the '(' at position %u, 'and' or 'or'",
				 q_char_pos(p->s, p->n, lp.pos));
			fail_tok(p, t, exp);
			return NULL;
		}
		next(p);
		return nd;
	}
	if (t->kind == TK_WORD)
		return parse_test(p);
	fail_tok(p, t, "a field name, 'not' or '('");
	return NULL;
}

/* and / or chains: a loop, n-ary node; a child of the same kind (from
 * parentheses) is flattened into it. */
static struct q_node *parse_chain(struct parser *p, enum q_nkind kind)
{
	struct q_node *first = kind == Q_N_OR ? parse_chain(p, Q_N_AND) : parse_unary(p);
	if (!first)
		return NULL;
	const struct tok *t = peek(p);
	if (p->rc || !(kind == Q_N_OR ? is_or(p, t) : is_and(p, t)))
		return p->rc ? NULL : first;
	size_t cap = 8, nk = 0;
	struct q_node **kids = malloc(cap * sizeof(*kids));
	if (!kids) {
		fail_oom(p);
		return NULL;
	}
	struct q_node *kid = first;
	for (;;) {
		size_t add = kid->kind == kind ? kid->nkids : 1;
		if (nk + add > cap) {
			while (nk + add > cap)
				cap *= 2;
			struct q_node **nkids = realloc(kids, cap * sizeof(*kids));
			if (!nkids) {
				fail_oom(p);
				break;
			}
			kids = nkids;
		}
		if (kid->kind == kind) {
			memcpy(kids + nk, kid->kids, kid->nkids * sizeof(*kids));
			nk += kid->nkids;
		} else {
			kids[nk++] = kid;
		}
		t = peek(p);
		if (p->rc || !(kind == Q_N_OR ? is_or(p, t) : is_and(p, t)))
			break;
		next(p);
		kid = kind == Q_N_OR ? parse_chain(p, Q_N_AND) : parse_unary(p);
		if (!kid)
			break;
	}
	struct q_node *nd = NULL;
	if (!p->rc && (nd = new_node(p, kind, first->pos))) {
		nd->kids = arena_alloc(p->arena, nk * sizeof(*kids));
		if (!nd->kids) {
			fail_oom(p);
			nd = NULL;
		} else {
			memcpy(nd->kids, kids, nk * sizeof(*kids));
			nd->nkids = (uint32_t)nk;
		}
	}
	free(kids);
	return p->rc ? NULL : nd;
}

static struct q_node *parse_or(struct parser *p)
{
	return parse_chain(p, Q_N_OR);
}

int q_parse(const char *text, size_t len, const struct q_limits *lim, struct q_filter **out,
	    struct q_error *err)
{
	*out = NULL;
	struct q_error dummy;
	struct parser p;
	memset(&p, 0, sizeof(p));
	p.err = err ? err : &dummy;
	memset(p.err, 0, sizeof(*p.err));
	limits_clamp(lim, &p.lim);
	p.s = text ? text : "";
	p.n = text ? len : 0;
	if (p.n > p.lim.max_len) {
		q_err_setf(p.err, -E2BIG, p.s, p.n, p.lim.max_len,
			   "a longer filter", "a shorter filter", "filter longer than %u bytes", p.lim.max_len);
		return -E2BIG;
	}
	if (check_bytes(&p))
		return p.rc;
	struct q_filter *f = calloc(1, sizeof(*f));
	p.arena = calloc(1, sizeof(*p.arena));
	if (!f || !p.arena) {
		free(f);
		free(p.arena);
		fail_oom(&p);
		return p.rc;
	}
	f->arena = p.arena;
	const struct tok *t = peek(&p);
	if (!p.rc && t->kind != TK_EOF) {
		f->root = parse_or(&p);
		if (!p.rc) {
			t = peek(&p);
			if (!p.rc && t->kind != TK_EOF) {
				if (t->kind == TK_RPAREN)
					fail_tok(&p, t, "'and', 'or' or end of filter (this ')' closes nothing)");
				else
					fail_tok(&p, t, "'and', 'or' or end of filter");
			}
		}
	}
	if (p.rc) {
		q_filter_free(f);
		return p.rc;
	}
	f->nvalues = p.nvalues;
	f->depth = p.maxdepth;
	f->text = arena_alloc(p.arena, p.n + 1);
	if (!f->text) {
		q_filter_free(f);
		fail_oom(&p);
		return p.rc;
	}
	memcpy(f->text, p.s, p.n);
	f->len = p.n;
	*out = f;
	return 0;
}

void q_filter_free(struct q_filter *f)
{
	if (!f)
		return;
	arena_free(f->arena);
	free(f);
}
