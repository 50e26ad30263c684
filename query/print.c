/* query — the AST printed back as normalised filter text (logs, tests, the
 * API's echo of what it understood).  Parsing the output gives the same AST:
 * the fuzz target checks print(parse(print(x))) == print(x). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A value printed bare must lex back as one word in value position and not be
 * taken for something else; anything unusual is quoted. */
static int bare_ok(const char *s, size_t n)
{
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
			continue;
		if (!strchr("._:/*+-@", c))
			return 0;
	}
	return 1;
}

static void print_text(struct q_buf *b, const char *s, size_t n)
{
	if (bare_ok(s, n)) {
		q_buf_add(b, s, n);
		return;
	}
	q_buf_add(b, "\"", 1);
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\') {
			q_buf_add(b, s + start, i - start);
			q_buf_add(b, "\\", 1);
			start = i;
		}
	}
	q_buf_add(b, s + start, n - start);
	q_buf_add(b, "\"", 1);
}

static void print_duration(struct q_buf *b, int64_t us)
{
	static const struct {
		const char *unit;
		int64_t us;
	} units[] = {
		{"d", 86400000000LL}, {"h", 3600000000LL}, {"m", 60000000LL},
		{"s", 1000000LL}, {"ms", 1000LL}, {"us", 1},
	};
	if (us == 0) {
		q_buf_puts(b, "0");
		return;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (us % units[i].us == 0) {
			q_buf_printf(b, "%" PRId64 "%s", us / units[i].us, units[i].unit);
			return;
		}
	}
}

static void print_value(struct q_buf *b, const struct q_field_def *fd, const struct q_value *v)
{
	switch (v->kind) {
	case Q_V_ADDR: {
		char buf[INET6_ADDRSTRLEN];
		inet_ntop(v->family == 4 ? AF_INET : AF_INET6, v->addr, buf, sizeof(buf));
		q_buf_puts(b, buf);
		if (v->bits != (v->family == 4 ? 32 : 128))
			q_buf_printf(b, "/%u", v->bits);
		break;
	}
	case Q_V_INT:
		if (fd->type == Q_TYPE_DURATION) {
			print_duration(b, v->i);
		} else if (fd->type == Q_TYPE_PROTO && q_proto_name(v->i)) {
			q_buf_puts(b, q_proto_name(v->i));
		} else if (fd->type == Q_TYPE_ID) {
			q_buf_printf(b, "%" PRIu64, (uint64_t)v->i);
		} else {
			q_buf_printf(b, "%" PRId64, v->i);
		}
		break;
	case Q_V_TEXT:
	case Q_V_GLOB:
		print_text(b, v->text, v->len);
		break;
	}
}

static const char *const op_words[] = {
	[Q_OP_EQ] = " == ", [Q_OP_NE] = " != ", [Q_OP_LT] = " < ", [Q_OP_LE] = " <= ",
	[Q_OP_GT] = " > ", [Q_OP_GE] = " >= ", [Q_OP_IN] = " in ", [Q_OP_NOT_IN] = " not in ",
	[Q_OP_MATCH] = " ~ ", [Q_OP_NOT_MATCH] = " !~ ", [Q_OP_EXISTS] = " exists",
};

/* Precedence: or 1, and 2, not 3, a test 4; parentheses where a child binds
 * less tightly than its place needs. */
static void print_node(struct q_buf *b, const struct q_node *n, int need)
{
	switch (n->kind) {
	case Q_N_OR:
	case Q_N_AND: {
		int prec = n->kind == Q_N_OR ? 1 : 2;
		if (need > prec)
			q_buf_puts(b, "(");
		for (uint32_t i = 0; i < n->nkids; i++) {
			if (i)
				q_buf_puts(b, n->kind == Q_N_OR ? " or " : " and ");
			/* a same-kind child (never made by the parser) would need parentheses */
			print_node(b, n->kids[i], n->kids[i]->kind == n->kind ? prec + 1 : prec);
		}
		if (need > prec)
			q_buf_puts(b, ")");
		break;
	}
	case Q_N_NOT:
		q_buf_puts(b, "not ");
		print_node(b, n->kids[0], 3);
		break;
	case Q_N_TEST:
		if (n->key) {
			/* a family field: its prefix ("label.") and the key */
			const char *dot = strchr(n->field->info.name, '.');
			q_buf_add(b, n->field->info.name, (size_t)(dot - n->field->info.name) + 1);
			q_buf_add(b, n->key, n->keylen);
		} else {
			q_buf_puts(b, n->field->info.name);
		}
		q_buf_puts(b, op_words[n->op]);
		if (n->op == Q_OP_EXISTS)
			break;
		if (n->op == Q_OP_IN || n->op == Q_OP_NOT_IN) {
			q_buf_puts(b, "[");
			for (uint32_t i = 0; i < n->nvals; i++) {
				if (i)
					q_buf_puts(b, ", ");
				print_value(b, n->field, &n->vals[i]);
			}
			q_buf_puts(b, "]");
		} else {
			print_value(b, n->field, &n->vals[0]);
		}
		break;
	}
}

char *q_filter_text(const struct q_filter *f)
{
	struct q_buf b = {0};
	q_buf_add(&b, "", 0);
	if (f && f->root)
		print_node(&b, f->root, 0);
	if (b.oom || !b.p) {
		free(b.p);
		errno = ENOMEM;
		return NULL;
	}
	return b.p;
}
