#!/usr/bin/env node
// ds_runner.js -- datsync's differential-testing runner around the official DataScript JS build
// (npm `datascript`, pinned to 1.8.1 in package.json / package-lock.json next to this file).
//
// A long-lived process: it reads JSON-lines requests on stdin and writes exactly one JSON line per
// request on stdout, in order, flushing after each one (tests/oracle/bridge.py keeps one process open
// and sends thousands of requests through it).  Every request starts from a fresh connection.
//
//   node ds_runner.js              # JSON-lines loop (the mode bridge.py uses)
//   node ds_runner.js --once       # read ONE JSON document from stdin, print one response
//
// Request (every key optional):
//   {
//     "id":          <any JSON>,                      // echoed back unchanged as "id"
//     "schema":      {"<attr>": {":db/cardinality": ":db.cardinality/many", ...}, ...},
//     "init_datoms": [[e, a, v, tx?], ...],           // starting db (d.conn_from_datoms); tx defaults to 536870912
//     "txs":         [[tx-form, ...], {"tx_data": [tx-form, ...]}, ...],   // one d.transact per element
//     "snapshot_each": false,                         // true -> every tx result also has "db": all datoms after it
//     "q": "<edn query>", "inputs": [...],            // against the final db: d.q(q, db, ...inputs)
//     "queries":   [{"q": "...", "inputs": [...], "sort": false, "db": true}, ...],
//     "pulls":     [{"pattern": "<edn pattern>", "eid": 1 | ["attr", value]}, ...],
//     "pull_many": [{"pattern": "<edn pattern>", "eids": [...]}, ...],
//     "entities":  [eid | ["attr", value], ...],      // d.entity + touch; refs shallow as {":db/id": n}
//     "datoms": true                                  // false -> omit the final "datoms"
//   }
// Tx forms, schema and lookup refs use DataScript's JS spelling: ":db/id", ":db/add", ":db/retract",
// ":db/retractEntity", ":db.fn/retractEntity", ":db/cas", ":db.fn/cas", ":db.fn/retractAttribute",
// ":db.cardinality/many", ...; attributes are plain strings; a negative number or any string in entity
// position is a tempid; [attr, value] is a lookup ref.  JS arrays in value position become cljs vectors
// (a tuple value, a lookup ref for a ref attribute, or -- in MAP form for a cardinality-many or reverse
// attribute -- a collection of values).
//
// Keyword VALUES are not supported: the JS API only keywordizes the op and the ":db/id" key, so the
// string ":foo" is stored as a string.  (":db/current-tx", "datomic.tx" and "datascript.tx" in entity
// position, or as a ref value, still mean the current transaction.)
//
// Response (one line):
//   {
//     "id": <echo>, "version": "1.8.1",
//     "txs": [ {"tempids": {"-1": 1, "foo": 2, ":db/current-tx": 536870913},
//               "tx_data": [[e, a, v, tx, added], ...]}                 // DataScript's tx-data order
//            | {"error": "<message>", "code": "transact/upsert" | null,  // code = ex-data's :error, no colon
//               "data": "<ex-data as EDN>" | null, "ex_data": <ex-data as JSON> | null}, ...],
//     "datoms": [[e, a, v, tx], ...],                                    // final db, EAVT order
//     "q_result": ..., "query_results": [...], "pull_results": [...],
//     "pull_many_results": [...], "entity_results": [...]
//   }
// If DataScript rejects the schema or init_datoms (create_conn / conn_from_datoms throws), the response
// is {"id": ..., "version": ..., "init_error": {"error", "code", "data", "ex_data"}} and nothing else runs.
// Values in datoms: strings, numbers, booleans; tuple values are arrays.  ex_data is converted
// generically: keywords -> ":ns/name" strings, maps -> objects (keyword keys as ":ns/name"), vectors,
// lists and sets -> arrays, Datoms -> [e, a, v, tx, added].  Query results go through DataScript's own
// clj->js (which drops keyword namespaces); pull results through its pull-result->js (":db/id" keys).
// A failed tx leaves the db unchanged (the conn is only swapped on success); later txs still run.
// A request that cannot be handled at all yields {"id": ..., "fatal": "<message>"}.
'use strict';

const readline = require('readline');
const d = require('datascript');
const VERSION = require('datascript/package.json').version;

// ---------------------------------------------------------------------------
// cljs -> JSON

function isPrimitive(v) {
  return v === null || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean';
}

function isDatom(x) {
  return typeof x.e === 'number' && typeof x.tx === 'number' && 'a' in x && 'v' in x;
}

// Best-effort conversion of any cljs value to JSON (used for ex-data and datom values).
function cljToJson(x) {
  if (x === undefined) return null;
  if (isPrimitive(x)) return x;
  if (Array.isArray(x)) return x.map(cljToJson);
  if (typeof x !== 'object') return String(x);
  if (isDatom(x)) return [x.e, x.a, cljToJson(x.v), Math.abs(x.tx), x.tx > 0];
  if (typeof x.entries === 'function' && typeof x.has === 'function' && typeof x.get === 'function') {
    const s = String(x);
    if (s.startsWith('#{')) return Array.from(x.values(), cljToJson);
    const out = {};
    for (const [k, v] of x.entries()) {
      const key = typeof k === 'string' ? k : (isPrimitive(k) ? String(k) : keyString(k));
      out[key] = cljToJson(v);
    }
    return out;
  }
  if (typeof x[Symbol.iterator] === 'function') return Array.from(x, cljToJson);
  return String(x);  // keywords (":ns/name"), symbols, uuids, ...
}

function keyString(k) {
  const j = cljToJson(k);
  return typeof j === 'string' ? j : JSON.stringify(j);
}

function datom5(dt) {
  // retractions carry a negative tx in the cljs Datom
  return [dt.e, dt.a, isPrimitive(dt.v) ? dt.v : cljToJson(dt.v), Math.abs(dt.tx), dt.tx > 0];
}

function datom4(dt) {
  return [dt.e, dt.a, isPrimitive(dt.v) ? dt.v : cljToJson(dt.v), Math.abs(dt.tx)];
}

function allDatoms(db) {
  return d.datoms(db, ':eavt').map(datom4);
}

function errorCode(data) {
  if (!data || typeof data.entries !== 'function') return null;
  try {
    for (const [k, v] of data.entries()) {
      if (String(k) === ':error') {
        const s = String(v);
        return s.startsWith(':') ? s.slice(1) : s;
      }
    }
  } catch (e) { /* not a map */ }
  return null;
}

function errorObj(e) {
  const out = { error: e && e.message !== undefined ? String(e.message) : String(e) };
  const data = e && e.data !== undefined && e.data !== null ? e.data : null;
  out.code = errorCode(data);
  out.data = data === null ? null : String(data);
  let exData = null;
  if (data !== null) {
    try { exData = cljToJson(data); } catch (err) { exData = null; }
  }
  out.ex_data = exData;
  return out;
}

// ---------------------------------------------------------------------------
// queries, pulls, entities (same conventions as the reference ds_oracle.js)

// Canonical total order for JSON values, used only when a query asks for "sort": true
function canon(a, b) {
  const ta = typeof a, tb = typeof b;
  if (ta !== tb) return ta < tb ? -1 : 1;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = canon(a[i], b[i]);
      if (c) return c;
    }
    return a.length - b.length;
  }
  if (ta === 'number') return a - b;
  const sa = JSON.stringify(a), sb = JSON.stringify(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

function runQuery(db, spec) {
  try {
    const inputs = spec.inputs || [];
    let res = spec.db === false ? d.q(spec.q, ...inputs) : d.q(spec.q, db, ...inputs);
    if (res === undefined) res = null;
    if (spec.sort && Array.isArray(res)) res = res.slice().sort(canon);
    return res;
  } catch (e) {
    return errorObj(e);
  }
}

function entityToJS(db, eid) {
  const ent = d.entity(db, eid);
  if (ent === null || ent === undefined) return null;
  const out = { ':db/id': ent.get(':db/id') };
  const conv = (x) => (x && typeof x === 'object' && typeof x.get === 'function' && x.db !== undefined)
    ? { ':db/id': x.get(':db/id') } : cljToJson(x);
  for (const [a, v] of ent.entries()) out[a] = Array.isArray(v) ? v.map(conv) : conv(v);
  return out;
}

// ---------------------------------------------------------------------------

function handle(req) {
  const out = { version: VERSION };
  if (req.id !== undefined) out.id = req.id;
  const schema = req.schema || {};
  let conn;
  try {
    conn = req.init_datoms ? d.conn_from_datoms(req.init_datoms, schema) : d.create_conn(schema);
  } catch (e) {
    out.init_error = errorObj(e);  // bad schema or init_datoms: nothing else is run
    return out;
  }
  out.txs = [];

  for (const tx of req.txs || []) {
    const txData = Array.isArray(tx) ? tx : (tx && tx.tx_data) || [];
    let r;
    try {
      const report = d.transact(conn, txData);
      const tempids = {};
      for (const k of Object.keys(report.tempids)) tempids[k] = report.tempids[k];
      r = { tempids, tx_data: Array.from(report.tx_data, datom5) };
    } catch (e) {
      r = errorObj(e);
    }
    if (req.snapshot_each) r.db = allDatoms(d.db(conn));
    out.txs.push(r);
  }

  const db = d.db(conn);
  if (req.datoms !== false) out.datoms = allDatoms(db);
  if (req.q !== undefined) out.q_result = runQuery(db, { q: req.q, inputs: req.inputs, sort: req.sort });
  if (req.queries) out.query_results = req.queries.map((s) => runQuery(db, s));
  if (req.pulls) {
    out.pull_results = req.pulls.map((p) => {
      try { const r = d.pull(db, p.pattern, p.eid); return r === undefined ? null : r; } catch (e) { return errorObj(e); }
    });
  }
  if (req.pull_many) {
    out.pull_many_results = req.pull_many.map((p) => {
      try { return d.pull_many(db, p.pattern, p.eids); } catch (e) { return errorObj(e); }
    });
  }
  if (req.entities) {
    out.entity_results = req.entities.map((eid) => {
      try { return entityToJS(db, eid); } catch (e) { return errorObj(e); }
    });
  }
  return out;
}

function handleLine(line) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    return JSON.stringify({ fatal: 'bad JSON request: ' + String(e && e.message || e) });
  }
  try {
    return JSON.stringify(handle(req));
  } catch (e) {
    const out = { fatal: String(e && e.message || e) };
    if (req && req.id !== undefined) out.id = req.id;
    return JSON.stringify(out);
  }
}

function main() {
  if (process.argv.includes('--once')) {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => process.stdout.write(handleLine(Buffer.concat(chunks).toString('utf8')) + '\n'));
    return;
  }
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
  rl.on('line', (line) => {
    if (line.trim() === '') return;
    process.stdout.write(handleLine(line) + '\n');
  });
  rl.on('close', () => process.exit(0));
}

if (require.main === module) main();
module.exports = { handle, cljToJson };
