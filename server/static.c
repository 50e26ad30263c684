/* Embedded static files (the web page): GET and HEAD under a URL prefix, with ETag
 * revalidation.  The assets are compiled into the binary by server/embed.py, so this
 * serves memory only: it runs inline on the loop thread and never copies a body. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_core.h"

static void static_handler(struct srv_req *req, void *arg)
{
	const struct srv_static_set *set = arg;
	const char *rest = srv_req_param(req, "*");
	char loc[512];

	if (rest == NULL) {
		/* The prefix without its slash: relative links in index.html need the slash. */
		snprintf(loc, sizeof(loc), "%s/", set->prefix);
		srv_add_header(req, "location", loc);
		srv_respond_static(req, 301, "text/plain; charset=utf-8", "moved\n", 6);
		return;
	}
	if (rest[0] == '\0')
		rest = "index.html";
	for (size_t i = 0; i < set->n; i++) {
		const struct srv_asset *a = &set->assets[i];
		if (strcmp(a->path, rest) != 0)
			continue;
		const char *inm = srv_req_header(req, "if-none-match");
		srv_add_header(req, "etag", a->etag);
		/* The names carry no content hash, so browsers must revalidate every time; a
		 * matching ETag makes that a bodiless 304. */
		srv_add_header(req, "cache-control", "no-cache");
		if (inm != NULL && srv_etag_match(inm, strlen(inm), a->etag))
			srv_respond_static(req, 304, NULL, "", 0);
		else
			srv_respond_static(req, 200, a->content_type, a->data, a->len);
		return;
	}
	/* Without the token an unknown path is a 401, as everywhere else: the
	 * public files are known, nothing else can be probed. */
	if (srv__auth_missing(req)) {
		srv_add_header(req, "www-authenticate", "Bearer realm=\"podcap\"");
		srv_respond_error(req, 401, "a bearer token is required (Authorization: Bearer <token>)");
		return;
	}
	srv_respond_error(req, 404, "no such file");
}

int srv_static(struct srv *srv, const char *url_prefix, const struct srv_asset *assets, size_t n)
{
	struct srv_route_opts opts = {.flags = SRV_INLINE | SRV_PUBLIC};
	char pattern[512];
	size_t plen;
	int rc;

	if (srv->started)
		return -EBUSY;
	if (url_prefix == NULL || url_prefix[0] != '/' || (assets == NULL && n > 0))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (assets[i].path == NULL || assets[i].etag == NULL || assets[i].content_type == NULL ||
		    (assets[i].data == NULL && assets[i].len > 0))
			return -EINVAL;
	plen = strlen(url_prefix);
	while (plen > 1 && url_prefix[plen - 1] == '/')
		plen--;
	if (plen == 1)
		plen = 0; /* "/" */
	if (plen + 3 > sizeof(pattern))
		return -EINVAL;

	struct srv_static_set *set = calloc(1, sizeof(*set));
	if (set == NULL || (set->prefix = strndup(url_prefix, plen)) == NULL) {
		free(set);
		return -ENOMEM;
	}
	set->assets = assets;
	set->n = n;

	snprintf(pattern, sizeof(pattern), "%s/*", set->prefix);
	if ((rc = srv_route(srv, "GET", pattern, static_handler, set, &opts)) < 0)
		goto fail;
	if (plen > 0 && (rc = srv_route(srv, "GET", set->prefix, static_handler, set, &opts)) < 0)
		goto fail; /* the first route stays registered; its set is freed with the server */
	set->next = srv->statics;
	srv->statics = set;
	return 0;
fail:
	set->next = srv->statics;
	srv->statics = set;
	return rc;
}

void srv_static_free(struct srv *srv)
{
	while (srv->statics != NULL) {
		struct srv_static_set *s = srv->statics;
		srv->statics = s->next;
		free(s->prefix);
		free(s);
	}
}
