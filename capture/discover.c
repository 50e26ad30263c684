/* discover — interface listing/classification over rtnetlink, link monitor, and
 * the pod inventory reader.  See capture.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture.h"

/* ---- classification ---------------------------------------------------- */

const char *cap_if_class_name(int cls)
{
	switch (cls) {
	case CAP_IF_POD_VETH: return "pod-veth";
	case CAP_IF_BRIDGE: return "bridge";
	case CAP_IF_OVERLAY: return "overlay";
	case CAP_IF_NIC: return "nic";
	case CAP_IF_LOOPBACK: return "loopback";
	default: return "other";
	}
}

static int has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

/* Host-side veth names of the CNIs we know: bridge/flannel/ptp (veth), Calico
 * (cali), Cilium (lxc), AWS VPC CNI (eni), Azure (azv), GKE (gke), Weave
 * (vethwe), Kube-router/others (vnet, tap excluded: those are VMs). */
static const char *const pod_veth_prefixes[] = {"veth", "cali", "lxc", "eni", "azv", "gke", "vnet"};

static const char *const overlay_kinds[] = {"vxlan", "geneve", "ipip", "gre", "gretap", "ip6gre",
	"ip6gretap", "ip6tnl", "sit", "erspan", "ip6erspan", "wireguard", "bareudp"};
static const char *const overlay_names[] = {"flannel.", "vxlan.calico", "vxlan-v6.calico",
	"cilium_vxlan", "cilium_geneve", "tunl0", "geneve", "weave", "kube-ipip"};

int cap_classify(const char *name, const char *kind, int32_t link_netnsid, uint32_t flags)
{
	if (flags & IFF_LOOPBACK)
		return CAP_IF_LOOPBACK;
	for (size_t i = 0; i < sizeof(overlay_kinds) / sizeof(overlay_kinds[0]); i++)
		if (!strcmp(kind, overlay_kinds[i]))
			return CAP_IF_OVERLAY;
	for (size_t i = 0; i < sizeof(overlay_names) / sizeof(overlay_names[0]); i++)
		if (has_prefix(name, overlay_names[i]))
			return CAP_IF_OVERLAY;
	if (!strcmp(kind, "bridge") || !strcmp(kind, "openvswitch"))
		return CAP_IF_BRIDGE;
	if (!strcmp(kind, "veth")) {
		/* A CNI-named veth is a pod's end even when the peer's namespace id is
		 * not visible to us; a veth without a CNI name whose peer is elsewhere is
		 * what links a node (or a kind/docker-in-docker node) to the outside,
		 * i.e. its NIC. */
		for (size_t i = 0; i < sizeof(pod_veth_prefixes) / sizeof(pod_veth_prefixes[0]); i++)
			if (has_prefix(name, pod_veth_prefixes[i]))
				return CAP_IF_POD_VETH;
		return link_netnsid >= 0 ? CAP_IF_NIC : CAP_IF_OTHER;
	}
	if (!kind[0]) /* no rtnl_link_ops: real hardware (or a kind we cannot tell) */
		return CAP_IF_NIC;
	return CAP_IF_OTHER;
}

/* ---- pod inventory (bounded JSON reader) ---------------------------------- */

#define INV_MAX_FILE (8u << 20)
#define INV_MAX_PODS 65536u
#define INV_MAX_DEPTH 16

struct cap_inventory {
	struct cap_pod *pods;
	size_t n, cap;
};

struct jp {
	const char *p, *end;
	char *err;
	size_t errlen;
	int failed;
};

static int jp_fail(struct jp *j, const char *fmt, ...)
{
	if (!j->failed && j->err && j->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(j->err, j->errlen, fmt, ap);
		va_end(ap);
	}
	j->failed = 1;
	return -EINVAL;
}

static void jp_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int jp_expect(struct jp *j, char c)
{
	jp_ws(j);
	if (j->p >= j->end || *j->p != c)
		return jp_fail(j, "expected '%c'", c);
	j->p++;
	return 0;
}

/* Reads a string into out (truncating at outlen-1, escapes kept simple: \" \\ \/
 * and \uXXXX as '?').  out may be NULL to skip. */
static int jp_string(struct jp *j, char *out, size_t outlen)
{
	size_t n = 0;
	if (jp_expect(j, '"') < 0)
		return -EINVAL;
	while (j->p < j->end && *j->p != '"') {
		char c = *j->p++;
		if ((unsigned char)c < 0x20)
			return jp_fail(j, "control character in string");
		if (c == '\\') {
			if (j->p >= j->end)
				break;
			c = *j->p++;
			if (c == 'u') {
				if (j->end - j->p < 4)
					return jp_fail(j, "short \\u escape");
				j->p += 4;
				c = '?';
			} else if (c == 'n' || c == 't' || c == 'r' || c == 'b' || c == 'f') {
				c = ' ';
			}
		}
		if (out && n + 1 < outlen)
			out[n++] = c;
	}
	if (j->p >= j->end)
		return jp_fail(j, "unterminated string");
	j->p++;
	if (out && outlen)
		out[n] = '\0';
	return 0;
}

static int jp_skip(struct jp *j, int depth)
{
	if (depth > INV_MAX_DEPTH)
		return jp_fail(j, "nesting deeper than %d", INV_MAX_DEPTH);
	jp_ws(j);
	if (j->p >= j->end)
		return jp_fail(j, "unexpected end");
	char c = *j->p;
	if (c == '"')
		return jp_string(j, NULL, 0);
	if (c == '{' || c == '[') {
		char close = c == '{' ? '}' : ']';
		j->p++;
		jp_ws(j);
		if (j->p < j->end && *j->p == close) {
			j->p++;
			return 0;
		}
		for (;;) {
			if (c == '{') {
				if (jp_string(j, NULL, 0) < 0 || jp_expect(j, ':') < 0)
					return -EINVAL;
			}
			if (jp_skip(j, depth + 1) < 0)
				return -EINVAL;
			jp_ws(j);
			if (j->p < j->end && *j->p == ',') {
				j->p++;
				continue;
			}
			return jp_expect(j, close);
		}
	}
	/* number, true, false, null */
	const char *s = j->p;
	while (j->p < j->end && (strchr("+-.eE", *j->p) || (*j->p >= '0' && *j->p <= '9') ||
				 (*j->p >= 'a' && *j->p <= 'z')))
		j->p++;
	if (j->p == s)
		return jp_fail(j, "unexpected character '%c'", c);
	return 0;
}

static int jp_uint(struct jp *j, uint32_t *out)
{
	uint64_t v = 0;
	int digits = 0;
	jp_ws(j);
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9' && digits < 10) {
		v = v * 10 + (uint64_t)(*j->p++ - '0');
		digits++;
	}
	if (!digits || v > UINT32_MAX)
		return jp_fail(j, "bad unsigned number");
	*out = (uint32_t)v;
	return 0;
}

static int parse_pod(struct jp *j, struct cap_pod *pod)
{
	char key[32];
	memset(pod, 0, sizeof(*pod));
	if (jp_expect(j, '{') < 0)
		return -EINVAL;
	jp_ws(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		return 0;
	}
	for (;;) {
		if (jp_string(j, key, sizeof(key)) < 0 || jp_expect(j, ':') < 0)
			return -EINVAL;
		jp_ws(j);
		int r;
		if (!strcmp(key, "name"))
			r = jp_string(j, pod->name, sizeof(pod->name));
		else if (!strcmp(key, "namespace"))
			r = jp_string(j, pod->namespace, sizeof(pod->namespace));
		else if (!strcmp(key, "netns"))
			r = jp_string(j, pod->netns, sizeof(pod->netns));
		else if (!strcmp(key, "node"))
			r = jp_string(j, pod->node, sizeof(pod->node));
		else if (!strcmp(key, "host_veth"))
			r = jp_string(j, pod->host_veth, sizeof(pod->host_veth));
		else if (!strcmp(key, "host_ifindex"))
			r = jp_uint(j, &pod->host_ifindex);
		else if (!strcmp(key, "ips")) {
			r = jp_expect(j, '[');
			jp_ws(j);
			if (!r && j->p < j->end && *j->p == ']') {
				j->p++;
			} else {
				while (!r) {
					char *dst = pod->n_ips < 4 ? pod->ips[pod->n_ips] : NULL;
					r = jp_string(j, dst, dst ? sizeof(pod->ips[0]) : 0);
					if (!r && dst)
						pod->n_ips++;
					jp_ws(j);
					if (!r && j->p < j->end && *j->p == ',') {
						j->p++;
						continue;
					}
					if (!r)
						r = jp_expect(j, ']');
					break;
				}
			}
		} else
			r = jp_skip(j, 2);
		if (r < 0)
			return -EINVAL;
		jp_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		return jp_expect(j, '}');
	}
}

static int parse_inventory(struct jp *j, struct cap_inventory *inv)
{
	char key[32];
	int seen_pods = 0;
	if (jp_expect(j, '{') < 0)
		return -EINVAL;
	jp_ws(j);
	if (j->p < j->end && *j->p == '}')
		return jp_fail(j, "no \"pods\" array");
	for (;;) {
		if (jp_string(j, key, sizeof(key)) < 0 || jp_expect(j, ':') < 0)
			return -EINVAL;
		if (!strcmp(key, "pods")) {
			seen_pods = 1;
			if (jp_expect(j, '[') < 0)
				return -EINVAL;
			jp_ws(j);
			if (j->p < j->end && *j->p == ']') {
				j->p++;
			} else {
				for (;;) {
					if (inv->n == inv->cap) {
						if (inv->cap >= INV_MAX_PODS)
							return jp_fail(j, "more than %u pods", INV_MAX_PODS);
						size_t ncap = inv->cap ? inv->cap * 2 : 16;
						struct cap_pod *np = realloc(inv->pods, ncap * sizeof(*np));
						if (!np)
							return jp_fail(j, "out of memory");
						inv->pods = np;
						inv->cap = ncap;
					}
					if (parse_pod(j, &inv->pods[inv->n]) < 0)
						return -EINVAL;
					inv->n++;
					jp_ws(j);
					if (j->p < j->end && *j->p == ',') {
						j->p++;
						continue;
					}
					if (jp_expect(j, ']') < 0)
						return -EINVAL;
					break;
				}
			}
		} else if (jp_skip(j, 1) < 0) {
			return -EINVAL;
		}
		jp_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (jp_expect(j, '}') < 0)
			return -EINVAL;
		break;
	}
	return seen_pods ? 0 : jp_fail(j, "no \"pods\" array");
}

int cap_inventory_load(const char *path, struct cap_inventory **out, char *errbuf, size_t errlen)
{
	struct cap_inventory *inv = NULL;
	char *buf = NULL;
	int fd = -1, ret;
	struct stat st;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)INV_MAX_FILE) {
		ret = -EFBIG;
		snprintf(errbuf, errlen, "%s: not a regular file or larger than %u bytes", path, INV_MAX_FILE);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	inv = calloc(1, sizeof(*inv));
	if (!buf || !inv) {
		ret = -ENOMEM;
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			ret = r < 0 ? -errno : -EIO;
			snprintf(errbuf, errlen, "%s: short read", path);
			goto out;
		}
		got += (size_t)r;
	}
	struct jp j = {buf, buf + got, errbuf, errlen, 0};
	char msg[160] = "";
	j.err = msg;
	j.errlen = sizeof(msg);
	if (parse_inventory(&j, inv) < 0) {
		ret = -EINVAL;
		snprintf(errbuf, errlen, "%s: bad inventory at byte %td: %s", path, j.p - buf, msg);
		goto out;
	}
	*out = inv;
	inv = NULL;
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	cap_inventory_free(inv);
	return ret;
}

size_t cap_inventory_count(const struct cap_inventory *inv)
{
	return inv ? inv->n : 0;
}

const struct cap_pod *cap_inventory_pod(const struct cap_inventory *inv, size_t i)
{
	return inv && i < inv->n ? &inv->pods[i] : NULL;
}

const struct cap_pod *cap_inventory_by_veth(const struct cap_inventory *inv, const char *node,
					    const char *ifname)
{
	if (!inv)
		return NULL;
	for (size_t i = 0; i < inv->n; i++) {
		const struct cap_pod *p = &inv->pods[i];
		if (strcmp(p->host_veth, ifname))
			continue;
		if (node && p->node[0] && strcmp(node, p->node))
			continue;
		return p;
	}
	return NULL;
}

void cap_inventory_free(struct cap_inventory *inv)
{
	if (!inv)
		return;
	free(inv->pods);
	free(inv);
}

/* ---- rtnetlink ----------------------------------------------------------- */

/* Fills ifc from one RTM_NEWLINK/RTM_DELLINK message; 0, or -EINVAL for a message
 * too short to hold what it claims. */
static int parse_link(const struct nlmsghdr *nh, const struct cap_inventory *inv, const char *node,
		      struct cap_iface *ifc)
{
	if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
		return -EINVAL;
	const struct ifinfomsg *ifi = NLMSG_DATA(nh);
	memset(ifc, 0, sizeof(*ifc));
	ifc->ifindex = (uint32_t)ifi->ifi_index;
	ifc->link_netnsid = -1;
	ifc->up = !!(ifi->ifi_flags & IFF_UP);
	int len = (int)nh->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifi));
	for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		size_t plen = RTA_PAYLOAD(a);
		switch (a->rta_type) {
		case IFLA_IFNAME:
			snprintf(ifc->name, sizeof(ifc->name), "%.*s", (int)plen, (const char *)RTA_DATA(a));
			break;
		case IFLA_LINK_NETNSID:
			if (plen >= 4)
				memcpy(&ifc->link_netnsid, RTA_DATA(a), 4);
			break;
		case IFLA_MASTER:
			if (plen >= 4)
				memcpy(&ifc->master, RTA_DATA(a), 4);
			break;
		case IFLA_LINKINFO: {
			int ilen = (int)plen;
			for (const struct rtattr *b = RTA_DATA(a); RTA_OK(b, ilen); b = RTA_NEXT(b, ilen))
				if (b->rta_type == IFLA_INFO_KIND)
					snprintf(ifc->kind, sizeof(ifc->kind), "%.*s", (int)RTA_PAYLOAD(b),
						 (const char *)RTA_DATA(b));
			break;
		}
		}
	}
	/* Kinds arrive NUL-terminated; names too, but %.*s above already stops at NUL. */
	ifc->cls = (uint8_t)cap_classify(ifc->name, ifc->kind, ifc->link_netnsid, ifi->ifi_flags);
	const struct cap_pod *pod = cap_inventory_by_veth(inv, node, ifc->name);
	if (pod) {
		/* The inventory is the authority on what is a pod's veth, whatever its name. */
		ifc->cls = CAP_IF_POD_VETH;
		snprintf(ifc->pod, sizeof(ifc->pod), "%s/%s", pod->namespace[0] ? pod->namespace : "default",
			 pod->name);
	}
	return 0;
}

static int nl_open(uint32_t groups)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = groups};
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int cap_discover(const struct cap_inventory *inv, const char *node, struct cap_iface **out, size_t *n)
{
	struct cap_iface *list = NULL;
	size_t cnt = 0, cap = 0;
	int fd, ret = 0;
	/* 32 KiB holds many link messages; the kernel never splits one across reads. */
	static __thread char buf[32768] __attribute__((aligned(4)));

	*out = NULL;
	*n = 0;
	fd = nl_open(0);
	if (fd < 0)
		return fd;
	struct {
		struct nlmsghdr nh;
		struct ifinfomsg ifi;
	} req = {
		.nh = {.nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
		.ifi = {.ifi_family = AF_UNSPEC},
	};
	if (send(fd, &req, sizeof(req), 0) < 0) {
		ret = -errno;
		goto out;
	}
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		int len = (int)r;
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
			if (nh->nlmsg_type == NLMSG_DONE)
				goto done;
			if (nh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(nh);
				ret = nh->nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) && e->error ? e->error : -EIO;
				goto out;
			}
			if (nh->nlmsg_type != RTM_NEWLINK)
				continue;
			if (cnt == cap) {
				size_t ncap = cap ? cap * 2 : 32;
				struct cap_iface *nl = realloc(list, ncap * sizeof(*nl));
				if (!nl) {
					ret = -ENOMEM;
					goto out;
				}
				list = nl;
				cap = ncap;
			}
			if (parse_link(nh, inv, node, &list[cnt]) == 0)
				cnt++;
		}
	}
done:
	*out = list;
	*n = cnt;
	list = NULL;
out:
	free(list);
	close(fd);
	return ret;
}

struct cap_disc_monitor {
	int fd;
	const struct cap_inventory *inv;
	char node[64];
};

int cap_disc_monitor_open(const struct cap_inventory *inv, const char *node, struct cap_disc_monitor **out)
{
	struct cap_disc_monitor *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->fd = nl_open(RTMGRP_LINK);
	if (m->fd < 0) {
		int e = m->fd;
		free(m);
		return e;
	}
	int fl = fcntl(m->fd, F_GETFL);
	fcntl(m->fd, F_SETFL, fl | O_NONBLOCK);
	m->inv = inv;
	if (node)
		snprintf(m->node, sizeof(m->node), "%s", node);
	*out = m;
	return 0;
}

void cap_disc_monitor_set_inventory(struct cap_disc_monitor *m, const struct cap_inventory *inv)
{
	m->inv = inv;
}

int cap_disc_monitor_fd(const struct cap_disc_monitor *m)
{
	return m->fd;
}

int cap_disc_monitor_read(struct cap_disc_monitor *m, cap_link_fn fn, void *arg)
{
	static __thread char buf[32768] __attribute__((aligned(4)));
	int events = 0;
	for (;;) {
		ssize_t r = recv(m->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return events;
			/* ENOBUFS: we fell behind and lost notifications; the caller should
			 * re-list with cap_discover(). */
			return -errno;
		}
		int len = (int)r;
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
			struct cap_iface ifc;
			if (nh->nlmsg_type != RTM_NEWLINK && nh->nlmsg_type != RTM_DELLINK)
				continue;
			if (parse_link(nh, m->inv, m->node[0] ? m->node : NULL, &ifc) < 0)
				continue;
			events++;
			fn(arg, nh->nlmsg_type == RTM_NEWLINK ? CAP_LINK_NEW : CAP_LINK_DEL, &ifc);
		}
	}
}

void cap_disc_monitor_close(struct cap_disc_monitor *m)
{
	if (!m)
		return;
	close(m->fd);
	free(m);
}
