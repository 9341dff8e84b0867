// Greedy continuations from llama.cpp (node-llama-cpp 3.22.1, CPU, prebuilt binary)
// for a GGUF model and a token-id prompt, compared with the engine's (engine_greedy).
//   node compare.mjs ENGINE_GREEDY MODEL.gguf N ID [ID...]
// Exit 0 when the token sequences are identical, or first differ at a step where the
// engine's top-1/top-2 logit margin is below NEAR_TIE (a tie that summation order
// decides: llama.cpp repacks and accumulates quantized blocks in its own order).
import {getLlama} from "node-llama-cpp";

const [engineGreedy, modelPath, nStr, ...ids] = process.argv.slice(2);
const n = Number(nStr);
const prompt = ids.map(Number);

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath});
// F32 KV cache and no flash attention: llama.cpp's default F16 cache rounds K/V and
// flips near-ties, which would hide real differences behind that rounding.
const context = await model.createContext({
    contextSize: Math.max(64, prompt.length + n + 8), batchSize: 64, threads: 2, flashAttention: false,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"
});
const seq = context.getSequence();
const ref = [];
for await (const tok of seq.evaluate(prompt, {temperature: 0})) {
    ref.push(Number(tok));
    if (ref.length >= n) break;
}
const NEAR_TIE = 0.05;
import {spawnSync} from "node:child_process";
const run = spawnSync(engineGreedy, [modelPath, String(n), ...ids.map(String)],
    {encoding: "utf8", env: {...process.env, REPRISE_MARGIN: "1"}});
if (run.status !== 0) { console.error(run.stderr); process.exit(2); }
const ours = run.stdout.trim().split("\n").map(Number);
const margins = [...run.stderr.matchAll(/margin (\S+)/g)].map(m => Number(m[1]));
let agree = 0;
while (agree < n && ours[agree] === ref[agree]) agree++;
console.log(`${modelPath}: llama.cpp ${ref.join(" ")}`);
console.log(`${modelPath}: engine    ${ours.join(" ")}`);
const tie = agree < n && margins[agree] < NEAR_TIE;
console.log(`${modelPath}: identical prefix ${agree}/${n}` +
    (agree < n ? ` (engine margin at step ${agree}: ${margins[agree]}${tie ? ", a near-tie" : ""})` : ""));
await context.dispose();
await model.dispose();
process.exit(agree === n || tie ? 0 : 1);
