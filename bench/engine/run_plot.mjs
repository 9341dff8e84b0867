// The chart of `make bench-engine` (bench/engine/run.mjs): reads the JSON it writes
// beside its Markdown table and draws a PNG with gnuplot, as batching_plot.mjs does:
// best-of-rounds tokens/s of the engine and llama.cpp side by side for every model,
// type and thread count, prefill and decode in two panels, the engine / llama.cpp
// ratio above each pair; the kernel path of each side (run.mjs's ISA column) under the
// label of each pair, and in the title for an --isa run.
//   node bench/engine/run_plot.mjs RESULTS.json OUT.png
// Without gnuplot (make deps installs it) it says so and exits 0: the Markdown table
// is the result, the chart is a convenience.
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [jsonPath, pngPath] = process.argv.slice(2);
if (!jsonPath || !pngPath) {
    console.error("usage: node bench/engine/run_plot.mjs RESULTS.json OUT.png");
    process.exit(2);
}
if (spawnSync("gnuplot", ["--version"]).status !== 0) {
    console.error("gnuplot not found (make deps installs it): no chart");
    process.exit(0);
}
const r = JSON.parse(fs.readFileSync(jsonPath, "utf8"));
if (!r.results?.length) {
    console.error(`${jsonPath}: no results to plot`);
    process.exit(0);
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "reprise-engine-plot-"));
process.on("exit", () => fs.rmSync(dir, {recursive: true, force: true}));

const best = (xs, k) => Math.max(...xs.map((x) => x[k]));
// One row per bar pair: label, engine and llama.cpp tokens/s for prefill, then decode.
const data = path.join(dir, "speed.tsv");
fs.writeFileSync(data, r.results.map(({model, type, threads, isa, e, l}) =>
    [`"${model} ${type.toUpperCase()}\\n${threads} thread${threads > 1 ? "s" : ""}${isa ? `\\n${isa.engine} / ${isa.llamacpp}` : ""}"`,
        best(e, "prefill"), best(l, "prefill"), best(e, "decode"), best(l, "decode")].join("\t")).join("\n") + "\n");

// Columns: engine, llama.cpp; the ratio label sits above the taller bar of the pair.
const panel = (title, col) => `set title "${title}"
set ylabel "tokens/s (best of ${r.meta.rounds})"
plot "${data}" using ${col}:xtic(1) title "Reprise engine" lc rgb "#2a9d8f", \\
     "" using ${col + 1} title "llama.cpp ${r.meta.llamacpp}" lc rgb "#e76f51", \\
     "" using 0:(($${col} > $${col + 1} ? $${col} : $${col + 1}) * 1.02):(sprintf("%.2fx", $${col} / $${col + 1})) with labels center offset 0,0.6 notitle`;
const width = Math.max(900, r.results.length * 150);
const isaTitle = r.meta.isa && r.meta.isa.option !== "native" ? `, ${r.meta.isa.option.toUpperCase()} only` : "";
const script = `set terminal pngcairo size ${width},900 font "sans,10" noenhanced
set output "${pngPath}"
set datafile separator "\\t"
set multiplot layout 2,1 title "Reprise engine vs llama.cpp on the CPU (${r.meta.cpu}, ${r.meta.cpus} CPUs${isaTitle}): ${r.meta.prompt}-token prefill, ${r.meta.decode}-token decode" font "sans,12"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set offsets 0, 0, graph 0.22, 0
set xrange [-0.6:${r.results.length - 0.4}]
set bmargin ${r.results.some((x) => x.isa) ? 5 : 4}
set key top left
${panel("prefill (one batch)", 2)}
${panel("decode (one token at a time)", 4)}
unset multiplot
`;
fs.writeFileSync(path.join(dir, "plot.gp"), script);
const g = spawnSync("gnuplot", [path.join(dir, "plot.gp")], {encoding: "utf8"});
if (g.status !== 0) {
    console.error(`gnuplot failed: ${g.stderr}`);
    process.exit(1);
}
console.log(`wrote ${pngPath}`);
