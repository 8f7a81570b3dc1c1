import os from 'node:os';
import path from 'node:path';
import t from 'tap';

import {
  CONFIG_KEYS,
  ConfigError,
  describeConfigKeys,
  envVarName,
  loadConfig,
  type LoadConfigOptions,
} from '../src/config/index.js';

/** A fake HOME so data_dir defaults never depend on the machine running the tests. */
const HOME = '/home/tester';

function load(opts: Partial<LoadConfigOptions> & { cwd: string }) {
  return loadConfig({ argv: [], env: { HOME }, ...opts });
}

/** The assertions throwsConfigError needs; satisfied by the root test and every subtest. */
type Asserts = Pick<typeof t, 'ok' | 'match' | 'notMatch'>;

/** Asserts loadConfig throws a single-line ConfigError whose message matches every pattern. */
function throwsConfigError(t: Asserts, opts: Partial<LoadConfigOptions> & { cwd: string }, ...patterns: (string | RegExp)[]) {
  let caught: unknown;
  try {
    load(opts);
  } catch (err) {
    caught = err;
  }
  t.ok(caught instanceof ConfigError, 'throws ConfigError');
  const message = (caught as Error | undefined)?.message ?? '';
  t.notMatch(message, /\n/, 'message is one line');
  for (const p of patterns) {
    if (typeof p === 'string') t.ok(message.includes(p), `message mentions ${JSON.stringify(p)}: ${message}`);
    else t.match(message, p);
  }
  return message;
}


t.test('defaults', async (t) => {
  const cwd = t.testdir({});
  const { config, warnings, configFile } = load({ cwd });
  t.same(warnings, []);
  t.equal(configFile, null);
  t.match(config, {
    daemon_port: 8079,
    host: '127.0.0.1',
    server_url: 'http://localhost:9090',
    api_key: null,
    enable_compression: false,
    tls_insecure_skip_verify: false,
    batch_interval_seconds: 5,
    max_batch_size: 100,
    heartbeat_timeout_seconds: 60,
    data_dir: path.join(HOME, '.local/share/datacat-daemon/port-8079'),
    retry_base_ms: 500,
    retry_max_ms: 30000,
    queue_max_bytes: 1073741824,
    overflow: 'block',
    durability: 'process',
    auth_token: null,
    max_body_bytes: 4194304,
    max_depth: 64,
    max_string_length: 65536,
    max_name_length: 256,
    max_frame_bytes: 4194304,
    max_ops_per_frame: 10000,
    register_timeout_ms: 500,
    upstream_timeout_ms: 10000,
    sync_concurrency: 32,
    recent_events_limit: 100,
    recent_metrics_limit: 100,
    exit_with_parent: false,
    upstream_heartbeat_seconds: 30,
    log_level: 'info',
  });
  t.equal(config.workers, Math.max(2, Math.min(8, os.availableParallelism())));
  t.same(Object.keys(config), CONFIG_KEYS.map((k) => k.name), 'exactly the table keys, in table order');
  t.ok(Object.isFrozen(config), 'config is frozen');
});

t.test('precedence: defaults < file < env < flags', async (t) => {
  const cwd = t.testdir({
    'daemon_config.json': JSON.stringify({ host: 'file-host', max_depth: 10, log_level: 'debug', workers: 3 }),
  });
  const env = {
    HOME,
    DATACAT_MAX_DEPTH: '20',
    DATACAT_LOG_LEVEL: 'warn',
    DATACAT_HOST: 'env-host',
  };
  const argv = ['--log-level', 'error'];

  const fileOnly = load({ cwd }).config;
  t.equal(fileOnly.host, 'file-host', 'file overrides default');

  const { config } = load({ cwd, env, argv });
  t.equal(config.workers, 3, 'file only');
  t.equal(config.host, 'env-host', 'env overrides file');
  t.equal(config.max_depth, 20, 'env overrides file');
  t.equal(config.log_level, 'error', 'flag overrides env and file');
  t.equal(config.max_batch_size, 100, 'default when nobody sets it');
});

t.test('config file discovery', async (t) => {
  const dir = t.testdir({
    'daemon_config.json': JSON.stringify({ host: 'from-cwd' }),
    'flag.json': JSON.stringify({ host: 'from-flag' }),
    sub: { 'env.json': JSON.stringify({ host: 'from-env' }) },
  });

  t.test('cwd daemon_config.json when nothing is named', async (t) => {
    const r = load({ cwd: dir });
    t.equal(r.config.host, 'from-cwd');
    t.equal(r.configFile, path.join(dir, 'daemon_config.json'));
  });

  t.test('DATACAT_CONFIG beats cwd file, relative to cwd', async (t) => {
    const r = load({ cwd: dir, env: { HOME, DATACAT_CONFIG: 'sub/env.json' } });
    t.equal(r.config.host, 'from-env');
    t.equal(r.configFile, path.join(dir, 'sub', 'env.json'));
    t.same(r.warnings, [], 'DATACAT_CONFIG is not reported as an unknown key');
  });

  t.test('--config beats DATACAT_CONFIG', async (t) => {
    const env = { HOME, DATACAT_CONFIG: 'sub/env.json' };
    t.equal(load({ cwd: dir, env, argv: ['--config', 'flag.json'] }).config.host, 'from-flag');
    const r = load({ cwd: dir, env, argv: [`--config=${path.join(dir, 'flag.json')}`] });
    t.equal(r.config.host, 'from-flag');
    t.equal(r.configFile, path.join(dir, 'flag.json'));
  });

  t.test('no file anywhere is fine and nothing is created', async (t) => {
    const empty = t.testdir({});
    t.equal(load({ cwd: empty }).configFile, null);
    t.notOk((await import('node:fs')).existsSync(path.join(empty, 'daemon_config.json')));
  });
});

t.test('flag forms', async (t) => {
  const cwd = t.testdir({});

  t.test('--port alias and --daemon-port, last one wins', async (t) => {
    t.equal(load({ cwd, argv: ['--port', '1234'] }).config.daemon_port, 1234);
    t.equal(load({ cwd, argv: ['--port=0'] }).config.daemon_port, 0);
    t.equal(load({ cwd, argv: ['--port', '1', '--daemon-port', '2'] }).config.daemon_port, 2);
    t.equal(load({ cwd, argv: ['--daemon-port=2', '--port=1'] }).config.daemon_port, 1);
  });

  t.test('--key=value and --key value', async (t) => {
    const { config } = load({
      cwd,
      argv: ['--server-url=https://x.example/', '--api-key', 'k=v', '--batch-interval-seconds=0.5', '--overflow', 'drop_oldest'],
    });
    t.equal(config.server_url, 'https://x.example', 'one trailing slash stripped');
    t.equal(config.api_key, 'k=v', 'value may contain "="');
    t.equal(config.batch_interval_seconds, 0.5);
    t.equal(config.overflow, 'drop_oldest');
  });

  t.test('positional arguments and anything after -- are ignored', async (t) => {
    const r = load({ cwd, argv: ['start', '--port', '5', 'extra', '--', '--port', '6', '--bogus'] });
    t.equal(r.config.daemon_port, 5);
    t.same(r.warnings, []);
  });

  t.test('a value flag with no value is an error', async (t) => {
    throwsConfigError(t, { cwd, argv: ['--host'] }, '--host', 'needs a value');
    throwsConfigError(t, { cwd, argv: ['--host', '--port', '1'] }, '--host', 'needs a value');
    throwsConfigError(t, { cwd, argv: ['--config'] }, '--config');
  });
});

t.test('boolean forms', async (t) => {
  const cwd = t.testdir({ 'daemon_config.json': JSON.stringify({ enable_compression: true }) });
  const ec = (argv: string[], env: NodeJS.ProcessEnv = {}) =>
    load({ cwd, argv, env: { HOME, ...env } }).config.enable_compression;

  t.equal(ec([]), true, 'JSON true');
  t.equal(ec(['--no-enable-compression']), false, '--no-flag');
  t.equal(ec(['--no-enable-compression', '--enable-compression']), true, 'bare flag, last wins');
  t.equal(ec(['--enable-compression=false']), false, '--flag=false');
  t.equal(ec(['--enable-compression=YES']), true, '--flag=YES');
  for (const [word, value] of [['true', true], ['FALSE', false], ['1', true], ['0', false], ['yes', true], ['No', false]] as const) {
    t.equal(ec([], { DATACAT_ENABLE_COMPRESSION: word }), value, `env ${word}`);
  }
  t.equal(ec(['--enable-compression'], { DATACAT_ENABLE_COMPRESSION: 'no' }), true, 'flag beats env');

  const r = load({ cwd, argv: ['--tls-insecure-skip-verify', 'start'] });
  t.equal(r.config.tls_insecure_skip_verify, true, 'bare boolean flag does not eat the next argument');
  // The value as a separate argument: dropping it would turn `false` into true (TLS checks off).
  t.equal(ec(['--enable-compression', 'false']), false, '--flag false');
  t.equal(ec(['--enable-compression', 'No', '--workers', '2']), false, '--flag No, then other flags');
  t.equal(load({ cwd, argv: ['--tls-insecure-skip-verify', 'false'] }).config.tls_insecure_skip_verify, false, '--tls-insecure-skip-verify false');
  t.equal(load({ cwd, argv: ['--tls-insecure-skip-verify', '1'] }).config.tls_insecure_skip_verify, true, '--flag 1');

  throwsConfigError(t, { cwd, argv: ['--no-enable-compression=true'] }, '--no-enable-compression', 'takes no value');
});

t.test('JSON value shapes', async (t) => {
  t.test('daemon_port as string or number', async (t) => {
    const asString = t.testdir({ 'daemon_config.json': '{"daemon_port": "4567"}' });
    t.equal(load({ cwd: asString }).config.daemon_port, 4567);
    const asNumber = t.testdir({ 'daemon_config.json': '{"daemon_port": 4568}' });
    t.equal(load({ cwd: asNumber }).config.daemon_port, 4568);
  });

  t.test('null means unset', async (t) => {
    const cwd = t.testdir({ 'daemon_config.json': '{"api_key": null, "auth_token": null, "host": null}' });
    const { config } = load({ cwd });
    t.equal(config.api_key, null);
    t.equal(config.auth_token, null);
    t.equal(config.host, '127.0.0.1');
    t.equal(load({ cwd, env: { HOME, DATACAT_API_KEY: 'secret' } }).config.api_key, 'secret');
  });

  t.test('api_key string, cleared by empty env var', async (t) => {
    const cwd = t.testdir({ 'daemon_config.json': '{"api_key": "abc"}' });
    t.equal(load({ cwd }).config.api_key, 'abc');
    t.equal(load({ cwd, env: { HOME, DATACAT_API_KEY: '' } }).config.api_key, null);
  });

  t.test('UTF-8 BOM is tolerated', async (t) => {
    const cwd = t.testdir({ 'daemon_config.json': '\uFEFF{"host": "bom"}' });
    t.equal(load({ cwd }).config.host, 'bom');
  });
});

t.test('unknown keys and flags warn and carry on', async (t) => {
  const cwd = t.testdir({ 'daemon_config.json': JSON.stringify({ foo: 1, host: 'h', 'daemon-port': 1 }) });
  const file = path.join(cwd, 'daemon_config.json');
  const r = load({ cwd, argv: ['--bogus', '--frobnicate=3', '--port', '9'], env: { HOME, DATACAT_NOPE: 'x' } });
  t.equal(r.config.host, 'h');
  t.equal(r.config.daemon_port, 9);
  t.same(r.warnings, [
    `unknown config key "foo" in ${file} (ignored)`,
    `unknown config key "daemon-port" in ${file} (ignored)`,
    'unknown flag "--bogus" (ignored)',
    'unknown flag "--frobnicate" (ignored)',
  ]);
});

t.test('bad values: one-line ConfigError naming key, expectation, value and source', async (t) => {
  const cwd = t.testdir({});

  t.test('integer range', async (t) => {
    const msg = throwsConfigError(t, { cwd, env: { HOME, DATACAT_DAEMON_PORT: 'abc' } });
    t.equal(msg, 'invalid config: daemon_port must be an integer between 0 and 65535 (got "abc" from env DATACAT_DAEMON_PORT)');
    throwsConfigError(t, { cwd, argv: ['--port', '70000'] }, 'daemon_port', '"70000"', 'flag --port');
    throwsConfigError(t, { cwd, argv: ['--port', '1.5'] }, 'daemon_port', 'flag --port');
    throwsConfigError(t, { cwd, argv: ['--workers=0'] }, 'workers must be an integer between 1 and 64', 'flag --workers');
    throwsConfigError(t, { cwd, argv: ['--max-batch-size='] }, 'max_batch_size must be an integer >= 1', '(got "" from flag --max-batch-size)');
    throwsConfigError(t, { cwd, argv: ['--batch-interval-seconds', '0'] }, 'batch_interval_seconds must be a number > 0');
    throwsConfigError(t, { cwd, argv: ['--max-body-bytes', '0x1000'] }, 'max_body_bytes');
  });

  t.test('enum', async (t) => {
    throwsConfigError(
      t,
      { cwd, env: { HOME, DATACAT_OVERFLOW: 'drop_everything' } },
      'invalid config: overflow must be one of "block", "drop_oldest", "drop_newest" (got "drop_everything" from env DATACAT_OVERFLOW)',
    );
    throwsConfigError(t, { cwd, argv: ['--log-level=loud'] }, 'log_level', '"loud"');
  });

  t.test('url', async (t) => {
    throwsConfigError(t, { cwd, argv: ['--server-url', 'ftp://x'] }, 'server_url must be an http:// or https:// URL', '"ftp://x"');
    throwsConfigError(t, { cwd, argv: ['--server-url', 'not a url'] }, 'server_url');
  });

  t.test('boolean', async (t) => {
    throwsConfigError(
      t,
      { cwd, env: { HOME, DATACAT_EXIT_WITH_PARENT: 'maybe' } },
      'exit_with_parent must be a boolean',
      '(got "maybe" from env DATACAT_EXIT_WITH_PARENT)',
    );
  });

  t.test('wrong JSON type names the file', async (t) => {
    const dir = t.testdir({ 'daemon_config.json': '{"enable_compression": 3, "api_key": 42}' });
    throwsConfigError(t, { cwd: dir }, 'enable_compression', `(got 3 from file ${path.join(dir, 'daemon_config.json')})`);
  });

  t.test('retry_max_ms < retry_base_ms', async (t) => {
    throwsConfigError(
      t,
      { cwd, argv: ['--retry-base-ms', '1000', '--retry-max-ms=999'] },
      'invalid config: retry_max_ms must be >= retry_base_ms',
      'got 999 from flag --retry-max-ms',
      'retry_base_ms is 1000 from flag --retry-base-ms',
    );
    throwsConfigError(t, { cwd, argv: ['--retry-max-ms=100'] }, 'retry_max_ms', 'retry_base_ms is 500 from default');
    t.equal(load({ cwd, argv: ['--retry-base-ms=7', '--retry-max-ms=7'] }).config.retry_max_ms, 7, 'equal is fine');
  });

  t.test('a bad value is an error even when a later layer overrides it', async (t) => {
    throwsConfigError(t, { cwd, env: { HOME, DATACAT_MAX_DEPTH: 'deep' }, argv: ['--max-depth', '5'] }, 'max_depth', 'env DATACAT_MAX_DEPTH');
  });
});

t.test('explicit config file problems name the file', async (t) => {
  const dir = t.testdir({
    'bad.json': '{"host": ',
    'array.json': '[1, 2]',
    'string.json': '"hi"',
    'daemon_config.json': 'not json either',
    'adir.json': {},
  });

  t.test('missing via --config', async (t) => {
    throwsConfigError(t, { cwd: dir, argv: ['--config', 'nope.json'] }, path.join(dir, 'nope.json'), 'flag --config');
  });
  t.test('missing via DATACAT_CONFIG', async (t) => {
    throwsConfigError(t, { cwd: dir, env: { HOME, DATACAT_CONFIG: '/no/such/file.json' } }, '/no/such/file.json', 'DATACAT_CONFIG');
  });
  t.test('unreadable (a directory)', async (t) => {
    throwsConfigError(t, { cwd: dir, argv: ['--config=adir.json'] }, path.join(dir, 'adir.json'));
  });
  t.test('not JSON', async (t) => {
    throwsConfigError(t, { cwd: dir, argv: ['--config=bad.json'] }, `config file ${path.join(dir, 'bad.json')} is not valid JSON`);
  });
  t.test('not an object', async (t) => {
    throwsConfigError(t, { cwd: dir, argv: ['--config=array.json'] }, path.join(dir, 'array.json'), 'JSON object', 'an array');
    throwsConfigError(t, { cwd: dir, argv: ['--config=string.json'] }, path.join(dir, 'string.json'), 'JSON object');
  });
  t.test('a broken implicit daemon_config.json is also an error', async (t) => {
    throwsConfigError(t, { cwd: dir }, path.join(dir, 'daemon_config.json'), 'not valid JSON');
  });
});

t.test('data_dir', async (t) => {
  const cwd = t.testdir({});

  t.test('default uses XDG_DATA_HOME and the final port', async (t) => {
    const xdg = path.join(cwd, 'xdg');
    const env = { HOME, XDG_DATA_HOME: xdg, DATACAT_DAEMON_PORT: '5000' };
    t.equal(load({ cwd, env }).config.data_dir, path.join(xdg, 'datacat-daemon', 'port-5000'));
    t.equal(load({ cwd, env, argv: ['--port', '0'] }).config.data_dir, path.join(xdg, 'datacat-daemon', 'port-0'));
  });

  t.test('falls back to ~/.local/share; relative XDG_DATA_HOME is ignored per the XDG spec', async (t) => {
    t.equal(load({ cwd }).config.data_dir, path.join(HOME, '.local', 'share', 'datacat-daemon', 'port-8079'));
    t.equal(
      load({ cwd, env: { HOME, XDG_DATA_HOME: 'rel/dir' } }).config.data_dir,
      path.join(HOME, '.local', 'share', 'datacat-daemon', 'port-8079'),
    );
  });

  t.test('explicit relative path resolves against cwd', async (t) => {
    t.equal(load({ cwd, argv: ['--data-dir', 'store'] }).config.data_dir, path.join(cwd, 'store'));
    t.equal(load({ cwd, argv: ['--data-dir=/abs/store'] }).config.data_dir, '/abs/store');
  });
});

t.test('describeConfigKeys', async (t) => {
  const md = describeConfigKeys();
  const lines = md.trimEnd().split('\n');
  t.equal(lines[0], '| key | flag | env | default | description |');
  t.equal(lines.length, CONFIG_KEYS.length + 2, 'header, separator, one row per key');
  for (const key of CONFIG_KEYS) {
    t.ok(md.includes('`' + key.name + '`'), `mentions ${key.name}`);
    t.ok(md.includes('`' + envVarName(key.name) + '`'), `mentions ${envVarName(key.name)}`);
  }
  t.match(md, /`--daemon-port`, `--port`/);
  t.match(md, /`--no-enable-compression`/);
  for (const line of lines.slice(2)) {
    // Every row has exactly 5 cells: unescaped pipes are only the separators.
    t.equal(line.replace(/\\\|/g, '').split('|').length, 7, `well-formed row: ${line.slice(0, 40)}`);
  }
});
