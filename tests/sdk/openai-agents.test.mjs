// The OpenAI Agents SDK (@openai/agents) pointed at Reprise: an Agent with a function
// tool run to its final output (a two-turn loop: the model calls the tool, then
// answers), once live and again in fresh namespaces, where it must make no upstream
// call and end the same. Its default API is Responses; the Chat Completions variant
// runs the same checks. Tracing is off (it would post to api.openai.com).
// setDefaultOpenAIClient is what a user writes once; the default runner keeps the first
// client it sees, so the runs in other namespaces each get a Runner of their own.
// Run by ctest as "sdk: openai-agents".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Agent, OpenAIProvider, Runner, run, tool, setDefaultOpenAIClient, setTracingDisabled } from '@openai/agents';
import { z } from 'zod';
import { startStack } from './harness.mjs';

let stack;
before(async () => { stack = await startStack(); setTracingDisabled(true); });
after(() => stack?.stop());

const client = (ns) => new OpenAI({ baseURL: `${stack.nsUrl(ns)}/v1`, apiKey: 'sk-agents-key', maxRetries: 0 });
const runner = (api, ns) =>
  new Runner({ modelProvider: new OpenAIProvider({ openAIClient: client(ns), useResponses: api === 'responses' }) });

// On Chat Completions the fake's tool_calls knob decides whether the model calls the
// tool, so a live run turns it off once the tool has run; Responses needs no knob.
function agent(api, live) {
  const knob = live && api === 'chat_completions';
  const lookup = tool({
    name: 'lookup',
    description: 'Looks a query up',
    parameters: z.object({ query: z.string() }),
    execute: async ({ query }) => {
      if (knob) await stack.fakeControl({ tool_calls: 'off' });
      return `found: ${query}`;
    },
  });
  return new Agent({ name: 'Researcher', instructions: 'Look things up, then answer.', model: 'gpt-4o-mini', tools: [lookup] });
}

// What a run ended with: the final output, the tool calls and their outputs with their
// ids, and (Responses) the id of the last response.
function ended(api, result) {
  const items = result.newItems.map((item) => {
    const raw = item.rawItem;
    if (raw.type === 'function_call') return { call: raw.callId, name: raw.name, arguments: raw.arguments };
    if (raw.type === 'function_call_result') return { result: raw.callId, output: raw.output };
    return { type: raw.type };
  });
  return { finalOutput: result.finalOutput, items, ...(api === 'responses' ? { lastResponseId: result.lastResponseId } : {}) };
}

// `runWith` defaults to a Runner of the api's own in namespace ns.
async function runAgent(api, ns, { streaming, live = false, input, runWith = runner(api, ns) }) {
  if (live && api === 'chat_completions') await stack.fakeControl({ tool_calls: 'function' });
  try {
    if (!streaming) return ended(api, await runWith.run(agent(api, live), input));
    const result = await runWith.run(agent(api, live), input, { stream: true });
    let events = 0;
    for await (const event of result) events++;
    await result.completed;
    assert.ok(events > 2, 'the run streams events');
    return ended(api, result);
  } finally {
    if (live && api === 'chat_completions') await stack.fakeControl({ tool_calls: 'off' });
  }
}

// First in the file: the default runner has not yet seen a client.
test('setDefaultOpenAIClient: the default run() goes through Reprise (Responses) and replays', async () => {
  setDefaultOpenAIClient(client(stack.fresh('default')));  // the one line a user writes
  const input = 'Find the answer (the default client)';
  const { result: live, calls } = await stack.counting(() =>
    runAgent('responses', null, { streaming: false, live: true, input, runWith: { run } }));
  assert.equal(calls, 2, 'a tool call, then the answer');
  assert.equal(live.items[0].name, 'lookup');
  assert.deepEqual(await stack.replayed((ns) => runAgent('responses', ns, { streaming: false, input })), live);
});

for (const api of ['responses', 'chat_completions']) {
  for (const streaming of [false, true]) {
    const how = streaming ? 'streamed run' : 'run';
    test(`${api}: an Agent with a function tool, ${how}, replayed in fresh namespaces with zero upstream calls`, async () => {
      const opts = { streaming, input: `Find the answer (${api}, ${how})` };
      const { result: live, calls } = await stack.counting(() => runAgent(api, stack.fresh(api), { ...opts, live: true }));
      assert.equal(calls, 2, 'a tool call, then the answer');
      const [call, output, message] = live.items;
      assert.equal(call.name, 'lookup');
      assert.ok(call.call.startsWith('call_'), call.call);
      assert.deepEqual(output, { result: call.call, output: { type: 'text', text: `found: ${JSON.parse(call.arguments).query}` } });
      assert.deepEqual(message, { type: 'message' });
      assert.ok(typeof live.finalOutput === 'string' && live.finalOutput.length > 0);
      if (api === 'responses') assert.match(live.lastResponseId, /^resp_/);
      assert.deepEqual(await stack.replayed((ns) => runAgent(api, ns, opts)), live);
      assert.deepEqual(await stack.replayed((ns) => runAgent(api, ns, { ...opts, streaming: !streaming })), live);
    });
  }
}
