// Tree of Thoughts, BFS (Yao et al. 2023), as the ToT code runs Game of 24:
// method_generate=propose, method_evaluate=value, method_select=greedy, 4 steps.
import { currentNumbers, isCorrect } from './game24.mjs';
import { cotPrompt, fill, proposePrompt, valueLastStepPrompt, valuePrompt } from './prompts.mjs';

// propose_prompt_wrap: the CoT prompt with the steps so far once 24 is reached (the model
// then writes the Answer line), else the propose prompt on the numbers left.
export function proposeFor(x, y) {
  const current = currentNumbers(y || x);
  return current === '24' ? fill(cotPrompt, { input: x }) + 'Steps:\n' + y : fill(proposePrompt, { input: current });
}

// value_prompt_wrap: the last-step judge for an answer line, else the value prompt.
export function valueFor(x, y) {
  const lines = y.trim().split('\n');
  const last = lines[lines.length - 1];
  if (!last.includes('left: ')) return fill(valueLastStepPrompt, { input: x, answer: last.toLowerCase().replace('answer: ', '') });
  return fill(valuePrompt, { input: currentNumbers(y) });
}

const valueMap = { impossible: 0.001, likely: 1, sure: 20 };

// get_value with value_outputs_unwrap: one call with n = nEvaluate, the last line of each
// output is a judgement; a 4-line partial output without an answer is worth 0. The
// value cache is keyed by prompt and shared by all puzzles of a run, as the Task
// object's value_cache is in the ToT code (it holds promises: the first puzzle in
// program order asks, the others wait for its answer).
export function value(ctx, x, y, nEvaluate) {
  const prompt = valueFor(x, y);
  const cache = ctx.shared.valueCache;
  if (!cache.has(prompt)) {
    cache.set(prompt, ctx.chat(prompt, nEvaluate, 'value').then((outputs) => {
      if (y.trim().split('\n').length === 4 && !y.toLowerCase().includes('answer')) return 0;
      return outputs.reduce((sum, o) => sum + (valueMap[o.trim().split('\n').at(-1).trim()] ?? 0), 0);
    }));
  }
  return cache.get(prompt);
}

export async function tot(ctx, puzzle, { select, evaluate, steps = 4 }) {
  const x = puzzle.input;
  let ys = [''];
  const trace = [];
  for (let step = 0; step < steps; step++) {
    // Generation: one propose call (n=1) per kept candidate; each non-empty line is a child.
    const outputs = await Promise.all(ys.map((y) => ctx.chat(proposeFor(x, y), 1, 'propose')));
    const children = ys.flatMap((y, i) => outputs[i][0].split('\n').filter((l) => l.trim()).map((l) => y + l + '\n'));
    // Evaluation: a duplicate child is worth 0 (get_values' local cache).
    const seen = new Set();
    const values = await Promise.all(children.map((y) => {
      if (seen.has(y)) return 0;
      seen.add(y);
      return value(ctx, x, y, evaluate);
    }));
    // Selection: the `select` best, ties in generation order (Python's stable sort).
    const order = children.map((_, i) => i).sort((a, b) => values[b] - values[a] || a - b);
    ys = order.slice(0, select).map((i) => children[i]);
    trace.push({ children, values, kept: order.slice(0, select) });
    if (ys.length === 0) break;
  }
  const answer = ys[0] ?? '';
  return { answer: answer.trim().split('\n').at(-1) ?? '', solved: answer !== '' && isCorrect(x, answer), trace };
}
