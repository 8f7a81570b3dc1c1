/**
 * The baseline for ws-ingest (its own process): a bare `ws` server that speaks just enough of
 * docs/protocol.md for the load generator (welcome, cumulative acks, `registered`) and does
 * nothing else: each frame is decoded with msgpackr, a batch's embedded ops too (so the cost of
 * parsing every op is in the baseline, as it is in the daemon), and acked at once. No validation, no storage, no workers.
 *
 * The daemon's ratio against this sink (same generator, same machine, same run) says how much
 * of the transport's speed its durable path keeps.
 *
 * Prints `{"msg":"bare sink listening","port":N}` on stdout once it listens.
 */
import { WebSocketServer } from 'ws';
import { Packr, Unpackr } from 'msgpackr';
import { exitWithParent } from './children.js';

exitWithParent();
const opts = JSON.parse(process.argv[2] ?? '{}') as { port?: number };
const packr = new Packr({ useRecords: false });
let sessions = 0;
let clients = 0;

const wss = new WebSocketServer({ host: '127.0.0.1', port: opts.port ?? 0, perMessageDeflate: false, maxPayload: 4 * 1024 * 1024 });

wss.on('connection', (ws, req) => {
  const clientId = new URL(req.url ?? '/', 'http://sink').searchParams.get('client_id') ?? `sink-client-${++clients}`;
  // One decoder per connection, like a real server: record definitions are per message anyway.
  const unpackr = new Unpackr({ useRecords: true, mapsAsObjects: true });
  let acked = 0;
  ws.send(
    packr.pack({ t: 'welcome', client_id: clientId, acked: 0, registered: [], limits: { max_frame_bytes: 4 * 1024 * 1024, max_ops_per_frame: 10_000 }, version: 'bare-sink' }),
  );
  ws.on('message', (data: Buffer, isBinary) => {
    if (!isBinary) return ws.close(1003);
    let frame: { t?: string; ops?: Array<{ q: number; k: string }> | Uint8Array; q?: number; n?: number };
    try {
      frame = unpackr.unpack(data);
      // A batch's ops are decoded too: the daemon decodes each op once, so must the baseline.
      if (frame.t === 'batch' && frame.ops instanceof Uint8Array) {
        const ops = unpackr.unpack(frame.ops) as unknown[];
        if (ops.length !== frame.n) return ws.close(1008);
        acked = frame.q! + frame.n! - 1;
        ws.send(packr.pack({ t: 'ack', acked }));
        return;
      }
    } catch {
      return ws.close(1007);
    }
    if (frame.t !== 'ops' || !Array.isArray(frame.ops)) return;
    let registered: Array<[number, string]> | undefined;
    for (const op of frame.ops) {
      if (op.q > acked) acked = op.q;
      if (op.k === 'register') (registered ??= []).push([op.q, `sink-session-${++sessions}`]);
    }
    ws.send(packr.pack(registered ? { t: 'ack', acked, registered } : { t: 'ack', acked }));
  });
  ws.on('error', () => ws.terminate());
});

wss.on('listening', () => {
  const { port } = wss.address() as { port: number };
  process.stdout.write(JSON.stringify({ msg: 'bare sink listening', port }) + '\n');
});

process.on('SIGTERM', () => process.exit(0));
