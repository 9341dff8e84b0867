// Opens N keep-alive connections to a Reprise listener, sends one request on each
// (a cache hit), reads its answer, and then holds every connection open and idle
// until it gets SIGTERM or SIGINT. Prints "ready OK FAILED" once all have answered.
//   node idle_conns.mjs PORT N BODY
// Used by bench/peers.sh for the memory of 10k idle connections; node is there for the
// Portkey gateway already. Raise `ulimit -n` above N first.
import net from 'node:net';

const [port, count, body] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
const request =
  'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
  'Content-Type: application/json\r\nAuthorization: Bearer sk-bench\r\n' +
  `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
const sockets = [];
let ok = 0, failed = 0, started = 0, inFlight = 0;
const parallel = 256;          // connects in flight at once (stay under the listen backlog)

function done(good) {
  good ? ok++ : failed++;
  inFlight--;
  if (ok + failed === count) console.log(`ready ${ok} ${failed}`);
  else next();
}

function open() {
  started++; inFlight++;
  const s = net.connect(port, '127.0.0.1');
  let buf = '', finished = false;
  const finish = (good) => { if (!finished) { finished = true; done(good); } };
  s.setEncoding('latin1');
  s.on('connect', () => s.write(request));
  s.on('data', (d) => {
    if (finished) return;
    buf += d;
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = buf.slice(0, end).toLowerCase();
    const m = /content-length: *(\d+)/.exec(head);
    if (m && buf.length - end - 4 < Number(m[1])) return;
    finish(head.startsWith('http/1.1 200') && head.includes('x-reprise-cache: hit'));
  });
  s.on('error', () => finish(false));
  s.on('close', () => finish(false));
  sockets.push(s);
}

function next() { while (started < count && inFlight < parallel) open(); }
next();
const stop = () => { for (const s of sockets) s.destroy(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
