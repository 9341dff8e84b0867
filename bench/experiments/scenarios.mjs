// The three scenarios of issue 5 (and the smoke set): which configurations each runs.
// A configuration: name (also its namespace suffix), method, params.
import { cotsc } from './cotsc.mjs';
import { foa } from './foa.mjs';
import { tot } from './tot.mjs';

export const methods = { tot, foa, cotsc };

const totConfig = (select, evaluate) => ({ name: `tot-s${select}-e${evaluate}`, method: 'tot', params: { select, evaluate } });
const foaBase = { agents: 5, steps: 6, k: 1, backtrack: 0.5, evaluate: 3, selection: true, resampling: true };
const foaConfig = (name, change = {}) => ({ name: `foa-${name}`, method: 'foa', params: { ...foaBase, ...change } });
const cotConfig = (k) => ({ name: `cotsc-k${k}`, method: 'cotsc', params: { k } });

export const scenarios = {
  sweep: {
    title: 'Hyperparameter sweep: ToT-BFS over selections x evaluations',
    // From the largest down: a smaller configuration then finds most of its samples drawn.
    configs: [5, 3, 1].flatMap((s) => [3, 2, 1].map((e) => totConfig(s, e))),
  },
  ablation: {
    title: 'Ablation: Fleet of Agents with and without selection, backtracking, resampling',
    configs: [
      foaConfig('full'),
      foaConfig('no-selection', { selection: false }),
      foaConfig('no-backtracking', { backtrack: 0 }),
      foaConfig('no-resampling', { resampling: false }),
    ],
  },
  benchmark: {
    title: 'Benchmarking: ToT vs FoA vs CoT-SC on the same puzzles',
    configs: [totConfig(5, 3), foaConfig('full'), cotConfig(10)],
  },
};

// --smoke: one small configuration per method, plus a second ToT one that shares with it.
export const smoke = {
  title: 'Smoke: one small configuration per method',
  configs: [totConfig(2, 2), totConfig(2, 1), foaConfig('small', { agents: 3, steps: 5 }), cotConfig(3)],
};
