/* libFuzzer target for the server's parsing of request targets (server/parse.c): path
 * splitting and percent-decoding, route matching against a few patterns, query
 * strings, and the helpers that see client bytes (JSON escaping, If-None-Match).
 * Every buffer is allocated at exactly the size the functions are documented to
 * need, so AddressSanitizer catches a write or read one byte past it.
 *
 *   CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz fuzz/fuzz_srv_path
 *   build-fuzz/fuzz/fuzz_srv_path -max_total_time=60 -max_len=8192
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "srv_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const patterns[] = {
	"/", "/api/v1/flows", "/api/v1/flows/{id}", "/api/v1/flows/{id}/pcap", "/ui/*", "/*",
	"/a/{x}/b/{y}/*",
};
static struct srv_pattern compiled[sizeof(patterns) / sizeof(patterns[0])];

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		abort();
	return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	const size_t npat = sizeof(patterns) / sizeof(patterns[0]);

	if (!inited) {
		for (size_t i = 0; i < npat; i++)
			if (srv_pattern_compile(patterns[i], &compiled[i]) != 0)
				abort();
		inited = 1;
	}
	char *in = xmalloc(size);
	memcpy(in, data, size);
	const char *q = memchr(in, '?', size);
	size_t plen = q ? (size_t)(q - in) : size;

	/* Path: split, then match every pattern. */
	size_t bufl = plen + SRV_MAX_SEGMENTS + 1;
	char *buf = xmalloc(bufl), *rest = xmalloc(bufl);
	struct srv_path path;
	size_t bad = 0;
	if (srv_path_split(in, plen, buf, bufl, &path, &bad) == SRV_PATH_OK) {
		if (path.nsegs > SRV_MAX_SEGMENTS)
			abort();
		for (size_t i = 0; i < npat; i++) {
			const char *v[SRV_MAX_PARAMS + 1];
			size_t vl[SRV_MAX_PARAMS + 1];
			if (srv_pattern_match(&compiled[i], &path, v, vl, rest, bufl)) {
				for (unsigned k = 0; k < compiled[i].nparams; k++)
					if (vl[k] > plen)
						abort();
			}
		}
	} else if (bad > plen) {
		abort();
	}
	free(buf);
	free(rest);

	/* Query string. */
	if (q != NULL) {
		size_t qlen = size - plen - 1;
		size_t pieces = srv_query_pieces(q + 1, qlen);
		struct srv_kv *kv = xmalloc(pieces * sizeof(*kv));
		size_t qbl = qlen + 2 * pieces;
		char *qb = xmalloc(qbl);
		long n = srv_query_parse(q + 1, qlen, kv, pieces, qb, qbl, &bad);
		if (n > (long)pieces || (n == -1 && bad >= qlen))
			abort();
		for (long k = 0; k < n; k++)
			if (kv[k].name_len > qlen || kv[k].value_len > qlen || kv[k].value[kv[k].value_len] != '\0')
				abort();
		free(kv);
		free(qb);
	}

	/* Helpers that see header values. */
	size_t el = 6 * size + 1;
	char *esc = xmalloc(el);
	if (srv_json_escape(esc, el, in, size) >= el)
		abort();
	free(esc);
	srv_etag_match(in, size, "\"0123456789abcdef\"");
	srv_is_token(in, size);

	/* NUL-terminated forms: listen addresses and route patterns. */
	char *z = xmalloc(size + 1);
	memcpy(z, data, size);
	z[size] = '\0';
	struct sockaddr_storage ss;
	socklen_t sl;
	char err[256];
	srv_parse_listen(z, &ss, &sl, err, sizeof(err));
	struct srv_pattern p;
	if (srv_pattern_compile(z, &p) == 0)
		srv_pattern_free(&p);
	free(z);
	free(in);
	return 0;
}
