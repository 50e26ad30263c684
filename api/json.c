/* A growable buffer for the API's answers, with JSON string escaping.  Errors are
 * sticky (the answer becomes a 500 once, instead of a check after every append). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

#define JB_DEFAULT_MAX (64u << 20)

void jb_free(struct jbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static int jb_reserve(struct jbuf *b, size_t more)
{
	size_t max = b->max ? b->max : JB_DEFAULT_MAX;
	if (b->err)
		return b->err;
	if (more > max || b->len > max - more) {
		b->err = -E2BIG;
		return b->err;
	}
	if (b->len + more + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->err = -ENOMEM;
		return b->err;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

void jb_raw(struct jbuf *b, const void *s, size_t n)
{
	if (jb_reserve(b, n) < 0)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void jb_str(struct jbuf *b, const char *s)
{
	jb_raw(b, s, strlen(s));
}

void jb_fmt(struct jbuf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		if (!b->err)
			b->err = -EINVAL;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		jb_raw(b, small, (size_t)n);
		return;
	}
	if (jb_reserve(b, (size_t)n) < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

int jb_write(void *arg, const void *buf, size_t len)
{
	struct jbuf *b = arg;
	jb_raw(b, buf, len);
	return b->err;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t need;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < need)
		return 0;
	unsigned cp = c & (0x7f >> need);
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

void jb_jstrn(struct jbuf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	jb_raw(b, "\"", 1);
	size_t i = 0, run = 0;
	while (i < n && !b->err) {
		unsigned c = u[i];
		size_t l = c < 0x80 ? 1 : utf8_len(u + i, n - i);
		/* Plain runs are copied at once; the rest one escape at a time.  '<' and
		 * '>' are escaped too, so no answer can close a <script> it is pasted into. */
		if (l == 1 && c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != 0x7f) {
			i++;
			run++;
			continue;
		}
		if (l == 2 && c == 0xc2 && u[i + 1] <= 0x9f) {
			/* a C1 control (U+0080..U+009F): terminals obey them too */
			jb_raw(b, s + i - run, run);
			run = 0;
			char esc[8];
			snprintf(esc, sizeof(esc), "\\u%04x", u[i + 1]);
			jb_str(b, esc);
			i += 2;
			continue;
		}
		if (l > 1) {
			i += l;
			run += l;
			continue;
		}
		jb_raw(b, s + i - run, run);
		run = 0;
		char esc[8];
		if (l == 0)
			jb_str(b, "\\ufffd"); /* a byte that is not UTF-8 */
		else if (c == '"')
			jb_str(b, "\\\"");
		else if (c == '\\')
			jb_str(b, "\\\\");
		else if (c == '\n')
			jb_str(b, "\\n");
		else if (c == '\t')
			jb_str(b, "\\t");
		else if (c == '\r')
			jb_str(b, "\\r");
		else {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			jb_str(b, esc);
		}
		i++;
	}
	jb_raw(b, s + i - run, run);
	jb_raw(b, "\"", 1);
}

void jb_jstr(struct jbuf *b, const char *s)
{
	if (!s)
		jb_str(b, "null");
	else
		jb_jstrn(b, s, strlen(s));
}

void jb_key(struct jbuf *b, int *first, const char *name)
{
	if (!*first)
		jb_raw(b, ",", 1);
	*first = 0;
	jb_jstr(b, name);
	jb_raw(b, ":", 1);
}

void jb_kv_u64(struct jbuf *b, int *first, const char *name, uint64_t v)
{
	jb_key(b, first, name);
	jb_fmt(b, "%" PRIu64, v);
}

void jb_kv_i64(struct jbuf *b, int *first, const char *name, int64_t v)
{
	jb_key(b, first, name);
	jb_fmt(b, "%" PRId64, v);
}

void jb_kv_str(struct jbuf *b, int *first, const char *name, const char *v)
{
	jb_key(b, first, name);
	jb_jstr(b, v);
}

void jb_kv_bool(struct jbuf *b, int *first, const char *name, bool v)
{
	jb_key(b, first, name);
	jb_str(b, v ? "true" : "false");
}

void jb_kv_double(struct jbuf *b, int *first, const char *name, double v)
{
	jb_key(b, first, name);
	if (isfinite(v))
		jb_fmt(b, "%.6g", v);
	else
		jb_str(b, "null");
}
