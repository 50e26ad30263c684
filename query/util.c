/* query — errors, text buffers and the value parsers shared by the filter parser
 * and q_time_parse. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* --- errors --- */

/* Character (code point) position of a byte offset: the text was checked to be
 * valid UTF-8 before any error after the first pass can name a place, and the
 * first pass names the offending byte itself. */
uint32_t q_char_pos(const char *text, size_t len, size_t byte)
{
	if (byte > len)
		byte = len;
	uint32_t n = 0;
	for (size_t i = 0; i < byte; i++)
		if (((unsigned char)text[i] & 0xC0) != 0x80)
			n++;
	/* a byte inside a character belongs to that character */
	if (byte < len && ((unsigned char)text[byte] & 0xC0) == 0x80 && n > 0)
		return n;
	return n + 1;
}

static void copy_trunc(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap) {
		n = cap - 1;
		/* never cut a UTF-8 sequence */
		while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = 0;
}

static void err_fill(struct q_error *err, int code, const char *text, size_t len, size_t byte,
		     const char *found, const char *expected)
{
	memset(err, 0, sizeof(*err));
	err->code = code;
	err->byte = (uint32_t)(byte > len ? len : byte);
	err->pos = text ? q_char_pos(text, len, byte) : 0;
	copy_trunc(err->found, sizeof(err->found), found ? found : "");
	copy_trunc(err->expected, sizeof(err->expected), expected ? expected : "");
}

void q_err_set(struct q_error *err, int code, const char *text, size_t len, size_t byte,
	       const char *found, const char *expected)
{
	if (!err)
		return;
	err_fill(err, code, text, len, byte, found, expected);
	char line[sizeof(err->msg) + 64];
	if (err->pos)
		snprintf(line, sizeof(line), "position %u: expected %s, found %s", err->pos,
			 err->expected, err->found);
	else
		snprintf(line, sizeof(line), "expected %s, found %s", err->expected, err->found);
	copy_trunc(err->msg, sizeof(err->msg), line);
}

void q_err_setf(struct q_error *err, int code, const char *text, size_t len, size_t byte,
		const char *found, const char *expected, const char *fmt, ...)
{
	if (!err)
		return;
	err_fill(err, code, text, len, byte, found, expected);
	char body[sizeof(err->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	char line[sizeof(err->msg) + 64];
	if (err->pos)
		snprintf(line, sizeof(line), "position %u: %s", err->pos, body);
	else
		snprintf(line, sizeof(line), "%s", body);
	copy_trunc(err->msg, sizeof(err->msg), line);
}

void q_describe(char *out, size_t outlen, const char *tok, size_t toklen)
{
	enum { SHOW = 40 };
	char buf[SHOW + 8];
	size_t n = toklen > SHOW ? SHOW : toklen;
	while (n < toklen && n > 0 && ((unsigned char)tok[n] & 0xC0) == 0x80)
		n--;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = tok[i];
		/* tabs and newlines inside strings would break the one-line message */
		buf[o++] = (c == '\t' || c == '\n' || c == '\r') ? ' ' : c;
	}
	buf[o] = 0;
	const char *more = n < toklen ? "..." : "";
	/* a quoted string shows with its own quotes */
	if (toklen && (tok[0] == '"' || tok[0] == '\''))
		snprintf(out, outlen, "%s%s", buf, more);
	else
		snprintf(out, outlen, "'%s%s'", buf, more);
}

/* --- buffers --- */

void q_buf_add(struct q_buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1) {
			if (cap > SIZE_MAX / 2) {
				b->oom = 1;
				return;
			}
			cap *= 2;
		}
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

void q_buf_puts(struct q_buf *b, const char *s)
{
	q_buf_add(b, s, strlen(s));
}

void q_buf_printf(struct q_buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	/* only used for short fragments (numbers); longer is a programming error */
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = 1;
		return;
	}
	q_buf_add(b, tmp, (size_t)n);
}

/* --- numbers --- */

int q_parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	if (!n)
		return -EINVAL;
	uint64_t v = 0;
	int base = 10;
	size_t i = 0;
	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	int range = 0;
	for (; i < n; i++) {
		unsigned d;
		char c = s[i];
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return -EINVAL;
		/* keep scanning after an overflow: a non-digit later is still malformed */
		if (!range && (__builtin_mul_overflow(v, (uint64_t)base, &v) ||
			       __builtin_add_overflow(v, d, &v)))
			range = 1;
	}
	if (range || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* "12", "1.5": the number in front of a unit.  *whole and *frac/10^*fdigits,
 * with trailing zeros of the fraction dropped and at most 6 fraction digits. */
static int parse_decimal(const char *s, size_t n, size_t *used, uint64_t *whole, uint64_t *frac,
			 unsigned *fdigits)
{
	size_t i = 0;
	uint64_t w = 0;
	int range = 0;
	while (i < n && s[i] >= '0' && s[i] <= '9') {
		if (__builtin_mul_overflow(w, 10u, &w) || __builtin_add_overflow(w, (unsigned)(s[i] - '0'), &w))
			range = 1;
		i++;
	}
	if (i == 0)
		return -EINVAL;
	uint64_t f = 0;
	unsigned fd = 0;
	if (i < n && s[i] == '.') {
		size_t start = ++i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start)
			return -EINVAL;
		size_t end = i;
		while (end > start && s[end - 1] == '0')
			end--;
		if (end - start > 6)
			return -EINVAL;
		for (size_t k = start; k < end; k++)
			f = f * 10 + (uint64_t)(s[k] - '0');
		fd = (unsigned)(end - start);
	}
	if (range)
		return -ERANGE;
	*used = i;
	*whole = w;
	*frac = f;
	*fdigits = fd;
	return 0;
}

/* whole.frac * scale as an exact integer up to INT64_MAX. */
static int scale_exact(uint64_t whole, uint64_t frac, unsigned fd, uint64_t scale, int64_t *out)
{
	static const uint64_t pow10[] = {1, 10, 100, 1000, 10000, 100000, 1000000};
	uint64_t v;
	if (__builtin_mul_overflow(whole, scale, &v))
		return -ERANGE;
	/* frac < 10^6 and scale < 2^41 (TiB, days in µs): no overflow */
	uint64_t fv = frac * scale;
	if (fv % pow10[fd])
		return -EINVAL; /* not a whole number of bytes / µs */
	if (__builtin_add_overflow(v, fv / pow10[fd], &v) || v > INT64_MAX)
		return -ERANGE;
	*out = (int64_t)v;
	return 0;
}

int q_parse_size(const char *s, size_t n, int size_units, int64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t scale;
		int size_only;
	} units[] = {
		{"", 1, 0}, {"k", 1000, 0}, {"K", 1000, 0}, {"M", 1000000, 0}, {"G", 1000000000, 0},
		{"T", 1000000000000ULL, 1}, {"B", 1, 1}, {"kB", 1000, 1}, {"KB", 1000, 1},
		{"MB", 1000000, 1}, {"GB", 1000000000, 1}, {"TB", 1000000000000ULL, 1},
		{"Ki", 1024, 1}, {"Mi", 1048576, 1}, {"Gi", 1073741824, 1},
		{"Ti", 1099511627776ULL, 1}, {"KiB", 1024, 1}, {"MiB", 1048576, 1},
		{"GiB", 1073741824, 1}, {"TiB", 1099511627776ULL, 1},
	};
	size_t used;
	uint64_t whole, frac;
	unsigned fd;
	int rc = parse_decimal(s, n, &used, &whole, &frac, &fd);
	if (rc)
		return rc;
	const char *u = s + used;
	size_t un = n - used;
	for (size_t k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
		if (units[k].size_only && !size_units)
			continue;
		if (strlen(units[k].unit) == un && memcmp(units[k].unit, u, un) == 0)
			return scale_exact(whole, frac, fd, units[k].scale, out);
	}
	return -EINVAL;
}

int q_parse_duration(const char *s, size_t n, int64_t *out_us)
{
	static const struct {
		const char *unit;
		uint64_t us;
	} units[] = {
		{"us", 1}, {"\xc2\xb5s", 1}, {"ms", 1000}, {"s", 1000000}, {"m", 60000000},
		{"min", 60000000}, {"h", 3600000000ULL}, {"d", 86400000000ULL},
	};
	if (!n)
		return -EINVAL;
	if (n == 1 && s[0] == '0') {
		*out_us = 0;
		return 0;
	}
	int64_t total = 0;
	size_t i = 0;
	/* "1h30m": parts, each a number and a unit; bounded by n */
	while (i < n) {
		size_t used;
		uint64_t whole, frac;
		unsigned fd;
		int rc = parse_decimal(s + i, n - i, &used, &whole, &frac, &fd);
		if (rc)
			return rc;
		i += used;
		size_t ustart = i;
		while (i < n && !(s[i] >= '0' && s[i] <= '9') && s[i] != '.')
			i++;
		if (i == ustart)
			return -EINVAL; /* a number without a unit */
		size_t k;
		for (k = 0; k < sizeof(units) / sizeof(units[0]); k++)
			if (strlen(units[k].unit) == i - ustart && memcmp(units[k].unit, s + ustart, i - ustart) == 0)
				break;
		if (k == sizeof(units) / sizeof(units[0]))
			return -EINVAL;
		int64_t part;
		if ((rc = scale_exact(whole, frac, fd, units[k].us, &part)))
			return rc;
		if (__builtin_add_overflow(total, part, &total))
			return -ERANGE;
	}
	*out_us = total;
	return 0;
}

/* --- addresses --- */

int q_parse_addr(const char *s, size_t n, uint8_t addr[16], uint8_t *family, uint8_t *bits)
{
	char buf[64];
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = 0;
	char *slash = strchr(buf, '/');
	int pbits = -1;
	if (slash) {
		*slash = 0;
		const char *b = slash + 1;
		size_t bl = strlen(b);
		if (bl == 0 || bl > 3 || (bl > 1 && b[0] == '0'))
			return -EINVAL;
		uint64_t v;
		if (q_parse_uint(b, bl, 128, &v) || (b[0] < '0' || b[0] > '9'))
			return -EINVAL;
		pbits = (int)v;
	}
	uint8_t a[16];
	memset(a, 0, sizeof(a));
	int fam;
	if (inet_pton(AF_INET, buf, a) == 1)
		fam = 4;
	else if (inet_pton(AF_INET6, buf, a) == 1)
		fam = 6;
	else
		return -EINVAL;
	int maxbits = fam == 4 ? 32 : 128;
	if (pbits > maxbits)
		return -ERANGE;
	if (pbits < 0)
		pbits = maxbits;
	/* ::ffff:a.b.c.d is how some tools print IPv4; the store keeps it as IPv4. */
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (fam == 6 && pbits >= 96 && memcmp(a, mapped, 12) == 0) {
		memmove(a, a + 12, 4);
		memset(a + 4, 0, 12);
		fam = 4;
		pbits -= 96;
	}
	int nbytes = fam == 4 ? 4 : 16;
	for (int k = 0; k < nbytes; k++) {
		int keep = pbits - 8 * k;
		if (keep <= 0)
			a[k] = 0;
		else if (keep < 8)
			a[k] &= (uint8_t)(0xff << (8 - keep));
	}
	memcpy(addr, a, 16);
	*family = (uint8_t)fam;
	*bits = (uint8_t)pbits;
	return 0;
}

static const struct {
	const char *name;
	int number;
} protos[] = {
	{"icmp", 1}, {"igmp", 2}, {"ipip", 4}, {"tcp", 6}, {"udp", 17}, {"ipv6", 41},
	{"gre", 47}, {"esp", 50}, {"ah", 51}, {"icmpv6", 58}, {"ospf", 89}, {"pim", 103},
	{"vrrp", 112}, {"sctp", 132}, {"udplite", 136},
	/* other spellings, after the canonical names so q_proto_name finds those */
	{"icmp6", 58}, {"ipv6-icmp", 58}, {"ipencap", 4},
};

int q_proto_number(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++)
		if (strlen(protos[i].name) == n && strncasecmp(protos[i].name, s, n) == 0)
			return protos[i].number;
	return -1;
}

const char *q_proto_name(int64_t proto)
{
	for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++)
		if (protos[i].number == proto)
			return protos[i].name;
	return NULL;
}

/* Fills err (when not NULL) with a formatted message and returns rc: for the
 * users of the language (listings, exports, top) whose errors have no position
 * in a filter text, or one already known. */
int q_err(struct q_error *err, int rc, int pos, const char *fmt, ...)
{
	if (err) {
		memset(err, 0, sizeof(*err));
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = rc;
		err->pos = (uint32_t)pos;
	}
	return rc;
}
