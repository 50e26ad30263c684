/* query — q_time_parse: the from/to bounds of a time range. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"

#define TIME_MAX_LEN 64
#define TIME_EXPECTED "a time: now, -1h, now-30m, 2024-10-01T12:00:00Z or epoch seconds"

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* n digits at s as a number, or -1. */
static int digits(const char *s, size_t avail, size_t n)
{
	if (avail < n)
		return -1;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* RFC 3339 / ISO 8601 subset; 0 or -EINVAL. */
static int parse_iso(const char *s, size_t n, int64_t *out)
{
	static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y = digits(s, n, 4), mo, d, h = 0, mi = 0, sec = 0;
	int64_t frac_us = 0, off_s = 0;
	size_t i = 4;
	if (y < 0 || i >= n || s[i] != '-' || (mo = digits(s + 5, n - 5, 2)) < 0 || n < 8 ||
	    s[7] != '-' || (d = digits(s + 8, n - 8, 2)) < 0)
		return -EINVAL;
	i = 10;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo < 1 || mo > 12 || d < 1 || (unsigned)d > mdays[mo - 1] + (mo == 2 && leap))
		return -EINVAL;
	if (i < n && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
		i++;
		if ((h = digits(s + i, n - i, 2)) < 0 || i + 2 >= n || s[i + 2] != ':' ||
		    (mi = digits(s + i + 3, n - i - 3, 2)) < 0)
			return -EINVAL;
		i += 5;
		if (i < n && s[i] == ':') {
			if ((sec = digits(s + i + 1, n - i - 1, 2)) < 0)
				return -EINVAL;
			i += 3;
			if (i < n && (s[i] == '.' || s[i] == ',')) {
				size_t start = ++i;
				int64_t scale = 100000;
				while (i < n && s[i] >= '0' && s[i] <= '9') {
					if (i - start >= 9)
						return -EINVAL;
					frac_us += (s[i] - '0') * scale;
					scale /= 10;
					i++;
				}
				if (i == start)
					return -EINVAL;
			}
		}
		/* 60 would be a leap second: not representable in epoch time */
		if (h > 23 || mi > 59 || sec > 59)
			return -EINVAL;
		if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
			i++;
		} else if (i < n && (s[i] == '+' || s[i] == '-')) {
			int sign = s[i] == '-' ? -1 : 1;
			int oh = digits(s + i + 1, n - i - 1, 2), om;
			if (oh < 0)
				return -EINVAL;
			size_t j = i + 3;
			if (j < n && s[j] == ':')
				j++;
			if ((om = digits(s + j, n - j, 2)) < 0 || oh > 23 || om > 59)
				return -EINVAL;
			off_s = sign * (oh * 3600 + om * 60);
			i = j + 2;
		}
	}
	if (i != n)
		return -EINVAL;
	int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - off_s;
	*out = secs * 1000000 + frac_us;
	return 0;
}

static int all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return n > 0;
}

int q_time_parse(const char *text, size_t len, int64_t now_us, int64_t *out_us, struct q_error *err)
{
	const char *s = text ? text : "";
	size_t n = text ? len : 0;
	if (n > TIME_MAX_LEN) {
		q_err_setf(err, -E2BIG, s, n, TIME_MAX_LEN, "a longer text", TIME_EXPECTED,
			   "time longer than %d bytes", TIME_MAX_LEN);
		return -E2BIG;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f) {
			char found[32];
			snprintf(found, sizeof(found), c ? "byte 0x%02x" : "a NUL byte", c);
			q_err_set(err, -EINVAL, s, i, i, found, TIME_EXPECTED);
			return -EINVAL;
		}
	}
	size_t a = 0, b = n;
	while (a < b && s[a] == ' ')
		a++;
	while (b > a && s[b - 1] == ' ')
		b--;
	if (!now_us) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		now_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	}
	const char *t = s + a;
	size_t tn = b - a;
	int64_t v, d;
	int rc = -EINVAL;
	if (tn == 3 && strncasecmp(t, "now", 3) == 0) {
		v = now_us;
		rc = 0;
	} else if (tn > 4 && strncasecmp(t, "now", 3) == 0 && (t[3] == '-' || t[3] == '+')) {
		if ((rc = q_parse_duration(t + 4, tn - 4, &d)) == 0)
			v = t[3] == '-' ? now_us - d : now_us + d;
	} else if (tn > 1 && t[0] == '-') {
		if ((rc = q_parse_duration(t + 1, tn - 1, &d)) == 0)
			v = now_us - d;
	} else if (tn >= 10 && t[4] == '-') {
		rc = parse_iso(t, tn, &v);
	} else if (all_digits(t, tn) || (tn > 2 && memchr(t, '.', tn) && t[0] != '.')) {
		/* epoch seconds, optionally with a fraction */
		const char *dot = memchr(t, '.', tn);
		size_t il = dot ? (size_t)(dot - t) : tn;
		uint64_t secs;
		if ((rc = q_parse_uint(t, il, (uint64_t)INT64_MAX / 1000000 - 1, &secs)) == 0 && all_digits(t, il)) {
			int64_t frac = 0, scale = 100000;
			size_t fl = dot ? tn - il - 1 : 0;
			if (dot && (fl == 0 || fl > 6 || !all_digits(dot + 1, fl)))
				rc = -EINVAL;
			for (size_t i = 0; rc == 0 && i < fl; i++, scale /= 10)
				frac += (dot[1 + i] - '0') * scale;
			v = (int64_t)secs * 1000000 + frac;
		} else {
			rc = -EINVAL;
		}
	} else if (tn > 0 && t[0] >= '0' && t[0] <= '9') {
		/* "1h": a duration ago, as in `--since 1h` */
		if ((rc = q_parse_duration(t, tn, &d)) == 0)
			v = now_us - d;
	}
	if (rc) {
		char found[80];
		q_describe(found, sizeof(found), t, tn);
		if (rc == -ERANGE)
			strcat(found, " (out of range)");
		q_err_set(err, -EINVAL, s, n, a, tn ? found : "nothing", TIME_EXPECTED);
		return -EINVAL;
	}
	*out_us = v;
	return 0;
}
