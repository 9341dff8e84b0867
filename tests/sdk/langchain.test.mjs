// LangChain's ChatOpenAI (@langchain/openai) pointed at Reprise: invoke, stream and
// bindTools over Chat Completions (its default for gpt-4o-mini), each run once live and
// again in fresh namespaces, where it must make no upstream call and say the same.
// Run by ctest as "sdk: langchain".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ChatOpenAI } from '@langchain/openai';
import { AIMessage, HumanMessage, ToolMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { z } from 'zod';
import { startStack } from './harness.mjs';

let stack;
before(async () => { stack = await startStack(); });
after(() => stack?.stop());

// The one line that points LangChain at Reprise: configuration.baseURL.
const model = (ns) => new ChatOpenAI({
  model: 'gpt-4o-mini', apiKey: 'sk-langchain-key', maxRetries: 0,
  configuration: { baseURL: `${stack.nsUrl(ns)}/v1` },
});
const lookup = tool(async ({ query }) => `found: ${query}`, {
  name: 'lookup', description: 'Looks a query up', schema: z.object({ query: z.string() }),
});

// What a message says: text, tool calls with their ids, usage. Not the message id, the
// chat answer's own, which Reprise names afresh per answer.
const said = (m) => ({
  content: m.content,
  tool_calls: (m.tool_calls ?? []).map(({ name, args, id }) => ({ name, args, id })),
  usage: m.usage_metadata && { input: m.usage_metadata.input_tokens, output: m.usage_metadata.output_tokens },
});
async function streamed(runnable, input) {
  let whole;
  let chunks = 0;
  for await (const chunk of await runnable.stream(input)) { whole = whole ? whole.concat(chunk) : chunk; chunks++; }
  assert.ok(chunks > 1, 'the answer arrives in chunks');
  return whole;
}
const invoke = (ns, input) => model(ns).invoke(input).then(said);
const stream = (ns, input) => streamed(model(ns), input).then(said);

test('invoke: a live answer, replayed by invoke and by stream with zero upstream calls', async () => {
  const { result: live, calls } = await stack.counting(() => invoke(stack.fresh('invoke'), 'Say something'));
  assert.equal(calls, 1);
  assert.ok(live.content.length > 0);
  assert.deepEqual(await stack.replayed((ns) => invoke(ns, 'Say something')), live);
  assert.deepEqual(await stack.replayed((ns) => stream(ns, 'Say something')), live);
});

test('stream: a live streamed answer, replayed by stream and by invoke with zero upstream calls', async () => {
  const { result: live, calls } = await stack.counting(() => stream(stack.fresh('stream'), 'Stream something'));
  assert.equal(calls, 1);
  assert.ok(live.content.length > 0);
  assert.deepEqual(await stack.replayed((ns) => stream(ns, 'Stream something')), live);
  assert.deepEqual(await stack.replayed((ns) => invoke(ns, 'Stream something')), live);
});

// bindTools, then the tool loop an agent runs: the model calls lookup, the tool's
// answer goes back, the model answers in text. The fake is told per turn whether to
// call the tool (`live`); a replay needs no fake. Turn 2 carries the call as LangChain
// parsed it, so invoke and stream send the same second request.
async function loop(ns, { streaming, live, prompt = 'Look it up, then answer' }) {
  const bound = model(ns).bindTools([lookup]);
  const ask = (messages) => (streaming ? streamed(bound, messages) : bound.invoke(messages));
  const messages = [new HumanMessage(prompt)];
  if (live) await stack.fakeControl({ tool_calls: 'function' });
  const first = await ask(messages);
  messages.push(new AIMessage({ content: '', tool_calls: first.tool_calls.map(({ name, args, id }) => ({ name, args, id })) }));
  for (const call of first.tool_calls)
    messages.push(new ToolMessage({ tool_call_id: call.id, content: await lookup.invoke(call.args) }));
  if (live) await stack.fakeControl({ tool_calls: 'off' });
  const second = await ask(messages);
  return [said(first), said(second)];
}

test('bindTools: a tool call, then a two-turn tool loop, replayed with zero upstream calls', async () => {
  try {
    const { result: live, calls } = await stack.counting(() => loop(stack.fresh('tools'), { streaming: false, live: true }));
    assert.equal(calls, 2);
    const [call] = live[0].tool_calls;
    assert.equal(call.name, 'lookup');
    assert.match(call.id, /^call_/);
    assert.ok(call.args.query.length > 0);
    assert.ok(live[1].content.length > 0, 'the second turn answers in text');
    assert.deepEqual(await stack.replayed((ns) => loop(ns, { streaming: false, live: false })), live);
    assert.deepEqual(await stack.replayed((ns) => loop(ns, { streaming: true, live: false })), live);
  } finally {
    await stack.fakeControl({ tool_calls: 'off' });
  }
});

test('bindTools streamed: a live streamed tool call, replayed by stream and invoke', async () => {
  const prompt = 'Stream the lookup';  // a request of its own: not the cache of the test above
  try {
    const { result: live, calls } = await stack.counting(() => loop(stack.fresh('tools-stream'), { streaming: true, live: true, prompt }));
    assert.equal(calls, 2);
    assert.equal(live[0].tool_calls[0].name, 'lookup');
    assert.deepEqual(await stack.replayed((ns) => loop(ns, { streaming: true, live: false, prompt })), live);
    assert.deepEqual(await stack.replayed((ns) => loop(ns, { streaming: false, live: false, prompt })), live);
  } finally {
    await stack.fakeControl({ tool_calls: 'off' });
  }
});
