// The client side of every experiment: an ordinary OpenAI SDK client, driven in lock-step
// waves so that the order of the requests is set by the program, never by timing.
//
// A configuration runs all its puzzles at once, each as an async function that awaits
// ctx.chat(prompt, n). Whenever every puzzle is waiting (or done), the requests they
// registered form one wave: sorted by (puzzle, order of registration), each gets an
// X-Reprise-Request-Id made of that position (w0007-p0012-c003: wave, puzzle, candidate,
// zero-padded, so natural and plain order agree), and the wave is issued from a queue in
// that order with at most `concurrency` requests in flight. Answers are handed back only
// when the whole wave is done, in the same order, so the next wave is again the same.
//
// Order guard (on by default): within a wave, a request for the same prompt as an
// earlier request of the same wave (same namespace and parameters, so the same cache
// list, whatever the n) is held back until the earlier one has been answered. The proxy orders requests by id within
// a batch window, but two connections may deliver requests out of issue order across a
// window boundary; with the guard, requests that draw from the same list reach the proxy
// strictly in program order, so every replay gets the same samples at any concurrency.
import OpenAI from 'openai';

import { makeRng } from './game24.mjs';

const pad = (n, width) => String(n).padStart(width, '0');

export class Session {
  // options: baseURL, apiKey, namespace, cacheMode ('use' | 'bypass' | 'only-cached'),
  // concurrency, orderGuard, model, temperature, maxTokens, seed (of the client's RNGs).
  constructor(options) {
    this.o = { concurrency: 32, orderGuard: true, model: 'gpt-4o-mini', temperature: 0.7, maxTokens: 256,
               cacheMode: 'use', seed: 'experiments-v1', ...options };
    this.client = new OpenAI({ baseURL: this.o.baseURL, apiKey: this.o.apiKey, maxRetries: 0, timeout: 120_000 });
    this.counts = { requests: 0, waves: 0, hit: 0, miss: 0, partial: 0, bypass: 0, prompt_tokens: 0,
                    completion_tokens: 0, errors: 0, byKind: {} };
  }

  // Runs solve(ctx, puzzle) for every puzzle in lock-step; returns, per puzzle, its
  // result and its transcript (every answer it received: wave, kind, texts).
  // `shared` is one object per run that all puzzles see (the ToT/FoA value cache).
  async run(puzzles, solve) {
    const pending = [];
    const shared = { valueCache: new Map() };
    const results = new Array(puzzles.length);
    const transcripts = puzzles.map(() => []);
    let done = 0;
    const failures = [];
    puzzles.forEach((puzzle, p) => {
      let seq = 0;
      const ctx = {
        puzzle, shared,
        rng: (name) => makeRng(`${this.o.seed}:${name}:${puzzle.input}:${p}`),
        chat: (prompt, n, kind) => new Promise((resolve, reject) => {
          pending.push({ p, seq: seq++, kind, n, prompt, resolve, reject });
        }),
      };
      solve(ctx, puzzle).then((r) => { results[p] = r; done++; }, (e) => { failures.push(e); done++; });
    });
    for (let wave = 0; ; wave++) {
      await new Promise((r) => setImmediate(r));  // every puzzle has run up to its next await
      if (failures.length) throw failures[0];
      if (pending.length === 0) {
        if (done === puzzles.length) return results.map((result, p) => ({ result, transcript: transcripts[p] }));
        throw new Error('lock-step: puzzles neither waiting nor done');
      }
      const batch = pending.splice(0).sort((a, b) => a.p - b.p || a.seq - b.seq);
      let last = -1, c = 0;
      for (const r of batch) {
        c = r.p === last ? c + 1 : 0;
        last = r.p;
        r.id = `w${pad(wave, 4)}-p${pad(r.p, 4)}-c${pad(c, 3)}`;
      }
      await this.issue(batch);
      this.counts.waves++;
      for (const r of batch) {
        if (r.error) { r.reject(r.error); continue; }
        transcripts[r.p].push([wave, r.kind, r.texts]);
        r.resolve(r.texts);
      }
    }
  }

  // Issues a sorted wave from a queue, at most `concurrency` in flight; settles them all.
  issue(batch) {
    const waiting = batch.slice();
    const busy = new Set();  // bodies in flight (the order guard)
    let inflight = 0, left = batch.length;
    return new Promise((resolveWave) => {
      const pump = () => {
        for (let i = 0; i < waiting.length && inflight < this.o.concurrency;) {
          const r = waiting[i];
          r.key = r.prompt;  // the cache key but for n (model and parameters are the session's)
          if (this.o.orderGuard && busy.has(r.key)) { i++; continue; }
          waiting.splice(i, 1);
          inflight++;
          busy.add(r.key);
          this.send(r).catch((e) => { r.error = e; this.counts.errors++; }).finally(() => {
            inflight--;
            busy.delete(r.key);
            if (--left === 0) resolveWave(); else pump();
          });
        }
      };
      pump();
    });
  }

  async send(r) {
    const headers = { 'X-Reprise-Namespace': this.o.namespace, 'X-Reprise-Request-Id': r.id };
    if (this.o.cacheMode !== 'use') headers['X-Reprise-Cache'] = this.o.cacheMode;
    const body = { model: this.o.model, messages: [{ role: 'user', content: r.prompt }],
                   temperature: this.o.temperature, max_tokens: this.o.maxTokens, n: r.n };
    this.counts.requests++;
    const { data, response } = await this.client.chat.completions.create(body, { headers }).withResponse();
    const served = response.headers.get('x-reprise-cache');
    this.log?.push([r.id, r.prompt.length, r.prompt.slice(-40), r.n, response.headers.get('x-reprise-samples'), served]);
    if (served in this.counts) this.counts[served]++;
    const kind = (this.counts.byKind[r.kind] ??= { requests: 0, hit: 0, partial: 0, miss: 0 });
    kind.requests++;
    if (served in kind) kind[served]++;
    this.counts.prompt_tokens += data.usage?.prompt_tokens ?? 0;
    this.counts.completion_tokens += data.usage?.completion_tokens ?? 0;
    const choices = [...data.choices].sort((a, b) => a.index - b.index);
    if (choices.length !== r.n) throw new Error(`${r.id}: asked for ${r.n} choices, got ${choices.length}`);
    r.texts = choices.map((c) => c.message?.content ?? '');
  }
}
