/* inventory.c — the offline source: the lab's inventory file (JSON, lab/lab
 * writes it), loaded at open and reloaded whenever its inode, size or mtime
 * changes.  A file that cannot be read or parsed leaves the directory as it was
 * and the status says so; the next change of the file is tried again.
 *
 * Format (unknown fields ignored):
 *   {"cluster": "pc-lab",
 *    "nodes": [{"name": "pc-node1", "ips": ["172.18.0.11"]}],            optional
 *    "pods": [{"name", "namespace", "node", "ips": [...], "labels": {...},
 *              "host_ip": "172.18.0.11",                                 optional
 *              "owner" | "workload": {"kind": "Deployment", "name": "web"}, optional
 *              "uid", "created": "RFC 3339"}],                           optional
 *    "services": [{"namespace", "name", "type", "cluster_ip" | "cluster_ips": [...],
 *                  "external_ips": [...],
 *                  "ports": [{"name", "port", "protocol", "target_port", "node_port"}],
 *                  "selector": {...},
 *                  "endpoints": [{"pod", "namespace", "ip", "node", "port", "protocol",
 *                                 "port_name"}]}]}
 * Each Service's endpoints become one EndpointSlice-like entry named after it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kube_int.h"

struct kinv {
	struct stat last;     /* signature of the last file tried */
	int tried;
};

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static int bad_name(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n > max)
		return 1;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 1;
	return 0;
}

/* Pointer arrays grown in steps; objects freed by the caller on failure. */
struct parr {
	void **v;
	size_t n, cap;
};

static int parr_push(struct parr *a, void *x)
{
	if (a->n == a->cap) {
		size_t nc = a->cap ? a->cap * 2 : 16;
		void **nv = realloc(a->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		a->v = nv;
		a->cap = nc;
	}
	a->v[a->n++] = x;
	return 0;
}

static void add_ip(struct kaddr *v, uint8_t *n, unsigned max, const char *s)
{
	struct kaddr a;
	if (kaddr_parse(s, &a) < 0)
		return;
	for (unsigned i = 0; i < *n; i++)
		if (kaddr_eq(&v[i], &a))
			return;
	if (*n < max)
		v[(*n)++] = a;
}

int kinv_parse(const char *buf, size_t len, struct kpod ***pods, size_t *npods,
	       struct ksvc ***svcs, size_t *nsvcs, struct kslice ***slices, size_t *nslices,
	       struct knode_addr **nodes, size_t *nnodes, char *err, size_t errlen)
{
	struct parr P = {0}, S = {0}, L = {0};
	json_error_t je;
	json_t *root = json_loadb(buf, len, 0, &je);
	int ret = -EINVAL;
	struct kslice_ep *eps = NULL;
	char (*keys)[320] = NULL;
	if (!root) {
		snprintf(err, errlen, "not JSON: %s at line %d column %d", je.text, je.line, je.column);
		return -EINVAL;
	}
	json_t *jpods = json_object_get(root, "pods"), *jsvcs = json_object_get(root, "services");
	json_t *jnodes = json_object_get(root, "nodes");
	if (!json_is_array(jpods)) {
		snprintf(err, errlen, "no \"pods\" array");
		goto out;
	}
	if ((jsvcs && !json_is_array(jsvcs)) || (jnodes && !json_is_array(jnodes))) {
		snprintf(err, errlen, "\"services\" and \"nodes\" must be arrays");
		goto out;
	}
	size_t i;
	json_t *x;
	json_array_foreach(jpods, i, x) {
		const char *name = jstr(x, "name"), *ns = jstr(x, "namespace"), *node = jstr(x, "node");
		if (!name[0] || bad_name(name, 253) || bad_name(ns, 63) || bad_name(node, 253)) {
			snprintf(err, errlen, "pods[%zu]: missing or bad name, namespace or node", i);
			goto out;
		}
		char key[320], labels[KUBE_LABELS_LEN], wk[KUBE_KIND_LEN], wl[KUBE_NAME_LEN];
		uint8_t trunc;
		snprintf(key, sizeof(key), "%s/%s", ns, name);
		kobj_labels(json_object_get(x, "labels"), labels, sizeof(labels), &trunc);
		/* lab/lab calls it "owner": the workload (Deployment, StatefulSet). */
		json_t *w = json_object_get(x, "owner");
		if (!w)
			w = json_object_get(x, "workload");
		snprintf(wk, sizeof(wk), "%s", bad_name(jstr(w, "kind"), 63) ? "" : jstr(w, "kind"));
		snprintf(wl, sizeof(wl), "%s", bad_name(jstr(w, "name"), 253) ? "" : jstr(w, "name"));
		struct kpod *p = kpod_alloc(key, ns, name, node, wk, wl, labels, "");
		if (!p || parr_push(&P, p) < 0) {
			kpod_free(p);
			snprintf(err, errlen, "out of memory");
			ret = -ENOMEM;
			goto out;
		}
		p->src = KPOD_SRC_INVENTORY;
		p->labels_truncated = trunc;
		if (json_object_get(x, "created"))
			kobj_time(jstr(x, "created"), &p->created_us);
		json_t *ips = json_object_get(x, "ips"), *ip;
		size_t j;
		json_array_foreach(ips, j, ip) {
			if (j >= 16)
				break;
			add_ip(p->ips, &p->n_ips, KPOD_MAX_IPS, json_string_value(ip));
		}
		if (json_object_get(x, "host_ip"))
			add_ip(p->host_ips, &p->n_host_ips, KHOST_MAX_IPS, jstr(x, "host_ip"));
		json_t *n;
		json_array_foreach(jnodes, j, n) {
			if (!strcmp(jstr(n, "name"), node)) {
				json_t *nips = json_object_get(n, "ips"), *nip;
				size_t q;
				json_array_foreach(nips, q, nip) {
					if (q >= 8)
						break;
					add_ip(p->host_ips, &p->n_host_ips, KHOST_MAX_IPS,
					       json_string_value(nip));
				}
				if (json_object_get(n, "ip"))
					add_ip(p->host_ips, &p->n_host_ips, KHOST_MAX_IPS, jstr(n, "ip"));
			}
		}
	}
	eps = calloc(KSLICE_MAX_EPS, sizeof(*eps));
	keys = calloc(KSLICE_MAX_EPS, sizeof(*keys));
	if (!eps || !keys) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	json_array_foreach(jsvcs, i, x) {
		const char *name = jstr(x, "name"), *ns = jstr(x, "namespace");
		if (!name[0] || bad_name(name, 253) || bad_name(ns, 63)) {
			snprintf(err, errlen, "services[%zu]: missing or bad name or namespace", i);
			goto out;
		}
		struct kaddr ips[KSVC_MAX_IPS];
		uint8_t nip = 0;
		json_t *y;
		size_t j;
		if (json_object_get(x, "cluster_ip"))
			add_ip(ips, &nip, KSVC_MAX_IPS, jstr(x, "cluster_ip"));
		json_array_foreach(json_object_get(x, "cluster_ips"), j, y)
			if (j < 8)
				add_ip(ips, &nip, KSVC_MAX_IPS, json_string_value(y));
		uint8_t ncl = nip;
		json_array_foreach(json_object_get(x, "external_ips"), j, y)
			if (j < 8)
				add_ip(ips, &nip, KSVC_MAX_IPS, json_string_value(y));
		struct ksvc_port ports[KSVC_MAX_PORTS];
		unsigned np = 0;
		json_t *jports = json_object_get(x, "ports");
		if (json_array_size(jports) > KSVC_MAX_PORTS) {
			snprintf(err, errlen, "services[%zu]: more than %d ports", i, KSVC_MAX_PORTS);
			goto out;
		}
		json_array_foreach(jports, j, y) {
			json_int_t port = json_integer_value(json_object_get(y, "port"));
			json_int_t nport = json_integer_value(json_object_get(y, "node_port"));
			int pr = kobj_proto(jstr(y, "protocol"));
			if (port < 1 || port > 65535 || nport < 0 || nport > 65535 || pr < 0 ||
			    bad_name(jstr(y, "name"), 63))
				continue;
			struct ksvc_port *sp = &ports[np++];
			memset(sp, 0, sizeof(*sp));
			sp->proto = (uint8_t)pr;
			sp->port = (uint16_t)port;
			sp->node_port = (uint16_t)nport;
			sp->name = jstr(y, "name");
			sp->target_name = "";
			json_t *tp = json_object_get(y, "target_port");
			if (json_is_integer(tp) && json_integer_value(tp) > 0 && json_integer_value(tp) < 65536)
				sp->target_port = (uint16_t)json_integer_value(tp);
			else if (json_is_string(tp) && !bad_name(json_string_value(tp), 63))
				sp->target_name = json_string_value(tp);
			else
				sp->target_port = sp->port;
		}
		const char *type = jstr(x, "type");
		struct ksvc *s = ksvc_build(ns, name, type, "", 0, ips, nip, ncl, ports, np);
		if (!s || parr_push(&S, s) < 0) {
			ksvc_free(s);
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		/* Endpoints -> one slice; its ports are the target ports used, named as
		 * the Service port that targets them (what an EndpointSlice says). */
		json_t *jeps = json_object_get(x, "endpoints");
		if (!json_is_array(jeps))
			continue;
		struct kslice_port sports[KSLICE_MAX_PORTS];
		unsigned nsp = 0, ne = 0;
		json_array_foreach(jeps, j, y) {
			if (ne == KSLICE_MAX_EPS)
				break;
			const char *pod = jstr(y, "pod"), *pns = jstr(y, "namespace"), *enode = jstr(y, "node");
			if (bad_name(pod, 253) || bad_name(pns, 63) || bad_name(enode, 253))
				continue;
			struct kslice_ep *ep = &eps[ne];
			memset(ep, 0, sizeof(*ep));
			if (kaddr_parse(jstr(y, "ip"), &ep->addr) < 0)
				continue;
			ep->ready = 1;
			if (pod[0]) {
				snprintf(keys[ne], sizeof(keys[ne]), "%s/%s", pns[0] ? pns : ns, pod);
				ep->pod_key = keys[ne];
				ep->pod_ns = pns[0] ? pns : ns;
				ep->pod_name = pod;
				ep->node = enode;
			}
			ne++;
			json_int_t port = json_integer_value(json_object_get(y, "port"));
			int pr = json_object_get(y, "protocol") ? kobj_proto(jstr(y, "protocol")) : -1;
			const char *pname = bad_name(jstr(y, "port_name"), 63) ? "" : jstr(y, "port_name");
			for (unsigned q = 0; q < np; q++) {
				if (ports[q].target_port == port && (pr < 0 || ports[q].proto == pr)) {
					if (!pname[0])
						pname = ports[q].name;
					if (pr < 0)
						pr = ports[q].proto;
					break;
				}
			}
			if (pr < 0)
				pr = 6;
			if (port < 1 || port > 65535)
				continue;
			int seen = 0;
			for (unsigned q = 0; q < nsp; q++)
				if (sports[q].port == port && sports[q].proto == pr)
					seen = 1;
			if (!seen && nsp < KSLICE_MAX_PORTS) {
				sports[nsp].port = (uint16_t)port;
				sports[nsp].proto = (uint8_t)pr;
				sports[nsp].name = pname;
				nsp++;
			}
		}
		struct kslice *sl = kslice_build(ns, name, name, "", eps, ne, sports, nsp);
		if (!sl || parr_push(&L, sl) < 0) {
			kslice_free(sl);
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	if (nodes) {
		/* Every address of every listed node, so NodePorts resolve on nodes
		 * that run no pod of the inventory. */
		size_t nn = 0, cap = 0;
		struct knode_addr *na = NULL;
		json_array_foreach(jnodes, i, x) {
			const char *nname = jstr(x, "name");
			if (!nname[0] || bad_name(nname, 253) || i >= 4096)
				continue;
			json_t *nips = json_object_get(x, "ips"), *nip;
			size_t q;
			struct kaddr addrs[KNODE_MAX_IPS];
			uint8_t na_n = 0;
			json_array_foreach(nips, q, nip)
				if (q < 8)
					add_ip(addrs, &na_n, KNODE_MAX_IPS, json_string_value(nip));
			if (json_object_get(x, "ip"))
				add_ip(addrs, &na_n, KNODE_MAX_IPS, jstr(x, "ip"));
			for (unsigned r = 0; r < na_n; r++) {
				if (nn == cap) {
					size_t nc = cap ? cap * 2 : 8;
					struct knode_addr *nv = realloc(na, nc * sizeof(*nv));
					if (!nv) {
						free(na);
						snprintf(err, errlen, "out of memory");
						goto out;
					}
					na = nv;
					cap = nc;
				}
				snprintf(na[nn].name, sizeof(na[nn].name), "%s", nname);
				na[nn].addr = addrs[r];
				nn++;
			}
		}
		*nodes = na;
		*nnodes = nn;
	}
	*pods = (struct kpod **)P.v;
	*npods = P.n;
	*svcs = (struct ksvc **)S.v;
	*nsvcs = S.n;
	*slices = (struct kslice **)L.v;
	*nslices = L.n;
	P.v = S.v = L.v = NULL;
	P.n = S.n = L.n = 0;
	ret = 0;
out:
	for (size_t q = 0; q < P.n; q++)
		kpod_free(P.v[q]);
	for (size_t q = 0; q < S.n; q++)
		ksvc_free(S.v[q]);
	for (size_t q = 0; q < L.n; q++)
		kslice_free(L.v[q]);
	free(P.v);
	free(S.v);
	free(L.v);
	free(eps);
	free(keys);
	json_decref(root);
	return ret;
}

/* Loads the file if it changed since the last attempt.  1 loaded, 0 unchanged,
 * <0 failed (message in the status). */
static int kinv_load(struct kube *k, int force)
{
	struct kinv *v = k->inv;
	const char *path = k->cfg.inventory;
	char err[KUBE_ERR_LEN] = "";
	struct stat st;
	int fd = -1, ret;
	char *buf = NULL;
	if (stat(path, &st) < 0) {
		snprintf(err, sizeof(err), "%s: %s", path, strerror(errno));
		memset(&st, 0, sizeof(st));
		if (!force && v->tried && same_file(&st, &v->last))
			return 0;
		v->last = st;
		v->tried = 1;
		ret = -ENOENT;
		goto fail;
	}
	if (!force && v->tried && same_file(&st, &v->last))
		return 0;
	v->last = st;
	v->tried = 1;
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size > k->cfg.max_response_bytes) {
		snprintf(err, sizeof(err), "%s: not a regular file of at most %zu bytes", path,
			 k->cfg.max_response_bytes);
		ret = -EFBIG;
		goto fail;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	buf = malloc((size_t)st.st_size + 1);
	if (fd < 0 || !buf) {
		snprintf(err, sizeof(err), "%s: %s", path, fd < 0 ? strerror(errno) : "out of memory");
		ret = -EIO;
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
	struct kpod **pods;
	struct ksvc **svcs;
	struct kslice **slices;
	struct knode_addr *nodes = NULL;
	size_t np, ns, nl, nn = 0;
	char perr[200];
	if ((ret = kinv_parse(buf, got, &pods, &np, &svcs, &ns, &slices, &nl, &nodes, &nn, perr,
			      sizeof(perr))) < 0) {
		snprintf(err, sizeof(err), "%s: %s", path, perr);
		goto fail;
	}
	uint64_t now = know_us();
	for (size_t i = 0; i < nn; i++)
		kdir_node_note(&k->dir, nodes[i].name, &nodes[i].addr, now);
	free(nodes);
	size_t refused = kdir_pods_replace(&k->dir, pods, np, KPOD_SRC_INVENTORY, now);
	refused += kdir_svcs_replace(&k->dir, svcs, ns, now);
	refused += kdir_slices_replace(&k->dir, slices, nl, now);
	free(pods);
	free(svcs);
	free(slices);
	pthread_mutex_lock(&k->st_lock);
	int first = !k->st.synced;
	k->st.synced = 1;
	k->st.connected = 1;
	k->st.stale = 0;
	k->st.stale_since_us = 0;
	k->st.last_sync_us = now;
	if (first)
		pthread_cond_broadcast(&k->st_cond);
	pthread_mutex_unlock(&k->st_lock);
	klog(k, KUBE_LOG_INFO, "inventory %s: %s%zu pods, %zu services%s", path,
	     first ? "" : "reloaded: ", np, ns, refused ? " (some refused: too many objects)" : "");
	free(buf);
	close(fd);
	return 1;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	pthread_mutex_lock(&k->st_lock);
	k->st.errors++;
	k->st.last_error_us = know_us();
	snprintf(k->st.last_error, sizeof(k->st.last_error), "%s", err);
	if (!k->st.stale)
		k->st.stale_since_us = k->st.last_error_us;
	k->st.stale = 1;
	k->st.connected = 0;
	int had_state = k->st.synced;
	pthread_mutex_unlock(&k->st_lock);
	/* before the first good load the caller (kinv_open) says it: once */
	if (had_state)
		klog(k, KUBE_LOG_ERROR, "inventory: %s; keeping the last good state", err);
	return ret;
}

int kinv_open(struct kube *k, char *err, size_t errlen)
{
	k->inv = calloc(1, sizeof(*k->inv));
	if (!k->inv) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(k->st.source_desc, sizeof(k->st.source_desc), "inventory %s", k->cfg.inventory);
	k->st.stale = 1;
	int r = kinv_load(k, 1);
	if (r < 0) {
		snprintf(err, errlen, "%s", k->st.last_error);
		kinv_close(k);
		return r;
	}
	return 0;
}

void *kinv_thread(void *arg)
{
	struct kube *k = arg;
	uint64_t last_expire = 0;
	while (!atomic_load(&k->stop)) {
		/* Short sleeps so kube_close() is not kept waiting a whole poll period. */
		for (unsigned slept = 0; slept < k->cfg.inventory_poll_ms && !atomic_load(&k->stop);
		     slept += 50)
			usleep(50000);
		if (atomic_load(&k->stop))
			break;
		kinv_load(k, 0);
		uint64_t now = know_us();
		if (now - last_expire > 1000000) {
			kdir_expire(&k->dir, now);
			last_expire = now;
		}
	}
	return NULL;
}

void kinv_close(struct kube *k)
{
	free(k->inv);
	k->inv = NULL;
}
