/** Connections of one client id that come and go while the daemon is still loading its mark. */
import t from 'tap';
import { startTestDaemon, until } from './support/daemon-harness.js';
import { RawWs, registerRaw } from './support/raw-ws.js';

t.test('a connection whose mark read was slow is not welcomed with a mark older than a later connection made', async (t) => {
  // The first read of the client's mark (key h!<client id>) is answered when the test says so, or
  // after 3 s (when a later connection waits for that same read); later reads are quick.
  let slowReads = 1;
  let releaseSlow: () => void = () => undefined;
  const wrapDb = (db: any) =>
    new Proxy(db, {
      get(target, prop) {
        if (prop === 'get')
          return async (key: unknown, ...rest: unknown[]) => {
            const value = await target.get(key, ...rest);
            if (typeof key === 'string' && key === 'h!slow-read' && slowReads-- > 0) await new Promise<void>((r) => ((releaseSlow = r), setTimeout(r, 3000)));
            return value;
          };
        const v = Reflect.get(target, prop);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  const { url, daemon } = await startTestDaemon(t, t.testdir(), { server_url: 'http://127.0.0.1:9' }, { wrapDb });
  const marks = (daemon.ws as any).options.marks;
  const first = await RawWs.open(url, 'slow-read'); // its mark is being read (slowly)
  t.teardown(() => first.ws.terminate());
  await until(() => slowReads === 0, 'the slow read to start');
  // A second connection of the client id, served in full (5 ops acked) and gone, its mark let go,
  // while that read is out.
  const second = await RawWs.open(url, 'slow-read');
  t.equal((await second.welcome()).acked, 0);
  const sid = await registerRaw(second, 1);
  const frame = { t: 'ops', ops: Array.from({ length: 4 }, (_, i) => ({ q: 2 + i, k: 'event', session_id: sid, name: 'e' })) };
  second.send(frame);
  await second.acked(5);
  second.close();
  await second.waitClosed();
  await until(() => marks.size === 0, 'the second connection to be gone and its mark forgotten');
  releaseSlow(); // the first read answers now, with what the store held before the second connection
  const welcome = await first.welcome().catch(() => null);
  if (welcome) {
    t.equal(welcome.acked, 5, 'a welcome tells the durable mark, 5');
    first.send(frame); // a client resends what it has no ack for: all at or below the mark
    first.send({ t: 'ops', ops: [{ q: 6, k: 'heartbeat', session_id: sid }] });
    await first.acked(6);
  } else t.equal(first.closed?.code, 4000, 'or the first connection was replaced by the second (4000)');
  t.equal(daemon.health().queue.depth, 1 + 4, 'each op once in the outbox');
});
