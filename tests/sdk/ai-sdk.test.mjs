// The Vercel AI SDK (ai + @ai-sdk/openai) pointed at Reprise: generateText and
// streamText through the default model (the Responses API) and through openai.chat
// (Chat Completions), text and a two-step tool loop (stopWhen), each run once live and
// again in fresh namespaces, where it must make no upstream call and say the same.
// Run by ctest as "sdk: ai-sdk".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateText, streamText, tool, isStepCount } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { z } from 'zod';
import { startStack } from './harness.mjs';

let stack;
before(async () => { stack = await startStack(); });
after(() => stack?.stop());

// The one line that points the AI SDK at Reprise: createOpenAI({ baseURL }).
const provider = (ns) => createOpenAI({ baseURL: `${stack.nsUrl(ns)}/v1`, apiKey: 'sk-ai-sdk-key' });
const APIS = {
  // openai(model) speaks the Responses API; the fake calls a function tool whenever
  // tools are given and the last input is not a tool result.
  responses: { model: (ns) => provider(ns)('gpt-4o-mini'), ids: true },
  // openai.chat(model) speaks Chat Completions; the fake's tool_calls knob decides, so
  // a live run sets it per step (`live`). A chat answer's id is Reprise's own per
  // answer (it may join samples of several calls), so only tool call ids compare.
  chat: { model: (ns) => provider(ns).chat('gpt-4o-mini'), ids: false, knob: true },
};

// What a run said, step by step: text, tool calls and results with their ids, the
// finish reason, usage, and (Responses) the response id.
const said = (steps, api) => steps.map((s) => ({
  text: s.text,
  toolCalls: s.toolCalls.map(({ toolCallId, toolName, input }) => ({ toolCallId, toolName, input })),
  toolResults: s.toolResults.map(({ toolCallId, output }) => ({ toolCallId, output })),
  finishReason: s.finishReason,
  usage: { input: s.usage.inputTokens, output: s.usage.outputTokens },
  ...(APIS[api].ids ? { responseId: s.response.id } : {}),
}));

async function run(api, ns, { streaming, prompt, tools = false, live = false }) {
  const knob = live && APIS[api].knob;
  const settings = { model: APIS[api].model(ns), prompt, maxRetries: 0 };
  if (tools) {
    settings.tools = {
      lookup: tool({
        description: 'Looks a query up',
        inputSchema: z.object({ query: z.string() }),
        execute: async ({ query }) => {
          if (knob) await stack.fakeControl({ tool_calls: 'off' });  // step 2 answers in text
          return `found: ${query}`;
        },
      }),
    };
    settings.stopWhen = isStepCount(2);
    if (knob) await stack.fakeControl({ tool_calls: 'function' });
  }
  try {
    if (!streaming) return said((await generateText(settings)).steps, api);
    const result = streamText(settings);
    let deltas = 0;
    for await (const part of result.fullStream) {
      if (part.type === 'error') throw part.error;
      if (part.type === 'text-delta' || part.type === 'tool-input-delta') deltas++;
    }
    assert.ok(deltas > 1, 'the answer arrives in pieces');
    return said(await result.steps, api);
  } finally {
    if (knob) await stack.fakeControl({ tool_calls: 'off' });
  }
}

for (const api of Object.keys(APIS)) {
  for (const streaming of [false, true]) {
    const how = streaming ? 'streamText' : 'generateText';
    const other = { streaming: !streaming };

    test(`${api}: ${how} live, replayed by generateText and streamText with zero upstream calls`, async () => {
      const opts = { streaming, prompt: `Say something (${api}, ${how})` };
      const { result: live, calls } = await stack.counting(() => run(api, stack.fresh(api), opts));
      assert.equal(calls, 1);
      assert.equal(live.length, 1);
      assert.ok(live[0].text.length > 0);
      assert.equal(live[0].finishReason, 'stop');
      if (APIS[api].ids) assert.match(live[0].responseId, /^resp_/);
      assert.deepEqual(await stack.replayed((ns) => run(api, ns, opts)), live);
      assert.deepEqual(await stack.replayed((ns) => run(api, ns, { ...opts, ...other })), live);
    });

    test(`${api}: ${how} with a tool, a two-step loop (stopWhen), replayed with zero upstream calls`, async () => {
      const opts = { streaming, prompt: `Look it up, then answer (${api}, ${how})`, tools: true };
      const { result: live, calls } = await stack.counting(() => run(api, stack.fresh(api), { ...opts, live: true }));
      assert.equal(calls, 2);
      assert.equal(live.length, 2);
      const [call] = live[0].toolCalls;
      assert.equal(call.toolName, 'lookup');
      assert.ok(call.toolCallId.startsWith('call_'), call.toolCallId);
      assert.equal(live[0].finishReason, 'tool-calls');
      assert.deepEqual(live[0].toolResults, [{ toolCallId: call.toolCallId, output: `found: ${call.input.query}` }]);
      assert.ok(live[1].text.length > 0, 'the second step answers in text');
      assert.deepEqual(await stack.replayed((ns) => run(api, ns, opts)), live);
      assert.deepEqual(await stack.replayed((ns) => run(api, ns, { ...opts, ...other })), live);
    });
  }
}
