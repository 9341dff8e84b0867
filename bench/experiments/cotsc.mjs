// Chain of thought with self-consistency (Wang et al. 2023) on Game of 24: k samples of
// the ToT code's CoT prompt in one request (n = k), then a majority vote over the Answer
// expressions that parse (written without spaces; ties go to the one seen first).
import { answerLine, evaluate, isCorrect } from './game24.mjs';
import { cotPrompt, fill } from './prompts.mjs';

export async function cotsc(ctx, puzzle, { k }) {
  const outputs = await ctx.chat(fill(cotPrompt, { input: puzzle.input }), k, 'cot');
  const votes = new Map();
  for (const output of outputs) {
    const line = answerLine(output);
    if (!line) continue;
    const expression = line.replace(/^answer:/i, '').split('=')[0].replace(/\s+/g, '');
    if (!expression || evaluate(expression) === null) continue;
    votes.set(expression, (votes.get(expression) ?? 0) + 1);
  }
  let best = null;
  for (const [expression, count] of votes) if (best === null || count > votes.get(best)) best = expression;
  const answer = best === null ? '' : `Answer: ${best} = 24`;
  return { answer, solved: best !== null && isCorrect(puzzle.input, answer), votes: [...votes] };
}
