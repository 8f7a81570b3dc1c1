/** Flow control of WebSocket connections: sockets the daemon stops reading are read again. */
import t from 'tap';
import { startTestDaemon, until } from './support/daemon-harness.js';
import { RawWs } from './support/raw-ws.js';

/**
 * LevelDB batches of more than `bigBytes` wait while `held` is set: while one waits, what it
 * holds counts as pending bytes (the daemon's write backlog).
 */
function holdableBigWrites(bigBytes: number) {
  let release: (() => void) | null = null;
  let held: Promise<void> | null = null;
  const wrap = (db: any) =>
    new Proxy(db, {
      get(target, prop) {
        if (prop === 'batch')
          return () => {
            const batch = target.batch();
            const put = batch.put.bind(batch);
            const write = batch.write.bind(batch);
            let bytes = 0;
            return Object.assign(batch, {
              put: (key: string, value: Uint8Array) => ((bytes += value.byteLength), put(key, value)),
              write: async (options: unknown) => (bytes > bigBytes && held && (await held), write(options)),
            });
          };
        const v = Reflect.get(target, prop);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  return {
    wrap,
    hold(): void {
      held = new Promise((r) => (release = r));
    },
    release(): void {
      held = null;
      release?.();
    },
  };
}

const MAX_PENDING = 1024 * 1024;

t.test('a socket paused for a write backlog that came and went within one batch is read again', async (t) => {
  const disk = holdableBigWrites(MAX_PENDING);
  t.teardown(() => disk.release());
  const { url, api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9', max_pending_bytes: MAX_PENDING }, { wrapDb: disk.wrap });
  const sid = await api.register();
  const reader = await RawWs.open(url, 'reader');
  t.teardown(() => reader.close());
  await reader.welcome();
  // The daemon looks at its backlog after every batch written. The case: a backlog that no such
  // look saw, because it was one large write set, written in a batch of its own. A batch of the
  // actors' duties (once a second) written while it waits would see it: then it is tried again.
  let seenAtAWrite = false;
  daemon.commits.on('written', () => {
    if (daemon.commits.pendingBytes > MAX_PENDING) seenAtAWrite = true;
  });
  const big = { session_id: sid, name: 'big', data: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`part${i}`, 'x'.repeat(60_000)])) };
  let id = 0;
  for (let attempt = 1; attempt <= 5; attempt++) {
    await daemon.commits.idle();
    seenAtAWrite = false;
    disk.hold();
    const posted = api.post('/event', big);
    await until(() => daemon.commits.pendingBytes > MAX_PENDING, 'the backlog to pass max_pending_bytes');
    // The reader asks for something meanwhile: its connection sees the backlog and stops reading.
    reader.send({ t: 'get_session', id: ++id, session_id: 'nobody' });
    await reader.next((f) => f.t === 'error' && f.id === id);
    disk.release();
    t.equal((await posted).status, 200);
    if (!seenAtAWrite) break;
    t.comment(`attempt ${attempt}: a batch written meanwhile saw the backlog; again`);
  }
  t.notOk(seenAtAWrite, 'no batch written while the backlog lasted saw it');
  t.ok(daemon.commits.pendingBytes < MAX_PENDING, 'the backlog is gone');
  reader.send({ t: 'get_session', id: ++id, session_id: sid });
  const answer = await reader.next((f) => f.id === id, 5000).catch((err: Error) => err);
  t.notOk(answer instanceof Error, `the next request is read and answered (${answer instanceof Error ? answer.message : 'answered'})`);
  t.equal(daemon.ws.pausedCount(), 0, 'no socket is left unread');
});
