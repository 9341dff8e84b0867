// The chart of engine_batching_bench (bench/engine/batching.cpp): reads the JSON it
// writes with --json and draws a PNG with gnuplot, as the other benchmarks' charts
// (bench/experiments/report.mjs, bench/peers.sh).
//   node bench/engine/batching_plot.mjs RESULTS.json OUT.png
// Without gnuplot (make deps installs it) it says so and exits 0: the Markdown
// tables are the result, the chart is a convenience.
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [jsonPath, pngPath] = process.argv.slice(2);
if (!jsonPath || !pngPath) {
    console.error("usage: node bench/engine/batching_plot.mjs RESULTS.json OUT.png");
    process.exit(2);
}
if (spawnSync("gnuplot", ["--version"]).status !== 0) {
    console.error("gnuplot not found (make deps installs it): no chart");
    process.exit(0);
}
const r = JSON.parse(fs.readFileSync(jsonPath, "utf8"));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "reprise-batching-plot-"));
process.on("exit", () => fs.rmSync(dir, {recursive: true, force: true}));
const write = (name, rows) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, rows.map((row) => row.join("\t")).join("\n") + "\n");
    return p;
};

const panels = [];
const sharing = r.sharing ?? [];
if (sharing.length) {
    const d = write("sharing.tsv", sharing.map((x) => [x.n, x.shared_tps, x.separate_tps, x.shared_kv_mb, x.separate_kv_mb]));
    panels.push(`set title "a. n samples of one ${r.meta.prompt}-token prompt: tokens/s"
set xlabel "n (samples)"; set ylabel "generated tokens/s"; set logscale x 2; set key top left
plot "${d}" using 1:2 with linespoints lw 2 pt 7 lc rgb "#2a9d8f" title "shared prompt blocks (1 job, n samples)", \\
     "" using 1:3 with linespoints lw 2 pt 5 lc rgb "#e76f51" title "n separate jobs"
unset logscale x`);
    panels.push(`set title "a. peak KV cache memory"
set xlabel "n (samples)"; set ylabel "MB"; set logscale x 2; set key top left
plot "${d}" using 1:4 with linespoints lw 2 pt 7 lc rgb "#2a9d8f" title "shared prompt blocks", \\
     "" using 1:5 with linespoints lw 2 pt 5 lc rgb "#e76f51" title "n separate jobs"
unset logscale x`);
}
const batching = r.batching ?? [];
if (batching.length) {
    const d = write("batching.tsv", batching.map((x) => [x.B, x.decode_tps, x.e2e_tps, x.speedup]));
    panels.push(`set title "b. batched decode: B concurrent requests"
set xlabel "B (requests)"; set ylabel "aggregate tokens/s"; set logscale x 2; set key top left
plot "${d}" using 1:2 with linespoints lw 2 pt 7 lc rgb "#264653" title "decode tokens/s", \\
     "" using 1:3 with linespoints lw 2 pt 5 lc rgb "#e9c46a" title "end-to-end tokens/s", \\
     "" using 1:2:(sprintf("%.1fx", $4)) with labels offset 0,1 notitle
unset logscale x`);
}
const colors = ["#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51", "#8d99ae"];
const byE = (rows) => [...new Set(rows.map((x) => x.E))].sort((a, b) => a - b);
const spec = r.speculative ?? [];
if (spec.length) {
    const plots = byE(spec).map((E, i) => {
        const d = write(`spec_${E}.tsv`, spec.filter((x) => x.E === E).map((x) => [x.k, x.speedup, x.acceptance * 100]));
        return `"${d}" using 1:2 with linespoints lw 2 pt 7 lc rgb "${colors[i % colors.length]}" title "E = ${E}"`;
    });
    panels.push(`set title "c. self-speculative speed-up (synthetic early-exit model, layers >= ${r.meta.late_from} scaled by ${r.meta.late_scale})"
set xlabel "k (draft tokens)"; set ylabel "tokens/s over plain decoding"; set logscale x 2; set key bottom left
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "#888888"
plot ${plots.join(", \\\n     ")}
unset arrow 1; unset logscale x`);
    const plotsA = byE(spec).map((E, i) => {
        const d = path.join(dir, `spec_${E}.tsv`);
        return `"${d}" using 1:3 with linespoints lw 2 pt 7 lc rgb "${colors[i % colors.length]}" title "E = ${E}"`;
    });
    panels.push(`set title "c. draft acceptance (synthetic early-exit model)"
set xlabel "k (draft tokens)"; set ylabel "acceptance %"; set logscale x 2; set yrange [0:100]; set key bottom left
plot ${plotsA.join(", \\\n     ")}
set yrange [0:*]; unset logscale x`);
}
const stories = r.stories ?? [];
if (stories.length) {
    const rows = [];
    for (const t of [0, 1])
        for (const k of [2, 4]) rows.push({t, k, pts: stories.filter((x) => x.temperature === t && x.k === k)});
    const plots = rows.filter((g) => g.pts.length).map((g, i) => {
        const d = write(`stories_${g.t}_${g.k}.tsv`, g.pts.map((x) => [x.E, x.acceptance * 100]));
        return `"${d}" using 1:2 with linespoints lw 2 pt ${g.t ? 5 : 7} lc rgb "${colors[i % colors.length]}" title "${g.t ? "temperature 1" : "greedy"}, k = ${g.k}"`;
    });
    panels.push(`set title "d. draft acceptance on trained weights (stories260K)"
set xlabel "E (exit layer)"; set ylabel "acceptance %"; set xtics 1; set yrange [0:100]; set key top left
plot ${plots.join(", \\\n     ")}
set yrange [0:*]; set xtics autofreq`);
}
if (!panels.length) {
    console.error(`${jsonPath}: no sections to plot`);
    process.exit(0);
}
const cols = panels.length > 4 ? 3 : 2, rows = Math.ceil(panels.length / cols);
const script = `set terminal pngcairo size ${cols * 560},${rows * 420} font "sans,10" noenhanced
set output "${pngPath}"
set multiplot layout ${rows},${cols} title "Reprise engine on the CPU (${r.meta.cpus} CPUs, ${r.meta.threads} threads): paged KV sharing, continuous batching, self-speculative decoding" font "sans,12"
set grid
set yrange [0:*]
${panels.join("\n")}
unset multiplot
`;
fs.writeFileSync(path.join(dir, "plot.gp"), script);
const g = spawnSync("gnuplot", [path.join(dir, "plot.gp")], {encoding: "utf8"});
if (g.status !== 0) {
    console.error(`gnuplot failed: ${g.stderr}`);
    process.exit(1);
}
console.log(`wrote ${pngPath}`);
