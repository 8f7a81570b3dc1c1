/**
 * The daemon process fixes V8's old-generation growing factor at startup (src/heap-growth.ts);
 * an operator who sets the flag on node's command line keeps theirs.
 */
import t from 'tap';
import { HEAP_GROWING_PERCENT, tuneHeapGrowth } from '../src/heap-growth.js';

t.test('applies the growing factor by default', async (t) => {
  t.equal(tuneHeapGrowth([]), true);
  t.equal(tuneHeapGrowth(['--enable-source-maps']), true, 'other node flags do not matter');
  t.equal(HEAP_GROWING_PERCENT, 300, 'a factor of 4, the largest V8 chooses by itself');
});

t.test("keeps the operator's own flag, in either spelling", async (t) => {
  t.equal(tuneHeapGrowth(['--heap-growing-percent=50']), false);
  t.equal(tuneHeapGrowth(['--heap_growing_percent=50']), false);
  t.equal(tuneHeapGrowth(['--max-old-space-size=512', '--heap-growing-percent', '50']), false);
});
