// The flow detail panel: everything /api/v1/flows/{id} says about one record (both
// ends with their Kubernetes names, both directions, TCP, nDPI, the tunnel), the
// other records of the same connection at other observation points, and the packets
// (pcap download; the command line that feeds Wireshark).

import { getJSON, download, apiUrl, token, ApiError } from './api.js';
import {
  el, replace, fmtTime, fmtDur, fmtBytes, fmtInt, addrPort, protoName, tcpFlags,
  flowBytes, flowPackets, quoteValue,
} from './util.js';

const has = (v) => v !== null && v !== undefined && v !== '';

// A two-column table of the rows whose value is there (a dash for the others when
// keep is set, so a missing RTT reads as "none measured", not as a layout gap).
function kv(rows) {
  return el('table', { class: 'kv' }, el('tbody', null, rows.filter(Boolean).map(([k, v, opts = {}]) =>
    el('tr', null, el('th', { scope: 'row' }, k),
      el('td', { class: opts.cls || '', title: opts.title || '' }, has(v) ? String(v) : '–')))));
}

function section(title, ...body) {
  return el('section', { class: 'detail-section' }, el('h3', null, title), ...body);
}

// Pod labels: the API gives an object (docs/api.md); older answers a JSON text.
function labelsText(v) {
  if (!v) return '';
  let o = v;
  if (typeof v === 'string') {
    try { o = JSON.parse(v); } catch { return v; /* not JSON: show it as it is */ }
  }
  if (o && typeof o === 'object') return Object.entries(o).map(([k, x]) => `${k}=${x}`).join(', ');
  return String(v);
}

function secondsParam(us) {
  return (Number(us) / 1e6).toFixed(6);
}

export class Detail {
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.id = null;
    this.abort = null;
  }

  close() {
    if (this.id === null && this.root.hidden) return;
    if (this.abort) this.abort.abort();
    this.id = null;
    this.root.hidden = true;
    document.body.classList.remove('detail-open');
    replace(this.root);
  }

  async open(id, force = false) {
    if (id === this.id && !force) return;
    if (!/^\d{1,20}$/.test(id)) {
      this.id = id;
      this.show(el('p', { class: 'error' }, 'Not a flow id.'));
      return;
    }
    if (this.abort) this.abort.abort();
    const ac = new AbortController();
    this.abort = ac;
    const hadFocus = this.root.contains(document.activeElement);
    this.id = id;
    this.show(el('p', { class: 'hint' }, `Loading flow ${id}…`));
    let j;
    try {
      j = await getJSON(`/api/v1/flows/${id}`, null, { signal: ac.signal });
    } catch (e) {
      if (ac.signal.aborted) return;
      this.show(el('p', { class: 'error' },
        e instanceof ApiError && e.status === 404 ? `Flow ${id} is not in the database (retention may have deleted it).`
          : `Could not load flow ${id}: ${e.message}`));
      return;
    }
    if (ac.signal.aborted || !j || !j.flow) return;
    this.show(...this.body(j.flow, Array.isArray(j.related) ? j.related : []));
    if (hadFocus || document.activeElement === document.body) this.closeBtn.focus();
  }

  show(...content) {
    this.closeBtn = el('button', {
      type: 'button', class: 'close', 'aria-label': 'Close (Esc)', title: 'Close (Esc)',
      on: { click: () => this.ctx.setState({ flow: '' }) },
    }, '✕');
    replace(this.root,
      el('div', { class: 'detail-head' }, el('h2', null, `Flow ${this.id}`), this.closeBtn),
      el('div', { class: 'detail-body' }, ...content));
    this.root.hidden = false;
    document.body.classList.add('detail-open');
  }

  body(f, related) {
    const tunnelled = f.tunnel && f.tunnel !== 'none';
    const title = el('p', { class: 'detail-title' },
      el('span', { class: 'mono' }, addrPort(f.src, f.sport)), ' → ',
      el('span', { class: 'mono' }, addrPort(f.dst, f.dport)), ' ',
      el('span', { class: 'chip' }, protoName(f.ip_proto)),
      has(f.proto_name) ? el('span', { class: 'chip app' }, f.proto_name) : null,
      has(f.host) ? el('span', { class: 'host' }, f.host) : null);

    const pcapName = `podcap-flow-${f.id}.pcapng`;
    const pad = 120e6; // related records are found within two minutes (docs/api.md)
    const connFilter = `community_id == ${quoteValue(f.community_id || '')}`;
    const connParams = {
      filter: connFilter, from: secondsParam(f.first_us - pad), to: secondsParam(f.last_us + pad),
    };
    const errLine = el('p', { class: 'error', hidden: true });
    const fail = (e) => { errLine.hidden = false; errLine.textContent = 'Download: ' + e.message; };
    // nothing stored (no packet store, --store-first, retention): nothing to download
    const none = f.packets_state === 'none' || f.packets_state === 'expired';
    const buttons = el('div', { class: 'buttons' },
      el('button', {
        type: 'button', class: none ? '' : 'primary', id: 'download-pcap', disabled: none,
        title: none ? 'No packets of this record are stored'
          : 'The stored packets of this record (pcapng), as podcap export --flow writes them',
        on: { click: () => download(`/api/v1/flows/${f.id}/pcap`, null, pcapName).catch(fail) },
      }, 'Download pcap'),
      f.community_id ? el('button', {
        type: 'button', id: 'download-conn',
        title: 'The packets of every record of this connection (all observation points), in one pcapng',
        on: { click: () => download('/api/v1/pcap', connParams, `podcap-conn-${f.id}.pcapng`).catch(fail) },
      }, 'pcap of the connection') : null,
      f.community_id ? el('button', {
        type: 'button', title: 'List the records of this connection in the table',
        on: { click: () => this.ctx.setState({ filter: connFilter, flow: '', view: 'flows', range: 'all' }) },
      }, 'Show its records') : null,
      this.wireshark(f));

    const stored = f.packets_state;
    const sections = [
      title, buttons, errLine,
      stored && stored !== 'stored' ? el('p', { class: 'warn-line' },
        stored === 'none' ? 'No packets of this flow are stored (no packet store, or --store-first).'
          : stored === 'expired' ? 'The packets of this flow were deleted by the store\'s retention.'
            : `Packets: ${stored} (some were not stored).`) : null,
      section('Ends',
        el('table', { class: 'kv ends' },
          el('thead', null, el('tr', null, el('th'), el('th', { scope: 'col' }, 'Client'), el('th', { scope: 'col' }, 'Server'))),
          el('tbody', null,
            this.pair('Address', f.src, f.dst, 'mono'),
            this.pair('Port', f.sport, f.dport),
            this.pair('Pod', f.src_pod, f.dst_pod),
            this.pair('Namespace', f.src_ns, f.dst_ns),
            this.pair('Node', f.src_node, f.dst_node),
            this.pair('Workload', f.src_workload, f.dst_workload),
            this.pair('Labels', labelsText(f.src_labels), labelsText(f.dst_labels), 'small')))),
      kv([
        ['Service', has(f.service) ? f.service + (has(f.service_via) ? ` (via ${f.service_via})` : '') : ''],
        ['Protocol', `${protoName(f.ip_proto)} (IPv${f.family})` + (f.vlan ? `, VLAN ${f.vlan}` : '')],
      ]),
      section('Directions',
        el('table', { class: 'kv dirs' },
          el('thead', null, el('tr', null, el('th'),
            el('th', { scope: 'col', class: 'num' }, 'Packets'), el('th', { scope: 'col', class: 'num' }, 'Bytes'),
            el('th', { scope: 'col', class: 'num' }, 'Payload'), el('th', { scope: 'col' }, 'TCP flags'),
            el('th', { scope: 'col', class: 'num' }, 'Retrans'), el('th', { scope: 'col', class: 'num' }, 'Out of order'))),
          el('tbody', null,
            this.dir('client → server', f.c2s_pkts, f.c2s_bytes, f.c2s_payload, f.c2s_tcp_flags, f.c2s_retrans, f.c2s_ooo, f.ip_proto),
            this.dir('server → client', f.s2c_pkts, f.s2c_bytes, f.s2c_payload, f.s2c_tcp_flags, f.s2c_retrans, f.s2c_ooo, f.ip_proto),
            el('tr', { class: 'total' }, el('th', { scope: 'row' }, 'both'),
              el('td', { class: 'num' }, fmtInt(flowPackets(f))), el('td', { class: 'num' }, fmtBytes(flowBytes(f))),
              el('td', { class: 'num' }, fmtBytes((f.c2s_payload || 0) + (f.s2c_payload || 0))),
              el('td'), el('td'), el('td'))))),
      f.ip_proto === 6 ? section('TCP', kv([
        ['Handshake RTT', has(f.rtt_us) ? fmtDur(f.rtt_us) : 'not measured'],
        ['SYN / SYN+ACK', `${f.syn ?? 0} / ${f.synack ?? 0}`],
        ['FIN / RST', `${f.fin ?? 0} / ${f.rst ?? 0}`],
        ['Retransmissions', `${(f.c2s_retrans || 0) + (f.s2c_retrans || 0)}`],
      ])) : null,
      section('Application (nDPI)', kv([
        ['App', f.proto_name],
        ['Master / app', has(f.master_name) || has(f.app_name) ? `${f.master_name || '–'} / ${f.app_name || '–'}` : ''],
        ['Category', f.category],
        ['Confidence', f.confidence, { title: 'dpi, dpi-cache, by-port, by-ip (a guess), unknown' }],
        ['Risk', f.risk ? `${f.risk_names || ''} (bitmap ${f.risk})` : 'none', { cls: f.risk ? 'bad' : '' }],
        ['Host', f.host, { cls: 'mono wrap' }],
        ['URL', f.url, { cls: 'mono wrap' }],
        ['HTTP status', f.http_status],
        ['DNS rcode', f.dns_rcode],
        ['JA3 (client)', f.ja3c, { cls: 'mono' }],
        ['JA3S (server)', f.ja3s, { cls: 'mono' }],
      ])),
      tunnelled ? section('Tunnel', kv([
        ['Encapsulation', f.tunnel],
        ['VNI / key', f.vni],
        ['Outer', `${addrPort(f.outer_src, f.outer_sport)} → ${addrPort(f.outer_dst, f.outer_dport)}`, { cls: 'mono' }],
        ['Outer nodes', has(f.outer_src_node) || has(f.outer_dst_node) ? `${f.outer_src_node || '?'} → ${f.outer_dst_node || '?'}` : ''],
      ])) : null,
      section('Record', kv([
        ['Seen on', f.iface + (has(f.pod) ? ` (pod ${f.pod})` : '')],
        ['First packet', fmtTime(f.first_us) + ' UTC'],
        ['Last packet', fmtTime(f.last_us) + ' UTC'],
        ['Duration', fmtDur(f.last_us - f.first_us)],
        ['Ended by', f.end_reason],
        ['IP fragments', f.frags],
        ['Packets stored', f.packets_state],
        ['Community ID', f.community_id, { cls: 'mono wrap' }],
      ])),
      section(`Same connection elsewhere (${related.length})`, related.length === 0
        ? el('p', { class: 'hint' }, 'No other record of this connection (same Community ID) at another observation point.')
        : this.relatedTable(related)),
    ];
    return sections;
  }

  pair(label, a, b, cls = '') {
    return el('tr', null, el('th', { scope: 'row' }, label),
      el('td', { class: cls }, has(a) ? String(a) : '–'), el('td', { class: cls }, has(b) ? String(b) : '–'));
  }

  dir(label, pkts, bytes, payload, flags, retrans, ooo, proto) {
    const tcp = proto === 6;
    return el('tr', null, el('th', { scope: 'row' }, label),
      el('td', { class: 'num' }, fmtInt(pkts || 0)),
      el('td', { class: 'num', title: fmtInt(bytes || 0) + ' bytes' }, fmtBytes(bytes || 0)),
      el('td', { class: 'num' }, fmtBytes(payload || 0)),
      el('td', { class: 'mono' }, tcp ? tcpFlags(flags) : ''),
      el('td', { class: 'num' }, tcp ? String(retrans || 0) : ''),
      el('td', { class: 'num' }, tcp ? String(ooo || 0) : ''));
  }

  relatedTable(related) {
    return el('div', { class: 'table-scroll' }, el('table', { class: 'flows related' },
      el('thead', null, el('tr', null, ['ID', 'Seen on', 'Tunnel', 'Client → server', 'Packets', 'Bytes', 'First packet']
        .map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', null, related.map((r) => el('tr', {
        tabindex: '0', dataset: { id: r.id }, title: 'Open this record',
        on: {
          click: () => this.ctx.setState({ flow: r.id }),
          keydown: (e) => { if (e.key === 'Enter') this.ctx.setState({ flow: r.id }); },
        },
      },
      el('td', { class: 'num' }, r.id),
      el('td', null, r.iface || ''),
      el('td', null, r.tunnel && r.tunnel !== 'none' ? r.tunnel + (has(r.vni) ? '/' + r.vni : '') : ''),
      el('td', { class: 'mono' }, `${addrPort(r.src, r.sport)} → ${addrPort(r.dst, r.dport)}`),
      el('td', { class: 'num' }, fmtInt(flowPackets(r))),
      el('td', { class: 'num' }, fmtBytes(flowBytes(r))),
      el('td', { class: 'time' }, fmtTime(r.first_us)))))));
  }

  // The command lines that put this flow's packets into Wireshark: live from the agent
  // (podcap sniff, GET /api/v1/stream) and the stored ones (the pcap endpoints).
  wireshark(f) {
    const origin = location.origin;
    const shq = (t) => `'${String(t).replace(/'/g, "'\\''")}'`;
    const tok = token() ? ' --token-file TOKEN_FILE' : '';
    const auth = token() ? ' -H "Authorization: Bearer $(cat TOKEN_FILE)"' : '';
    const filt = `community_id == ${quoteValue(f.community_id || '')}`;
    const live = `podcap sniff --server ${origin}${tok} --filter ${shq(filt)} | wireshark -k -i -`;
    const pods = [f.src_pod, f.dst_pod].filter(Boolean);
    const livePod = pods.length ? `podcap sniff --server ${origin}${tok} ${shq(pods[0])} | wireshark -k -i -` : null;
    const stored = `curl -s${auth} ${shq(origin + apiUrl(`/api/v1/flows/${f.id}/pcap`))} | wireshark -k -i -`;
    const conn = `podcap export --server ${origin}${tok} --filter ${shq(filt)} -w - | wireshark -k -i -`;
    const line = (text) => {
      const code = el('code', { class: 'cmd' }, text);
      return el('div', { class: 'cmd-line' }, code, el('button', {
        type: 'button', class: 'small', on: {
          click: async (e) => {
            try {
              await navigator.clipboard.writeText(text);
              e.target.textContent = 'Copied';
            } catch {
              const sel = getSelection();
              const range = document.createRange();
              range.selectNodeContents(code);
              sel.removeAllRanges();
              sel.addRange(range);
              e.target.textContent = 'Selected: Ctrl+C';
            }
          },
        },
      }, 'Copy'));
    };
    return el('details', { class: 'wireshark', id: 'wireshark' },
      el('summary', { class: 'button' }, 'Stream to Wireshark'),
      el('div', { class: 'menu-body wide' },
        el('p', null, 'Live, this connection\'s packets as the agent captures them (from its next record on):'), line(live),
        livePod ? el('p', null, `Live, every packet of pod ${pods[0]}:`) : null, livePod ? line(livePod) : null,
        el('p', null, 'The stored packets of this record:'), line(stored),
        el('p', null, 'The stored packets of every record of the connection:'), line(conn),
        el('p', { class: 'hint' }, 'podcap sniff streams from a running agent (podcap run --listen), not from podcap serve.')));
  }
}
