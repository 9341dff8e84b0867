// Starts and stops the processes of an experiment: the fake upstream (the simulated
// LLM) and Reprise in front of it, on 127.0.0.1 with ports picked by the system, each
// proxy with its own store in a temp dir. Everything started here is killed on exit,
// on an error and on SIGINT/SIGTERM.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const children = new Set();
const tempDirs = new Set();

function cleanup() {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => { cleanup(); process.exit(130); });

export function tempDir(prefix = 'reprise-exp-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

// Spawns `bin args`, resolves with the first match of `pattern` in its stdout+stderr.
function start(bin, args, pattern, label) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let seen = '';
    const timer = setTimeout(() => fail(new Error(`${label} did not start in 10 s:\n${seen}`)), 10_000);
    const fail = (e) => { clearTimeout(timer); child.kill('SIGKILL'); reject(e); };
    const onData = (chunk) => {
      seen += chunk;
      const m = seen.match(pattern);
      if (m) { clearTimeout(timer); resolve({ child, match: m, log: () => seen }); }
      if (seen.length > 1 << 20) seen = seen.slice(-(1 << 16));
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', fail);
    child.on('exit', (code) => { children.delete(child); fail(new Error(`${label} exited (${code}):\n${seen}`)); });
  });
}

export async function stop(proc) {
  if (!proc || proc.child.exitCode !== null) return;
  const exited = new Promise((r) => proc.child.once('exit', r));
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

export const fakeSupportsSimulation = (bin) =>
  ((r) => /simulate/.test(r.stdout + r.stderr))(spawnSync(bin, ['--help'], { encoding: 'utf8' }));

// The fake upstream: `--simulate game24` with its latency settings (sim: {firstTokenMs,
// msPerToken}), or the plain fake (sim null: random words; development only).
export async function startFake(bin, { sim, seed = 1 }) {
  const args = ['--listen', '127.0.0.1:0', '--seed', String(seed), '--threads', '2'];
  if (sim) args.push('--simulate', 'game24', '--sim-first-token-ms', String(sim.firstTokenMs),
                     '--sim-ms-per-token', String(sim.msPerToken));
  const proc = await start(bin, args, /listening 127\.0\.0\.1:(\d+)/, 'fake_openai');
  const port = Number(proc.match[1]);
  return { ...proc, port, url: `http://127.0.0.1:${port}` };
}

// Reprise on a fresh store in `dir`, relaying to `upstreamUrl` (".../v1"), with the
// given [[prices]] TOML text so that the ledger reports cost.
export async function startProxy(bin, { dir, upstreamUrl, pricesToml }) {
  fs.mkdirSync(dir, { recursive: true });
  const config = path.join(dir, 'proxy.toml');
  fs.writeFileSync(config, `[server]
listen = "127.0.0.1:0"
threads = 4
max_connections = 4096
[admin]
listen = "127.0.0.1:0"
[cache]
path = "${dir}/cache"
[energy]
csv_path = "${dir}/energy.csv"
[log]
access_log = false
[[upstreams]]
name = "upstream"
base_url = "${upstreamUrl}"
api_key_env = ""
max_retries = 0
${pricesToml}
`);
  const proc = await start(bin, ['--config', config], /admin listening on 127\.0\.0\.1:(\d+)/, 'reprise');
  await new Promise((r) => setTimeout(r, 20));
  const port = Number(proc.log().match(/proxy listening on 127\.0\.0\.1:(\d+)/)[1]);
  const adminPort = Number(proc.match[1]);
  return { ...proc, dir, config, port, adminPort, baseURL: `http://127.0.0.1:${port}/v1`,
           admin: `127.0.0.1:${adminPort}` };
}

export async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

// `reprise <args>` (the CLI: export, import), failing on a non-zero exit.
export function cli(bin, args) {
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`reprise ${args.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}
