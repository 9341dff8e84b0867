// The official OpenAI Node SDK pointed at the real reprise binary, which relays to
// the fake upstream. Run by ctest (which sets REPRISE_BIN and FAKE_OPENAI_BIN).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';

const REPRISE_BIN = process.env.REPRISE_BIN;
const FAKE_BIN = process.env.FAKE_OPENAI_BIN;
const MAKE_MODEL_BIN = process.env.REPRISE_MAKE_MODEL_BIN;
assert.ok(REPRISE_BIN && FAKE_BIN && MAKE_MODEL_BIN,
  'REPRISE_BIN, FAKE_OPENAI_BIN and REPRISE_MAKE_MODEL_BIN must be set (ctest sets them)');

const dir = mkdtempSync(join(tmpdir(), 'reprise-sdk-'));
const children = [];
let fakePort, proxyPort;

// Starts a binary and resolves with the first match of `pattern` in its output.
function start(bin, args, stream, pattern, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`${bin} did not start: ${seen}`)), 10000);
    child[stream].on('data', (data) => {
      seen += data;
      const m = seen.match(pattern);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.on('exit', (code) => reject(new Error(`${bin} exited with ${code}: ${seen}`)));
  });
}

async function fakeStats() {
  return (await fetch(`http://127.0.0.1:${fakePort}/_fake/stats`)).json();
}

before(async () => {
  fakePort = await start(FAKE_BIN, ['--listen', '127.0.0.1:0'], 'stdout', /listening 127\.0\.0\.1:(\d+)/);
  // A tiny engine model (built-in vocabulary, random weights) for the "tiny" models.
  const model = join(dir, 'tiny.gguf');
  execFileSync(MAKE_MODEL_BIN, ['random', '--vocab', 'builtin', '--out', model, '--dim', '64', '--hidden', '128',
    '--layers', '2', '--ctx', '256', '--type', 'q8_0']);
  const config = join(dir, 'proxy.toml');
  writeFileSync(config, `
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[cache]
path = "${join(dir, 'cache')}"
[[upstreams]]
name = "fake"
base_url = "http://127.0.0.1:${fakePort}/v1"
api_key_env = ""
[[models]]
match = "tiny*"
backend = "engine"
[[models]]
match = "*"
backend = "fake"
[engine]
model = "${model}"
threads = 1
`);
  proxyPort = await start(REPRISE_BIN, ['--config', config], 'stderr', /proxy listening on 127\.0\.0\.1:(\d+)/);
});

after(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const client = () => new OpenAI({ apiKey: 'sk-sdk-test-key', baseURL: `http://127.0.0.1:${proxyPort}/v1`, maxRetries: 0 });

test('chat completion', async () => {
  const res = await client().chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Say hello' }],
    n: 2,
  });
  assert.equal(res.object, 'chat.completion');
  assert.equal(res.choices.length, 2);
  assert.ok(res.choices[0].message.content.length > 0);
  assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + res.usage.completion_tokens);
  const stats = await fakeStats();
  assert.equal(stats.last_request.headers.authorization, 'Bearer sk-sdk-test-key');
  assert.ok(stats.last_request.headers['x-stainless-lang'], 'SDK headers pass through');
});

test('streamed chat completion with usage', async () => {
  const stream = await client().chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Stream to me' }],
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: 8,
  });
  let text = '';
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.choices.length) text += chunk.choices[0].delta.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(chunks > 3);
  assert.ok(text.trim().split(/\s+/).length <= 8);
  assert.ok(usage && usage.completion_tokens > 0);
});

test('embeddings (the SDK asks for base64 and decodes it)', async () => {
  const res = await client().embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two'] });
  assert.equal(res.data.length, 2);
  assert.equal(res.data[0].embedding.length, 64);
  assert.ok(res.data[0].embedding.every((x) => typeof x === 'number' && Number.isFinite(x)));
});

test('models list and the namespace URL form', async () => {
  const models = await client().models.list();
  assert.ok(models.data.some((m) => m.id === 'gpt-4o-mini'));
  const ns = new OpenAI({ apiKey: 'sk-x', baseURL: `http://127.0.0.1:${proxyPort}/ns/sdk-run/v1`, maxRetries: 0 });
  const { data, response } = await ns.chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
    .withResponse();
  assert.equal(data.choices.length, 1);
  assert.equal(response.headers.get('x-reprise-namespace'), 'sdk-run');
});

test('errors arrive as the SDK error classes', async () => {
  await assert.rejects(
    client().chat.completions.create({ model: 'gpt-4o-mini', messages: [], n: 0 }),
    (err) => err instanceof OpenAI.BadRequestError && err.status === 400 && err.param === 'n',
  );
});

test('a streamed miss the upstream rate-limits raises RateLimitError with its Retry-After', async () => {
  // Retry-After beyond the proxy's max_retry_after: relayed at once, not waited out.
  await fetch(`http://127.0.0.1:${fakePort}/_fake/control`, {
    method: 'POST', body: JSON.stringify({ fail_next: 1, fail_status: 429, retry_after: '3600' }),
  });
  try {
    await assert.rejects(
      client().chat.completions.create({
        model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Rate-limited stream' }], stream: true,
      }),
      (err) => {
        const retryAfter = typeof err.headers?.get === 'function' ? err.headers.get('retry-after') : err.headers?.['retry-after'];
        return err instanceof OpenAI.RateLimitError && err.status === 429 && retryAfter === '3600';
      },
    );
  } finally {
    await fetch(`http://127.0.0.1:${fakePort}/_fake/control`, { method: 'POST', body: JSON.stringify({ retry_after: null }) });
  }
});

test('cache: a namespace replays another one\'s samples, as JSON and as an SSE stream', async () => {
  const inNs = (ns) => new OpenAI({ apiKey: 'sk-sdk-test-key', baseURL: `http://127.0.0.1:${proxyPort}/ns/${ns}/v1`, maxRetries: 0 });
  const params = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Replay me' }], n: 2 };
  const callsBefore = (await fakeStats()).calls;
  const { data: made, response: first } = await inNs('sdk-a').chat.completions.create(params).withResponse();
  assert.equal(first.headers.get('x-reprise-cache'), 'miss');
  assert.equal(first.headers.get('x-reprise-samples'), '0-1');

  const stream = await inNs('sdk-b').chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  const texts = ['', ''];
  let usage = null;
  let finish = [null, null];
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      texts[choice.index] += choice.delta.content ?? '';
      if (choice.finish_reason) finish[choice.index] = choice.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.deepEqual(texts, made.choices.map((c) => c.message.content));
  assert.deepEqual(finish, made.choices.map((c) => c.finish_reason));
  assert.deepEqual(usage, made.usage);
  assert.equal((await fakeStats()).calls, callsBefore + 1);  // the replay made no call

  // Embeddings: the SDK asks base64 and decodes it; a float request is the same sample.
  const emb = { model: 'text-embedding-3-small', input: ['replay'] };
  const b64 = await inNs('sdk-a').embeddings.create(emb);
  const floats = await inNs('sdk-b').embeddings.create({ ...emb, encoding_format: 'float' });
  assert.equal(b64.data[0].embedding.length, floats.data[0].embedding.length);
  b64.data[0].embedding.forEach((x, i) => assert.ok(Math.abs(x - floats.data[0].embedding[i]) < 1e-6));
});

test('a replayed tool-call-only stream rebuilds the live answer (stream.finalChatCompletion)', async () => {
  // The fake answers with tool calls only (content null) and the fields OpenAI adds
  // (service_tier, usage details, reasoning_content, annotations, audio): the SDK's
  // rebuilt completion of the miss and of the replay must be the upstream's own.
  const control = (knobs) => fetch(`http://127.0.0.1:${fakePort}/_fake/control`,
    { method: 'POST', body: JSON.stringify(knobs) });
  await control({ tool_calls: 'function', rich: true });
  try {
    const params = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Use the tool' }], seed: 11,
      stream_options: { include_usage: true } };
    const final = async (baseURL) => {
      const c = new OpenAI({ apiKey: 'sk-sdk-test-key', baseURL, maxRetries: 0 });
      const { id, created, obfuscation, ...rest } = await c.chat.completions.stream(params).finalChatCompletion();
      return rest;  // less what differs per response (and the upstream's per-event padding)
    };
    const live = await final(`http://127.0.0.1:${fakePort}/v1`);
    assert.equal(live.choices[0].message.content, null);
    assert.equal(live.choices[0].message.tool_calls.length, 1);
    assert.equal(live.service_tier, 'default');
    assert.deepEqual(await final(`http://127.0.0.1:${proxyPort}/ns/sdk-tools-a/v1`), live);  // the miss
    assert.deepEqual(await final(`http://127.0.0.1:${proxyPort}/ns/sdk-tools-b/v1`), live);  // the replay
  } finally {
    await control({ tool_calls: 'off', rich: false });
  }
});

test('the in-process engine through the SDK: JSON, a stream with usage, the models list', async () => {
  const res = await client().chat.completions.create({
    model: 'tiny', messages: [{ role: 'user', content: 'Hello engine' }], n: 2, max_tokens: 8,
  });
  assert.equal(res.choices.length, 2);
  assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + res.usage.completion_tokens);
  for (const c of res.choices) assert.ok(['stop', 'length'].includes(c.finish_reason));

  const stream = await client().chat.completions.create({
    model: 'tiny', messages: [{ role: 'user', content: 'Stream, engine' }], max_tokens: 8, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta?.content) { text += c.delta.content; chunks++; }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.ok(chunks >= 2, `text arrives in pieces (${chunks})`);
  assert.ok(['stop', 'length'].includes(finish));
  assert.ok(usage && usage.completion_tokens >= 1 && usage.completion_tokens <= 8);
  // The streamed sample is stored: a JSON request in another namespace reads it back.
  const ns = new OpenAI({ apiKey: 'sk-sdk-test-key', baseURL: `http://127.0.0.1:${proxyPort}/ns/other/v1`, maxRetries: 0 });
  const replay = await ns.chat.completions.create({
    model: 'tiny', messages: [{ role: 'user', content: 'Stream, engine' }], max_tokens: 8,
  });
  assert.equal(replay.choices[0].message.content, text);

  const models = await client().models.list();
  assert.ok(models.data.some((m) => m.id === 'tiny' && m.owned_by === 'reprise-engine'));
  await assert.rejects(
    client().chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], logprobs: true }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'logprobs',
  );
});
