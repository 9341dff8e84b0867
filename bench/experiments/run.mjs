#!/usr/bin/env node
// Runs the experiments of issue 5: each configuration with Reprise (its own namespace)
// and without it (X-Reprise-Cache: bypass), against the simulated LLM
// (fake_openai --simulate game24), then the reproducibility checks, then the reports.
//
//   node bench/experiments/run.mjs [--scenario sweep|ablation|benchmark|all] [--puzzles N]
//        [--concurrency C] [--out DIR] [--smoke] [--check-replay all|first|none]
//        [--prices FILE] [--sim-first-token-ms N] [--sim-ms-per-token N]
//        [--order-guard on|off] [--allow-plain-fake]
//
// Binaries: REPRISE_BIN and FAKE_OPENAI_BIN (default build/reprise, build/fake_openai,
// relative to the repository root). See README.md beside this file.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Session } from './client.mjs';
import { makePuzzles } from './game24.mjs';
import { scenarioMarkdown, summaryMarkdown, writeChart } from './report.mjs';
import { methods, scenarios, smoke } from './scenarios.mjs';
import { cli, fakeSupportsSimulation, getJson, startFake, startProxy, stop, tempDir } from './stack.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const API_KEY = 'sk-experiments';  // a fixed fake key: the tenant of every sample
const DEFAULT_PRICES = '[[prices]]\nmatch = "gpt-4o-mini"\nprompt_per_million = 0.15\ncompletion_per_million = 0.60\n';

function parseArgs(argv) {
  const o = { scenario: 'all', puzzles: null, concurrency: 32, out: path.join(root, 'bench/results'), smoke: false,
              checkReplay: 'all', prices: null, firstTokenMs: null, msPerToken: null, orderGuard: true,
              allowPlainFake: false };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const value = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
    const number = () => { const v = Number(value()); if (!Number.isInteger(v) || v < 0) usage(`${a}: not a number`); return v; };
    if (a === '--scenario') o.scenario = value();
    else if (a === '--puzzles') o.puzzles = number();
    else if (a === '--concurrency') o.concurrency = Math.max(1, number());
    else if (a === '--out') { o.out = path.resolve(value()); o.outGiven = true; }
    else if (a === '--smoke') o.smoke = true;
    else if (a === '--check-replay') o.checkReplay = value();
    else if (a === '--prices') o.prices = fs.readFileSync(value(), 'utf8');
    else if (a === '--sim-first-token-ms') o.firstTokenMs = number();
    else if (a === '--sim-ms-per-token') o.msPerToken = number();
    else if (a === '--order-guard') o.orderGuard = value() !== 'off';
    else if (a === '--allow-plain-fake') o.allowPlainFake = true;
    else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  if (!['all', 'first', 'none'].includes(o.checkReplay)) usage('--check-replay: all, first or none');
  if (o.scenario !== 'all' && !scenarios[o.scenario]) usage(`--scenario: ${Object.keys(scenarios).join(', ')} or all`);
  // Defaults: the full run (a few minutes on 2 cores) or the smoke run (seconds).
  o.puzzles ??= o.smoke ? 3 : 12;
  o.firstTokenMs ??= o.smoke ? 0 : 300;
  o.msPerToken ??= o.smoke ? 0 : 10;
  return o;
}

function usage(error) {
  const text = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(5, 12).map((l) => l.slice(3)).join('\n');
  (error ? console.error : console.log)((error ? `run.mjs: ${error}\n` : '') + text + '\n');
  process.exit(error ? 2 : 0);
}

const sha256 = (value) => crypto.createHash('sha256').update(JSON.stringify(value)).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A port nothing listens on: bound, then closed.
const closedPort = () => new Promise((resolve) => {
  const server = net.createServer().listen(0, '127.0.0.1', () => { const { port } = server.address(); server.close(() => resolve(port)); });
});

const FAKE_FIELDS = ['calls', 'samples', 'prompt_tokens', 'completion_tokens'];
const fakeCounters = async (fake) => (fake ? getJson(`${fake.url}/_fake/stats`) : null);

// Runs one configuration over all puzzles in namespace `ns`; measures it.
async function runConfig({ proxy, fake, config, puzzles, ns, mode, concurrency, orderGuard }) {
  const before = await fakeCounters(fake);
  const session = new Session({ baseURL: proxy.baseURL, apiKey: API_KEY, namespace: ns, cacheMode: mode, concurrency, orderGuard });
  if (process.env.EXPERIMENTS_DEBUG_LOG) session.log = [];
  const t0 = performance.now();
  let results, error = null;
  try {
    results = await session.run(puzzles, (ctx, puzzle) => methods[config.method](ctx, puzzle, config.params));
    if (session.counts.errors) throw new Error(`${session.counts.errors} requests failed`);
  } catch (e) {
    error = String(e?.message ?? e);
  }
  const wall = (performance.now() - t0) / 1000;
  if (session.log) fs.writeFileSync(path.join(process.env.EXPERIMENTS_DEBUG_LOG, `${ns}.json`), JSON.stringify(session.log));
  // The ledger is updated just after each answer is written: wait (up to 3 s) until it
  // agrees with the fake's counters, or stays the same.
  const after = await fakeCounters(fake);
  let stats, previous = null;
  for (let tries = 0; tries < 150; tries++) {
    await sleep(20);
    stats = await getJson(`http://${proxy.admin}/admin/stats`);
    const entry = stats.namespaces?.[ns] ?? {}, text = JSON.stringify(entry);
    const agrees = after && (entry.upstream_calls ?? 0) === after.calls - before.calls &&
      (entry.completion_tokens_spent ?? 0) === after.completion_tokens - before.completion_tokens;
    if (agrees || (text === previous && tries >= 5)) break;
    previous = text;
  }
  const run = {
    config: config.name, method: config.method, params: config.params, mode, ns, concurrency, wall_s: wall, error,
    puzzles: puzzles.length, solved: results ? results.filter((r) => r.result.solved).length : 0,
    digest: results ? sha256(results) : null, puzzleDigests: results ? results.map(sha256) : [],
    client: session.counts, ledger: stats.namespaces?.[ns] ?? {},
    fake: after && Object.fromEntries(FAKE_FIELDS.map((f) => [f, (after[f] ?? NaN) - (before[f] ?? NaN)])),
  };
  const l = run.ledger;
  console.log(`  ${mode.padEnd(11)} ${ns.padEnd(40)} ${wall.toFixed(1).padStart(6)} s  solved ${run.solved}/${run.puzzles}` +
              `  requests ${session.counts.requests}  upstream calls ${l.upstream_calls ?? '?'} (fake ${run.fake?.calls ?? '-'})` +
              `  ${run.digest ? run.digest.slice(0, 12) : 'ERROR ' + error}`);
  return run;
}

const sameDigest = (a, b) => a.digest !== null && a.digest === b.digest;
const firstDiff = (a, b) => a.puzzleDigests.findIndex((d, i) => d !== b.puzzleDigests[i]);

// The reproducibility checks of one scenario's "with" runs: a fresh namespace (0 new
// upstream calls), another concurrency, and offline from the exported namespaces.
async function checkReplays({ proxy, fake, runs, puzzles, o, dir, configs }) {
  const checks = [];
  const chosen = o.checkReplay === 'first' ? runs.slice(0, 1) : runs;
  const otherConcurrency = o.concurrency === 1 ? 8 : 1;
  for (const original of chosen) {
    const config = configs.find((c) => c.name === original.config);
    const base = { proxy, fake, config, puzzles, mode: 'use', orderGuard: o.orderGuard };
    const fresh = await runConfig({ ...base, ns: `${original.ns}.replay`, concurrency: o.concurrency });
    const other = await runConfig({ ...base, ns: `${original.ns}.replay-c${otherConcurrency}`, concurrency: otherConcurrency });
    const file = path.join(dir, `${original.ns}.jsonl`);
    cli(o.reprise, ['export', '--namespace', original.ns, '--out', file, '--admin', proxy.admin]);
    checks.push({ config: original.config, ns: original.ns, digest: original.digest, file,
      fresh: { ok: sameDigest(fresh, original) && fresh.fake.calls === 0 && !fresh.error && (fresh.ledger.upstream_calls ?? 0) === 0,
               upstream_calls: fresh.fake.calls, diff: firstDiff(fresh, original), error: fresh.error },
      concurrency: { ok: sameDigest(other, original) && other.fake.calls === 0 && !other.error, c: otherConcurrency,
                     upstream_calls: other.fake.calls, diff: firstDiff(other, original), error: other.error,
                     wall_s: other.wall_s } });
  }
  // Offline: a second proxy on an empty store whose upstream is a closed port, the
  // exported files imported under the replaying client's key, replayed only-cached.
  await stop(fake);
  const offline = await startProxy(o.reprise, { dir: path.join(dir, 'offline'), upstreamUrl: `http://127.0.0.1:${await closedPort()}/v1`, pricesToml: o.pricesToml });
  for (const check of checks) {
    const report = JSON.parse(cli(o.reprise, ['import', check.file, '--import-key', API_KEY, '--admin', offline.admin, '--json']));
    const config = configs.find((c) => c.name === check.config);
    const replay = await runConfig({ proxy: offline, fake: null, config, puzzles, ns: `${check.ns}.offline`, mode: 'only-cached',
                                     concurrency: o.concurrency, orderGuard: o.orderGuard });
    check.offline = { ok: sameDigest(replay, { digest: check.digest }) && !replay.error && replay.client.errors === 0,
                      imported: report, error: replay.error, upstream_calls: replay.ledger.upstream_calls ?? 0 };
  }
  await stop(offline);
  return checks;
}

async function runScenario(name, scenario, puzzles, o) {
  console.log(`\n== ${name}: ${scenario.title} (${puzzles.length} puzzles, concurrency ${o.concurrency})`);
  const dir = tempDir();
  const fake = await startFake(o.fake, { sim: o.sim });
  const proxy = await startProxy(o.reprise, { dir: path.join(dir, 'proxy'), upstreamUrl: `${fake.url}/v1`, pricesToml: o.pricesToml });
  const t0 = performance.now();
  const common = { proxy, fake, puzzles, concurrency: o.concurrency, orderGuard: o.orderGuard };
  const withRuns = [], withoutRuns = [];
  for (const config of scenario.configs)
    withRuns.push(await runConfig({ ...common, config, ns: `${name}-${config.name}`, mode: 'use' }));
  for (const config of scenario.configs)
    withoutRuns.push(await runConfig({ ...common, config, ns: `bypass-${name}-${config.name}`, mode: 'bypass' }));
  const stats = await getJson(`http://${proxy.admin}/admin/stats`);
  const runSeconds = (performance.now() - t0) / 1000;
  const checks = o.checkReplay === 'none' ? [] :
    await checkReplays({ proxy, fake, runs: withRuns, puzzles, o, dir, configs: scenario.configs });
  await stop(proxy);
  await stop(fake);
  return { name, title: scenario.title, withRuns, withoutRuns, checks, models: stats.models ?? {}, runSeconds,
           seconds: (performance.now() - t0) / 1000 };
}

// Problems a result should not have: errors, ledger and fake disagreeing, failed checks.
function problems(result) {
  const out = [];
  for (const run of [...result.withRuns, ...result.withoutRuns]) {
    if (run.error) out.push(`${run.ns}: ${run.error}`);
    const l = run.ledger;
    for (const [ledgerField, fakeField] of [['upstream_calls', 'calls'], ['prompt_tokens_spent', 'prompt_tokens'], ['completion_tokens_spent', 'completion_tokens']])
      if (run.fake && Number.isFinite(run.fake[fakeField]) && (l[ledgerField] ?? 0) !== run.fake[fakeField])
        out.push(`${run.ns}: ledger ${ledgerField} ${l[ledgerField] ?? 0} != fake ${fakeField} ${run.fake[fakeField]}`);
  }
  for (const c of result.checks)
    for (const kind of ['fresh', 'concurrency', 'offline'])
      if (!c[kind]?.ok) out.push(`${c.ns}: replay check '${kind}' failed ${JSON.stringify(c[kind])}`);
  return out;
}

async function main() {
  const o = parseArgs(process.argv);
  o.reprise = path.resolve(root, process.env.REPRISE_BIN ?? 'build/reprise');
  o.fake = path.resolve(root, process.env.FAKE_OPENAI_BIN ?? 'build/fake_openai');
  for (const bin of [o.reprise, o.fake]) if (!fs.existsSync(bin)) { console.error(`run.mjs: ${bin} not found (build it, or set REPRISE_BIN / FAKE_OPENAI_BIN)`); process.exit(2); }
  o.pricesToml = o.prices ?? DEFAULT_PRICES;
  const simulated = fakeSupportsSimulation(o.fake);
  if (!simulated && !o.allowPlainFake) { console.error(`run.mjs: ${o.fake} has no --simulate game24 (rebuild it; --allow-plain-fake to run against random words)`); process.exit(2); }
  o.sim = simulated ? { firstTokenMs: o.firstTokenMs, msPerToken: o.msPerToken } : null;
  const puzzles = makePuzzles(o.puzzles);
  const chosen = o.smoke ? { smoke } : o.scenario === 'all' ? scenarios : { [o.scenario]: scenarios[o.scenario] };
  const out = o.smoke && !o.outGiven ? tempDir('reprise-exp-smoke-') : o.out;
  const t0 = performance.now();
  console.log(`LLM: ${o.sim ? `SIMULATED (fake_openai --simulate game24, first token ${o.sim.firstTokenMs} ms, ${o.sim.msPerToken} ms/token)` : 'plain fake_openai (random words, NOT the simulation)'}`);
  const results = [];
  for (const [name, scenario] of Object.entries(chosen)) results.push(await runScenario(name, scenario, puzzles, o));
  const meta = { sim: o.sim, puzzles, concurrency: o.concurrency, orderGuard: o.orderGuard, pricesToml: o.pricesToml,
                 seconds: (performance.now() - t0) / 1000, command: `node bench/experiments/${['run.mjs', ...process.argv.slice(2)].join(' ')}`,
                 smoke: o.smoke };
  fs.mkdirSync(out, { recursive: true });
  for (const result of results) {
    const markdown = scenarioMarkdown(result, meta);
    fs.writeFileSync(path.join(out, `experiments-${result.name}.md`), markdown);
    if (o.smoke) console.log('\n' + markdown);
    writeChart(result, meta, path.join(out, `experiments-${result.name}.png`));
  }
  if (!o.smoke) fs.writeFileSync(path.join(out, o.scenario === 'all' ? 'experiments.md' : `experiments-summary-${o.scenario}.md`), summaryMarkdown(results, meta));
  const found = results.flatMap(problems);
  console.log(`\n${results.map((r) => `${r.name}: ${r.seconds.toFixed(1)} s`).join(', ')}; total ${meta.seconds.toFixed(1)} s; reports in ${out}${o.smoke && !o.outGiven ? " (a temp dir, removed on exit)" : ""}`);
  for (const p of found) console.error(`PROBLEM: ${p}`);
  if (found.length) process.exit(1);
  console.log(`all checks passed (${results.reduce((n, r) => n + r.checks.length, 0)} configurations replayed 3 ways)`);
}

main().catch((e) => { console.error(e?.stack ?? e); process.exit(1); });
