// Starts the daemon the way DataCat's Python client does: writes nothing itself (the test wrote
// the JSON config), sets DATACAT_CONFIG, spawns bin/datacat-daemon with no arguments and piped
// stdio, registers one session with its own pid as parent_pid, prints what it learned, and
// exits, leaving the daemon behind (as an application that dies would).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const [bin, configFile] = process.argv.slice(2);
const daemon = spawn(process.execPath, [bin], { env: { ...process.env, DATACAT_CONFIG: configFile }, stdio: ['pipe', 'pipe', 'pipe'] });
const port = await new Promise((resolve, reject) => {
  createInterface({ input: daemon.stderr }).on('line', (line) => {
    try {
      const msg = JSON.parse(line);
      if (msg.msg === 'datacat daemon listening') resolve(msg.port);
    } catch {}
  });
  daemon.on('exit', (code) => reject(new Error(`daemon exited ${code}`)));
});
const res = await fetch(`http://127.0.0.1:${port}/register`, { method: 'POST', body: JSON.stringify({ product: 'py-app', version: '1', parent_pid: process.pid }) });
const { session_id } = await res.json();
process.stdout.write(JSON.stringify({ daemon_pid: daemon.pid, port, session_id }) + '\n');
process.exit(0);
