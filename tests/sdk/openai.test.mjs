// The official OpenAI Node SDK pointed at the real reprise binary, which relays to the
// fake upstream (tests/sdk/harness.mjs): Chat Completions (text, tool calls, streams,
// errors, the cache across namespaces), the Responses API with a function tool, and the
// in-process engine. Run by ctest as "sdk: openai".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startStack } from './harness.mjs';

let stack;
before(async () => { stack = await startStack({ engine: true }); });
after(() => stack?.stop());

const client = () => new OpenAI({ apiKey: 'sk-sdk-test-key', baseURL: `${stack.proxyUrl}/v1`, maxRetries: 0 });

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
  const stats = await stack.fakeStats();
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
  const ns = new OpenAI({ apiKey: 'sk-x', baseURL: `${stack.nsUrl('sdk-run')}/v1`, maxRetries: 0 });
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
  await fetch(`${stack.fakeUrl}/_fake/control`, {
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
    await fetch(`${stack.fakeUrl}/_fake/control`, { method: 'POST', body: JSON.stringify({ retry_after: null }) });
  }
});

test('cache: a namespace replays another one\'s samples, as JSON and as an SSE stream', async () => {
  const inNs = (ns) => new OpenAI({ apiKey: 'sk-sdk-test-key', baseURL: `${stack.nsUrl(ns)}/v1`, maxRetries: 0 });
  const params = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Replay me' }], n: 2 };
  const callsBefore = (await stack.fakeStats()).calls;
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
  assert.equal((await stack.fakeStats()).calls, callsBefore + 1);  // the replay made no call

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
  const control = (knobs) => fetch(`${stack.fakeUrl}/_fake/control`,
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
    const live = await final(`${stack.fakeUrl}/v1`);
    assert.equal(live.choices[0].message.content, null);
    assert.equal(live.choices[0].message.tool_calls.length, 1);
    assert.equal(live.service_tier, 'default');
    assert.deepEqual(await final(`${stack.nsUrl('sdk-tools-a')}/v1`), live);  // the miss
    assert.deepEqual(await final(`${stack.nsUrl('sdk-tools-b')}/v1`), live);  // the replay
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
  const ns = new OpenAI({ apiKey: 'sk-sdk-test-key', baseURL: `${stack.nsUrl('other')}/v1`, maxRetries: 0 });
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

// ---- Tool calls through the cache: the first run live, the same run replayed in fresh
// namespaces with zero upstream calls and the same answer (ids included), JSON and SSE.

const KEY = 'sk-sdk-test-key';  // one credential throughout: the tenant is part of the key
const inNs = (ns) => new OpenAI({ apiKey: KEY, baseURL: `${stack.nsUrl(ns)}/v1`, maxRetries: 0 });
const lookupChatTool = {
  type: 'function',
  function: {
    name: 'lookup', description: 'Looks a query up',
    parameters: { type: 'object', properties: { query: { type: 'string' } }, required: ['query'] },
  },
};
// What a chat answer says. Not its id: a chat answer may join samples of several
// upstream calls, so Reprise names each answer afresh (tool call ids are the samples').
const chatOutput = (c) => ({
  choices: c.choices.map((ch) => ({
    content: ch.message.content ?? null,
    tool_calls: (ch.message.tool_calls ?? []).map(({ id, type, function: f }) => ({ id, type, name: f.name, arguments: f.arguments })),
    finish_reason: ch.finish_reason,
  })),
  usage: c.usage,
});
const chatJson = (ns, params) => inNs(ns).chat.completions.create(params);
const chatStreamed = (ns, params) =>
  inNs(ns).chat.completions.stream({ ...params, stream_options: { include_usage: true } }).finalChatCompletion();

test('chat with a tool: JSON miss, replayed as JSON (the stored body) and as a stream, zero calls', async () => {
  await stack.fakeControl({ tool_calls: 'function' });
  try {
    const params = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Which tool?' }], tools: [lookupChatTool] };
    const { result: live, calls } = await stack.counting(() => chatJson(stack.fresh('chat-tool'), params));
    assert.equal(calls, 1);
    const call = live.choices[0].message.tool_calls[0];
    assert.equal(live.choices[0].finish_reason, 'tool_calls');
    assert.equal(call.function.name, 'lookup');
    assert.match(call.id, /^call_/);
    assert.ok(JSON.parse(call.function.arguments).query.length > 0);
    const { id, ...stored } = live;
    const { id: replayedId, ...replayed } = await stack.replayed((ns) => chatJson(ns, params));
    assert.deepEqual(replayed, stored);
    assert.deepEqual(chatOutput(await stack.replayed((ns) => chatStreamed(ns, params))), chatOutput(live));
  } finally {
    await stack.fakeControl({ tool_calls: 'off' });
  }
});

test('streamed tool calls: a streamed miss, replayed as a stream and as JSON, zero calls', async () => {
  await stack.fakeControl({ tool_calls: 'function' });
  try {
    const params = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Stream a tool call' }], tools: [lookupChatTool] };
    // The arguments as the SDK's raw iterator sees them, delta by delta.
    const pieces = async (ns) => {
      const stream = await inNs(ns).chat.completions.create({ ...params, stream: true });
      const args = [];
      for await (const chunk of stream)
        for (const tc of chunk.choices[0]?.delta?.tool_calls ?? []) if (tc.function?.arguments) args.push(tc.function.arguments);
      return args;
    };
    const { result: live, calls } = await stack.counting(() => chatStreamed(stack.fresh('chat-stream-tool'), params));
    assert.equal(calls, 1);
    assert.equal(live.choices[0].message.tool_calls[0].function.name, 'lookup');
    assert.deepEqual(chatOutput(await stack.replayed((ns) => chatStreamed(ns, params))), chatOutput(live));
    assert.deepEqual(chatOutput(await stack.replayed((ns) => chatJson(ns, params))), chatOutput(live));
    const args = await stack.replayed((ns) => pieces(ns));
    assert.equal(args.join(''), live.choices[0].message.tool_calls[0].function.arguments);
  } finally {
    await stack.fakeControl({ tool_calls: 'off' });
  }
});

// Two turns: the model calls lookup, the tool answers, the model answers in text. The
// fake is told which to do per turn (`live`); a replay needs no fake at all. Turn 2
// sends the call back as a plain assistant message, so JSON and streamed runs send
// the same second request.
async function chatLoop(ns, { stream, live }) {
  const send = stream ? chatStreamed : chatJson;
  const messages = [{ role: 'user', content: 'Look it up, then answer' }];
  if (live) await stack.fakeControl({ tool_calls: 'function' });
  const first = await send(ns, { model: 'gpt-4o-mini', messages, tools: [lookupChatTool] });
  const calls = first.choices[0].message.tool_calls.map(({ id, type, function: f }) =>
    ({ id, type, function: { name: f.name, arguments: f.arguments } }));
  messages.push({ role: 'assistant', content: null, tool_calls: calls });
  for (const c of calls)
    messages.push({ role: 'tool', tool_call_id: c.id, content: `found: ${JSON.parse(c.function.arguments).query}` });
  if (live) await stack.fakeControl({ tool_calls: 'off' });
  const second = await send(ns, { model: 'gpt-4o-mini', messages, tools: [lookupChatTool] });
  return [chatOutput(first), chatOutput(second)];
}

test('a two-turn chat tool loop replays with zero upstream calls, streamed and not', async () => {
  try {
    const { result: live, calls } = await stack.counting(() => chatLoop(stack.fresh('chat-loop'), { stream: false, live: true }));
    assert.equal(calls, 2);
    assert.equal(live[0].choices[0].tool_calls.length, 1);
    assert.ok(live[1].choices[0].content.length > 0);
    assert.equal(live[1].choices[0].finish_reason, 'stop');
    assert.deepEqual(await stack.replayed((ns) => chatLoop(ns, { stream: false, live: false })), live);
    assert.deepEqual(await stack.replayed((ns) => chatLoop(ns, { stream: true, live: false })), live);
  } finally {
    await stack.fakeControl({ tool_calls: 'off' });
  }
});

// ---- The Responses API: one sample per call; the fake calls a function tool when
// tools are given and the last input is not a tool result, else answers in text.

const lookupTool = {
  type: 'function', name: 'lookup', description: 'Looks a query up', strict: false,
  parameters: { type: 'object', properties: { query: { type: 'string' } }, required: ['query'] },
};
// What a response says: ids, items, usage (less created_at and the like), without
// what the SDK's stream helper adds on the client (parsed_arguments on function calls,
// parsed on output_text parts, which responses.create never sets).
const withoutClientFields = (item) => {
  const { parsed_arguments, ...rest } = item;
  if (Array.isArray(rest.content)) rest.content = rest.content.map(({ parsed, ...part }) => part);
  return rest;
};
const responseOutput = (r) => ({ id: r.id, status: r.status, output: r.output.map(withoutClientFields), usage: r.usage,
                                 output_text: r.output_text });
const responseJson = (ns, params) => inNs(ns).responses.create(params);
const responseStreamed = (ns, params) => inNs(ns).responses.stream(params).finalResponse();
// The raw events of create({stream: true}) and the response of the terminal one.
async function responseEvents(ns, params) {
  const events = [];
  for await (const event of await inNs(ns).responses.create({ ...params, stream: true })) events.push(event);
  return events;
}

test('responses.create with a function tool: a JSON miss, replayed as JSON and as a stream, zero calls', async () => {
  const params = { model: 'gpt-4o-mini', input: 'Use the tool', tools: [lookupTool] };
  const { result: live, calls } = await stack.counting(() => responseJson(stack.fresh('resp'), params));
  assert.equal(calls, 1);
  assert.match(live.id, /^resp_/);
  assert.equal(live.status, 'completed');
  const call = live.output.find((item) => item.type === 'function_call');
  assert.ok(call, `a function call in ${JSON.stringify(live.output)}`);
  assert.equal(call.name, 'lookup');
  assert.match(call.call_id, /^call_/);
  assert.deepEqual(await stack.replayed((ns) => responseJson(ns, params)), live);
  assert.deepEqual(responseOutput(await stack.replayed((ns) => responseStreamed(ns, params))), responseOutput(live));
  // GET /v1/responses/{id}: a served id is answered from the stored sample.
  assert.deepEqual(responseOutput(await inNs(stack.fresh('resp-get')).responses.retrieve(live.id)), responseOutput(live));
});

test('a streamed response (create({stream: true}) and responses.stream): the events in order, replayed', async () => {
  const params = { model: 'gpt-4o-mini', input: 'Stream some text' };
  const { result: events, calls } = await stack.counting(() => responseEvents(stack.fresh('resp-stream'), params));
  assert.equal(calls, 1);
  assert.equal(events[0].type, 'response.created');
  assert.equal(events.at(-1).type, 'response.completed');
  assert.ok(events.some((e) => e.type === 'response.output_text.delta'));
  events.forEach((e, i) => i && assert.ok(e.sequence_number > events[i - 1].sequence_number, 'sequence numbers increase'));
  const live = events.at(-1).response;
  const text = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
  assert.equal(live.output.find((i) => i.type === 'message').content[0].text, text);
  // The replayed stream is the same event sequence (types and sequence numbers).
  const again = await stack.replayed((ns) => responseEvents(ns, params));
  assert.deepEqual(again.map((e) => [e.type, e.sequence_number]), events.map((e) => [e.type, e.sequence_number]));
  assert.deepEqual(again.at(-1).response.output, live.output);
  assert.equal(again.at(-1).response.id, live.id);
  const json = await stack.replayed((ns) => responseJson(ns, params));
  assert.deepEqual([json.id, json.output, json.usage], [live.id, live.output, live.usage]);
  assert.equal(json.output_text, text);
  const accumulated = await stack.replayed((ns) => responseStreamed(ns, params));
  assert.deepEqual(responseOutput(accumulated), responseOutput(json));
});

test('a streamed function call (responses.stream) replayed as JSON and as a stream', async () => {
  const params = { model: 'gpt-4o-mini', input: 'Stream a tool call', tools: [lookupTool] };
  const { result: live, calls } = await stack.counting(() => responseStreamed(stack.fresh('resp-stream-tool'), params));
  assert.equal(calls, 1);
  assert.ok(live.output.some((item) => item.type === 'function_call' && item.name === 'lookup'));
  assert.deepEqual(responseOutput(await stack.replayed((ns) => responseStreamed(ns, params))), responseOutput(live));
  assert.deepEqual(responseOutput(await stack.replayed((ns) => responseJson(ns, params))), responseOutput(live));
});

// Two turns in the stateless form (no previous_response_id): the call and its output go
// back as input items, as agent frameworks send them with store off.
async function responsesLoop(ns, { stream }) {
  const send = stream ? responseStreamed : responseJson;
  const input = [{ role: 'user', content: 'Look it up, then answer' }];
  const first = await send(ns, { model: 'gpt-4o-mini', input, tools: [lookupTool], store: false });
  for (const item of first.output.filter((i) => i.type === 'function_call')) {
    input.push({ type: 'function_call', call_id: item.call_id, name: item.name, arguments: item.arguments });
    input.push({ type: 'function_call_output', call_id: item.call_id, output: `found: ${item.arguments}` });
  }
  const second = await send(ns, { model: 'gpt-4o-mini', input, tools: [lookupTool], store: false });
  return [responseOutput(first), responseOutput(second)];
}

test('a two-turn Responses tool loop replays with zero upstream calls, streamed and not', async () => {
  const { result: live, calls } = await stack.counting(() => responsesLoop(stack.fresh('resp-loop'), { stream: false }));
  assert.equal(calls, 2);
  assert.ok(live[0].output.some((i) => i.type === 'function_call'));
  assert.ok(live[1].output_text.length > 0, 'the second turn answers in text');
  assert.deepEqual(await stack.replayed((ns) => responsesLoop(ns, { stream: false })), live);
  assert.deepEqual(await stack.replayed((ns) => responsesLoop(ns, { stream: true })), live);
});
