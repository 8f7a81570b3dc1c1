/**
 * The TypeScript client in one page: connect, register a session, log state, events and every
 * metric kind, read the session back, end it, close.
 *
 *   npm start &                       # a daemon on 127.0.0.1:8079 (works offline)
 *   npx tsx examples/basic.ts         # or compile it with tsc and run with node
 */
import { connect, type DataCatError } from '../src/client/index.js';

const url = process.env['DATACAT_URL'] ?? 'ws://127.0.0.1:8079';
const client = connect({ url, authToken: process.env['DATACAT_AUTH_TOKEN'] });

// Per-op refusals (a bad field, an unknown session) and connection trouble arrive here. Without a
// listener they are only counted in client.stats.errors: telemetry never crashes the app.
client.on('error', (err: DataCatError) => console.error(`datacat: ${err.code}${err.seq ? ` (op ${err.seq})` : ''}: ${err.message}`));
client.on('remap', ({ localId, serverId }) => console.log(`session ${localId} is ${serverId} on the server`));

const session = await client.register({ product: 'example-game', version: '1.2.0', parentPid: process.pid });
console.log('session', session.id);

session.updateState({ level: 1, player: { hp: 100, name: 'ada' } });
session.logEvent('level_start', { category: 'gameplay', labels: ['tutorial'], data: { level: 1 } });
session.logMetric('memory_mb', process.memoryUsage().rss / 2 ** 20, { unit: 'MB' });
session.logGauge('fps', 59.7, { unit: 'fps', tags: ['gpu:integrated'] });
session.logCounter('enemies_killed');
session.logCounter('coins', 25, { tags: ['gold'] });
session.logHistogram('frame_time', 0.016, { unit: 'seconds', buckets: [0.008, 0.016, 0.033, 'inf'] });
session.logTimer('asset_load', 0.42, { tags: ['disk'] });
session.heartbeat();

// Timers measure with performance.now() and log through logTimer when stopped.
const frame = session.timer('frame', { unit: 'milliseconds' });
await new Promise((r) => setTimeout(r, 16));
console.log('frame took', frame.stop().toFixed(1), 'ms');
const saved = await session.time('save_game', async () => {
  await new Promise((r) => setTimeout(r, 5));
  return 'slot-1';
});

try {
  JSON.parse('{ not json');
} catch (err) {
  session.logException(err, { data: { while: 'loading settings' } });
}

// High-rate producers respect backpressure like stream.write.
for (let i = 0; i < 50_000; i++) {
  if (!session.logMetric('tick', i, { type: 'gauge' })) await client.waitForCapacity();
}

session.updateState({ level: 2, player: { hp: null }, saved });
const details = await session.getDetails(); // sees everything logged above
console.log('state', details.state, '| recent events', details.events.length, '| metrics', details.metrics.length);

await session.end();
await client.close({ timeoutMs: 5000 });
console.log('done', client.stats);
