// The Google Gen AI SDK (@google/genai) pointed at Reprise: generateContent and
// generateContentStream, text and a function call, and a two-turn function loop, each
// run once live and again in fresh namespaces, where it must make no upstream call and
// say the same. Its base URL is the namespace's root (the SDK appends
// /{apiVersion}/models/{model}:generateContent). The SDK's default apiVersion is "v1"
// since 2.x; Reprise serves Gemini under /v1 and /v1beta alike: the first client
// keeps the default, the second names v1beta.
// Run by ctest as "sdk: google-genai".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { GoogleGenAI, Type } from '@google/genai';
import { startStack } from './harness.mjs';

let stack;
before(async () => { stack = await startStack(); });
after(() => stack?.stop());

// The one line that points the Gemini SDK at Reprise: httpOptions.baseUrl. Odd-numbered
// namespaces name v1beta, the others keep the SDK's default v1, so a live run and its
// replays cross the two paths (one key: the version is not in it).
const client = (ns) => new GoogleGenAI({ apiKey: 'gemini-sdk-key',
  httpOptions: /[13579]$/.test(ns) ? { baseUrl: stack.nsUrl(ns), apiVersion: 'v1beta' } : { baseUrl: stack.nsUrl(ns) } });
const MODEL = 'gemini-2.5-flash';  // routed to the gemini upstream by [[models]] gemini*
const tools = [{
  functionDeclarations: [{
    name: 'lookup', description: 'Looks a query up',
    parameters: { type: Type.OBJECT, properties: { query: { type: Type.STRING } }, required: ['query'] },
  }],
}];

// What an answer says: the response id, each part (text, function calls with their
// ids where the API gives one), the finish reason and the token counts.
const part = (p) => (p.functionCall ? { functionCall: p.functionCall } : p.text !== undefined ? { text: p.text } : p);
const said = (r) => ({
  responseId: r.responseId,
  parts: r.candidates[0].content.parts.map(part),
  finishReason: r.candidates[0].finishReason,
  usage: { prompt: r.usageMetadata?.promptTokenCount, candidates: r.usageMetadata?.candidatesTokenCount },
});
const generate = (ns, params) => client(ns).models.generateContent(params).then(said);
// The chunks joined as a client joins them: text pieces appended, other parts kept.
async function generateStreamed(ns, params) {
  const parts = [];
  let last;
  let chunks = 0;
  for await (const chunk of await client(ns).models.generateContentStream(params)) {
    chunks++;
    last = chunk;
    for (const p of chunk.candidates?.[0]?.content?.parts ?? []) {
      if (p.text !== undefined && parts.at(-1)?.text !== undefined && !p.thought) parts.at(-1).text += p.text;
      else parts.push(part(structuredClone(p)));
    }
  }
  assert.ok(chunks > 1, 'the answer arrives in chunks');
  return {
    responseId: last.responseId, parts, finishReason: last.candidates[0].finishReason,
    usage: { prompt: last.usageMetadata?.promptTokenCount, candidates: last.usageMetadata?.candidatesTokenCount },
  };
}
const send = (streaming) => (streaming ? generateStreamed : generate);

for (const streaming of [false, true]) {
  const how = streaming ? 'generateContentStream' : 'generateContent';
  const other = send(!streaming);

  test(`${how}: text, replayed by generateContent and generateContentStream with zero upstream calls`, async () => {
    const params = { model: MODEL, contents: `Say something (${how})` };
    const { result: live, calls } = await stack.counting(() => send(streaming)(stack.fresh('text'), params));
    assert.equal(calls, 1);
    assert.equal(live.finishReason, 'STOP');
    assert.ok(live.parts[0].text.length > 0);
    assert.deepEqual(await stack.replayed((ns) => send(streaming)(ns, params)), live);
    assert.deepEqual(await stack.replayed((ns) => other(ns, params)), live);
  });

  test(`${how}: a function call, replayed by generateContent and generateContentStream with zero upstream calls`, async () => {
    const params = { model: MODEL, contents: `Use the tool (${how})`, config: { tools } };
    const { result: live, calls } = await stack.counting(() => send(streaming)(stack.fresh('tool'), params));
    assert.equal(calls, 1);
    const call = live.parts.find((p) => p.functionCall)?.functionCall;
    assert.ok(call, `a function call in ${JSON.stringify(live.parts)}`);
    assert.equal(call.name, 'lookup');
    assert.equal(typeof call.args, 'object');
    assert.deepEqual(await stack.replayed((ns) => send(streaming)(ns, params)), live);
    assert.deepEqual(await stack.replayed((ns) => other(ns, params)), live);
  });
}

// Two turns: the model calls lookup, its response goes back, the model answers in
// text. The model turn goes back as the parts the API defines, so both forms send the
// same second request.
async function loop(ns, streaming) {
  const contents = [{ role: 'user', parts: [{ text: 'Look it up, then answer' }] }];
  const first = await send(streaming)(ns, { model: MODEL, contents, config: { tools } });
  contents.push({ role: 'model', parts: first.parts });
  contents.push({
    role: 'user',
    parts: first.parts.filter((p) => p.functionCall).map(({ functionCall: c }) =>
      ({ functionResponse: { ...(c.id ? { id: c.id } : {}), name: c.name, response: { result: `found: ${JSON.stringify(c.args)}` } } })),
  });
  const second = await send(streaming)(ns, { model: MODEL, contents, config: { tools } });
  return [first, second];
}

test('a two-turn function loop replays with zero upstream calls, streamed and not', async () => {
  const { result: live, calls } = await stack.counting(() => loop(stack.fresh('loop'), false));
  assert.equal(calls, 2);
  assert.ok(live[0].parts.some((p) => p.functionCall));
  assert.ok(live[1].parts.some((p) => p.text?.length > 0), 'the second turn answers in text');
  assert.deepEqual(await stack.replayed((ns) => loop(ns, false)), live);
  assert.deepEqual(await stack.replayed((ns) => loop(ns, true)), live);
});
