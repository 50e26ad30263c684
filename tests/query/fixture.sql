-- Fixture for tests/query: the flow schema of store/ (migration 0 -> 1, the
-- columns the filter language reads) with its production indexes, and 33
-- crafted flows covering every field: tunnelled and not, IPv4 and IPv6, pods,
-- apps with and without a master, NULL hosts, risks, odd characters.
-- T0 = 2024-10-01T12:00:00Z = 1727784000000000 us; flow n starts at T0 + n s.
CREATE TABLE observation_points (
 id INTEGER PRIMARY KEY, iface TEXT NOT NULL, direction TEXT NOT NULL, pod TEXT,
 linktype INTEGER NOT NULL, first_seen_us INTEGER NOT NULL, UNIQUE (iface, direction));
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE flows (
 id INTEGER PRIMARY KEY, obs_id INTEGER, pod TEXT, end_reason TEXT NOT NULL,
 family INTEGER NOT NULL, ip_proto INTEGER NOT NULL,
 src TEXT, dst TEXT, sport INTEGER, dport INTEGER, vlan INTEGER, tunnel TEXT NOT NULL,
 vni INTEGER, outer_family INTEGER, outer_proto INTEGER, outer_src TEXT, outer_dst TEXT,
 outer_sport INTEGER, outer_dport INTEGER, first_us INTEGER NOT NULL, last_us INTEGER NOT NULL,
 c2s_pkts INTEGER, s2c_pkts INTEGER, c2s_bytes INTEGER, s2c_bytes INTEGER,
 c2s_payload INTEGER, s2c_payload INTEGER, c2s_tcp_flags INTEGER, s2c_tcp_flags INTEGER,
 syn INTEGER, synack INTEGER, fin INTEGER, rst INTEGER, rtt_us INTEGER,
 c2s_retrans INTEGER, s2c_retrans INTEGER, c2s_ooo INTEGER, s2c_ooo INTEGER, frags INTEGER,
 community_id TEXT, master_id INTEGER, app_id INTEGER,
 proto_name TEXT, master_name TEXT, app_name TEXT, category TEXT, risk INTEGER, risk_names TEXT,
 host TEXT, url TEXT, http_status INTEGER, dns_rcode INTEGER, ja3c TEXT, ja3s TEXT, dpi_done INTEGER,
 packets_state TEXT NOT NULL DEFAULT 'none');
-- the production indexes (store/store.c flow_indexes)
CREATE INDEX flows_last ON flows(last_us);
CREATE INDEX flows_src_dport ON flows(src, dport);
CREATE INDEX flows_dst_dport ON flows(dst, dport);
CREATE INDEX flows_dport ON flows(dport);
CREATE INDEX flows_app ON flows(app_name COLLATE NOCASE);
CREATE INDEX flows_pod ON flows(pod) WHERE pod IS NOT NULL;
CREATE INDEX flows_outer_src ON flows(outer_src) WHERE outer_src IS NOT NULL;
CREATE INDEX flows_outer_dst ON flows(outer_dst) WHERE outer_dst IS NOT NULL;

INSERT INTO observation_points VALUES
 (1, 'eth0', 'both', NULL, 1, 0),
 (2, 'vxlan0', 'both', NULL, 1, 0),
 (3, 'veth1a2b', 'both', 'default/frontend-7d9', 1, 0),
 (4, 'veth3c4d', 'both', 'kube-system/coredns-5d78', 1, 0),
 (5, 'veth5e6f', 'both', 'default/backend-1', 1, 0),
 (6, 'trace.pcap', 'file', NULL, 1, 0),
 (7, 'vethaaaa', 'both', 'monitoring/prometheus-0', 1, 0),
 (8, 'veth9', 'ingress', 'kube-public/x', 1, 0);

INSERT INTO flows (id, obs_id, family, ip_proto, src, dst, sport, dport, tunnel, vni,
 outer_family, outer_proto, outer_src, outer_dst, outer_sport, outer_dport, first_us, last_us,
 c2s_pkts, s2c_pkts, c2s_bytes, s2c_bytes, rtt_us, c2s_retrans, s2c_retrans,
 community_id, proto_name, master_name, app_name, category, host, end_reason) VALUES
 (1, 3, 4, 6, '10.244.1.10', '10.244.2.20', 40000, 443, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 2000000, 20, 25, 5000, 20000, 1500, 0, 0,
  '1:AAAA+/bbb=', 'TLS.Facebook', 'TLS', 'Facebook', 'SocialNetwork', 'www.facebook.com', 'idle'),
 (2, 1, 4, 6, '10.244.1.10', '10.244.2.20', 40000, 443, 'vxlan', 1, 4, 17, '192.168.1.1', '192.168.1.2', 51000, 4789,
  0, 2000000, 20, 25, 6000, 21000, 1500, 0, 0,
  '1:AAAA+/bbb=', 'TLS.Facebook', 'TLS', 'Facebook', 'SocialNetwork', 'www.facebook.com', 'idle'),
 (3, 2, 4, 6, '10.244.1.10', '10.244.2.20', 40000, 443, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 2000000, 20, 25, 5500, 20500, 1500, 0, 0,
  '1:AAAA+/bbb=', 'TLS.Facebook', 'TLS', 'Facebook', 'SocialNetwork', 'www.facebook.com', 'idle'),
 (4, 4, 4, 17, '10.244.1.10', '10.244.1.11', 53000, 53, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 1000, 1, 1, 80, 120, NULL, 0, 0,
  '1:dns4=', 'DNS', 'DNS', 'DNS', 'Network', 'nosuch.default.svc.cluster.local', 'idle'),
 (5, 1, 4, 17, '10.244.1.10', '8.8.8.8', 53001, 53, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 20000, 1, 1, 70, 200, NULL, 0, 0,
  '1:dns5=', 'DNS.Google', 'DNS', 'Google', 'Web', 'www.google.com', 'idle'),
 (6, 5, 4, 6, '10.244.2.20', '10.96.0.10', 41000, 80, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 10000000, 1000, 2400, 1500000, 2000000, 200000, 3, 1,
  '1:http6=', 'HTTP', 'HTTP', 'HTTP', 'Web', 'api.example.com', 'tcp'),
 (7, 3, 6, 6, '2001:db8:1::10', '2001:db8:2::20', 44000, 443, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 30000000, 500, 1500, 100000, 1900000, 250000, 0, 0,
  '1:tls7=', 'TLS', 'TLS', 'TLS', 'Web', 'cdn.example.com', 'tcp'),
 (8, 1, 6, 58, 'fe80::1', 'fe80::2', 0, 0, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 0, 1, 1, 64, 64, NULL, 0, 0,
  '1:icmp8=', 'ICMPV6', 'ICMPV6', 'ICMPV6', 'Network', NULL, 'idle'),
 (9, 3, 4, 1, '10.244.1.10', '10.244.2.20', 0, 0, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 1000000, 2, 2, 196, 196, NULL, 0, 0,
  '1:icmp9=', 'ICMP', 'ICMP', 'ICMP', 'Network', NULL, 'idle'),
 (10, 1, 4, 6, '10.244.3.5', '10.244.1.11', 45000, 8080, 'geneve', 4096, 4, 17, '192.168.1.3', '192.168.1.1', 6081, 6081,
  0, 500000, 10, 8, 1200, 900, 900, 0, 0,
  '1:gen10=', 'Unknown', 'Unknown', 'Unknown', 'Unspecified', NULL, 'idle'),
 (11, 1, 6, 17, '2001:db8:3::5', '2001:db8:1::10', 5000, 5001, '6in4', NULL, 4, 41, '192.168.1.4', '192.168.1.1', 0, 0,
  0, 1000000, 3, 3, 300, 300, NULL, 0, 0,
  '1:six11=', NULL, NULL, NULL, NULL, NULL, 'idle'),
 (12, 1, 4, 6, '10.244.4.1', '10.244.1.10', 46000, 22, 'gre', 7, 6, 47, 'fd00::1', 'fd00::2', 0, 0,
  0, 60000000, 100, 90, 10000, 12000, 800, 0, 0,
  '1:gre12=', 'SSH', 'SSH', 'SSH', 'RemoteAccess', NULL, 'idle'),
 (13, 5, 4, 132, '10.244.5.5', '10.244.1.12', 3868, 3868, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 5000000, 10, 10, 1000, 1000, NULL, 0, 0,
  '1:sctp13=', 'Diameter', 'Diameter', 'Diameter', 'Network', NULL, 'idle'),
 (14, 3, 4, 17, '10.244.1.10', '10.0.0.1', 123, 123, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 10000, 1, 1, 90, 90, NULL, 0, 0,
  '1:ntp14=', 'NTP', 'NTP', 'NTP', 'System', NULL, 'idle'),
 (15, 1, 4, 17, '10.244.16.7', '224.0.0.251', 5353, 5353, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 0, 1, 0, 100, 0, NULL, 0, 0,
  '1:mdns15=', 'MDNS', 'MDNS', 'MDNS', 'Network', 'printer.local', 'idle'),
 (16, 3, 4, 6, '10.244.31.200', '10.244.2.20', 50000, 443, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 3600000000, 10000, 30000, 2000000, 52428800, 50000, 20, 5,
  '1:yt16=', 'TLS.YouTube', 'TLS', 'YouTube', 'Media', 'www.youtube.com', 'active'),
 (17, 3, 4, 6, '10.244.32.1', '10.244.2.20', 50001, 443, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 1000000, 10, 10, 1000, 1000, 300000, 0, 0,
  '1:tls17=', 'TLS', 'TLS', 'TLS', 'Web', 'Example.COM', 'tcp'),
 (18, 5, 4, 6, '172.16.5.4', '10.244.1.10', 60000, 22, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 3000000, 30, 20, 3000, 4000, 2000, 10, 0,
  '1:ssh18=', 'SSH', 'SSH', 'SSH', 'RemoteAccess', NULL, 'tcp'),
 (19, 1, 6, 6, '2001:db8:abcd::1', '2001:db8:2::20', 12345, 443, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 2000000, 20, 20, 2000, 8000, 15000, 0, 0,
  '1:tls19=', 'TLS.Google', 'TLS', 'Google', 'Web', 'mail.google.com', 'tcp'),
 (20, 1, 6, 17, 'fd12:3456::7', 'fd12:3456::8', 9999, 9999, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 0, 1, 0, 100, 0, NULL, 0, 0,
  '1:ula20=', NULL, NULL, NULL, NULL, NULL, 'idle'),
 (21, 6, 4, 6, '10.1.2.3', '10.1.2.4', 33333, 8443, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 1000000, 5, 5, 500, 500, 100, 0, 0,
  '1:tls21=', 'TLS', 'TLS', 'TLS', 'Web', 'internal.corp', 'flush'),
 (22, 7, 4, 6, '10.244.1.20', '10.244.1.21', 39000, 9100, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 15000, 6, 6, 700, 4000, 120, 0, 0,
  '1:prom22=', 'HTTP', 'HTTP', 'HTTP', 'Web', 'node-exporter:9100', 'tcp'),
 (23, 1, 4, 6, '10.244.6.1', '10.244.1.10', 1000, 80, 'ipip', NULL, 4, 4, '192.168.1.5', '192.168.1.1', 0, 0,
  0, 1000000, 5, 5, 600, 700, 1000, 0, 0,
  '1:ipip23=', 'HTTP', 'HTTP', 'HTTP', 'Web', 'shop.example.org', 'tcp'),
 (24, 3, 6, 17, '2001:db8:1::10', '2001:db8:1::53', 53002, 53, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 5000, 1, 1, 90, 150, NULL, 0, 0,
  '1:dns24=', 'DNS', 'DNS', 'DNS', 'Network', 'example.com', 'idle'),
 (25, 3, 4, 17, '10.244.1.10', '157.240.1.35', 50001, 443, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 20000000, 100, 200, 20000, 200000, NULL, 0, 0,
  '1:quic25=', 'QUIC.Facebook', 'QUIC', 'Facebook', 'SocialNetwork', 'graph.facebook.com', 'idle'),
 (26, 3, 4, 6, '10.244.1.10', '157.240.1.35', 50002, 80, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 1000000, 4, 4, 400, 400, 30000, 0, 0,
  '1:fb26=', 'Facebook', 'Facebook', 'Facebook', 'SocialNetwork', NULL, 'tcp'),
 (27, 4, 4, 17, '10.244.1.11', '10.244.1.10', 53, 53003, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 1000, 1, 1, 100, 100, NULL, 0, 0,
  '1:dns27=', 'DNS', 'DNS', 'DNS', 'Network', 'quote''"test.example', 'idle'),
 (28, 5, 4, 6, '10.244.2.30', '10.96.0.1', 44444, 443, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 7200000000, 50, 50, 5000, 5000, 1000000, 0, 0,
  '1:k8s28=', 'Unknown', 'Unknown', 'Unknown', 'Unspecified', NULL, 'evicted'),
 (29, 5, 4, 6, '10.244.9.9', '10.244.2.20', 55555, 80, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 1000000, 10, 10, 1000, 1000, 500, 0, 0,
  '1:xss29=', 'HTTP', 'HTTP', 'HTTP', 'Web', 'victim.example.com', 'tcp'),
 (30, 1, 4, 6, '10.244.7.7', '10.244.1.10', 47000, 443, 'erspan', 77, 4, 47, '192.168.1.6', '192.168.1.1', 0, 0,
  0, 1000000, 2, 2, 200, 200, 400, 0, 0,
  '1:ers30=', 'TLS', 'TLS', 'TLS', 'Web', 'erspan.example.com', 'tcp'),
 (31, 8, 4, 17, '10.244.8.8', '10.244.1.10', 5000, 514, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 0, 1000, 0, 1048576, 0, NULL, 0, 0,
  '1:log31=', 'Syslog', 'Syslog', 'Syslog', 'System', NULL, 'idle'),
 (32, NULL, 4, 6, '10.9.9.9', '10.9.9.10', 1, 2, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 1000000, 1, 1, 1000000, 0, NULL, 0, 0,
  NULL, NULL, NULL, NULL, NULL, NULL, 'idle'),
 (-1, 1, 4, 6, '10.244.1.10', '10.244.2.20', 40001, 443, 'none', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  0, 1000000, 3, 3, 300, 300, 1000, 0, 0,
  '1:last=', 'HTTP.Facebook', 'HTTP', 'Facebook', 'SocialNetwork', 'm.facebook.com', 'idle');

-- what the store writes for every row
UPDATE flows SET
 pod = (SELECT pod FROM observation_points o WHERE o.id = flows.obs_id),
 first_us = 1727784000000000 + (CASE WHEN id > 0 THEN id ELSE 33 END) * 1000000 + first_us,
 last_us = 1727784000000000 + (CASE WHEN id > 0 THEN id ELSE 33 END) * 1000000 + last_us,
 vlan = 0, c2s_payload = c2s_bytes / 2, s2c_payload = s2c_bytes / 2,
 c2s_tcp_flags = 0, s2c_tcp_flags = 0, syn = 0, synack = 0, fin = 0, rst = 0,
 c2s_ooo = 0, s2c_ooo = 0, frags = 0, master_id = 0, app_id = 0, risk = 0, dpi_done = 1;
UPDATE flows SET syn = 1, synack = 1 WHERE ip_proto = 6;
UPDATE flows SET risk = 32, risk_names = 'Known Protocol on Non Standard Port' WHERE id = 6;
UPDATE flows SET risk = 576, risk_names = 'Self-signed Certificate,TLS Expired Certificate',
 ja3c = 'ABC123def', ja3s = 'feed42' WHERE id = 7;
UPDATE flows SET risk = 6, risk_names = 'XSS Attack,SQL Injection', url = '/search?q=<script>',
 http_status = 500 WHERE id = 29;
UPDATE flows SET url = '/v1/items', http_status = 200 WHERE id = 6;
UPDATE flows SET url = '/metrics', http_status = 200 WHERE id = 22;
UPDATE flows SET url = '/cart', http_status = 404 WHERE id = 23;
UPDATE flows SET dns_rcode = 3 WHERE id = 4;
UPDATE flows SET dns_rcode = 0 WHERE id IN (5, 24, 27);
UPDATE flows SET vlan = 100 WHERE id = 21;
UPDATE flows SET rst = 1, fin = 0 WHERE id = 18;
UPDATE flows SET fin = 2 WHERE id IN (6, 7, 17);
UPDATE flows SET c2s_ooo = 2, s2c_ooo = 1 WHERE id = 16;
UPDATE flows SET frags = 4 WHERE id = 31;

-- schema version 2 (store/flowdb migration 1 -> 2) and its two indexes; the
-- Kubernetes names and nDPI's confidence of some flows.
ALTER TABLE flows ADD COLUMN confidence TEXT;
ALTER TABLE flows ADD COLUMN src_pod TEXT;
ALTER TABLE flows ADD COLUMN src_ns TEXT;
ALTER TABLE flows ADD COLUMN src_node TEXT;
ALTER TABLE flows ADD COLUMN src_workload TEXT;
ALTER TABLE flows ADD COLUMN src_labels TEXT;
ALTER TABLE flows ADD COLUMN dst_pod TEXT;
ALTER TABLE flows ADD COLUMN dst_ns TEXT;
ALTER TABLE flows ADD COLUMN dst_node TEXT;
ALTER TABLE flows ADD COLUMN dst_workload TEXT;
ALTER TABLE flows ADD COLUMN dst_labels TEXT;
ALTER TABLE flows ADD COLUMN service TEXT;
ALTER TABLE flows ADD COLUMN service_via TEXT;
ALTER TABLE flows ADD COLUMN outer_src_node TEXT;
ALTER TABLE flows ADD COLUMN outer_dst_node TEXT;
CREATE INDEX flows_src_pod ON flows(src_pod) WHERE src_pod IS NOT NULL;
CREATE INDEX flows_dst_pod ON flows(dst_pod) WHERE dst_pod IS NOT NULL;
UPDATE flows SET confidence = 'dpi' WHERE proto_name IS NOT NULL AND proto_name <> 'Unknown';
UPDATE flows SET confidence = 'unknown' WHERE proto_name = 'Unknown';
UPDATE flows SET confidence = 'by-port' WHERE id IN (13, 14);
UPDATE flows SET confidence = 'by-ip' WHERE id = 31;
UPDATE flows SET confidence = 'dpi-cache' WHERE id = 26;
UPDATE flows SET src_pod = 'default/frontend-7d9', src_ns = 'default', src_node = 'pc-node1',
 src_workload = 'Deployment/frontend', src_labels = '{"app":"frontend","tier":"web"}' WHERE src = '10.244.1.10';
UPDATE flows SET dst_pod = 'default/frontend-7d9', dst_ns = 'default', dst_node = 'pc-node1',
 dst_workload = 'Deployment/frontend', dst_labels = '{"app":"frontend","tier":"web"}' WHERE dst = '10.244.1.10';
UPDATE flows SET src_pod = 'default/backend-1', src_ns = 'default', src_node = 'pc-node2',
 src_workload = 'StatefulSet/backend', src_labels = '{"app":"backend"}' WHERE src = '10.244.2.20';
UPDATE flows SET dst_pod = 'default/backend-1', dst_ns = 'default', dst_node = 'pc-node2',
 dst_workload = 'StatefulSet/backend', dst_labels = '{"app":"backend"}' WHERE dst = '10.244.2.20';
UPDATE flows SET src_pod = 'kube-system/coredns-5d78', src_ns = 'kube-system', src_node = 'pc-node1',
 src_workload = 'Deployment/coredns', src_labels = '{"k8s-app":"kube-dns"}' WHERE src = '10.244.1.11';
UPDATE flows SET dst_pod = 'kube-system/coredns-5d78', dst_ns = 'kube-system', dst_node = 'pc-node1',
 dst_workload = 'Deployment/coredns', dst_labels = '{"k8s-app":"kube-dns"}' WHERE dst = '10.244.1.11';
-- seen before DNAT: the ClusterIP's Service, the backend from conntrack
UPDATE flows SET service = 'default/web:80', service_via = 'cluster-ip', dst_pod = 'default/web-2',
 dst_ns = 'default', dst_node = 'pc-node2', dst_workload = 'Deployment/web',
 dst_labels = '{"app":"web","pod-template-hash":"5f7c9"}' WHERE id = 6;
UPDATE flows SET service = 'default/kubernetes:443', service_via = 'cluster-ip',
 src_pod = 'monitoring/prometheus-0', src_ns = 'monitoring', src_node = 'pc-node2',
 src_workload = 'StatefulSet/prometheus', src_labels = '{"app.kubernetes.io/name":"prometheus"}' WHERE id = 28;
-- a host-network client: a node's address
UPDATE flows SET src_node = 'pc-node2' WHERE id = 18;
UPDATE flows SET outer_src_node = 'pc-node1', outer_dst_node = 'pc-node2' WHERE id = 2;
UPDATE flows SET outer_src_node = 'pc-node3', outer_dst_node = 'pc-node1' WHERE id = 10;
