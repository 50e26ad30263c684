/* Pure parsing helpers of the server: listen addresses, percent-decoding, route
 * patterns, request paths, query strings, JSON escaping, ETags.  Everything here reads
 * client bytes, so every loop is bounded by the input length and every write by the
 * output size the caller passed. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_internal.h"

int srv_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *sslen,
		     char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port_s;
	size_t hlen;

	memset(ss, 0, sizeof(*ss));
	if (s == NULL || *s == '\0') {
		snprintf(err, errlen, "empty listen address (expected HOST:PORT)");
		return -EINVAL;
	}
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (end == NULL || end[1] != ':') {
			snprintf(err, errlen, "listen address '%s': expected [IPV6]:PORT", s);
			return -EINVAL;
		}
		hlen = (size_t)(end - s - 1);
		port_s = end + 2;
		if (hlen == 0 || hlen >= sizeof(host)) {
			snprintf(err, errlen, "listen address '%s': bad IPv6 address", s);
			return -EINVAL;
		}
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
	} else {
		const char *colon = strrchr(s, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "listen address '%s': expected HOST:PORT", s);
			return -EINVAL;
		}
		hlen = (size_t)(colon - s);
		port_s = colon + 1;
		if (memchr(s, ':', hlen) != NULL) {
			snprintf(err, errlen, "listen address '%s': write IPv6 addresses in brackets, e.g. [::1]:7070", s);
			return -EINVAL;
		}
		if (hlen == 0) {
			snprintf(err, errlen, "listen address '%s': empty host (use 0.0.0.0 or [::] for all addresses)", s);
			return -EINVAL;
		}
		if (hlen >= sizeof(host)) {
			snprintf(err, errlen, "listen address '%s': host too long", s);
			return -EINVAL;
		}
		memcpy(host, s, hlen);
		host[hlen] = '\0';
		if (strcmp(host, "localhost") == 0)
			strcpy(host, "127.0.0.1");
	}

	/* The port: 1 to 5 digits, at most 65535. */
	size_t plen = strlen(port_s);
	unsigned long port = 0;
	if (plen == 0 || plen > 5 || strspn(port_s, "0123456789") != plen ||
	    (port = strtoul(port_s, NULL, 10)) > 65535) {
		snprintf(err, errlen, "listen address '%s': bad port (0-65535; 0 picks a free one)", s);
		return -EINVAL;
	}

	if (s[0] == '[') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
			snprintf(err, errlen, "listen address '%s': '%s' is not an IPv6 address", s, host);
			return -EINVAL;
		}
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*sslen = sizeof(*a6);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
			snprintf(err, errlen, "listen address '%s': '%s' is not an IPv4 address "
				 "(names other than localhost are not resolved)", s, host);
			return -EINVAL;
		}
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*sslen = sizeof(*a4);
	}
	return 0;
}

int srv_listen_check(const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	return srv_parse_listen(addr, &ss, &len, err, errlen) < 0 ? -EINVAL : 0;
}

bool srv_addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;
		return (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
			return true;
		/* ::ffff:127.x.y.z is loopback too. */
		return IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr) && a6->sin6_addr.s6_addr[12] == 127;
	}
	return false;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long srv_pct_decode(const char *src, size_t len, char *dst, bool plus_is_space, bool nul_ok,
		    size_t *bad_at)
{
	size_t i = 0, o = 0;

	while (i < len) {
		unsigned char c = (unsigned char)src[i];
		if (c == '%') {
			int hi, lo;
			if (len - i < 3 || (hi = hexval((unsigned char)src[i + 1])) < 0 ||
			    (lo = hexval((unsigned char)src[i + 2])) < 0) {
				*bad_at = i;
				return -1;
			}
			c = (unsigned char)(hi << 4 | lo);
			if (c == 0 && !nul_ok) {
				*bad_at = i;
				return -1;
			}
			i += 3;
		} else {
			if (c == '+' && plus_is_space)
				c = ' ';
			i++;
		}
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	return (long)o;
}

void srv_pattern_free(struct srv_pattern *p)
{
	for (unsigned i = 0; i < p->nsegs; i++) {
		free(p->segs[i].text);
		p->segs[i].text = NULL;
	}
	p->nsegs = 0;
}

static bool is_param_name(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

static bool is_literal_char(char c)
{
	/* Unreserved characters plus a few sub-delims that are harmless in a path; no '%'
	 * (literals are compared with decoded segments, so they are written decoded). */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~' || c == '!' || c == '$' || c == '&' ||
	       c == '\'' || c == '(' || c == ')' || c == '+' || c == ',' || c == ';' || c == '=' ||
	       c == ':' || c == '@';
}

int srv_pattern_compile(const char *pattern, struct srv_pattern *p)
{
	memset(p, 0, sizeof(*p));
	if (pattern == NULL || pattern[0] != '/')
		return -EINVAL;
	const char *s = pattern + 1;
	if (*s == '\0')
		return 0; /* "/" */
	for (;;) {
		const char *end = strchr(s, '/');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		struct srv_seg *seg;

		if (p->nsegs == SRV_MAX_SEGMENTS || len == 0)
			goto bad;
		seg = &p->segs[p->nsegs];
		if (len == 1 && s[0] == '*') {
			if (end != NULL)
				goto bad; /* the rest segment must be last */
			seg->kind = SRV_SEG_REST;
		} else if (s[0] == '{') {
			if (len < 3 || s[len - 1] != '}' || !is_param_name(s + 1, len - 2))
				goto bad;
			seg->kind = SRV_SEG_PARAM;
			s++;
			len -= 2;
		} else {
			for (size_t i = 0; i < len; i++)
				if (!is_literal_char(s[i]))
					goto bad;
			seg->kind = SRV_SEG_LITERAL;
		}
		if (seg->kind != SRV_SEG_LITERAL) {
			if (p->nparams == SRV_MAX_PARAMS)
				goto bad;
			/* Parameter names are unique within a pattern. */
			for (unsigned i = 0; i < p->nsegs; i++)
				if (p->segs[i].kind != SRV_SEG_LITERAL && p->segs[i].len == len &&
				    memcmp(p->segs[i].text, s, len) == 0)
					goto bad;
		}
		seg->text = strndup(s, len);
		if (seg->text == NULL) {
			srv_pattern_free(p);
			return -ENOMEM;
		}
		seg->len = len;
		p->nsegs++;
		if (seg->kind == SRV_SEG_LITERAL)
			p->nliterals++;
		else
			p->nparams++;
		if (end == NULL)
			break;
		s = end + 1;
	}
	return 0;
bad:
	srv_pattern_free(p);
	return -EINVAL;
}

int srv_path_split(const char *raw, size_t len, char *buf, size_t buflen, struct srv_path *out,
		   size_t *bad_at)
{
	size_t used = 0;

	out->nsegs = 0;
	if (len == 0 || raw[0] != '/')
		return SRV_PATH_NOT_ABSOLUTE;
	if (len == 1)
		return SRV_PATH_OK;
	size_t i = 1;
	for (;;) {
		size_t start = i;
		while (i < len && raw[i] != '/')
			i++;
		if (out->nsegs == SRV_MAX_SEGMENTS)
			return SRV_PATH_TOO_DEEP;
		size_t seglen = i - start;
		/* Decoded text is never longer than the raw text; +1 for the NUL. */
		if (buflen - used < seglen + 1)
			return SRV_PATH_TOO_DEEP;
		size_t bad;
		long n = srv_pct_decode(raw + start, seglen, buf + used, false, false, &bad);
		if (n < 0) {
			*bad_at = start + bad;
			return SRV_PATH_BAD_ESCAPE;
		}
		out->seg[out->nsegs] = buf + used;
		out->seglen[out->nsegs] = (size_t)n;
		out->raw_off[out->nsegs] = start;
		out->nsegs++;
		used += (size_t)n + 1;
		if (i == len)
			break;
		i++; /* skip '/'; a trailing '/' makes one more (empty) segment */
	}
	return SRV_PATH_OK;
}

bool srv_pattern_match(const struct srv_pattern *p, const struct srv_path *path,
		       const char **values, size_t *vlen, char *restbuf, size_t restlen)
{
	unsigned np = 0;
	bool has_rest = p->nsegs > 0 && p->segs[p->nsegs - 1].kind == SRV_SEG_REST;
	unsigned fixed = has_rest ? p->nsegs - 1 : p->nsegs;

	if (has_rest ? path->nsegs < fixed : path->nsegs != fixed)
		return false;
	for (unsigned i = 0; i < fixed; i++) {
		const struct srv_seg *seg = &p->segs[i];
		if (seg->kind == SRV_SEG_LITERAL) {
			if (path->seglen[i] != seg->len || memcmp(path->seg[i], seg->text, seg->len) != 0)
				return false;
		} else {
			if (path->seglen[i] == 0)
				return false;
			values[np] = path->seg[i];
			vlen[np] = path->seglen[i];
			np++;
		}
	}
	if (has_rest) {
		size_t o = 0;
		for (unsigned i = fixed; i < path->nsegs; i++) {
			size_t need = path->seglen[i] + (i > fixed ? 1 : 0);
			if (o + need + 1 > restlen)
				return false;
			if (i > fixed)
				restbuf[o++] = '/';
			memcpy(restbuf + o, path->seg[i], path->seglen[i]);
			o += path->seglen[i];
		}
		if (restlen == 0)
			return false;
		restbuf[o] = '\0';
		values[np] = restbuf;
		vlen[np] = o;
	}
	return true;
}

size_t srv_query_pieces(const char *q, size_t len)
{
	size_t n = 1;
	for (size_t i = 0; i < len; i++)
		if (q[i] == '&')
			n++;
	return n;
}

long srv_query_parse(const char *q, size_t len, struct srv_kv *out, size_t max,
		     char *buf, size_t buflen, size_t *bad_at)
{
	size_t i = 0, used = 0, n = 0;

	while (i < len) {
		size_t start = i;
		while (i < len && q[i] != '&')
			i++;
		size_t plen = i - start;
		if (plen > 0) {
			const char *piece = q + start;
			const char *eq = memchr(piece, '=', plen);
			size_t nlen = eq ? (size_t)(eq - piece) : plen;
			size_t vlen = eq ? plen - nlen - 1 : 0;
			size_t bad;
			long dn, dv;

			if (n == max)
				return -2;
			if (buflen - used < plen + 2)
				return -2; /* cannot happen with a buffer sized as documented */
			dn = srv_pct_decode(piece, nlen, buf + used, true, false, &bad);
			if (dn < 0) {
				*bad_at = start + bad;
				return -1;
			}
			out[n].name = buf + used;
			out[n].name_len = (size_t)dn;
			used += (size_t)dn + 1;
			dv = srv_pct_decode(eq ? eq + 1 : piece + plen, vlen, buf + used, true, true, &bad);
			if (dv < 0) {
				*bad_at = start + nlen + 1 + bad;
				return -1;
			}
			out[n].value = buf + used;
			out[n].value_len = (size_t)dv;
			used += (size_t)dv + 1;
			n++;
		}
		i++; /* skip '&' */
	}
	return (long)n;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), 0 if there is none. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t k = 2; k < n; k++)
		if (s[k] < 0x80 || s[k] > 0xbf)
			return 0;
	return n;
}

size_t srv_json_escape(char *dst, size_t dstlen, const char *s, size_t len)
{
	size_t o = 0;

	if (dstlen == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		size_t elen;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			elen = 2;
		} else if (c == '\n') {
			memcpy(esc, "\\n", 2);
			elen = 2;
		} else if (c == '\r') {
			memcpy(esc, "\\r", 2);
			elen = 2;
		} else if (c == '\t') {
			memcpy(esc, "\\t", 2);
			elen = 2;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			elen = 6;
		} else if (c < 0x80) {
			esc[0] = (char)c;
			elen = 1;
		} else {
			/* a client's bytes echoed in an error: JSON is UTF-8, so a
			 * byte that does not start a whole character (%ff, or one a
			 * %.40s cut in two) becomes U+FFFD, as api/json.c writes them */
			size_t n = utf8_seq((const unsigned char *)s + i, len - i);
			if (n) {
				memcpy(esc, s + i, n);
				elen = n;
				i += n - 1;
			} else {
				memcpy(esc, "\\ufffd", 6);
				elen = 6;
			}
		}
		if (o + elen + 1 > dstlen)
			break;
		memcpy(dst + o, esc, elen);
		o += elen;
	}
	dst[o] = '\0';
	return o;
}

bool srv_etag_match(const char *inm, size_t inmlen, const char *etag)
{
	size_t elen = strlen(etag);
	size_t i = 0;

	while (i < inmlen) {
		while (i < inmlen && (inm[i] == ' ' || inm[i] == '\t' || inm[i] == ','))
			i++;
		if (i == inmlen)
			break;
		if (inm[i] == '*')
			return true;
		if (inmlen - i >= 2 && inm[i] == 'W' && inm[i + 1] == '/')
			i += 2;
		size_t start = i;
		if (i < inmlen && inm[i] == '"') {
			/* A quoted entity tag: up to the closing quote. */
			i++;
			while (i < inmlen && inm[i] != '"')
				i++;
			if (i < inmlen)
				i++;
		} else {
			while (i < inmlen && inm[i] != ',' && inm[i] != ' ' && inm[i] != '\t')
				i++;
		}
		if (i - start == elen && memcmp(inm + start, etag, elen) == 0)
			return true;
	}
	return false;
}

bool srv_is_token(const char *name, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
			continue;
		if (strchr("!#$%&'*+-.^_`|~", c) == NULL || c == 0)
			return false;
	}
	return true;
}

const char *srv_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}
