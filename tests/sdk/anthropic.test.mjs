// The Anthropic SDK (@anthropic-ai/sdk) pointed at Reprise: messages.create and
// messages.stream (finalMessage), text and tool use, and a two-turn tool loop, each
// run once live and again in fresh namespaces, where it must make no upstream call
// and give the same message (ids included). Its base URL is the namespace's root, as
// the SDK appends /v1/messages itself. Run by ctest as "sdk: anthropic".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startStack } from './harness.mjs';

let stack;
before(async () => { stack = await startStack(); });
after(() => stack?.stop());

// The one line that points the Anthropic SDK at Reprise (or ANTHROPIC_BASE_URL).
const client = (ns) => new Anthropic({ apiKey: 'sk-ant-sdk-key', baseURL: stack.nsUrl(ns), maxRetries: 0 });
const MODEL = 'claude-sonnet-4-5';  // routed to the anthropic upstream by [[models]] claude*
const lookupTool = {
  name: 'lookup', description: 'Looks a query up',
  input_schema: { type: 'object', properties: { query: { type: 'string' } }, required: ['query'] },
};

// A content block as a client sends it back: only what the API defines for it.
const block = (b) => (b.type === 'tool_use' ? { type: 'tool_use', id: b.id, name: b.name, input: b.input }
  : b.type === 'text' ? { type: 'text', text: b.text } : { type: b.type });
// What a message says: its id, content, stop reason and token counts.
const said = (m) => ({
  id: m.id, role: m.role, content: m.content.map(block), stop_reason: m.stop_reason,
  usage: { input_tokens: m.usage.input_tokens, output_tokens: m.usage.output_tokens },
});
const create = (ns, params) => client(ns).messages.create(params);
async function streamed(ns, params) {
  const stream = client(ns).messages.stream(params);
  let pieces = 0;
  stream.on('streamEvent', (event) => { if (event.type === 'content_block_delta') pieces++; });
  const message = await stream.finalMessage();
  assert.ok(pieces > 1, 'the message arrives in pieces');
  return message;
}
const send = (streaming) => (streaming ? streamed : create);

for (const streaming of [false, true]) {
  const how = streaming ? 'messages.stream' : 'messages.create';
  const other = send(!streaming);

  test(`${how}: text, replayed by create (the stored message) and by stream with zero upstream calls`, async () => {
    const params = { model: MODEL, max_tokens: 256, messages: [{ role: 'user', content: `Say something (${how})` }] };
    const { result: live, calls } = await stack.counting(() => send(streaming)(stack.fresh('text'), params));
    assert.equal(calls, 1);
    assert.match(live.id, /^msg_/);
    assert.equal(live.type, 'message');
    assert.equal(live.stop_reason, 'end_turn');
    assert.equal(live.content[0].type, 'text');
    assert.ok(live.content[0].text.length > 0);
    const again = await stack.replayed((ns) => send(streaming)(ns, params));
    if (streaming) assert.deepEqual(said(again), said(live)); else assert.deepEqual(again, live);
    assert.deepEqual(said(await stack.replayed((ns) => other(ns, params))), said(live));
  });

  test(`${how}: tool use, replayed by create and by stream with zero upstream calls`, async () => {
    const params = { model: MODEL, max_tokens: 256, tools: [lookupTool], messages: [{ role: 'user', content: `Use the tool (${how})` }] };
    const { result: live, calls } = await stack.counting(() => send(streaming)(stack.fresh('tool'), params));
    assert.equal(calls, 1);
    assert.equal(live.stop_reason, 'tool_use');
    const use = live.content.find((b) => b.type === 'tool_use');
    assert.ok(use, `a tool_use block in ${JSON.stringify(live.content)}`);
    assert.equal(use.name, 'lookup');
    assert.match(use.id, /^toolu_/);
    assert.equal(typeof use.input, 'object');
    assert.deepEqual(said(await stack.replayed((ns) => send(streaming)(ns, params))), said(live));
    assert.deepEqual(said(await stack.replayed((ns) => other(ns, params))), said(live));
  });
}

// Two turns: the model uses lookup, its result goes back, the model answers in text.
// The assistant turn goes back as the blocks the API defines, so create and stream
// send the same second request.
async function loop(ns, streaming) {
  const messages = [{ role: 'user', content: 'Look it up, then answer' }];
  const params = () => ({ model: MODEL, max_tokens: 256, tools: [lookupTool], messages });
  const first = await send(streaming)(ns, params());
  messages.push({ role: 'assistant', content: first.content.map(block) });
  messages.push({
    role: 'user',
    content: first.content.filter((b) => b.type === 'tool_use')
      .map((b) => ({ type: 'tool_result', tool_use_id: b.id, content: `found: ${JSON.stringify(b.input)}` })),
  });
  const second = await send(streaming)(ns, params());
  return [said(first), said(second)];
}

test('a two-turn tool loop replays with zero upstream calls, created and streamed', async () => {
  const { result: live, calls } = await stack.counting(() => loop(stack.fresh('loop'), false));
  assert.equal(calls, 2);
  assert.equal(live[0].stop_reason, 'tool_use');
  assert.equal(live[1].stop_reason, 'end_turn');
  assert.ok(live[1].content.some((b) => b.type === 'text' && b.text.length > 0), 'the second turn answers in text');
  assert.notEqual(live[0].id, live[1].id);
  assert.deepEqual(await stack.replayed((ns) => loop(ns, false)), live);
  assert.deepEqual(await stack.replayed((ns) => loop(ns, true)), live);
});
