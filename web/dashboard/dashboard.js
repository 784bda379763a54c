// The marufs dashboard: polls this node plugin's inspection API (../api/v1/…, relative, so the same
// page works at /dashboard/ on a node plugin, behind `kubectl port-forward`, and in local mode) once
// a second and renders the pool, its nodes, regions (paged on the server), name tables, ME and GC.
// Node liveness is judged here, on this page's own clock: a node is live while its heartbeat counter
// keeps moving between polls, stalled when it has not moved for two heartbeat periods (at least
// 1.5 s), gone once its slot is released or reclaimed.

const PAGE = 100;
const POLL_MS = 1000;
/** A heartbeat still for this long (or two heartbeat periods, if longer) is shown as stalled. */
const STALL_MIN_MS = 1500;
/** How long a node whose slot disappeared stays listed as gone. */
const GONE_KEEP_MS = 60_000;
const api = (path) => new URL(`../api/v1/${path}`, window.location.href).toString();
const $ = (id) => document.getElementById(id);

let offset = 0;
let filter = '';
let total = 0;
/** nodeId → { heartbeat, movedAt } as this page saw it. */
const seen = new Map();

function bytes(n) {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

function principal(p) {
  if (!p) return '–';
  switch (p.kind) {
    case 'process':
      return `process ${p.pid}@${p.nodeId}`;
    case 'user':
      return `user ${p.uid}${p.nodeId ? `@${p.nodeId}` : ''}`;
    case 'workload':
      return `workload ${p.workloadId}${p.nodeId ? `@${p.nodeId}` : ''}`;
    case 'managed':
      return `managed ${p.managedId}`;
    default:
      return JSON.stringify(p);
  }
}

/** Replace a tbody's rows; each row is a list of cells (strings, or [text, className]). */
function rows(tbodyId, data) {
  const body = $(tbodyId);
  const frag = document.createDocumentFragment();
  for (const cells of data) {
    const tr = document.createElement('tr');
    for (const cell of cells) {
      const td = document.createElement('td');
      if (cell instanceof Node) td.append(cell);
      else if (Array.isArray(cell)) {
        td.textContent = cell[0];
        td.className = cell[1];
      } else td.textContent = String(cell);
      tr.append(td);
    }
    frag.append(tr);
  }
  body.replaceChildren(frag);
}

function facts(dlId, pairs) {
  const dl = $(dlId);
  const frag = document.createDocumentFragment();
  for (const [k, v] of pairs) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = String(v);
    frag.append(dt, dd);
  }
  dl.replaceChildren(frag);
}

function depthBars(hist) {
  const wrap = document.createElement('span');
  wrap.className = 'depths';
  const max = Math.max(1, ...hist);
  hist.forEach((n, depth) => {
    const bar = document.createElement('span');
    bar.style.height = `${Math.max(1, Math.round((n / max) * 16))}px`;
    bar.title = `${n} chain(s) of length ${depth}${depth === hist.length - 1 ? '+' : ''}`;
    wrap.append(bar);
  });
  return wrap;
}

async function getJson(path) {
  const res = await fetch(api(path), { cache: 'no-store' });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return { body: await res.json(), headers: res.headers };
}

function renderPool(node, cap) {
  const used = cap.totalBytes ? cap.usedBytes / cap.totalBytes : 0;
  $('capacity-used').style.width = `${(used * 100).toFixed(1)}%`;
  $('capacity-bar').title = `${bytes(cap.usedBytes)} of ${bytes(cap.totalBytes)} used`;
  const g = node.geometry ?? {};
  facts('pool-facts', [
    ['used', `${bytes(cap.usedBytes)} of ${bytes(cap.totalBytes)} (${(used * 100).toFixed(1)}%)`],
    ['free / largest gap', `${bytes(cap.freeBytes)} / ${bytes(cap.largestFreeBytes)}`],
    ['regions', `${cap.regionsUsed} of ${cap.regionsMax}`],
    ['pool UUID', node.poolUuid],
    ['format generation', node.formatGeneration],
    [
      'geometry',
      `${g.maxNodes ?? '?'} nodes, ${g.maxRegions ?? '?'} regions, ${g.delegationsPerRegion ?? '?'} delegations/region`,
    ],
    ['served by', `node ${node.nodeId} (${node.state})`],
  ]);
  $('pool-name').textContent = node.poolUuid ? node.poolUuid.slice(0, 8) : '';
}

function renderNodes(slots) {
  const now = performance.now();
  const present = new Set();
  const data = slots.map((s) => {
    present.add(s.nodeId);
    const prev = seen.get(s.nodeId);
    if (!prev || prev.gone || prev.heartbeat !== s.heartbeat) {
      seen.set(s.nodeId, { heartbeat: s.heartbeat, movedAt: now, slot: s });
    }
    const still = now - seen.get(s.nodeId).movedAt;
    const limit = Math.max(STALL_MIN_MS, 2 * (s.heartbeatPeriodMs || 1000));
    const live = !prev ? ['watching…', 'muted'] : still < limit ? ['live', 'live'] : ['stalled', 'stalled'];
    return [s.nodeId, s.pid, s.heartbeat, live, s.claimedAt, s.self ? 'this node' : ''];
  });
  // A node whose slot went (it detached, or survivors reclaimed it after it died) stays listed for a while.
  for (const [nodeId, v] of seen) {
    if (present.has(nodeId)) continue;
    v.gone ??= now;
    if (now - v.gone > GONE_KEEP_MS) seen.delete(nodeId);
    else data.push([nodeId, v.slot.pid, v.heartbeat, ['gone', 'stalled'], v.slot.claimedAt, '']);
  }
  rows('nodes-body', data);
}

function renderRegions(list) {
  $('regions-count').textContent = `(${total}${filter ? ` matching "${filter}"` : ''})`;
  $('regions-page').textContent = total ? `${offset + 1}–${Math.min(total, offset + PAGE)} of ${total}` : '';
  $('regions-prev').disabled = offset === 0;
  $('regions-next').disabled = offset + PAGE >= total;
  rows(
    'regions-body',
    list.map((r) => [
      r.name,
      r.id,
      r.type === 'nrht' ? 'name table' : 'data',
      r.size ? bytes(r.size) : 'unsized',
      principal(r.owner),
      r.lifetime,
      r.defaultPermissions,
      r.delegations.map((d) => `${principal(d.principal)}: ${d.permissions}`).join(', ') || '–',
      r.mappedBy.length ? r.mappedBy.map((n) => `node ${n}`).join(', ') : '–',
    ]),
  );
}

function renderTables(tables) {
  rows(
    'tables-body',
    tables.map((t) => [
      t.name,
      t.entries,
      `${((t.entries / Math.max(1, t.capacity)) * 100).toFixed(1)}%`,
      t.geometry?.shards ?? '–',
      t.longestChain,
      depthBars(t.chainDepth),
    ]),
  );
}

function meRow(label, m) {
  const holders = m.info.perShard.filter((s) => s.holder !== null).length;
  const waiters = m.info.perShard.reduce((a, s) => a + s.localWaiters, 0);
  const takeovers = m.info.perShard.reduce((a, s) => a + s.takeovers, 0);
  const w = m.stats.waitLatency;
  return [
    label,
    m.info.strategy,
    m.info.members.length,
    `${holders}/${m.info.shards}`,
    waiters,
    m.stats.counters.acquires,
    `${(w.avgNs / 1000).toFixed(1)} µs`,
    `${(w.maxNs / 1000).toFixed(1)} µs`,
    takeovers,
  ];
}

function renderMe(me) {
  rows('me-body', [meRow('global', me.global), ...me.tables.map((t) => meRow(`table #${t.regionId}`, t))]);
}

function renderGc(gc) {
  facts('gc-facts', [
    ['state', gc.state],
    ['epoch', gc.epoch],
    ['last cycle', gc.lastCycleAt ? `${gc.lastCycleAt} (${gc.lastCycleMs.toFixed?.(1) ?? gc.lastCycleMs} ms)` : '–'],
    [
      'reclaimed (total)',
      Object.entries(gc.total)
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
    ],
    ['last error', gc.lastError ?? '–'],
  ]);
}

async function poll() {
  try {
    const q = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
    if (filter) q.set('q', filter);
    const [node, cap, slots, regions, tables, me, gc] = await Promise.all([
      getJson('node'),
      getJson('capacity'),
      getJson('bootstrap'),
      getJson(`regions?${q}`),
      getJson('tables'),
      getJson('me'),
      getJson('gc'),
    ]);
    total = Number(regions.headers.get('x-total-count') ?? regions.body.length);
    renderPool(node.body, cap.body);
    renderNodes(slots.body);
    renderRegions(regions.body);
    renderTables(tables.body);
    renderMe(me.body);
    renderGc(gc.body);
    $('status').textContent = 'live';
    $('status').className = 'status ok';
    $('updated').textContent = `Last update ${new Date().toLocaleTimeString()}.`;
  } catch (err) {
    $('status').textContent = `cannot reach the node plugin: ${err.message}`;
    $('status').className = 'status err';
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

$('regions-prev').addEventListener('click', () => {
  offset = Math.max(0, offset - PAGE);
});
$('regions-next').addEventListener('click', () => {
  if (offset + PAGE < total) offset += PAGE;
});
$('regions-filter').addEventListener('input', (e) => {
  filter = e.target.value.trim();
  offset = 0;
});
poll();
