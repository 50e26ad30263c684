/* discover — which interfaces of a node are worth watching, and whose they are.
 *
 * Lists the interfaces of the calling thread's network namespace over rtnetlink
 * and classifies each: a pod's host-side veth (veth whose peer lives in another
 * namespace, named as CNIs name them: veth*, cali*, lxc*, eni*, ...), a bridge
 * (cni0, docker0), an overlay device (any vxlan/geneve/ipip/gre kind, flannel.1,
 * vxlan.calico, cilium_vxlan, tunl0, ...), the node NIC, or something else.  Pod
 * veths are named after their pod through the inventory file the lab (or a CNI
 * watcher) writes.  A monitor follows links appearing and disappearing
 * (RTMGRP_LINK); the caller polls its fd and calls cap_disc_monitor_read().
 *
 * Threads: a cap_inventory and a cap_disc_monitor are used by one thread at a
 * time.  Everything is owned by its handle; strings handed out stay valid until
 * the handle is freed.  Errors: 0 / negative errno.
 */
#ifndef PODCAP_DISCOVER_H
#define PODCAP_DISCOVER_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

enum cap_if_class {
	CAP_IF_OTHER = 0,
	CAP_IF_POD_VETH,
	CAP_IF_BRIDGE,
	CAP_IF_OVERLAY,
	CAP_IF_NIC,
	CAP_IF_LOOPBACK,
};
const char *cap_if_class_name(int cls); /* "pod-veth", "bridge", "overlay", "nic", ... */

#define CAP_POD_NAME_LEN 128

struct cap_iface {
	uint32_t ifindex;
	char name[IF_NAMESIZE];
	char kind[16];        /* IFLA_INFO_KIND: "veth", "bridge", "vxlan", "" for hardware */
	uint8_t cls;          /* enum cap_if_class */
	uint8_t up;           /* IFF_UP */
	int32_t link_netnsid; /* peer's netns id for veths, -1 if none */
	uint32_t master;      /* bridge ifindex, 0 if none */
	char pod[CAP_POD_NAME_LEN]; /* "namespace/name" from the inventory, "" if unknown */
};

/* Pod inventory: JSON {"pods": [{"name", "namespace", "netns", "node", "host_veth",
 * "host_ifindex", "ips": [...], "labels": {...}}]}, as lab/lab writes it.  The file
 * is input like any other: sizes, nesting and string lengths are bounded and a
 * malformed file is refused with a message. */
struct cap_inventory;
struct cap_pod {
	char name[64], namespace[64], netns[64], node[64], host_veth[IF_NAMESIZE];
	char ips[4][48];
	uint8_t n_ips;
	uint32_t host_ifindex; /* 0 = not given */
};
int cap_inventory_load(const char *path, struct cap_inventory **out, char *errbuf, size_t errlen);
size_t cap_inventory_count(const struct cap_inventory *inv);
const struct cap_pod *cap_inventory_pod(const struct cap_inventory *inv, size_t i);
/* The pod whose host-side veth is ifname on node (node NULL = any node). */
const struct cap_pod *cap_inventory_by_veth(const struct cap_inventory *inv, const char *node,
					    const char *ifname);
void cap_inventory_free(struct cap_inventory *inv);

/* Lists the interfaces of the current namespace into a malloc'd array (*out, *n;
 * free() it).  inv may be NULL; node names the node for inventory lookups (NULL =
 * any). */
int cap_discover(const struct cap_inventory *inv, const char *node, struct cap_iface **out,
		 size_t *n);

/* Classifies one interface from its name, kind and netns id (used by cap_discover
 * and the monitor; exposed for tests). */
int cap_classify(const char *name, const char *kind, int32_t link_netnsid, uint32_t flags);

/* Link monitor. */
struct cap_disc_monitor;
enum cap_link_event { CAP_LINK_NEW = 1, CAP_LINK_DEL = 2 };
typedef void (*cap_link_fn)(void *arg, int event, const struct cap_iface *ifc);
int cap_disc_monitor_open(const struct cap_inventory *inv, const char *node,
			  struct cap_disc_monitor **out);
int cap_disc_monitor_fd(const struct cap_disc_monitor *m);
/* Replaces the inventory used to name pods (after the caller reloaded it); the
 * caller frees the old one afterwards. */
void cap_disc_monitor_set_inventory(struct cap_disc_monitor *m, const struct cap_inventory *inv);
/* Reads what is pending (non-blocking) and calls fn for each link message.
 * RTM_NEWLINK also arrives for changes of a known link (up/down); callers
 * de-duplicate by ifindex. Returns the number of events or -errno. */
int cap_disc_monitor_read(struct cap_disc_monitor *m, cap_link_fn fn, void *arg);
void cap_disc_monitor_close(struct cap_disc_monitor *m);

#endif
