/* The client side of `podcap flows|export --server URL`: one GET of the query API
 * (docs/api.md) with libcurl, the body streamed to a callback, the API's JSON
 * error turned into a message (and, for a filter, its position). */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "query.h"

#define ERR_BODY_MAX 65536

struct get_ctx {
	const struct app_get *g;
	long status;
	int status_known;
	char *err_body;
	size_t err_len;
	int write_err;
};

static int read_token(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f)) {
		fclose(f);
		return -EINVAL;
	}
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] ? 0 : -EINVAL;
}

static size_t on_header(char *b, size_t size, size_t n, void *arg)
{
	struct get_ctx *c = arg;
	size_t len = size * n;
	static const char name[] = "x-next-cursor:";
	if (len > sizeof(name) && !strncasecmp(b, name, sizeof(name) - 1) && c->g->next_cursor) {
		const char *v = b + sizeof(name) - 1;
		size_t vl = len - (sizeof(name) - 1);
		while (vl && (*v == ' ' || *v == '\t')) {
			v++;
			vl--;
		}
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		if (vl < c->g->next_cursor_len) {
			memcpy(c->g->next_cursor, v, vl);
			c->g->next_cursor[vl] = '\0';
		}
	}
	static const char cname[] = "x-complete:";
	if (len > sizeof(cname) && !strncasecmp(b, cname, sizeof(cname) - 1) && c->g->incomplete)
		*c->g->incomplete = strstr(b + sizeof(cname) - 1, "false") != NULL;
	return len;
}

static size_t on_body(char *b, size_t size, size_t n, void *arg)
{
	struct get_ctx *c = arg;
	size_t len = size * n;
	if (!c->status_known) {
		curl_easy_getinfo(c->g->curl, CURLINFO_RESPONSE_CODE, &c->status);
		c->status_known = 1;
	}
	if (c->status >= 200 && c->status < 300) {
		if (c->g->write(c->g->arg, b, len) < 0) {
			c->write_err = 1;
			return 0; /* stops the transfer */
		}
		return len;
	}
	/* an error answer: keep its start for the message */
	size_t room = ERR_BODY_MAX - c->err_len;
	size_t take = len < room ? len : room;
	char *nb = realloc(c->err_body, c->err_len + take + 1);
	if (!nb)
		return 0;
	c->err_body = nb;
	memcpy(nb + c->err_len, b, take);
	c->err_len += take;
	nb[c->err_len] = '\0';
	return len;
}

/* libcurl asks about once a second, and as data moves: a stop request ends the
 * transfer even when nothing arrives (a quiet live stream). */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const struct app_get *g = arg;
	(void)dltotal; (void)dlnow; (void)ultotal; (void)ulnow;
	return g->stop && *g->stop;
}

int app_get(struct app_get *g)
{
	struct get_ctx c = {.g = g};
	char *url = NULL, token[512], auth[600];
	struct curl_slist *hdr = NULL;
	int rc = -1;
	size_t cap = strlen(g->server) + strlen(g->path) + 2;

	for (size_t i = 0; i < g->nparams; i++)
		if (g->params[i].value)
			cap += 3 * strlen(g->params[i].value) + strlen(g->params[i].name) + 2;
	if (!g->curl && !(g->curl = curl_easy_init())) {
		fprintf(stderr, "podcap %s: cannot start libcurl\n", g->cmd);
		return -1;
	}
	if (!(url = malloc(cap))) {
		fprintf(stderr, "podcap %s: out of memory\n", g->cmd);
		return -1;
	}
	size_t sl = strlen(g->server);
	while (sl && g->server[sl - 1] == '/')
		sl--;
	size_t off = (size_t)snprintf(url, cap, "%.*s%s", (int)sl, g->server, g->path);
	char sep = '?';
	for (size_t i = 0; i < g->nparams; i++) {
		if (!g->params[i].value)
			continue;
		char *e = curl_easy_escape(g->curl, g->params[i].value, 0);
		if (!e) {
			fprintf(stderr, "podcap %s: out of memory\n", g->cmd);
			goto out;
		}
		off += (size_t)snprintf(url + off, cap - off, "%c%s=%s", sep, g->params[i].name, e);
		curl_free(e);
		sep = '&';
	}
	if (g->token_file) {
		int trc = read_token(g->token_file, token, sizeof(token));
		if (trc < 0) {
			fprintf(stderr, "podcap %s: --token-file %s: %s\n", g->cmd, g->token_file,
				trc == -EINVAL ? "empty" : strerror(-trc));
			goto out;
		}
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		if (!(hdr = curl_slist_append(hdr, auth)))
			goto out;
	}
	curl_easy_reset(g->curl);
	curl_easy_setopt(g->curl, CURLOPT_URL, url);
	curl_easy_setopt(g->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(g->curl, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(g->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(g->curl, CURLOPT_WRITEDATA, &c);
	curl_easy_setopt(g->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(g->curl, CURLOPT_HEADERDATA, &c);
	curl_easy_setopt(g->curl, CURLOPT_CONNECTTIMEOUT, g->timeout_s > 0 && g->timeout_s < 10 ? g->timeout_s : 10L);
	if (g->timeout_s > 0)
		curl_easy_setopt(g->curl, CURLOPT_TIMEOUT, g->timeout_s);
	curl_easy_setopt(g->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(g->curl, CURLOPT_USERAGENT, "podcap/" PODCAP_VERSION);
	if (g->cacert)
		curl_easy_setopt(g->curl, CURLOPT_CAINFO, g->cacert);
	if (g->stop) {
		curl_easy_setopt(g->curl, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(g->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(g->curl, CURLOPT_XFERINFODATA, g);
		curl_easy_setopt(g->curl, CURLOPT_TCP_KEEPALIVE, 1L);
	}
	if (g->next_cursor && g->next_cursor_len)
		g->next_cursor[0] = '\0';
	CURLcode cc = curl_easy_perform(g->curl);
	curl_easy_getinfo(g->curl, CURLINFO_RESPONSE_CODE, &c.status);
	if (g->stop && *g->stop && (cc == CURLE_ABORTED_BY_CALLBACK || c.write_err)) {
		rc = 0; /* asked to stop: not an error */
		goto out;
	}
	if (c.write_err) {
		fprintf(stderr, "podcap %s: writing output: %s\n", g->cmd, strerror(errno ? errno : EIO));
		goto out;
	}
	if (cc != CURLE_OK) {
		fprintf(stderr, "podcap %s: %s: %s\n", g->cmd, g->server, curl_easy_strerror(cc));
		goto out;
	}
	if (c.status < 200 || c.status >= 300) {
		json_error_t je;
		json_t *j = c.err_body ? json_loads(c.err_body, 0, &je) : NULL;
		const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
		json_int_t pos = j ? json_integer_value(json_object_get(j, "position")) : 0;
		fprintf(stderr, "podcap %s: server said %ld: %s\n", g->cmd, c.status,
			msg ? msg : c.err_body ? c.err_body : "(no message)");
		if (pos > 0 && g->filter_text && strlen(g->filter_text) < 200)
			fprintf(stderr, "  %s\n  %*s^\n", g->filter_text, (int)(pos - 1), "");
		json_decref(j);
		rc = (int)c.status;
		goto out;
	}
	rc = 0;
out:
	curl_slist_free_all(hdr);
	free(c.err_body);
	free(url);
	return rc;
}

void app_get_done(struct app_get *g)
{
	if (g->curl)
		curl_easy_cleanup(g->curl);
	g->curl = NULL;
}
