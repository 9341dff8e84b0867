// Reprise's engine vs llama.cpp (node-llama-cpp 3.22.1, its prebuilt CPU build) on the
// CPU: prefill and decode tokens/s of the same generated ~100M-parameter GGUF file, at
// the same thread count, in one run.
//   node bench/engine/run.mjs [--build build] [--fixtures ../shared/fixtures]
//       [--threads 1,2] [--types q8_0,q4_0] [--rounds 5] [--prompt 128] [--decode 64]
//       [--out bench/results/engine_vs_llamacpp.md]
// The model: reprise-make-model random, the llama-spm vocabulary (32,000 tokens), dim 768,
// FFN 2048, 12 layers, 12 heads over 4 KV heads, output tied to the embedding (100.2M
// parameters, 24.6M of them the embedding). Prefill: the same PROMPT token ids as one
// batch, logits of the last token only; decode: DECODE greedy tokens one at a time.
// Rounds alternate between the two implementations (engine, llama.cpp, engine, ...)
// so that load from elsewhere on the machine hits both alike; each figure is the best
// of ROUNDS, with the range of all rounds beside it.
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const BUILD = path.resolve(opt("--build", path.join(ROOT, "build")));
const FIXTURES = path.resolve(opt("--fixtures", fs.existsSync(path.join(ROOT, "../shared/fixtures")) ? path.join(ROOT, "../shared/fixtures") : "/work/shared/fixtures"));
const THREADS = opt("--threads", "1,2").split(",").map(Number);
const TYPES = opt("--types", "q8_0,q4_0").split(",");
const ROUNDS = Number(opt("--rounds", "5"));
const PROMPT = Number(opt("--prompt", "128"));
const DECODE = Number(opt("--decode", "64"));
const OUT = opt("--out", path.join(ROOT, "bench/results/engine_vs_llamacpp.md"));
const SHAPE = ["--dim", "768", "--hidden", "2048", "--layers", "12", "--heads", "12", "--kv-heads", "4", "--ctx", "1024", "--tied", "--seed", "1"];

const nlcDir = path.join(ROOT, "tests/engine/llamacpp/node_modules/node-llama-cpp");
if (!fs.existsSync(nlcDir)) {
    console.error(`${nlcDir} is missing: run make sdk-deps`);
    process.exit(1);
}
const {getLlama} = await import(path.join(nlcDir, "dist/index.js"));
const llama = await getLlama({gpu: false, build: "never", logLevel: "error", maxThreads: 0});

function run(bin, argv) {
    const r = spawnSync(path.join(BUILD, bin), argv, {encoding: "utf8"});
    if (r.error || r.status !== 0) throw new Error(`${bin}: ${r.error ? r.error.message : r.stderr}`);
    return r.stdout;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "reprise-bench-engine-"));
process.on("exit", () => fs.rmSync(tmp, {recursive: true, force: true}));
const vocab = path.join(FIXTURES, "vocab/ggml-vocab-llama-spm.gguf");

async function llamaRound(model, threads) {
    // llama.cpp's defaults otherwise (F16 KV cache, flash attention "auto"); the context
    // holds the prompt and the decoded tokens, the batch holds the whole prompt.
    const context = await model.createContext({contextSize: 512, batchSize: 512, threads});
    const seq = context.getSequence();
    const prompt = Array.from({length: PROMPT}, (_, i) => (i * 7919 + 13) % 32000);  // as engine_speed's (llama-spm: 32,000)
    const greedy = {generateNext: {token: true}};
    // Warm-up (untimed), as engine_speed's: 16 tokens and 4 decode steps.
    let o = await seq.controlledEvaluate([...prompt.slice(0, 15), [prompt[15], greedy]]);
    let tok = o[15].next.token;
    for (let i = 0; i < 4; ++i) tok = (await seq.controlledEvaluate([[tok, greedy]]))[0].next.token;
    await seq.clearHistory();
    const t0 = process.hrtime.bigint();
    o = await seq.controlledEvaluate([...prompt.slice(0, -1), [prompt[PROMPT - 1], greedy]]);
    const t1 = process.hrtime.bigint();
    tok = o[PROMPT - 1].next.token;
    for (let i = 0; i < DECODE; ++i) tok = (await seq.controlledEvaluate([[tok, greedy]]))[0].next.token;
    const t2 = process.hrtime.bigint();
    await context.dispose();
    return {prefill: PROMPT / (Number(t1 - t0) / 1e9), decode: DECODE / (Number(t2 - t1) / 1e9)};
}

function engineRound(modelPath, threads) {
    const out = run("engine_speed", [modelPath, "--threads", String(threads), "--prompt", String(PROMPT), "--decode", String(DECODE)]);
    const m = /prefill_tok_s (\S+) decode_tok_s (\S+)/.exec(out);
    return {prefill: Number(m[1]), decode: Number(m[2])};
}

const results = [];
for (const type of TYPES) {
    const modelPath = path.join(tmp, `bench-${type}.gguf`);
    run("reprise-make-model", ["random", "--vocab", vocab, "--out", modelPath, "--type", type, ...SHAPE]);
    const model = await llama.loadModel({modelPath});
    for (const threads of THREADS) {
        const e = [], l = [];
        for (let r = 0; r < ROUNDS; ++r) {
            e.push(engineRound(modelPath, threads));
            l.push(await llamaRound(model, threads));
            process.stderr.write(`${type} threads=${threads} round ${r}: engine ${e[r].prefill.toFixed(1)} / ${e[r].decode.toFixed(2)}, ` +
                `llama.cpp ${l[r].prefill.toFixed(1)} / ${l[r].decode.toFixed(2)} tok/s (prefill / decode)\n`);
        }
        results.push({type, threads, e, l});
    }
    await model.dispose();
    fs.rmSync(modelPath);
}
const systemInfo = llama.systemInfo.trim(), release = llama.llamaCppRelease.release;
await llama.dispose();

const best = (xs, k) => Math.max(...xs.map((x) => x[k]));
const range = (xs, k) => `${Math.min(...xs.map((x) => x[k])).toFixed(1)}-${Math.max(...xs.map((x) => x[k])).toFixed(1)}`;
const rows = results.map(({type, threads, e, l}) => {
    const cells = [];
    for (const k of ["prefill", "decode"]) {
        const be = best(e, k), bl = best(l, k);
        cells.push(`${be.toFixed(1)} (${range(e, k)})`, `${bl.toFixed(1)} (${range(l, k)})`, `${(be / bl).toFixed(2)}`);
    }
    return `| ${type.toUpperCase()} | ${threads} | ${cells.join(" | ")} |`;
});
const cpu = os.cpus()[0]?.model ?? "unknown CPU";
const flags = (fs.readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1] ?? "").split(" ");
const simd = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni"].filter((f) => flags.includes(f)).join(" ");
const table = [
    `| type | threads | engine prefill tok/s | llama.cpp prefill tok/s | engine / llama.cpp | engine decode tok/s | llama.cpp decode tok/s | engine / llama.cpp |`,
    `|---|---|---|---|---|---|---|---|`,
    ...rows,
].join("\n");
const md = `# Engine vs llama.cpp on the CPU

\`make bench-engine\` (bench/engine/run.mjs), ${new Date().toISOString().slice(0, 10)}.

- Model: generated by \`reprise-make-model random\` (random weights, llama-spm vocabulary of
  32,000 tokens), dim 768, FFN 2048, 12 layers, 12 heads / 4 KV heads, output tied to the
  embedding: 100.2M parameters; the same GGUF file for both.
- Prefill: ${PROMPT} tokens in one batch (logits of the last one only). Decode: ${DECODE} greedy
  tokens, one at a time, after that prompt.
- Engine: \`engine_speed\` (F32 KV cache; AVX2 kernels). llama.cpp: node-llama-cpp 3.22.1's
  prebuilt CPU build (llama.cpp release ${release}), its defaults otherwise (F16 KV cache, flash
  attention auto), driven from Node (one native call per decoded token); its CPU backend
  here: \`${systemInfo}\`.
- Best of ${ROUNDS} rounds per figure (the range of all rounds in parentheses); rounds alternate
  between the two, so other load on the machine hits both. Machine: ${cpu}, ${os.cpus().length}
  logical CPUs (SIMD: ${simd}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB.

${table}
`;
console.log(table);
// Hand-written notes below a "<!-- notes -->" line of the previous file are kept.
const MARK = "<!-- notes -->";
const old = fs.existsSync(OUT) ? fs.readFileSync(OUT, "utf8") : "";
const notes = old.includes(MARK) ? "\n" + old.slice(old.indexOf(MARK)) : "";
fs.mkdirSync(path.dirname(OUT), {recursive: true});
fs.writeFileSync(OUT, md + notes);
console.log(`written to ${path.relative(process.cwd(), OUT)}`);
