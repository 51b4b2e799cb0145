// Conformance driver: a browser-client replica of a real `datsync serve`, answering on stdout what
// tests/test_web_conformance.py asks on stdin (one JSON line each way):
//   {"cmd": "wait", "t": 12, "queries": ["[:find ?e ?n :where [?e \"p/name\" ?n]]", ...]}
//     -> {"t": 12, "datoms": [[e, a, v, tx], ...], "q": [[[...row], ...], ...], "view": true}   (values as on
//        the wire; view: the conn's datoms equal the confirmed ones, null while writes are queued)
//   {"cmd": "transact", "tx": [...]}  (DataScript's JS spelling) -> {"t", "tx", "tempids"} or {"error", "code"}
//   {"cmd": "transact", "tx": [...], "nowait": true} -> {"pending": n}  (queued; sent when online)
//   {"cmd": "view", "q": "..."} -> {"view": rows, "confirmed": rows}  (with and without the queued writes)
//   {"cmd": "reports"} -> {"sizes": [n, ...]}  (each d.listen report's datom count since the last ask)
//   {"cmd": "scopes", "scopes": [["team", ["red"]]]} -> {"t", "came": [[e, a, v, added], ...]} or {"error", "code"}
//   {"cmd": "scopes", "scopes": [...], "nowait": true} -> {"status"}  (asked; answered by "settle")
//   {"cmd": "settle"} -> {"answers": [...]}  (every answer asked without waiting, once all have come)
//   {"cmd": "reload"} -> {"t", "pending"}  (a new replica on the same store, as after a page reload)
//   {"cmd": "close"} -> {"closed": true}
// Usage: node [--experimental-websocket] tests/web/conformance.mjs ws://127.0.0.1:PORT/[,ws://...] [token [scopes-json]]
import { createInterface } from 'node:readline';

import { connect, datascript as d, memoryStore } from '../../shell/web/client.js';
import { encodeValue } from '../../shell/web/codec.js';
import { fromStored } from '../../shell/web/replica.js';

const [url, tokenArg, scopesArg] = process.argv.slice(2);
const token = tokenArg || undefined;
const scopes = scopesArg ? JSON.parse(scopesArg) : undefined;
const store = memoryStore({ persistent: true });  // kept across "reload"
const options = {  // a new snapshot in the store every 5 deltas: both ways of keeping a replica get used
  token, scopes, store, heartbeatInterval: 1, heartbeatTimeout: 5, backoff: [0.05, 0.5], compactAfter: 5, saveDelay: 50,
};
const urls = url.split(',');  // several: the client moves to the next when one does not answer
let replica = connect(urls.length > 1 ? urls : url, options);
const log = (ev) => { if (ev.kind !== 'delta' && ev.kind !== 'pending') process.stderr.write(JSON.stringify(ev) + '\n'); };
replica.listen(log);
let sizes = [];  // the length of each d.listen report on the conn
d.listen(replica.conn, 'sizes', (r) => sizes.push(r.tx_data.length));
const background = [];
const out = (x) => process.stdout.write(JSON.stringify(x) + '\n');

function rows(result) {
  return Array.from(result, (row) => Array.from(row, (v) => encodeValue(fromStored(v))));
}

async function handle(req) {
  if (req.cmd === 'wait') {
    await replica.ready;
    await replica.waitForT(req.t, req.timeout_ms ?? 20000);
    const datoms = replica.datoms().map(([e, a, v, tx]) => [e, a, encodeValue(v), tx]);
    const q = (req.queries ?? []).map((text) => rows(d.q(text, replica.db)));
    // with no write queued, what the application reads is the confirmed database, datom for datom
    const all = (db) => d.datoms(db, ':eavt').map((x) => JSON.stringify([x.e, x.a, encodeValue(fromStored(x.v)), x.tx]));
    const view = replica.pendingCount ? null : all(replica.db).join('\n') === all(replica.confirmedDb).join('\n');
    if (view === false) {  // what differs, for the test's message
      const [a, b] = [new Set(all(replica.db)), new Set(all(replica.confirmedDb))];
      return { t: replica.t, datoms, q, view: [[...a].filter((x) => !b.has(x)), [...b].filter((x) => !a.has(x))] };
    }
    return { t: replica.t, datoms, q, view };
  }
  if (req.cmd === 'transact' && req.nowait) {  // queued (offline too), answered later
    background.push(replica.transact(req.tx).catch((e) => ({ error: e.message, code: e.code })));
    await new Promise((resolve) => setTimeout(resolve, 0));
    return { pending: replica.pendingCount };
  }
  if (req.cmd === 'reload') {  // a page reload: a new replica on the same store
    await replica.close();
    replica = connect(urls.length > 1 ? urls : url, options);
    replica.listen(log);
    d.listen(replica.conn, 'sizes', (r) => sizes.push(r.tx_data.length));
    await replica.restored;
    return { t: replica.t, pending: replica.pendingCount };
  }
  if (req.cmd === 'view') {  // a query on what the application reads (confirmed + queued writes)
    return { view: rows(d.q(req.q, replica.db)), confirmed: rows(d.q(req.q, replica.confirmedDb)), pending: replica.pendingWrites };
  }
  if (req.cmd === 'reports') {  // the sizes of the conn's d.listen reports since the last ask
    const answer = { sizes };
    sizes = [];
    return answer;
  }
  if (req.cmd === 'scopes' && req.nowait) {  // asked now (offline too), sent once live
    background.push(replica.setScopes(req.scopes).then((came) => ({ t: replica.t, came: came.length }), (e) => ({ error: e.message, code: e.code })));
    return { status: replica.status };
  }
  if (req.cmd === 'settle') {
    return { answers: await Promise.all(background.splice(0)) };
  }
  if (req.cmd === 'scopes') {  // a change of scopes, live
    try {
      const came = await replica.setScopes(req.scopes);
      return { t: replica.t, came: came.map(([e, a, v, added]) => [e, a, encodeValue(v), added]) };
    } catch (e) {
      return { error: e.message, code: e.code };
    }
  }
  if (req.cmd === 'pending') {
    return { pending: replica.pendingCount, status: replica.status };
  }
  if (req.cmd === 'transact') {
    await replica.ready;
    try {
      const r = await replica.transact(req.tx);
      return { t: r.t, tx: r.tx, tempids: r.tempids };
    } catch (e) {
      return { error: e.message, code: e.code };
    }
  }
  if (req.cmd === 'close') {
    await replica.close();
    return { closed: true };
  }
  return { error: 'unknown command' };
}

const lines = createInterface({ input: process.stdin });
let chain = Promise.resolve();
lines.on('line', (line) => {
  chain = chain.then(async () => {
    let req;
    try { req = JSON.parse(line); } catch { out({ error: 'bad json' }); return; }
    try { out(await handle(req)); } catch (e) { out({ error: String(e?.stack ?? e), code: e?.code ?? null }); }
    if (req.cmd === 'close') process.exit(0);
  });
});
lines.on('close', () => chain.then(() => replica.close()).then(() => process.exit(0)));
