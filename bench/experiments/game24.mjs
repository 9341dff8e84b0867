// Game of 24: the seeded puzzle list (with an exact solver), the seeded RNG every
// algorithm uses, exact arithmetic on answer expressions, and the parsing rules of the
// ToT code (get_current_numbers, test_output).

// --- a small seeded RNG (sfc32, seeded through cyrb128 of a string) ---------------------

function cyrb128(str) {
  let h1 = 1779033703, h2 = 3144134277, h3 = 1013904242, h4 = 2773480762;
  for (let i = 0; i < str.length; i++) {
    const k = str.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  return [(h1 ^ h2 ^ h3 ^ h4) >>> 0, (h2 ^ h1) >>> 0, (h3 ^ h1) >>> 0, (h4 ^ h1) >>> 0];
}

// rng.next() in [0, 1), rng.int(n) in [0, n), rng.choice(array), rng.weighted(weights).
export function makeRng(seed) {
  let [a, b, c, d] = cyrb128(String(seed));
  const next = () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 15; i++) next();
  const rng = {
    next,
    int: (n) => Math.floor(next() * n),
    choice: (array) => array[rng.int(array.length)],
    // An index drawn with probability proportional to weights[i] (all >= 0, sum > 0).
    weighted(weights) {
      const total = weights.reduce((s, w) => s + w, 0);
      let r = next() * total;
      for (let i = 0; i < weights.length; i++) {
        if (r < weights[i]) return i;
        r -= weights[i];
      }
      return weights.findLastIndex((w) => w > 0);
    },
  };
  return rng;
}

// --- exact rationals ------------------------------------------------------------------------

const gcd = (a, b) => { a = Math.abs(a); b = Math.abs(b); while (b) [a, b] = [b, a % b]; return a; };
const frac = (n, d = 1) => {
  if (d < 0) { n = -n; d = -d; }
  const g = gcd(n, d) || 1;
  return { n: n / g, d: d / g };
};
const ops = {
  '+': (x, y) => frac(x.n * y.d + y.n * x.d, x.d * y.d),
  '-': (x, y) => frac(x.n * y.d - y.n * x.d, x.d * y.d),
  '*': (x, y) => frac(x.n * y.n, x.d * y.d),
  '/': (x, y) => (y.n === 0 ? null : frac(x.n * y.d, x.d * y.n)),
};

// --- the solver and the puzzle list -------------------------------------------------------

// One expression over `numbers` (integers) that makes 24, or null. Exhaustive: every
// pair, every operation (both orders for - and /), recursively, in exact arithmetic.
export function solve(numbers) {
  const go = (items) => {
    if (items.length === 1) return items[0].v.n === 24 && items[0].v.d === 1 ? items[0].e : null;
    for (let i = 0; i < items.length; i++)
      for (let j = 0; j < items.length; j++) {
        if (i === j) continue;
        const rest = items.filter((_, k) => k !== i && k !== j);
        for (const op of ['+', '-', '*', '/']) {
          if ((op === '+' || op === '*') && j < i) continue;  // commutative: one order
          const v = ops[op](items[i].v, items[j].v);
          if (!v) continue;
          const found = go([...rest, { v, e: `(${items[i].e} ${op} ${items[j].e})` }]);
          if (found) return found;
        }
      }
    return null;
  };
  const e = go(numbers.map((n) => ({ v: frac(n), e: String(n) })));
  return e && e.slice(1, -1);
}

// `count` distinct solvable puzzles of four numbers from 1..13 (as multisets, written in
// ascending order like 4nums.com: "1 1 4 6"), drawn with a seeded RNG. Deterministic.
export function makePuzzles(count, seed = 'game24-puzzles-v1') {
  const rng = makeRng(seed);
  const seen = new Set();
  const out = [];
  while (out.length < count) {
    const numbers = Array.from({ length: 4 }, () => 1 + rng.int(13)).sort((a, b) => a - b);
    const input = numbers.join(' ');
    if (seen.has(input)) continue;
    seen.add(input);
    const solution = solve(numbers);
    if (solution) out.push({ index: out.length, input, numbers, solution });
  }
  return out;
}

// --- expressions ----------------------------------------------------------------------------

// The exact value of an arithmetic expression (integers, + - * /, parentheses), or null
// when it does not parse or divides by zero. Like sympy.simplify on ToT's strings.
export function evaluate(text) {
  const tokens = text.match(/\d+(?:\.\d+)?|[-+*/()]|\S/g) ?? [];
  let pos = 0;
  const peek = () => tokens[pos];
  const number = () => {
    const t = tokens[pos];
    if (t === '(') { pos++; const v = sum(); if (tokens[pos++] !== ')') throw 0; return v; }
    if (t === '-') { pos++; const v = number(); return v && frac(-v.n, v.d); }
    if (!/^\d+(\.\d+)?$/.test(t ?? '')) throw 0;
    pos++;
    const [whole, part = ''] = t.split('.');
    return frac(Number(whole + part), 10 ** part.length);
  };
  const product = () => {
    let v = number();
    while (peek() === '*' || peek() === '/') { const op = tokens[pos++]; v = v && ops[op](v, number()); }
    return v;
  };
  const sum = () => {
    let v = product();
    while (peek() === '+' || peek() === '-') { const op = tokens[pos++]; v = v && ops[op](v, product()); }
    return v;
  };
  try {
    const v = sum();
    return pos === tokens.length ? v : null;
  } catch { return null; }
}

// ToT's test_output: the last line, lowercased, minus "answer: ", before the "="; its
// numbers must be the puzzle's (as a multiset) and it must evaluate to 24.
export function isCorrect(input, output) {
  const lines = output.trim().split('\n');
  const expression = lines[lines.length - 1].toLowerCase().replace('answer: ', '').split('=')[0];
  const used = (expression.match(/\d+/g) ?? []).sort();
  const wanted = (input.match(/\d+/g) ?? []).sort();
  if (used.join(' ') !== wanted.join(' ')) return false;
  const v = evaluate(expression);
  return v !== null && v.n === 24 && v.d === 1;
}

// ToT's get_current_numbers: the "(left: ...)" of the last line.
export function currentNumbers(y) {
  const lines = y.trim().split('\n');
  return lines[lines.length - 1].split('left: ').at(-1).split(')')[0];
}

// The step lines of a propose answer ("a op b = c (left: ...)"), as FoA parses them.
export const stepLines = (text) => text.split('\n').map((l) => l.trim()).filter((l) => /\(left: [^)]*\)/.test(l));

// The first "Answer: ..." line of a chain-of-thought answer, or null.
export const answerLine = (text) => text.split('\n').map((l) => l.trim()).find((l) => /^answer:/i.test(l)) ?? null;
