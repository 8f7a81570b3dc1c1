import t from 'tap';
import { aggregate, emptyAggregates, hasChanged, isAggregated, takeChanged, DEFAULT_BUCKETS } from '../src/actors/metric-aggregates.js';

t.test('counters: running totals per name + sorted tags, sent only when changed', async (t) => {
  const a = emptyAggregates(0);
  aggregate(a, { name: 'c', type: 'counter', value: 0, delta: 2, tags: ['y', 'x'] });
  aggregate(a, { name: 'c', type: 'counter', value: 0, delta: 3, tags: ['x', 'y'] });
  aggregate(a, { name: 'c', type: 'counter', value: 0, delta: 1 });
  t.same(takeChanged(a, 10), [
    { name: 'c', type: 'counter', value: 5, tags: ['x', 'y'] },
    { name: 'c', type: 'counter', value: 1 },
  ]);
  t.notOk(hasChanged(a));
  t.same(takeChanged(a, 20), [], 'nothing changed, nothing sent');
  aggregate(a, { name: 'c', type: 'counter', value: 0, delta: 1 });
  t.same(takeChanged(a, 30), [{ name: 'c', type: 'counter', value: 2 }], 'never reset: the running total');
});

t.test('histograms: per name + tags + bounds; samples in the first bucket they fit', async (t) => {
  const a = emptyAggregates(0);
  for (const v of [0.001, 0.002, 1, 100]) aggregate(a, { name: 'h', type: 'histogram', value: v, unit: 's' });
  aggregate(a, { name: 'h', type: 'histogram', value: 3, metadata: { buckets: [1, 2, 'inf'], owner: 'me' } });
  const [dflt, custom] = takeChanged(a, 1) as any[];
  t.equal(dflt.metadata.buckets.length, DEFAULT_BUCKETS.length);
  t.same(dflt.metadata.buckets.filter((b: any) => b.count > 0), [
    { le: 0.001, count: 1 },
    { le: 0.0025, count: 1 },
    { le: 1, count: 1 },
    { le: 60, count: 1 },
  ]);
  t.equal(dflt.unit, 's');
  t.equal(dflt.metadata.sum, 101.003);
  t.equal(dflt.value, 101.003 / 4);
  t.same(custom.metadata, { owner: 'me', buckets: [{ le: 1, count: 0 }, { le: 2, count: 0 }, { le: '+Inf', count: 1 }], sum: 3, count: 1 });
});

t.test('which metrics are aggregated', async (t) => {
  t.ok(isAggregated({ name: 'c', type: 'counter', value: 0, delta: 1 }));
  t.notOk(isAggregated({ name: 'c', type: 'counter', value: 7 }), 'a counter without delta passes through');
  t.ok(isAggregated({ name: 'h', type: 'histogram', value: 1 }));
  t.notOk(isAggregated({ name: 'g', type: 'gauge', value: 1 }));
  t.notOk(isAggregated({ name: 't', type: 'timer', value: 1 }));
});
