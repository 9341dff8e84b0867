// Fleet of Agents (Klein et al. 2025, github.com/au-clan/FoA, src/experiments/gameof24.py):
// a fleet of agents, each taking one step at a time, with a selection phase every k
// steps that evaluates the agents and resamples the fleet (genetic-type particle
// filtering), with backtracking to discounted earlier states. Ablation switches:
//   selection  - the evaluate + resample phase (off: no value calls, agents walk alone)
//   backtrack  - the discount of earlier states kept as candidates (0: none are kept)
//   resampling - redraw the whole fleet in proportion to value (off: keep the fleet and
//                replace only the agents judged impossible, value < 1, from the records)
import { answerLine, isCorrect, stepLines } from './game24.mjs';
import { proposeFor, value } from './tot.mjs';

// A state: the steps taken (lines) and the numbers left (FoA's current_state; after the
// answer line it stays "24").
const lines = (state) => state.steps.map((s) => s + '\n').join('');
const leftOf = (line) => line.split('left: ').at(-1).split(')')[0];  // FoA's parse_next_state

// FoA's verify: 0 not finished, 1 finished and correct, -1 finished and wrong (or stuck).
function verify(x, state) {
  if (state.stuck) return -1;
  const left = state.current.split(' ');
  if (left.length !== 1 || state.steps.length <= 3) return 0;
  if (left[0] !== '24') return -1;
  return isCorrect(x, state.steps.at(-1)) ? 1 : -1;
}

// One step for every agent. Agents in the same state share one request with n = their
// number (n independent samples, as n separate requests would give), each taking its own
// choice in agent order. A propose answer: the agent picks one of its step lines at
// random (none: the agent is stuck); at 24, the CoT answer line is the last step.
async function mutate(ctx, x, fleet, rng) {
  const groups = new Map();
  fleet.forEach((state, i) => {
    const key = lines(state);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(i);
  });
  const next = new Array(fleet.length);
  await Promise.all([...groups.values()].map(async (agents) => {
    const state = fleet[agents[0]];
    const atAnswer = state.current === '24';
    const outputs = await ctx.chat(proposeFor(x, lines(state)), agents.length, atAnswer ? 'cot' : 'propose');
    agents.forEach((agent, j) => {
      if (atAnswer) {
        const answer = answerLine(outputs[j]);
        next[agent] = answer ? { ...state, steps: [...state.steps, answer] } : { ...state, stuck: true };
      } else next[agent] = { ...state, pending: stepLines(outputs[j]) };
    });
  }));
  // The random picks, in agent order (the order the RNG is drawn in is the program's).
  return next.map(({ pending, ...s }) => {
    if (!pending) return s;
    if (!pending.length) return { ...s, stuck: true };
    const line = rng.choice(pending);
    return { steps: [...s.steps, line], current: leftOf(line) };
  });
}

// FoA's evaluate: an answer line is worth 0 (verification decides), else the ToT value.
function evaluate(ctx, x, state, nEvaluate) {
  if (state.stuck || state.steps.length === 0 || !state.steps.at(-1).includes('left')) return 0;
  return value(ctx, x, lines(state), nEvaluate);
}

export async function foa(ctx, puzzle, cfg) {
  const { agents, steps, k = 1, backtrack, selection = true, resampling = true, evaluate: nEvaluate = 3 } = cfg;
  const x = puzzle.input;
  const rng = ctx.rng('foa');  // the same stream in every configuration
  const draw = (records) => records[rng.weighted(records.map((r) => r.value))].state;
  const origin = Object.freeze({ steps: [], current: x });
  let records = [{ value: backtrack > 0 ? (20 * 3) / backtrack : 20 * 3, state: origin }];
  let fleet = Array(agents).fill(origin);
  const trace = [];
  let solvedBy = null;
  for (let step = 0; step < steps && solvedBy === null; step++) {
    fleet = await mutate(ctx, x, fleet, rng);
    const log = { fleet: fleet.map(lines) };
    // Old records decay by the backtrack coefficient; those that cannot finish in time go.
    records = records.map((r) => ({ ...r, value: r.value * backtrack }))
      .filter((r) => r.value > 0 && steps - (step + 1) >= 4 - r.state.steps.length);
    const verdicts = fleet.map((s) => verify(x, s));
    log.verdicts = verdicts;
    if (verdicts.includes(1)) {
      solvedBy = verdicts.indexOf(1);
      trace.push(log);
      break;
    }
    // Pruning: finished-but-wrong and stuck agents restart from a record (in proportion to
    // value) or, with no record that has taken a step, from the puzzle.
    const eligible = records.filter((r) => r.state.steps.length > 0);
    fleet = fleet.map((s, i) => (verdicts[i] === -1 ? (eligible.length ? draw(eligible) : origin) : s));
    // Selection: every k steps (not after the last), evaluate and resample.
    if (selection && step < steps - 1 && step % k === 0) {
      const values = await Promise.all(fleet.map((s) => evaluate(ctx, x, s, nEvaluate)));
      log.values = values;
      records.push(...fleet.map((state, i) => ({ value: values[i], state })));
      const candidates = records.filter((r) => r.value > 0);
      if (resampling) {
        if (candidates.length) fleet = fleet.map(() => draw(candidates));
      } else {
        fleet = fleet.map((s, i) => (values[i] >= 1 || !candidates.length ? s : draw(candidates)));
      }
      log.resampled = fleet.map(lines);
    }
    trace.push(log);
  }
  const answer = solvedBy === null ? '' : fleet[solvedBy].steps.at(-1);
  return { answer, solved: solvedBy !== null, trace };
}
