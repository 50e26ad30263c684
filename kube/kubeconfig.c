/* kubeconfig.c — where the API is and how to prove who we are: in-cluster
 * (service-account token, CA, KUBERNETES_SERVICE_HOST/PORT) or a kubeconfig file.
 *
 * Kubeconfig files are YAML as kubectl, kind and kubeadm write them (block
 * mappings and sequences, plain and quoted scalars) or JSON; libyaml parses them
 * into a jansson tree.  Supported: current-context or a named context; cluster
 * server, certificate-authority(-data), insecure-skip-tls-verify; user token,
 * tokenFile, client-certificate(-data) + client-key(-data), username/password.
 * Refused with a message: exec and auth-provider plugins, proxy-url,
 * tls-server-name, YAML aliases.  Relative paths are relative to the file, as
 * kubectl does. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "kube_int.h"

#define KCFG_MAX_FILE (1u << 20)
#define KYAML_MAX_DEPTH 32
#define KYAML_MAX_NODES 100000
#define KTOKEN_MAX 16384

void kcreds_free(struct kcreds *c)
{
	free(c->ca_pem);
	free(c->cert_pem);
	free(c->key_pem);
	free(c->token);
	free(c->username);
	free(c->password);
	memset(c, 0, sizeof(*c));
}

/* Reads a whole small file; NUL-terminated; *len without the NUL. */
static char *read_small(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		snprintf(err, errlen, "%s: not a regular file of at most %zu bytes", path, max);
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	buf[got] = '\0';
	*len = got;
	close(fd);
	return buf;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

/* ---- YAML -> jansson ------------------------------------------------------------- */

struct yframe {
	json_t *node;
	char *key; /* mapping: the key waiting for its value */
};

static int yattach(struct yframe *st, int depth, json_t *v, char *err, size_t errlen)
{
	if (depth == 0) {
		json_decref(v);
		return 0; /* a second root (cannot happen within one document) */
	}
	struct yframe *f = &st[depth - 1];
	if (json_is_array(f->node))
		return json_array_append_new(f->node, v);
	if (!f->key) {
		/* Keys must be scalars; a mapping or sequence as key is not kubeconfig. */
		json_decref(v);
		snprintf(err, errlen, "a mapping key that is not a scalar");
		return -1;
	}
	int r = json_object_set_new(f->node, f->key, v);
	free(f->key);
	f->key = NULL;
	return r;
}

json_t *kyaml_load(const char *buf, size_t len, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	struct yframe st[KYAML_MAX_DEPTH];
	int depth = 0, done = 0, nodes = 0;
	json_t *root = NULL;

	memset(st, 0, sizeof(st));
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			snprintf(err, errlen, "line %zu column %zu: %s", parser.problem_mark.line + 1,
				 parser.problem_mark.column + 1,
				 parser.problem ? parser.problem : "syntax error");
			goto fail;
		}
		size_t line = ev.start_mark.line + 1, col = ev.start_mark.column + 1;
		int bad = 0;
		if (++nodes > KYAML_MAX_NODES) {
			snprintf(err, errlen, "more than %d YAML nodes", KYAML_MAX_NODES);
			bad = 1;
		}
		switch (ev.type) {
		case YAML_MAPPING_START_EVENT:
		case YAML_SEQUENCE_START_EVENT: {
			if (depth == KYAML_MAX_DEPTH) {
				snprintf(err, errlen, "line %zu column %zu: nested deeper than %d", line, col,
					 KYAML_MAX_DEPTH);
				bad = 1;
				break;
			}
			json_t *n = ev.type == YAML_MAPPING_START_EVENT ? json_object() : json_array();
			if (!n) {
				bad = 1;
				break;
			}
			if (depth == 0 && !root)
				root = json_incref(n);
			else if (depth > 0 && yattach(st, depth, json_incref(n), err, errlen) < 0) {
				json_decref(n);
				bad = 1;
				break;
			}
			st[depth].node = n;
			st[depth].key = NULL;
			depth++;
			break;
		}
		case YAML_MAPPING_END_EVENT:
		case YAML_SEQUENCE_END_EVENT:
			if (depth > 0) {
				depth--;
				free(st[depth].key);
				st[depth].key = NULL;
				json_decref(st[depth].node);
				st[depth].node = NULL;
			}
			break;
		case YAML_SCALAR_EVENT: {
			const char *s = (const char *)ev.data.scalar.value;
			size_t n = ev.data.scalar.length;
			if (depth == 0) {
				snprintf(err, errlen, "line %zu column %zu: the document is a scalar, not a mapping",
					 line, col);
				bad = 1;
				break;
			}
			struct yframe *f = &st[depth - 1];
			if (json_is_object(f->node) && !f->key) {
				f->key = strndup(s, n);
				if (!f->key)
					bad = 1;
				break;
			}
			json_t *v;
			if (ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
			    (n == 0 || !strcmp(s, "~") || !strcmp(s, "null")))
				v = json_null();
			else
				v = json_stringn(s, n);
			if (!v || yattach(st, depth, v, err, errlen) < 0) {
				if (!v)
					snprintf(err, errlen, "line %zu column %zu: not UTF-8", line, col);
				bad = 1;
			}
			break;
		}
		case YAML_ALIAS_EVENT:
			snprintf(err, errlen, "line %zu column %zu: YAML aliases are not supported", line, col);
			bad = 1;
			break;
		case YAML_DOCUMENT_END_EVENT:
		case YAML_STREAM_END_EVENT:
			done = 1; /* only the first document counts */
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
		if (bad)
			goto fail;
	}
	yaml_parser_delete(&parser);
	for (int i = 0; i < depth; i++) {
		free(st[i].key);
		json_decref(st[i].node);
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "the document is not a mapping");
		json_decref(root);
		return NULL;
	}
	return root;
fail:
	yaml_parser_delete(&parser);
	for (int i = 0; i < depth; i++) {
		free(st[i].key);
		json_decref(st[i].node);
	}
	json_decref(root);
	return NULL;
}

/* ---- helpers ------------------------------------------------------------------- */

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Standard (or URL-safe) base64, whitespace ignored, padding optional. */
static char *b64dec(const char *s, size_t *outlen)
{
	size_t n = strlen(s);
	char *out = malloc(n / 4 * 3 + 4);
	if (!out)
		return NULL;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '=' || c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		int v = b64val(c);
		if (v < 0) {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}

static const char *jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* The entry of a kubeconfig list ("clusters", "users", "contexts") named name. */
static json_t *named(json_t *root, const char *list, const char *name, const char *inner)
{
	json_t *arr = json_object_get(root, list), *e;
	size_t i;
	json_array_foreach(arr, i, e) {
		const char *n = jstr(e, "name");
		if (n && !strcmp(n, name)) {
			json_t *in = json_object_get(e, inner);
			return in ? in : json_null();
		}
	}
	return NULL;
}

static int set_path(char *dst, size_t len, const char *dir, const char *p)
{
	int n = p[0] == '/' ? snprintf(dst, len, "%s", p) : snprintf(dst, len, "%s/%s", dir, p);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int set_server(struct kcreds *c, const char *server, char *err, size_t errlen)
{
	if (!server || (strncmp(server, "https://", 8) && strncmp(server, "http://", 7))) {
		snprintf(err, errlen, "server \"%s\" is not an http(s) URL", server ? server : "");
		return -EINVAL;
	}
	size_t n = strlen(server);
	while (n && server[n - 1] == '/')
		n--;
	if (n >= sizeof(c->server)) {
		snprintf(err, errlen, "server URL too long");
		return -EINVAL;
	}
	memcpy(c->server, server, n);
	c->server[n] = '\0';
	return 0;
}

/* ---- in-cluster ---------------------------------------------------------------- */

int kcreds_incluster(const char *sa_dir, struct kcreds *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	if (!sa_dir)
		sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
	if (!host || !host[0] || !port || !port[0]) {
		snprintf(err, errlen,
			 "not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not "
			 "set (use --kubeconfig outside a pod)");
		return -ENOENT;
	}
	char url[600];
	if (strchr(host, ':'))
		snprintf(url, sizeof(url), "https://[%s]:%s", host, port);
	else
		snprintf(url, sizeof(url), "https://%s:%s", host, port);
	if (set_server(c, url, err, errlen) < 0)
		return -EINVAL;
	if (set_path(c->token_file, sizeof(c->token_file), sa_dir, "token") < 0 ||
	    set_path(c->ca_file, sizeof(c->ca_file), sa_dir, "ca.crt") < 0) {
		snprintf(err, errlen, "service account directory name too long");
		return -ENAMETOOLONG;
	}
	if (access(c->token_file, R_OK) < 0 || access(c->ca_file, R_OK) < 0) {
		snprintf(err, errlen, "in-cluster: cannot read %s or %s: %s (is the service account "
			 "token mounted?)", c->token_file, c->ca_file, strerror(errno));
		return -ENOENT;
	}
	snprintf(c->desc, sizeof(c->desc), "in-cluster %.200s", c->server);
	return 0;
}

/* ---- kubeconfig ----------------------------------------------------------------- */

int kcreds_kubeconfig(const char *path, const char *context, struct kcreds *c, char *err,
		      size_t errlen)
{
	size_t len;
	char msg[KUBE_ERR_LEN] = "";
	int ret = -EINVAL;
	json_t *root = NULL;
	memset(c, 0, sizeof(*c));
	char *buf = read_small(path, KCFG_MAX_FILE, &len, err, errlen);
	if (!buf)
		return -EINVAL;
	char *pathcopy = strdup(path);
	const char *dir = pathcopy ? dirname(pathcopy) : ".";
	root = kyaml_load(buf, len, msg, sizeof(msg));
	if (!root) {
		snprintf(err, errlen, "%s: %s", path, msg);
		goto out;
	}
	const char *ctx = context && context[0] ? context : jstr(root, "current-context");
	if (!ctx || !ctx[0]) {
		snprintf(err, errlen, "%s: no current-context (give a context)", path);
		goto out;
	}
	json_t *cx = named(root, "contexts", ctx, "context");
	if (!json_is_object(cx)) {
		snprintf(err, errlen, "%s: context \"%s\" not found", path, ctx);
		goto out;
	}
	const char *cname = jstr(cx, "cluster"), *uname = jstr(cx, "user");
	json_t *cl = cname ? named(root, "clusters", cname, "cluster") : NULL;
	if (!json_is_object(cl)) {
		snprintf(err, errlen, "%s: cluster \"%s\" of context \"%s\" not found", path,
			 cname ? cname : "", ctx);
		goto out;
	}
	if (set_server(c, jstr(cl, "server"), msg, sizeof(msg)) < 0) {
		snprintf(err, errlen, "%s: cluster \"%s\": %s", path, cname, msg);
		goto out;
	}
	if (jstr(cl, "proxy-url") || jstr(cl, "tls-server-name")) {
		snprintf(err, errlen, "%s: cluster \"%s\": proxy-url and tls-server-name are not supported",
			 path, cname);
		goto out;
	}
	const char *v;
	if ((v = jstr(cl, "certificate-authority-data"))) {
		if (!(c->ca_pem = b64dec(v, &c->ca_pem_len))) {
			snprintf(err, errlen, "%s: cluster \"%s\": certificate-authority-data is not base64",
				 path, cname);
			goto out;
		}
	} else if ((v = jstr(cl, "certificate-authority")) &&
		   set_path(c->ca_file, sizeof(c->ca_file), dir, v) < 0) {
		snprintf(err, errlen, "%s: path too long", path);
		goto out;
	}
	v = jstr(cl, "insecure-skip-tls-verify");
	c->insecure = v && !strcmp(v, "true");

	json_t *us = uname ? named(root, "users", uname, "user") : NULL;
	if (uname && !us) {
		snprintf(err, errlen, "%s: user \"%s\" of context \"%s\" not found", path, uname, ctx);
		goto out;
	}
	if (json_object_get(us, "exec") || json_object_get(us, "auth-provider")) {
		snprintf(err, errlen, "%s: user \"%s\" uses an exec or auth-provider plugin: not "
			 "supported (use a token, tokenFile or a client certificate)", path, uname);
		goto out;
	}
	if ((v = jstr(us, "token")) && v[0] && !(c->token = strdup(v)))
		goto oom;
	if ((v = jstr(us, "tokenFile")) && set_path(c->token_file, sizeof(c->token_file), dir, v) < 0)
		goto toolong;
	if ((v = jstr(us, "client-certificate-data"))) {
		if (!(c->cert_pem = b64dec(v, &c->cert_pem_len)))
			goto notb64;
	} else if ((v = jstr(us, "client-certificate")) &&
		   set_path(c->cert_file, sizeof(c->cert_file), dir, v) < 0) {
		goto toolong;
	}
	if ((v = jstr(us, "client-key-data"))) {
		if (!(c->key_pem = b64dec(v, &c->key_pem_len)))
			goto notb64;
	} else if ((v = jstr(us, "client-key")) && set_path(c->key_file, sizeof(c->key_file), dir, v) < 0) {
		goto toolong;
	}
	if ((v = jstr(us, "username")) && !(c->username = strdup(v)))
		goto oom;
	if ((v = jstr(us, "password")) && !(c->password = strdup(v)))
		goto oom;
	if ((c->cert_pem || c->cert_file[0]) != (c->key_pem || c->key_file[0])) {
		snprintf(err, errlen, "%s: user \"%s\": a client certificate needs its key and the other "
			 "way round", path, uname);
		goto out;
	}
	snprintf(c->desc, sizeof(c->desc), "kubeconfig %.80s context %.40s %.100s", path, ctx, c->server);
	ret = 0;
	goto out;
notb64:
	snprintf(err, errlen, "%s: user \"%s\": client certificate or key data is not base64", path,
		 uname);
	goto out;
toolong:
	snprintf(err, errlen, "%s: a path in it is too long", path);
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
	ret = -ENOMEM;
out:
	if (ret < 0)
		kcreds_free(c);
	json_decref(root);
	free(buf);
	free(pathcopy);
	return ret;
}

/* The bearer token for the next request: the file's current content (service
 * account tokens are rotated by the kubelet about hourly), else the static one.
 * 0 with buf "" when there is none. */
int kcreds_token(const struct kcreds *c, char *buf, size_t len, char *err, size_t errlen)
{
	buf[0] = '\0';
	if (c->token_file[0]) {
		size_t n;
		char *t = read_small(c->token_file, KTOKEN_MAX, &n, err, errlen);
		if (!t)
			return -EIO;
		while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' '))
			t[--n] = '\0';
		if (n + 1 > len) {
			free(t);
			snprintf(err, errlen, "%s: token longer than %zu bytes", c->token_file, len - 1);
			return -EFBIG;
		}
		for (size_t i = 0; i < n; i++) {
			if ((unsigned char)t[i] < 0x21 || t[i] == 0x7f) {
				free(t);
				snprintf(err, errlen, "%s: the token holds a space or control character",
					 c->token_file);
				return -EINVAL;
			}
		}
		memcpy(buf, t, n + 1);
		free(t);
		return 0;
	}
	if (c->token) {
		size_t n = strlen(c->token);
		for (size_t i = 0; i < n; i++) {
			if ((unsigned char)c->token[i] < 0x21 || c->token[i] == 0x7f) {
				snprintf(err, errlen, "the kubeconfig token holds a space or control character");
				return -EINVAL;
			}
		}
		if (n + 1 > len) {
			snprintf(err, errlen, "the kubeconfig token is longer than %zu bytes", len - 1);
			return -EFBIG;
		}
		memcpy(buf, c->token, n + 1);
	}
	return 0;
}
