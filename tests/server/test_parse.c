/* Unit tests of server/parse.c: listen addresses, percent-decoding, route patterns and
 * matching, query strings, JSON escaping, ETag matching. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_internal.h"

static int failures;

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                  \
		}                                                                    \
	} while (0)

static void test_listen(void)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];

	CHECK(srv_parse_listen("127.0.0.1:7070", &ss, &len, err, sizeof(err)) == 0);
	CHECK(ss.ss_family == AF_INET && ntohs(((struct sockaddr_in *)&ss)->sin_port) == 7070);
	CHECK(srv_addr_is_loopback((struct sockaddr *)&ss));
	CHECK(srv_parse_listen("127.8.9.10:0", &ss, &len, err, sizeof(err)) == 0);
	CHECK(srv_addr_is_loopback((struct sockaddr *)&ss));
	CHECK(srv_parse_listen("localhost:80", &ss, &len, err, sizeof(err)) == 0);
	CHECK(srv_addr_is_loopback((struct sockaddr *)&ss));
	CHECK(srv_parse_listen("[::1]:7070", &ss, &len, err, sizeof(err)) == 0);
	CHECK(ss.ss_family == AF_INET6 && srv_addr_is_loopback((struct sockaddr *)&ss));
	CHECK(srv_parse_listen("[::ffff:127.0.0.1]:1", &ss, &len, err, sizeof(err)) == 0);
	CHECK(srv_addr_is_loopback((struct sockaddr *)&ss));
	CHECK(srv_parse_listen("0.0.0.0:7070", &ss, &len, err, sizeof(err)) == 0);
	CHECK(!srv_addr_is_loopback((struct sockaddr *)&ss));
	CHECK(srv_parse_listen("[::]:7070", &ss, &len, err, sizeof(err)) == 0);
	CHECK(!srv_addr_is_loopback((struct sockaddr *)&ss));
	CHECK(srv_parse_listen("10.1.2.3:65535", &ss, &len, err, sizeof(err)) == 0);
	CHECK(!srv_addr_is_loopback((struct sockaddr *)&ss));

	const char *bad[] = {"", ":7070", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
			     "127.0.0.1:12a", "::1:7070", "[::1]7070", "[::1", "[]:1", "example.com:80",
			     "1.2.3:80", "[1.2.3.4]:80", "127.0.0.1:123456", "[zz::1]:5"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		int rc = srv_parse_listen(bad[i], &ss, &len, err, sizeof(err));
		if (rc != -EINVAL || err[0] == '\0') {
			fprintf(stderr, "listen '%s' accepted or without message\n", bad[i]);
			failures++;
		}
	}
	CHECK(srv_parse_listen(NULL, &ss, &len, err, sizeof(err)) == -EINVAL);
}

static void test_decode(void)
{
	char out[64];
	size_t bad = 99;

	CHECK(srv_pct_decode("a%20b+c", 7, out, true, false, &bad) == 5 && strcmp(out, "a b c") == 0);
	CHECK(srv_pct_decode("a%20b+c", 7, out, false, false, &bad) == 5 && strcmp(out, "a b+c") == 0);
	CHECK(srv_pct_decode("%41%6a%7E", 9, out, false, false, &bad) == 3 && strcmp(out, "Aj~") == 0);
	CHECK(srv_pct_decode("ab%", 3, out, false, false, &bad) == -1 && bad == 2);
	CHECK(srv_pct_decode("ab%4", 4, out, false, false, &bad) == -1 && bad == 2);
	CHECK(srv_pct_decode("%zz", 3, out, false, false, &bad) == -1 && bad == 0);
	CHECK(srv_pct_decode("x%4g", 4, out, false, false, &bad) == -1 && bad == 1);
	CHECK(srv_pct_decode("a%00b", 5, out, false, false, &bad) == -1 && bad == 1);
	CHECK(srv_pct_decode("a%00b", 5, out, false, true, &bad) == 3 && out[1] == '\0' && out[2] == 'b');
	CHECK(srv_pct_decode("", 0, out, true, true, &bad) == 0 && out[0] == '\0');
}

static void test_patterns(void)
{
	struct srv_pattern p;
	const char *bad[] = {"", "x", "//", "/a//b", "/a/", "/{}", "/{a", "/{a-b}", "/a/*/b", "/*/x",
			     "/{x}/{x}", "/a%20b", "/a b", "/a?b", "/{*}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (srv_pattern_compile(bad[i], &p) != -EINVAL) {
			fprintf(stderr, "pattern '%s' accepted\n", bad[i]);
			failures++;
			srv_pattern_free(&p);
		}
	}
	CHECK(srv_pattern_compile(NULL, &p) == -EINVAL);

	CHECK(srv_pattern_compile("/", &p) == 0 && p.nsegs == 0);
	srv_pattern_free(&p);

	CHECK(srv_pattern_compile("/api/v1/flows/{id}/pcap", &p) == 0);
	CHECK(p.nsegs == 5 && p.nliterals == 4 && p.nparams == 1);
	{
		const char *raw = "/api/v1/flows/12%334/pcap";
		char buf[128], rest[128];
		struct srv_path path;
		const char *v[4];
		size_t vl[4], badat;
		CHECK(srv_path_split(raw, strlen(raw), buf, sizeof(buf), &path, &badat) == SRV_PATH_OK);
		CHECK(path.nsegs == 5);
		CHECK(srv_pattern_match(&p, &path, v, vl, rest, sizeof(rest)));
		CHECK(vl[0] == 4 && memcmp(v[0], "1234", 4) == 0);
		raw = "/api/v1/flows//pcap";
		CHECK(srv_path_split(raw, strlen(raw), buf, sizeof(buf), &path, &badat) == SRV_PATH_OK);
		CHECK(!srv_pattern_match(&p, &path, v, vl, rest, sizeof(rest)));
		raw = "/api/v1/flows/1/pcap/";
		CHECK(srv_path_split(raw, strlen(raw), buf, sizeof(buf), &path, &badat) == SRV_PATH_OK);
		CHECK(!srv_pattern_match(&p, &path, v, vl, rest, sizeof(rest)));
		raw = "/api/v1/flows/1";
		CHECK(srv_path_split(raw, strlen(raw), buf, sizeof(buf), &path, &badat) == SRV_PATH_OK);
		CHECK(!srv_pattern_match(&p, &path, v, vl, rest, sizeof(rest)));
		raw = "/api/v1/flows/1%2/pcap";
		CHECK(srv_path_split(raw, strlen(raw), buf, sizeof(buf), &path, &badat) == SRV_PATH_BAD_ESCAPE && badat == 15);
		raw = "/api/v1/flows/%00/pcap";
		CHECK(srv_path_split(raw, strlen(raw), buf, sizeof(buf), &path, &badat) == SRV_PATH_BAD_ESCAPE);
	}
	srv_pattern_free(&p);

	CHECK(srv_pattern_compile("/ui/*", &p) == 0 && p.nparams == 1);
	{
		char buf[256], rest[256];
		struct srv_path path;
		const char *v[2];
		size_t vl[2], badat;
		const char *raw = "/ui/js/app%2Ejs";
		CHECK(srv_path_split(raw, strlen(raw), buf, sizeof(buf), &path, &badat) == SRV_PATH_OK);
		CHECK(srv_pattern_match(&p, &path, v, vl, rest, sizeof(rest)));
		CHECK(strcmp(v[0], "js/app.js") == 0 && vl[0] == 9);
		raw = "/ui/";
		CHECK(srv_path_split(raw, strlen(raw), buf, sizeof(buf), &path, &badat) == SRV_PATH_OK);
		CHECK(srv_pattern_match(&p, &path, v, vl, rest, sizeof(rest)) && vl[0] == 0);
		raw = "/ui";
		CHECK(srv_path_split(raw, strlen(raw), buf, sizeof(buf), &path, &badat) == SRV_PATH_OK);
		CHECK(srv_pattern_match(&p, &path, v, vl, rest, sizeof(rest)) && vl[0] == 0);
		raw = "/uix/a";
		CHECK(srv_path_split(raw, strlen(raw), buf, sizeof(buf), &path, &badat) == SRV_PATH_OK);
		CHECK(!srv_pattern_match(&p, &path, v, vl, rest, sizeof(rest)));
		/* A rest that does not fit the caller's buffer is no match, not an overflow. */
		raw = "/ui/abcdefgh";
		CHECK(srv_path_split(raw, strlen(raw), buf, sizeof(buf), &path, &badat) == SRV_PATH_OK);
		CHECK(!srv_pattern_match(&p, &path, v, vl, rest, 4));
	}
	srv_pattern_free(&p);

	/* Too many segments, relative targets. */
	{
		char raw[200], buf[400];
		struct srv_path path;
		size_t badat, o = 0;
		for (int i = 0; i < SRV_MAX_SEGMENTS + 1; i++)
			o += (size_t)snprintf(raw + o, sizeof(raw) - o, "/a");
		CHECK(srv_path_split(raw, o, buf, sizeof(buf), &path, &badat) == SRV_PATH_TOO_DEEP);
		CHECK(srv_path_split("*", 1, buf, sizeof(buf), &path, &badat) == SRV_PATH_NOT_ABSOLUTE);
		CHECK(srv_path_split("", 0, buf, sizeof(buf), &path, &badat) == SRV_PATH_NOT_ABSOLUTE);
		CHECK(srv_path_split("/", 1, buf, sizeof(buf), &path, &badat) == SRV_PATH_OK && path.nsegs == 0);
	}
}

static void test_query(void)
{
	struct srv_kv kv[8];
	char buf[256];
	size_t bad;
	const char *q = "filter=app+%3D%3D+%22TLS%22&v=1&&v=2&flag&=x&n%00=1";
	long n;

	CHECK(srv_query_pieces(q, strlen(q)) == 7);
	n = srv_query_parse(q, strlen(q), kv, 8, buf, sizeof(buf), &bad);
	CHECK(n == -1); /* NUL in a name */
	q = "filter=app+%3D%3D+%22TLS%22&v=1&&v=2&flag&=x&z=%00a";
	n = srv_query_parse(q, strlen(q), kv, 8, buf, sizeof(buf), &bad);
	CHECK(n == 6);
	if (n == 6) {
		CHECK(strcmp(kv[0].name, "filter") == 0 && strcmp(kv[0].value, "app == \"TLS\"") == 0);
		CHECK(strcmp(kv[1].name, "v") == 0 && strcmp(kv[1].value, "1") == 0);
		CHECK(strcmp(kv[2].name, "v") == 0 && strcmp(kv[2].value, "2") == 0);
		CHECK(strcmp(kv[3].name, "flag") == 0 && kv[3].value_len == 0);
		CHECK(kv[4].name_len == 0 && strcmp(kv[4].value, "x") == 0);
		CHECK(kv[5].value_len == 2 && kv[5].value[0] == '\0' && kv[5].value[1] == 'a');
	}
	q = "a=1&b=%2";
	CHECK(srv_query_parse(q, strlen(q), kv, 8, buf, sizeof(buf), &bad) == -1 && bad == 6);
	q = "a=1&b=2&c=3";
	CHECK(srv_query_parse(q, strlen(q), kv, 2, buf, sizeof(buf), &bad) == -2);
	CHECK(srv_query_parse("", 0, kv, 2, buf, sizeof(buf), &bad) == 0);
	CHECK(srv_query_parse("&&&", 3, kv, 2, buf, sizeof(buf), &bad) == 0);
}

static void test_misc(void)
{
	char out[32];

	CHECK(srv_json_escape(out, sizeof(out), "a\"b\\c\n\x01", 7) == 15);
	CHECK(strcmp(out, "a\\\"b\\\\c\\n\\u0001") == 0);
	/* Truncation never splits an escape. */
	CHECK(srv_json_escape(out, 4, "ab\"cd", 5) == 2 && strcmp(out, "ab") == 0);
	CHECK(srv_json_escape(out, 1, "x", 1) == 0 && out[0] == '\0');
	/* UTF-8: whole characters pass, anything else is U+FFFD (an error echoing
	 * order=%ff%fe, or a character a %.40s cut in two, was not JSON) */
	CHECK(srv_json_escape(out, sizeof(out), "\xc3\xa9", 2) == 2 && strcmp(out, "\xc3\xa9") == 0);
	CHECK(srv_json_escape(out, sizeof(out), "\xf0\x9f\x98\x80!", 5) == 5);
	CHECK(srv_json_escape(out, sizeof(out), "\xff\xfe", 2) == 12 && strcmp(out, "\\ufffd\\ufffd") == 0);
	CHECK(srv_json_escape(out, sizeof(out), "a\xc3", 2) == 7 && strcmp(out, "a\\ufffd") == 0);
	CHECK(srv_json_escape(out, sizeof(out), "\xc0\xaf", 2) == 12);          /* overlong '/' */
	CHECK(srv_json_escape(out, sizeof(out), "\xed\xa0\x80", 3) == 18);     /* a surrogate */
	CHECK(srv_json_escape(out, sizeof(out), "\xf4\x90\x80\x80", 4) == 24); /* above U+10FFFF */
	/* a character is never split by the size */
	CHECK(srv_json_escape(out, 3, "a\xc3\xa9", 3) == 1 && strcmp(out, "a") == 0);

	const char *etag = "\"abc123\"";
	CHECK(srv_etag_match("\"abc123\"", 8, etag));
	CHECK(srv_etag_match("W/\"abc123\"", 10, etag));
	CHECK(srv_etag_match("\"x\", \"abc123\"", 13, etag));
	CHECK(srv_etag_match("*", 1, etag));
	CHECK(!srv_etag_match("\"abc12\"", 7, etag));
	CHECK(!srv_etag_match("\"abc1234\"", 9, etag));
	CHECK(!srv_etag_match("", 0, etag));
	CHECK(!srv_etag_match("\"abc123", 7, etag));

	CHECK(srv_is_token("X-Test", 6));
	CHECK(!srv_is_token("X Test", 6));
	CHECK(!srv_is_token("X:Test", 6));
	CHECK(!srv_is_token("", 0));
	CHECK(strcmp(srv_reason(431), "Request Header Fields Too Large") == 0);
	CHECK(strcmp(srv_reason(999), "Unknown") == 0);
}

int main(void)
{
	test_listen();
	test_decode();
	test_patterns();
	test_query();
	test_misc();
	if (failures) {
		fprintf(stderr, "test_srv_parse: %d failures\n", failures);
		return 1;
	}
	printf("test_srv_parse: all checks passed\n");
	return 0;
}
