/**
 * The SDK example (docs/sdk.md quotes the part between the markers): two roles, run as two separate
 * node processes on one pool file by test/sdk/pool.test.ts.
 *
 *   node dist/test/sdk/example-share.js writer <pool> <peer principal>
 *     formats the pool if needed, creates region "demo-data" (4 MiB), maps 64 KiB of it at offset
 *     4096 writable and writes a header and a pattern there, publishes "greeting" → ("demo-data",
 *     4096) in the new name table "demo-index", grants the peer READ on the data and IOCTL on the
 *     table, prints {"published", "nodeId", "pid"} and stays attached until its stdin closes (its
 *     regions have lifetime "process": they are reclaimed once the writer is gone).
 *
 *   node dist/test/sdk/example-share.js reader <pool> <namespace> <serviceAccount>
 *     attaches as another node, running as that workload, looks "greeting" up, maps the region
 *     read-only at the published offset, checks every byte, tries a writable map (refused: it only
 *     holds READ), prints {"nodeId", "header", "verified", "writableMap"} and exits 1 if a byte differed.
 *
 * A real program imports from 'marufs' instead of the package entry's path.
 */
import { once } from 'node:events';
import { Pool, workloadId, type MarufsError } from '../../src/index.js';

// --- example start
const LENGTH = 64 * 1024;

/** What the writer puts at the published offset: a header line, then a byte pattern. */
function content(header: string): Buffer {
  const bytes = Buffer.alloc(LENGTH);
  for (let i = 0; i < LENGTH; i++) bytes[i] = (i * 31 + 7) & 0xff;
  bytes.fill(0, 0, 64).write(header, 0, 63);
  return bytes;
}

async function writer(path: string, peer: string): Promise<void> {
  const pool = await Pool.attach(path, { format: 'if-needed', createSize: 64 << 20 });
  const data = await pool.create('demo-data', { size: 4 << 20 }); // owned by this process, sized once
  const view = data.map({ write: true, offset: 4096, length: LENGTH }); // zero-copy over pool memory
  content(`hello from node ${pool.nodeId} pid ${process.pid}`).copy(view.buffer);
  view.flush(); // write back: needed on a pool in `flush` coherence mode, free on a coherent one

  const index = await pool.createNameTable('demo-index', { maxEntries: 1024, shards: 4 });
  await index.put('greeting', data, 4096); // name → (region, offset), found lock-free from any node
  await pool.grant('demo-data', peer, 'r');
  await pool.grant('demo-index', peer, 'i'); // name-table operations need IOCTL
  console.log(JSON.stringify({ published: 'greeting', nodeId: pool.nodeId, pid: process.pid }));

  process.stdin.resume(); // stay attached until told to go: "process" regions go with their owner
  await once(process.stdin, 'end');
  await pool.detach(); // closes the region, its view and the table, then leaves the pool
}

async function reader(path: string, namespace: string, serviceAccount: string): Promise<void> {
  const pool = await Pool.attach(path, { identity: { workloadId: workloadId(namespace, serviceAccount) } });
  const hit = pool.names('demo-index').get('greeting'); // undefined if not published
  if (!hit) throw new Error('"greeting" is not published');
  const region = pool.open(hit.regionName);
  const view = region.map({ offset: hit.offset, length: LENGTH }); // read-only: READ is all it holds
  view.invalidate(); // drop stale cached lines: needed in `flush` coherence mode, free otherwise
  const header = view.buffer.toString('utf8', 0, view.buffer.indexOf(0));
  const verified = view.buffer.equals(content(header));
  let writableMap = 'OK';
  try {
    region.map({ write: true });
  } catch (err) {
    writableMap = (err as MarufsError).code; // EACCES
  }
  console.log(JSON.stringify({ nodeId: pool.nodeId, header, verified, writableMap }));
  await pool.detach();
  if (!verified) process.exitCode = 1;
}
// --- example end

const [role, path, ...rest] = process.argv.slice(2);
if (role === 'writer' && path && rest.length === 1) await writer(path, rest[0]!);
else if (role === 'reader' && path && rest.length === 2) await reader(path, rest[0]!, rest[1]!);
else {
  console.error('usage: example-share writer <pool> <peer> | reader <pool> <namespace> <serviceAccount>');
  process.exitCode = 2;
}
