import t from 'tap';
import { readFileSync } from 'node:fs';
import { describeConfigKeys, CONFIG_KEYS } from '../src/config/index.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

t.test('the README configuration table is generated from the key table and current', async (t) => {
  t.ok(readme.includes(describeConfigKeys()), 'README.md config table is stale: run `npm run docs`');
  for (const key of CONFIG_KEYS) t.ok(readme.includes(`\`${key.name}\``), `README documents ${key.name}`);
});

t.test('the README keeps the quick start commands', async (t) => {
  t.ok(readme.includes('npm ci && npm start'));
  t.ok(readme.includes('npm ci && npm test'));
});

t.test('every HTTP endpoint is documented', async (t) => {
  for (const path of ['/register', '/state', '/event', '/metric', '/heartbeat', '/pause_heartbeat', '/resume_heartbeat', '/end', '/session', '/sessions', '/health', '/flush'])
    t.ok(readme.includes(`\`${path}\``) || readme.includes(` ${path} `) || readme.includes(`${path}\``), `README documents ${path}`);
});
