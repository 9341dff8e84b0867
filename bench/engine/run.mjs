// Reprise's engine vs llama.cpp (node-llama-cpp 3.22.1, its prebuilt CPU build) on the
// CPU: prefill and decode tokens/s of the same generated GGUF file, at the same thread
// count, in one run.
//   node bench/engine/run.mjs [--build build] [--fixtures ../shared/fixtures]
//       [--threads 1,2] [--types q8_0,q4_0,q4_k_m] [--qwen-types q4_k_m] [--rounds 5]
//       [--prompt 128] [--decode 64] [--isa avx2] [--out bench/results/engine_vs_llamacpp.md]
// Two models (reprise-make-model random, MODELS below): a Llama of 100.1M parameters
// (llama-spm vocabulary, dim 768, FFN 2048, 12 layers) in each of --types, and a Qwen3
// of 109.3M (the qwen2 vocabulary's 151,936 tokens, dim 512, FFN 1536, 8 layers, head
// size 128 != dim / heads, Q/K norms) in each of --qwen-types (none: --qwen-types "").
// Prefill: the same PROMPT token ids as one batch, logits of the last token only;
// decode: DECODE greedy tokens one at a time. Rounds alternate between the two
// implementations (engine, llama.cpp, engine, ...) so that load from elsewhere on the
// machine hits both alike; each figure is the best of ROUNDS, with the range of all
// rounds beside it. Writes OUT (Markdown), OUT's .json (every round) and .png (the
// chart, bench/engine/run_plot.mjs; needs gnuplot).
// Kernels: by default each side picks its own at run time (the engine its widest path,
// llama.cpp the best scoring libggml-cpu-<variant>.so of its prebuilt build). --isa avx2
// runs both on AVX2 on a wider machine too: the engine with engine_speed --isa avx2, and
// llama.cpp from a temporary copy of the @node-llama-cpp/linux-x64 package whose only
// CPU variant is libggml-cpu-haswell.so (AVX2, FMA, F16C, BMI2; no AVX512, no AVX-VNNI).
// ggml loads the best scoring variant in the addon's folder, and node-llama-cpp finds that
// folder by importing "@node-llama-cpp/linux-x64", which a module resolve hook points at
// the copy. The ISA column names the path each side ran (engine_speed's "isa" line; the
// variant llama.cpp mapped, from /proc/self/maps); default OUT: engine_vs_llamacpp_avx2.md.
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import {register} from "node:module";
import os from "node:os";
import path from "node:path";
import {pathToFileURL} from "node:url";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const BUILD = path.resolve(opt("--build", path.join(ROOT, "build")));
const FIXTURES = path.resolve(opt("--fixtures", fs.existsSync(path.join(ROOT, "../shared/fixtures")) ? path.join(ROOT, "../shared/fixtures") : "/work/shared/fixtures"));
const THREADS = opt("--threads", "1,2").split(",").map(Number);
const TYPES = opt("--types", "q8_0,q4_0,q4_k_m").split(",").filter(Boolean);
const QWEN_TYPES = opt("--qwen-types", "q4_k_m").split(",").filter(Boolean);
const ROUNDS = Number(opt("--rounds", "5"));
const PROMPT = Number(opt("--prompt", "128"));
const DECODE = Number(opt("--decode", "64"));
const ISA = opt("--isa", "");
if (!["", "avx2"].includes(ISA)) {
    console.error(`--isa ${ISA}: only avx2 (without it: each side's widest path)`);
    process.exit(2);
}
const OUT = opt("--out", path.join(ROOT, `bench/results/engine_vs_llamacpp${ISA ? "_" + ISA : ""}.md`));
// n_embd, n_ff, n_layer, n_head, n_head_kv, head size: also for the parameter count.
const MODELS = [
    {name: "Llama", vocab: "ggml-vocab-llama-spm.gguf", types: TYPES, dim: 768, ff: 2048, layers: 12, heads: 12, kvHeads: 4, headDim: 64,
        args: []},
    {name: "Qwen3", vocab: "ggml-vocab-qwen2.gguf", types: QWEN_TYPES, dim: 512, ff: 1536, layers: 8, heads: 8, kvHeads: 4, headDim: 128,
        args: ["--arch", "qwen3", "--head-dim", "128"]},
];
const shapeArgs = (m) => ["--dim", String(m.dim), "--hidden", String(m.ff), "--layers", String(m.layers), "--heads", String(m.heads),
    "--kv-heads", String(m.kvHeads), "--ctx", "1024", "--tied", "--seed", "1", ...m.args];
// Tied output: the embedding counts once. Per layer: Q, K, V, O, the three FFN matrices
// and the norms (qwen3's Q/K norms: head size each).
const paramCount = (m, nVocab) => nVocab * m.dim + m.dim + m.layers * (
    m.dim * m.headDim * (2 * m.heads + 2 * m.kvHeads) + 3 * m.dim * m.ff + 2 * m.dim + (m.args.includes("qwen3") ? 2 * m.headDim : 0));

const nlcDir = path.join(ROOT, "tests/engine/llamacpp/node_modules/node-llama-cpp");
if (!fs.existsSync(nlcDir)) {
    console.error(`${nlcDir} is missing: run make sdk-deps`);
    process.exit(1);
}
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "reprise-bench-engine-"));
process.on("exit", () => fs.rmSync(tmp, {recursive: true, force: true}));
if (ISA === "avx2") {
    // Before node-llama-cpp is imported: its prebuilt binaries from a copy that has no
    // CPU variant but haswell (the rest of the package as it is).
    const pkg = path.join(tmp, "linux-x64-haswell");
    fs.cpSync(path.join(nlcDir, "../@node-llama-cpp/linux-x64"), pkg, {recursive: true,
        filter: (f) => !/^libggml-cpu-.*\.so$/.test(path.basename(f)) || path.basename(f) === "libggml-cpu-haswell.so"});
    const url = pathToFileURL(path.join(pkg, "dist/index.js")).href;
    register("data:text/javascript," + encodeURIComponent(`export async function resolve(specifier, context, next) {
        return specifier === "@node-llama-cpp/linux-x64" ? {url: ${JSON.stringify(url)}, shortCircuit: true} : next(specifier, context);
    }`));
}
const {getLlama} = await import(path.join(nlcDir, "dist/index.js"));
const llama = await getLlama({gpu: false, build: "never", logLevel: "error", maxThreads: 0});
// The CPU variant ggml kept loaded (it unloads the others after scoring them).
const llamaVariant = [...new Set(fs.readFileSync("/proc/self/maps", "utf8").match(/libggml-cpu-[\w-]+\.so/g) ?? [])]
    .map((f) => f.slice("libggml-cpu-".length, -".so".length)).join(", ") || "unknown";
if (ISA === "avx2" && (llamaVariant !== "haswell" || !/AVX2 = 1/.test(llama.systemInfo) || /AVX512\w* = 1|AVX_VNNI = 1/.test(llama.systemInfo))) {
    console.error(`llama.cpp did not load its haswell CPU variant alone: ${llamaVariant}, ${llama.systemInfo}`);
    process.exit(1);
}
let engineIsa = null;

function run(bin, argv) {
    const r = spawnSync(path.join(BUILD, bin), argv, {encoding: "utf8"});
    if (r.error || r.status !== 0) throw new Error(`${bin}: ${r.error ? r.error.message : r.stderr}`);
    return r.stdout;
}

async function llamaRound(model, threads, nVocab) {
    // llama.cpp's defaults otherwise (F16 KV cache, flash attention "auto"); the context
    // holds the prompt and the decoded tokens, the batch holds the whole prompt.
    const context = await model.createContext({contextSize: 512, batchSize: 512, threads});
    const seq = context.getSequence();
    const prompt = Array.from({length: PROMPT}, (_, i) => (i * 7919 + 13) % nVocab);  // as engine_speed's
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
    const out = run("engine_speed", [modelPath, "--threads", String(threads), "--prompt", String(PROMPT), "--decode", String(DECODE),
        ...(ISA ? ["--isa", ISA] : [])]);
    engineIsa = /^isa (\S+)/m.exec(out)?.[1] ?? "unknown";
    if (ISA && engineIsa !== ISA) throw new Error(`engine_speed --isa ${ISA} ran its ${engineIsa} path`);
    const m = /prefill_tok_s (\S+) decode_tok_s (\S+)/.exec(out);
    return {prefill: Number(m[1]), decode: Number(m[2])};
}

const results = [];
for (const m of MODELS) {
    for (const type of m.types) {
        const modelPath = path.join(tmp, `bench-${m.name}-${type}.gguf`);
        run("reprise-make-model", ["random", "--vocab", path.join(FIXTURES, "vocab", m.vocab), "--out", modelPath, "--type", type, ...shapeArgs(m)]);
        const model = await llama.loadModel({modelPath});
        const nVocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
        m.params = paramCount(m, nVocab);
        m.nVocab = nVocab;
        for (const threads of THREADS) {
            const e = [], l = [];
            for (let r = 0; r < ROUNDS; ++r) {
                e.push(engineRound(modelPath, threads));
                l.push(await llamaRound(model, threads, nVocab));
                process.stderr.write(`${m.name} ${type} threads=${threads} round ${r}: engine ${e[r].prefill.toFixed(1)} / ${e[r].decode.toFixed(2)}, ` +
                    `llama.cpp ${l[r].prefill.toFixed(1)} / ${l[r].decode.toFixed(2)} tok/s (prefill / decode)\n`);
            }
            results.push({model: m.name, type, threads, isa: {engine: engineIsa, llamacpp: llamaVariant}, e, l});
        }
        await model.dispose();
        fs.rmSync(modelPath);
    }
}
const systemInfo = llama.systemInfo.trim(), release = llama.llamaCppRelease.release;
await llama.dispose();

const best = (xs, k) => Math.max(...xs.map((x) => x[k]));
const range = (xs, k) => `${Math.min(...xs.map((x) => x[k])).toFixed(1)}-${Math.max(...xs.map((x) => x[k])).toFixed(1)}`;
const rows = results.map(({model, type, threads, isa, e, l}) => {
    const cells = [];
    for (const k of ["prefill", "decode"]) {
        const be = best(e, k), bl = best(l, k);
        cells.push(`${be.toFixed(1)} (${range(e, k)})`, `${bl.toFixed(1)} (${range(l, k)})`, `${(be / bl).toFixed(2)}`);
    }
    return `| ${model} | ${type.toUpperCase()} | ${threads} | ${isa.engine} / ${isa.llamacpp} | ${cells.join(" | ")} |`;
});
const cpu = os.cpus()[0]?.model ?? "unknown CPU";
const flags = (fs.readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1] ?? "").split(" ");
const simd = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni"].filter((f) => flags.includes(f)).join(" ");
const table = [
    `| model | type | threads | ISA (engine / llama.cpp) | engine prefill tok/s | llama.cpp prefill tok/s | engine / llama.cpp | engine decode tok/s | llama.cpp decode tok/s | engine / llama.cpp |`,
    `|---|---|---|---|---|---|---|---|---|---|`,
    ...rows,
].join("\n");
const md = `# Engine vs llama.cpp on the CPU${ISA === "avx2" ? ", AVX2 only" : ""}

\`make bench-engine\` (bench/engine/run.mjs${ISA ? " --isa " + ISA : ""}), ${new Date().toISOString().slice(0, 10)}.

- Models: generated by \`reprise-make-model random\` (random weights), output tied to the
  embedding; the same GGUF file for both.
${MODELS.filter((m) => m.params).map((m) => `  - ${m.name}: ${m.nVocab.toLocaleString("en-US")}-token vocabulary, dim ${m.dim}, FFN ${m.ff}, ` +
    `${m.layers} layers, ${m.heads} heads / ${m.kvHeads} KV heads of ${m.headDim}${m.args.includes("qwen3") ? " (Q/K norms, NeoX RoPE)" : ""}: ` +
    `${(m.params / 1e6).toFixed(1)}M parameters.`).join("\n")}
  - Q4_K_M is llama.cpp's mix: Q4_K, and Q6_K for the output (here the tied embedding)
    and half of the attn_v and ffn_down matrices.
- Prefill: ${PROMPT} tokens in one batch (logits of the last one only). Decode: ${DECODE} greedy
  tokens, one at a time, after that prompt.
- Engine: \`engine_speed\` (F32 KV cache; ${ISA === "avx2" ? "its kernels capped at AVX2, `--isa avx2`" : "its kernels chosen at run time"}: the ${engineIsa} path). llama.cpp: node-llama-cpp 3.22.1's
  prebuilt CPU build (llama.cpp release ${release}), its defaults otherwise (F16 KV cache, flash
  attention auto), driven from Node (one native call per decoded token); its CPU backend
  here: libggml-cpu-${llamaVariant}.so${ISA === "avx2" ? " (a copy of the package without the wider variants)" : " (the best scoring variant)"}, \`${systemInfo}\`.
- Best of ${ROUNDS} rounds per figure (the range of all rounds in parentheses); rounds alternate
  between the two, so other load on the machine hits both. Machine: ${cpu}, ${os.cpus().length}
  logical CPUs (SIMD: ${simd}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB.

${table}

![prefill and decode tokens/s](${path.basename(OUT, ".md")}.png)
`;
console.log(table);
// Hand-written notes below a "<!-- notes -->" line of the previous file are kept.
const MARK = "<!-- notes -->";
const old = fs.existsSync(OUT) ? fs.readFileSync(OUT, "utf8") : "";
const notes = old.includes(MARK) ? "\n" + old.slice(old.indexOf(MARK)) : "";
fs.mkdirSync(path.dirname(OUT), {recursive: true});
fs.writeFileSync(OUT, md + notes);
console.log(`written to ${path.relative(process.cwd(), OUT)}`);
// Every round (for the chart, or another chart later), then the chart itself.
const jsonPath = OUT.replace(/\.md$/, "") + ".json";
fs.writeFileSync(jsonPath, JSON.stringify({
    meta: {date: new Date().toISOString(), cpu, cpus: os.cpus().length, simd, llamacpp: release, rounds: ROUNDS, prompt: PROMPT, decode: DECODE,
        isa: {option: ISA || "native", engine: engineIsa, llamacpp: llamaVariant},
        models: MODELS.filter((m) => m.params).map(({name, nVocab, params, dim, ff, layers}) => ({name, nVocab, params, dim, ff, layers}))},
    results}, null, 1) + "\n");
const plot = spawnSync(process.execPath, [path.join(ROOT, "bench/engine/run_plot.mjs"), jsonPath, OUT.replace(/\.md$/, "") + ".png"], {stdio: "inherit"});
if (plot.status !== 0) process.exit(1);
