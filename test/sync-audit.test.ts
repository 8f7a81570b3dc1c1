import t from 'tap';
import { recountCounters } from '../dist/src/outbox/recount.js';
import { startFakeUpstream } from './support/fake-upstream.js';
import { startTestDaemon, until } from './support/daemon-harness.js';

t.test('two /queue/replay calls at once replay each dead letter once', async (t) => {
  const upstream = await startFakeUpstream();
  t.teardown(() => upstream.close());
  const { api, daemon } = await startTestDaemon(t, t.testdir(), { server_url: upstream.url });
  const id = await api.register();
  upstream.addFault({ match: (r) => r.kind === 'event', status: 400 });
  for (let i = 0; i < 5; i++) await api.ok('/event', { session_id: id, name: 'e', data: { i } });
  await api.ok('/flush?wait=1', {});
  t.equal(daemon.health().queue.dead_letters, 5, 'five dead letters');
  upstream.clearFaults();

  // Two operators (or a retrying script) at once: the second call reads the dead letters while
  // the first one's move is being written.
  const answers = await Promise.all([daemon.replay(), daemon.replay()]);
  t.equal(answers[0] + answers[1], 5, `five replayed in all (${answers.join(' + ')})`);
  await api.ok('/flush?wait=1', {});
  await until(() => upstream.applied({ kind: 'event' }).length >= 5, 'the replayed events delivered');
  await new Promise((r) => setTimeout(r, 200));
  t.same(upstream.applied({ kind: 'event' }).map((r) => r.body.data.i).sort(), [0, 1, 2, 3, 4], 'each event once');
  const { stored, counted } = await recountCounters(daemon.db);
  t.equal(stored.dead, counted.dead, 'dead-letter counter exact');
  t.equal(stored.depth, counted.depth, 'depth counter exact');
  t.equal(daemon.health().queue.dead_letters, 0);
});
