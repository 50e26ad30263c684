/* objects.c — Kubernetes objects (jansson trees) into the directory's compact
 * objects.  Everything read here came from the network: every field is checked
 * for type and length, and an object that breaks a bound is refused with a
 * message naming it (the rest of the list is still used). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube_int.h"

#define MAX_NAME 253
#define MAX_NS 63
#define MAX_UID 128
#define MAX_RV 64
#define MAX_KIND 63

/* ---- allocation: one block per object, strings after the struct ---------------- */

struct blob {
	char *p, *end;
};

static const char *blob_put(struct blob *b, const char *s)
{
	size_t n = strlen(s ? s : "") + 1;
	if (b->p + n > b->end)
		return ""; /* cannot happen: sizes were summed first */
	memcpy(b->p, s ? s : "", n);
	const char *r = b->p;
	b->p += n;
	return r;
}

/* "namespace/name" */
static const char *blob_key(struct blob *b, const char *ns, const char *name)
{
	const char *r = b->p;
	size_t a = strlen(ns ? ns : ""), c = strlen(name ? name : "");
	if (b->p + a + c + 2 > b->end)
		return "";
	memcpy(b->p, ns ? ns : "", a);
	b->p[a] = '/';
	memcpy(b->p + a + 1, name ? name : "", c);
	b->p[a + 1 + c] = '\0';
	b->p += a + c + 2;
	return r;
}

static size_t slen(const char *s)
{
	return (s ? strlen(s) : 0) + 1;
}

struct kpod *kpod_alloc(const char *key, const char *ns, const char *name, const char *node,
			const char *wl_kind, const char *wl_name, const char *labels, const char *rv)
{
	size_t n = sizeof(struct kpod) + slen(key) + slen(ns) + slen(name) + slen(node) +
		   slen(wl_kind) + slen(wl_name) + slen(labels) + slen(rv);
	struct kpod *p = calloc(1, n);
	if (!p)
		return NULL;
	struct blob b = {(char *)(p + 1), (char *)p + n};
	p->size = n;
	p->key = blob_put(&b, key);
	p->ns = blob_put(&b, ns);
	p->name = blob_put(&b, name);
	p->node = blob_put(&b, node);
	p->wl_kind = blob_put(&b, wl_kind);
	p->wl_name = blob_put(&b, wl_name);
	p->labels = blob_put(&b, labels ? labels : "{}");
	p->rv = blob_put(&b, rv);
	return p;
}

void kpod_free(struct kpod *p)
{
	free(p);
}

struct ksvc *ksvc_build(const char *ns, const char *name, const char *type, const char *rv,
			uint64_t created_us, const struct kaddr *ips, unsigned n_ips,
			unsigned n_cluster, const struct ksvc_port *ports, unsigned n_ports)
{
	if (n_ips > KSVC_MAX_IPS || n_ports > KSVC_MAX_PORTS || n_cluster > n_ips)
		return NULL;
	size_t n = sizeof(struct ksvc) + n_ports * sizeof(struct ksvc_port) + slen(ns) + 1 +
		   slen(name) + slen(ns) + slen(name) + slen(type) + slen(rv);
	for (unsigned i = 0; i < n_ports; i++)
		n += slen(ports[i].name) + slen(ports[i].target_name);
	struct ksvc *s = calloc(1, n);
	if (!s)
		return NULL;
	s->size = n;
	s->ports = (struct ksvc_port *)(s + 1);
	struct blob b = {(char *)(s->ports + n_ports), (char *)s + n};
	s->key = blob_key(&b, ns, name);
	s->ns = blob_put(&b, ns);
	s->name = blob_put(&b, name);
	s->type = blob_put(&b, type);
	s->rv = blob_put(&b, rv);
	s->created_us = created_us;
	memcpy(s->ips, ips, n_ips * sizeof(*ips));
	s->n_ips = (uint8_t)n_ips;
	s->n_cluster = (uint8_t)n_cluster;
	s->n_ports = (uint16_t)n_ports;
	for (unsigned i = 0; i < n_ports; i++) {
		s->ports[i] = ports[i];
		s->ports[i].name = blob_put(&b, ports[i].name);
		s->ports[i].target_name = blob_put(&b, ports[i].target_name);
	}
	return s;
}

void ksvc_free(struct ksvc *s)
{
	free(s);
}

struct kslice *kslice_build(const char *ns, const char *name, const char *service,
			    const char *rv, const struct kslice_ep *eps, unsigned n_eps,
			    const struct kslice_port *ports, unsigned n_ports)
{
	if (n_eps > KSLICE_MAX_EPS || n_ports > KSLICE_MAX_PORTS)
		return NULL;
	size_t n = sizeof(struct kslice) + n_eps * sizeof(struct kslice_ep) +
		   n_ports * sizeof(struct kslice_port) + slen(ns) + slen(name) + 1 + slen(ns) +
		   slen(service) + slen(rv);
	for (unsigned i = 0; i < n_eps; i++)
		if (eps[i].pod_key)
			n += slen(eps[i].pod_key) + slen(eps[i].pod_ns) + slen(eps[i].pod_name) +
			     slen(eps[i].node);
	for (unsigned i = 0; i < n_ports; i++)
		n += slen(ports[i].name);
	struct kslice *s = calloc(1, n);
	if (!s)
		return NULL;
	s->size = n;
	s->eps = (struct kslice_ep *)(s + 1);
	s->ports = (struct kslice_port *)(s->eps + n_eps);
	struct blob b = {(char *)(s->ports + n_ports), (char *)s + n};
	s->key = blob_key(&b, ns, name);
	s->ns = blob_put(&b, ns);
	s->service = blob_put(&b, service);
	s->rv = blob_put(&b, rv);
	s->n_eps = n_eps;
	s->n_ports = (uint16_t)n_ports;
	for (unsigned i = 0; i < n_eps; i++) {
		s->eps[i] = eps[i];
		if (eps[i].pod_key) {
			s->eps[i].pod_key = blob_put(&b, eps[i].pod_key);
			s->eps[i].pod_ns = blob_put(&b, eps[i].pod_ns);
			s->eps[i].pod_name = blob_put(&b, eps[i].pod_name);
			s->eps[i].node = blob_put(&b, eps[i].node);
		}
	}
	for (unsigned i = 0; i < n_ports; i++) {
		s->ports[i] = ports[i];
		s->ports[i].name = blob_put(&b, ports[i].name);
	}
	return s;
}

void kslice_free(struct kslice *s)
{
	free(s);
}

/* ---- field readers ---------------------------------------------------------------- */

/* A string field that must be printable and at most max bytes; "" if absent.
 * Returns -1 (with err) when present but wrong. */
static int get_str(json_t *o, const char *field, size_t max, const char **out, const char *what,
		   char *err, size_t errlen)
{
	json_t *v = json_object_get(o, field);
	*out = "";
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		snprintf(err, errlen, "%s: %s is not a string", what, field);
		return -1;
	}
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n > max) {
		snprintf(err, errlen, "%s: %s longer than %zu bytes", what, field, max);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			snprintf(err, errlen, "%s: control character in %s", what, field);
			return -1;
		}
	}
	*out = s;
	return 0;
}

int kobj_proto(const char *s)
{
	if (!s || !s[0] || !strcmp(s, "TCP"))
		return 6; /* the API's default */
	if (!strcmp(s, "UDP"))
		return 17;
	if (!strcmp(s, "SCTP"))
		return 132;
	return -1;
}

static int days_from_civil(int y, unsigned m, unsigned d, int64_t *out)
{
	/* Howard Hinnant's algorithm: no timegm() dependence on TZ handling. */
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	*out = era * 146097 + (int64_t)doe - 719468;
	return 0;
}

int kobj_time(const char *s, uint64_t *us)
{
	int y, mo, d, h, mi, sec, n = 0;
	if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
		return -EINVAL;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	const char *p = s + 19;
	uint64_t frac = 0, scale = 1000000;
	if (*p == '.') {
		p++;
		int digits = 0;
		while (*p >= '0' && *p <= '9') {
			if (digits < 6) {
				scale /= 10;
				frac += (uint64_t)(*p - '0') * scale;
			}
			digits++;
			p++;
		}
		if (!digits || digits > 9)
			return -EINVAL;
	}
	int64_t off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59)
			return -EINVAL;
		off = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	int64_t days;
	days_from_civil(y, (unsigned)mo, (unsigned)d, &days);
	int64_t t = days * 86400 + h * 3600 + mi * 60 + sec - off;
	if (t < 0)
		return -EINVAL;
	*us = (uint64_t)t * 1000000 + frac;
	return 0;
}

/* ---- labels, workloads ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends s as a JSON string; 0, or -1 when it does not fit. */
static int json_quote(char *out, size_t outlen, size_t *pos, const char *s)
{
	size_t p = *pos;
	if (p + 1 >= outlen)
		return -1;
	out[p++] = '"';
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		size_t n;
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			n = 2;
		} else if (c < 0x20) {
			n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
		} else {
			esc[0] = (char)c;
			n = 1;
		}
		if (p + n + 1 >= outlen)
			return -1;
		memcpy(out + p, esc, n);
		p += n;
	}
	if (p + 1 >= outlen)
		return -1;
	out[p++] = '"';
	out[p] = '\0';
	*pos = p;
	return 0;
}

void kobj_labels(json_t *labels, char *out, size_t outlen, uint8_t *truncated)
{
	const char *keys[KLABELS_MAX];
	size_t n = 0, pos = 1;
	*truncated = 0;
	snprintf(out, outlen, "{}");
	if (!json_is_object(labels) || outlen < 3)
		return;
	const char *k;
	json_t *v;
	json_object_foreach(labels, k, v) {
		if (!json_is_string(v))
			continue;
		if (n == KLABELS_MAX) {
			*truncated = 1;
			break;
		}
		keys[n++] = k;
	}
	qsort(keys, n, sizeof(keys[0]), cmp_str);
	out[0] = '{';
	for (size_t i = 0; i < n; i++) {
		size_t save = pos;
		int ok = 1;
		if (i) {
			if (pos + 1 >= outlen)
				ok = 0;
			else
				out[pos++] = ',';
		}
		if (ok && json_quote(out, outlen, &pos, keys[i]) < 0)
			ok = 0;
		if (ok) {
			if (pos + 1 >= outlen)
				ok = 0;
			else
				out[pos++] = ':';
		}
		if (ok && json_quote(out, outlen, &pos,
				     json_string_value(json_object_get(labels, keys[i]))) < 0)
			ok = 0;
		if (!ok || pos + 1 >= outlen) {
			/* Whole pairs only: a cut label would say something false. */
			pos = save;
			*truncated = 1;
			break;
		}
	}
	out[pos++] = '}';
	out[pos] = '\0';
}

void kobj_workload(json_t *owners, json_t *labels, char *kind, size_t kindlen, char *name,
		   size_t namelen)
{
	kind[0] = name[0] = '\0';
	if (!json_is_array(owners))
		return;
	json_t *pick = NULL, *o;
	size_t i;
	json_array_foreach(owners, i, o) {
		if (i >= 16)
			break;
		if (!json_is_object(o))
			continue;
		if (!pick)
			pick = o;
		if (json_is_true(json_object_get(o, "controller"))) {
			pick = o;
			break;
		}
	}
	if (!pick)
		return;
	const char *k = json_string_value(json_object_get(pick, "kind"));
	const char *n = json_string_value(json_object_get(pick, "name"));
	if (!k || !n || strlen(k) > MAX_KIND || strlen(n) > MAX_NAME)
		return;
	snprintf(kind, kindlen, "%s", k);
	snprintf(name, namelen, "%s", n);
	/* A Deployment names its ReplicaSets NAME-<pod-template-hash> and puts the
	 * same hash on their pods as a label: when both agree the Deployment is
	 * known without watching ReplicaSets. */
	const char *hash = json_string_value(json_object_get(labels, "pod-template-hash"));
	if (!strcmp(k, "ReplicaSet") && hash && hash[0]) {
		size_t nl = strlen(n), hl = strlen(hash);
		if (nl > hl + 1 && n[nl - hl - 1] == '-' && !strcmp(n + nl - hl, hash)) {
			snprintf(kind, kindlen, "Deployment");
			snprintf(name, namelen, "%.*s", (int)(nl - hl - 1), n);
		}
	}
}

int kobj_key(json_t *o, int by_uid, char *out, size_t outlen)
{
	json_t *md = json_object_get(o, "metadata");
	const char *uid = json_string_value(json_object_get(md, "uid"));
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	if (by_uid && uid && uid[0] && strlen(uid) <= MAX_UID) {
		snprintf(out, outlen, "%s", uid);
		return 0;
	}
	if (!name || !name[0] || strlen(name) > MAX_NAME || (ns && strlen(ns) > MAX_NS))
		return -EINVAL;
	snprintf(out, outlen, "%s/%s", ns ? ns : "", name);
	return 0;
}

/* metadata.{name,namespace,resourceVersion,creationTimestamp} common to all. */
struct meta {
	const char *name, *ns, *uid, *rv;
	uint64_t created_us;
	json_t *labels, *owners;
};

static int get_meta(json_t *o, const char *what, struct meta *m, char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	if (!json_is_object(o)) {
		snprintf(err, errlen, "%s is not a JSON object", what);
		return -1;
	}
	json_t *md = json_object_get(o, "metadata");
	if (!json_is_object(md)) {
		snprintf(err, errlen, "%s without metadata", what);
		return -1;
	}
	const char *ts;
	if (get_str(md, "name", MAX_NAME, &m->name, what, err, errlen) < 0 ||
	    get_str(md, "namespace", MAX_NS, &m->ns, what, err, errlen) < 0 ||
	    get_str(md, "uid", MAX_UID, &m->uid, what, err, errlen) < 0 ||
	    get_str(md, "resourceVersion", MAX_RV, &m->rv, what, err, errlen) < 0 ||
	    get_str(md, "creationTimestamp", 64, &ts, what, err, errlen) < 0)
		return -1;
	if (!m->name[0]) {
		snprintf(err, errlen, "%s without metadata.name", what);
		return -1;
	}
	if (ts[0] && kobj_time(ts, &m->created_us) < 0) {
		snprintf(err, errlen, "%s %s/%s: bad creationTimestamp", what, m->ns, m->name);
		return -1;
	}
	m->labels = json_object_get(md, "labels");
	m->owners = json_object_get(md, "ownerReferences");
	return 0;
}

/* Collects addresses from a string field and/or an array of {"ip": ...}. */
static void add_addr(struct kaddr *v, uint8_t *n, unsigned max, const char *s)
{
	struct kaddr a;
	if (!s || kaddr_parse(s, &a) < 0)
		return;
	for (unsigned i = 0; i < *n; i++)
		if (kaddr_eq(&v[i], &a))
			return;
	if (*n < max)
		v[(*n)++] = a;
}

static void add_addrs(struct kaddr *v, uint8_t *n, unsigned max, json_t *arr, const char *field)
{
	json_t *x;
	size_t i;
	if (!json_is_array(arr))
		return;
	json_array_foreach(arr, i, x) {
		if (i >= 16)
			break;
		add_addr(v, n, max, json_string_value(field ? json_object_get(x, field) : x));
	}
}

/* ---- pods ------------------------------------------------------------------------- */

struct kpod *kobj_pod(json_t *o, char *err, size_t errlen)
{
	struct meta m;
	if (get_meta(o, "pod", &m, err, errlen) < 0)
		return NULL;
	json_t *spec = json_object_get(o, "spec"), *status = json_object_get(o, "status");
	const char *node = "", *phase = "";
	if (get_str(spec, "nodeName", MAX_NAME, &node, "pod", err, errlen) < 0 ||
	    get_str(status, "phase", 32, &phase, "pod", err, errlen) < 0)
		return NULL;
	char labels[KUBE_LABELS_LEN], wk[KUBE_KIND_LEN], wl[KUBE_NAME_LEN], key[MAX_NS + MAX_NAME + 2];
	uint8_t trunc;
	kobj_labels(m.labels, labels, sizeof(labels), &trunc);
	kobj_workload(m.owners, m.labels, wk, sizeof(wk), wl, sizeof(wl));
	if (m.uid[0])
		snprintf(key, sizeof(key), "%s", m.uid);
	else
		snprintf(key, sizeof(key), "%s/%s", m.ns, m.name);
	struct kpod *p = kpod_alloc(key, m.ns, m.name, node, wk, wl, labels, m.rv);
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->src = KPOD_SRC_WATCH;
	p->labels_truncated = trunc;
	p->created_us = m.created_us;
	p->host_network = json_is_true(json_object_get(spec, "hostNetwork"));
	/* A finished pod's sandbox is gone and its address may already belong to
	 * another pod, although status.podIP still shows it. */
	p->terminal = !strcmp(phase, "Succeeded") || !strcmp(phase, "Failed");
	add_addrs(p->ips, &p->n_ips, KPOD_MAX_IPS, json_object_get(status, "podIPs"), "ip");
	add_addr(p->ips, &p->n_ips, KPOD_MAX_IPS,
		 json_string_value(json_object_get(status, "podIP")));
	add_addrs(p->host_ips, &p->n_host_ips, KHOST_MAX_IPS, json_object_get(status, "hostIPs"),
		  "ip");
	add_addr(p->host_ips, &p->n_host_ips, KHOST_MAX_IPS,
		 json_string_value(json_object_get(status, "hostIP")));
	return p;
}

/* ---- services ----------------------------------------------------------------------- */

struct ksvc *kobj_svc(json_t *o, char *err, size_t errlen)
{
	struct meta m;
	if (get_meta(o, "service", &m, err, errlen) < 0)
		return NULL;
	json_t *spec = json_object_get(o, "spec");
	const char *type = "";
	if (get_str(spec, "type", 32, &type, "service", err, errlen) < 0)
		return NULL;
	struct kaddr ips[KSVC_MAX_IPS];
	uint8_t n = 0;
	add_addrs(ips, &n, KSVC_MAX_IPS, json_object_get(spec, "clusterIPs"), NULL);
	add_addr(ips, &n, KSVC_MAX_IPS, json_string_value(json_object_get(spec, "clusterIP")));
	uint8_t n_cluster = n; /* "None" (headless) parses as no address */
	add_addrs(ips, &n, KSVC_MAX_IPS, json_object_get(spec, "externalIPs"), NULL);
	add_addrs(ips, &n, KSVC_MAX_IPS,
		  json_object_get(json_object_get(json_object_get(o, "status"), "loadBalancer"),
				  "ingress"),
		  "ip");
	json_t *jports = json_object_get(spec, "ports"), *jp;
	struct ksvc_port ports[KSVC_MAX_PORTS];
	unsigned np = 0;
	size_t i;
	if (jports && !json_is_array(jports)) {
		snprintf(err, errlen, "service %s/%s: spec.ports is not an array", m.ns, m.name);
		return NULL;
	}
	json_array_foreach(jports, i, jp) {
		if (np == KSVC_MAX_PORTS) {
			snprintf(err, errlen, "service %s/%s: more than %d ports", m.ns, m.name,
				 KSVC_MAX_PORTS);
			return NULL;
		}
		const char *pname = "", *proto = "";
		if (get_str(jp, "name", 63, &pname, "service port", err, errlen) < 0 ||
		    get_str(jp, "protocol", 8, &proto, "service port", err, errlen) < 0)
			return NULL;
		json_int_t port = json_integer_value(json_object_get(jp, "port"));
		json_int_t nodeport = json_integer_value(json_object_get(jp, "nodePort"));
		int pr = kobj_proto(proto);
		if (port < 1 || port > 65535 || nodeport < 0 || nodeport > 65535 || pr < 0)
			continue; /* not a port we could ever match */
		struct ksvc_port *sp = &ports[np++];
		memset(sp, 0, sizeof(*sp));
		sp->proto = (uint8_t)pr;
		sp->port = (uint16_t)port;
		sp->node_port = (uint16_t)nodeport;
		sp->name = pname;
		sp->target_name = "";
		json_t *tp = json_object_get(jp, "targetPort");
		if (json_is_integer(tp) && json_integer_value(tp) > 0 && json_integer_value(tp) <= 65535)
			sp->target_port = (uint16_t)json_integer_value(tp);
		else if (json_is_string(tp) && json_string_length(tp) <= 63)
			sp->target_name = json_string_value(tp);
		else if (!tp)
			sp->target_port = sp->port; /* the API's default */
	}
	struct ksvc *s = ksvc_build(m.ns, m.name, type, m.rv, m.created_us, ips, n, n_cluster, ports,
				    np);
	if (!s)
		snprintf(err, errlen, "out of memory");
	return s;
}

/* ---- EndpointSlices ---------------------------------------------------------------- */

struct kslice *kobj_slice(json_t *o, char *err, size_t errlen)
{
	struct meta m;
	if (get_meta(o, "endpointslice", &m, err, errlen) < 0)
		return NULL;
	const char *svc = "", *atype = "";
	if (get_str(m.labels, "kubernetes.io/service-name", MAX_NAME, &svc, "endpointslice", err,
		    errlen) < 0 ||
	    get_str(o, "addressType", 16, &atype, "endpointslice", err, errlen) < 0)
		return NULL;
	json_t *jeps = json_object_get(o, "endpoints"), *jports = json_object_get(o, "ports");
	if ((jeps && !json_is_array(jeps) && !json_is_null(jeps)) ||
	    (jports && !json_is_array(jports) && !json_is_null(jports))) {
		snprintf(err, errlen, "endpointslice %s/%s: endpoints/ports not arrays", m.ns, m.name);
		return NULL;
	}
	if (json_array_size(jeps) > KSLICE_MAX_EPS || json_array_size(jports) > KSLICE_MAX_PORTS) {
		snprintf(err, errlen, "endpointslice %s/%s: more than %d endpoints or %d ports", m.ns,
			 m.name, KSLICE_MAX_EPS, KSLICE_MAX_PORTS);
		return NULL;
	}
	struct kslice_ep *eps = calloc(KSLICE_MAX_EPS, sizeof(*eps));
	struct kslice_port ports[KSLICE_MAX_PORTS];
	char (*keys)[MAX_NS + MAX_NAME + 2] = calloc(KSLICE_MAX_EPS, sizeof(*keys));
	unsigned ne = 0, np = 0;
	struct kslice *s = NULL;
	if (!eps || !keys) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* FQDN slices name hosts, not addresses: nothing to index. */
	int ip_type = !strcmp(atype, "IPv4") || !strcmp(atype, "IPv6");
	json_t *je, *jp;
	size_t i;
	json_array_foreach(jeps, i, je) {
		if (!ip_type)
			break;
		json_t *ref = json_object_get(je, "targetRef");
		const char *rkind = "", *rns = "", *rname = "", *ruid = "", *node = "";
		if (get_str(ref, "kind", MAX_KIND, &rkind, "endpoint", err, errlen) < 0 ||
		    get_str(ref, "namespace", MAX_NS, &rns, "endpoint", err, errlen) < 0 ||
		    get_str(ref, "name", MAX_NAME, &rname, "endpoint", err, errlen) < 0 ||
		    get_str(ref, "uid", MAX_UID, &ruid, "endpoint", err, errlen) < 0 ||
		    get_str(je, "nodeName", MAX_NAME, &node, "endpoint", err, errlen) < 0)
			goto out;
		json_t *cond = json_object_get(je, "conditions");
		json_t *ready = json_object_get(cond, "ready");
		json_t *addrs = json_object_get(je, "addresses"), *ja;
		size_t j;
		json_array_foreach(addrs, j, ja) {
			if (j >= 100 || ne == KSLICE_MAX_EPS)
				break;
			struct kslice_ep *ep = &eps[ne];
			if (kaddr_parse(json_string_value(ja), &ep->addr) < 0)
				continue;
			/* The API says: nil "ready" means ready. */
			ep->ready = !ready || json_is_true(ready);
			if (!strcmp(rkind, "Pod") && rname[0]) {
				if (ruid[0])
					snprintf(keys[ne], sizeof(keys[ne]), "%s", ruid);
				else
					snprintf(keys[ne], sizeof(keys[ne]), "%s/%s",
						 rns[0] ? rns : m.ns, rname);
				ep->pod_key = keys[ne];
				ep->pod_ns = rns[0] ? rns : m.ns;
				ep->pod_name = rname;
				ep->node = node;
			}
			ne++;
		}
	}
	json_array_foreach(jports, i, jp) {
		const char *pname = "", *proto = "";
		if (get_str(jp, "name", 63, &pname, "endpointslice port", err, errlen) < 0 ||
		    get_str(jp, "protocol", 8, &proto, "endpointslice port", err, errlen) < 0)
			goto out;
		json_int_t port = json_integer_value(json_object_get(jp, "port"));
		int pr = kobj_proto(proto);
		if (port < 1 || port > 65535 || pr < 0)
			continue;
		ports[np].proto = (uint8_t)pr;
		ports[np].port = (uint16_t)port;
		ports[np].name = pname;
		np++;
	}
	s = kslice_build(m.ns, m.name, svc, m.rv, eps, ne, ports, np);
	if (!s)
		snprintf(err, errlen, "out of memory");
out:
	free(eps);
	free(keys);
	return s;
}
