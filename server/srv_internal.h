/* Private to server/: shared between its files, the unit tests and the fuzz target.
 * parse.c is pure (no h2o, no libuv, no allocation beyond what the caller gives), so it
 * can be tested and fuzzed on its own. */
#ifndef PODCAP_SRV_INTERNAL_H
#define PODCAP_SRV_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SRV_MAX_SEGMENTS 32  /* path segments in a pattern or a request path */
#define SRV_MAX_PARAMS 8     /* {name} segments per pattern */

/* --- listen address --- */

/* Parses "A.B.C.D:PORT", "[V6]:PORT" or "localhost:PORT" (no name resolution).
 * Returns 0 or -EINVAL with a reason in err. */
int srv_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *sslen,
		     char *err, size_t errlen);
bool srv_addr_is_loopback(const struct sockaddr *sa);

/* --- percent-decoding --- */

/* Decodes src[0..len) into dst (room for len + 1 bytes), NUL-terminates, returns the
 * decoded length, or -1 for a malformed escape ('%' not followed by two hex digits)
 * with *bad_at set to its offset in src.  plus_is_space: '+' decodes to ' ' (query
 * strings); nul_ok: otherwise a decoded NUL byte is an error too. */
long srv_pct_decode(const char *src, size_t len, char *dst, bool plus_is_space, bool nul_ok,
		    size_t *bad_at);

/* --- route patterns --- */

enum srv_seg_kind { SRV_SEG_LITERAL, SRV_SEG_PARAM, SRV_SEG_REST };

struct srv_seg {
	enum srv_seg_kind kind;
	char *text;   /* literal text or parameter name ("*" for the rest); owned by the pattern */
	size_t len;
};

struct srv_pattern {
	struct srv_seg segs[SRV_MAX_SEGMENTS];
	unsigned nsegs;
	unsigned nliterals;
	unsigned nparams;   /* PARAM and REST segments */
};

/* Compiles "/a/{id}/b" or "/ui/" followed by "*" (the rest segment only last).  Returns 0 or -EINVAL
 * (-ENOMEM); free with srv_pattern_free. */
int srv_pattern_compile(const char *pattern, struct srv_pattern *p);
void srv_pattern_free(struct srv_pattern *p);

/* A request path split into decoded segments.  The decoded text lives in buf, which
 * the caller sizes to at least path_len + SRV_MAX_SEGMENTS + 1 bytes. */
struct srv_path {
	const char *seg[SRV_MAX_SEGMENTS];
	size_t seglen[SRV_MAX_SEGMENTS];
	unsigned nsegs;
	/* Undecoded rest of the path from each segment on, for "*" (offset into raw path). */
	size_t raw_off[SRV_MAX_SEGMENTS];
};

enum srv_path_err {
	SRV_PATH_OK = 0,
	SRV_PATH_NOT_ABSOLUTE = -1,  /* does not start with '/' */
	SRV_PATH_BAD_ESCAPE = -2,    /* malformed %XX or %00; *bad_at = offset */
	SRV_PATH_TOO_DEEP = -3,      /* more than SRV_MAX_SEGMENTS segments */
};

/* Splits raw[0..len) (no query) into decoded segments ("/" has zero segments; an empty
 * segment, e.g. "/a//b" or "/a/", is kept as empty). */
int srv_path_split(const char *raw, size_t len, char *buf, size_t buflen, struct srv_path *out,
		   size_t *bad_at);

/* Matches a split path against a pattern.  On a match fills values[i]/vlen[i] for the
 * pattern's i-th parameter (in pattern order; for "*": the decoded rest with '/'
 * between segments, written into restbuf of restlen bytes) and returns true. */
bool srv_pattern_match(const struct srv_pattern *p, const struct srv_path *path,
		       const char **values, size_t *vlen, char *restbuf, size_t restlen);

/* --- query strings --- */

struct srv_kv {
	const char *name;
	const char *value;
	size_t name_len;
	size_t value_len;
};

/* Counts the '&'-separated pieces of a query (an upper bound on parameters). */
size_t srv_query_pieces(const char *q, size_t len);
/* Parses q[0..len) (without '?') into at most max parameters; decoded text goes into
 * buf (at least len + 2 * (pieces) bytes).  Empty pieces ("a=1&&b=2") are skipped.
 * Returns the count, or -1 for a malformed escape (or a NUL in a name) with *bad_at,
 * or -2 when there are more than max parameters. */
long srv_query_parse(const char *q, size_t len, struct srv_kv *out, size_t max,
		     char *buf, size_t buflen, size_t *bad_at);

/* --- small helpers --- */

/* Appends s (len bytes) to dst as the inside of a JSON string (no quotes); returns the
 * bytes written, at most dstlen - 1, always NUL-terminated; never splits an escape.
 * Control characters become \u00XX; bytes >= 0x80 pass through. */
size_t srv_json_escape(char *dst, size_t dstlen, const char *s, size_t len);
/* Does an If-None-Match header value (list of ETags, or "*") match etag (strong,
 * quoted)?  Weak comparison, as RFC 9110 asks for If-None-Match. */
bool srv_etag_match(const char *inm, size_t inmlen, const char *etag);
/* Is name a valid header field name (RFC 9110 token)? */
bool srv_is_token(const char *name, size_t len);
/* Reason phrase for a status code ("Unknown" when we have none). */
const char *srv_reason(int status);

#endif
