// What every client test here shares: the fake upstream and the real reprise binary in
// front of it, started once per test file (ctest sets REPRISE_BIN and FAKE_OPENAI_BIN),
// and the checks a replay is judged by (the fake's call counter, fresh namespaces).
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const REPRISE_BIN = process.env.REPRISE_BIN;
const FAKE_BIN = process.env.FAKE_OPENAI_BIN;

// Starts a binary and resolves with the first match of `pattern` in its output.
// It runs in `cwd` (the test's temporary folder: whatever it writes goes with it).
function start(children, bin, args, stream, pattern, cwd) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`${bin} did not start: ${seen}`)), 10000);
    child[stream].on('data', (data) => {
      seen += data;
      const m = seen.match(pattern);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${bin} exited with ${code}: ${seen}`)); });
  });
}

// The fake serves every dialect; the proxy reaches it as three upstreams, one per kind,
// and routes by model name: claude* to Anthropic, gemini* to Gemini, the rest to OpenAI
// (and, with `engine`, tiny* to the in-process engine with a tiny random model).
function proxyConfig(dir, fakePort, engineModel) {
  const fake = `http://127.0.0.1:${fakePort}`;
  return `
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[cache]
path = "${join(dir, 'cache')}"
[[upstreams]]
name = "fake"
kind = "openai"
base_url = "${fake}/v1"
api_key_env = ""
[[upstreams]]
name = "fake-anthropic"
kind = "anthropic"
base_url = "${fake}/v1"
api_key_env = ""
[[upstreams]]
name = "fake-gemini"
kind = "gemini"
base_url = "${fake}/v1beta"
api_key_env = ""
${engineModel ? '[[models]]\nmatch = "tiny*"\nbackend = "engine"' : ''}
[[models]]
match = "claude*"
backend = "fake-anthropic"
[[models]]
match = "gemini*"
backend = "fake-gemini"
[[models]]
match = "*"
backend = "fake"
${engineModel ? `[engine]\nmodel = "${engineModel}"\nthreads = 1` : ''}
`;
}

// Starts the fake and the proxy; call in before(), and stack.stop() in after().
export async function startStack({ engine = false } = {}) {
  assert.ok(REPRISE_BIN && FAKE_BIN, 'REPRISE_BIN and FAKE_OPENAI_BIN must be set (ctest sets them)');
  const dir = mkdtempSync(join(tmpdir(), 'reprise-sdk-'));
  const children = [];
  const fakePort = await start(children, FAKE_BIN, ['--listen', '127.0.0.1:0'], 'stdout',
    /listening 127\.0\.0\.1:(\d+)/, dir);
  let engineModel = null;
  if (engine) {
    const makeModel = process.env.REPRISE_MAKE_MODEL_BIN;
    assert.ok(makeModel, 'REPRISE_MAKE_MODEL_BIN must be set (ctest sets it)');
    // Built-in vocabulary, random weights: enough to exercise the engine's paths.
    engineModel = join(dir, 'tiny.gguf');
    execFileSync(makeModel, ['random', '--vocab', 'builtin', '--out', engineModel, '--dim', '64', '--hidden', '128',
      '--layers', '2', '--ctx', '256', '--type', 'q8_0']);
  }
  const config = join(dir, 'proxy.toml');
  writeFileSync(config, proxyConfig(dir, fakePort, engineModel));
  const proxyPort = await start(children, REPRISE_BIN, ['--config', config], 'stderr',
    /proxy listening on 127\.0\.0\.1:(\d+)/, dir);

  const fakeUrl = `http://127.0.0.1:${fakePort}`;
  let namespaces = 0;
  const stack = {
    fakePort,
    proxyPort,
    fakeUrl,
    proxyUrl: `http://127.0.0.1:${proxyPort}`,
    // A namespace no request has used yet: its first requests read the cache from the
    // start of every sample list.
    fresh(label = 'ns') { return `${label}-${++namespaces}`; },
    // The URL form of a namespace: /ns/<name> in front of the API's own paths.
    nsUrl(ns) { return `http://127.0.0.1:${proxyPort}/ns/${ns}`; },
    async fakeStats() { return (await fetch(`${fakeUrl}/_fake/stats`)).json(); },
    async fakeControl(knobs) {
      const res = await fetch(`${fakeUrl}/_fake/control`, { method: 'POST', body: JSON.stringify(knobs) });
      assert.equal(res.status, 200, `fake control ${JSON.stringify(knobs)}: ${await res.text()}`);
    },
    // Runs fn and resolves with its result and the upstream calls it made.
    async counting(fn) {
      const before = (await stack.fakeStats()).calls;
      const result = await fn();
      return { result, calls: (await stack.fakeStats()).calls - before };
    },
    // fn(ns) in a fresh namespace must make no upstream call: it resolves with the result.
    async replayed(fn, label = 'replay') {
      const { result, calls } = await stack.counting(() => fn(stack.fresh(label)));
      assert.equal(calls, 0, 'a replay in a fresh namespace calls the upstream');
      return result;
    },
    stop() {
      for (const child of children) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return stack;
}
