// The other half of the wire codec: decoding the messages a client sends (hello, sync, ack, submit,
// scopes) and encoding the ones a server sends (welcome, delta, snapshots, resync, tx-ok, tx-rejected,
// scopes-ok, scopes-rejected).
// A browser never needs it (so client.js does not load it); importing it completes codec.js's
// encode() and decode() for every message type, as the shared protocol vectors check.

import { DECODERS, ENCODERS, MAX_DEPTH, PROTOCOL_VERSION, decodeValue, encodeValue, internals } from './codec.js';
import { Tuple } from './values.js';

const { bad, decKey, fields, encStr, encReq, object, opt } = internals;

function credentials(x, depth = 0) {
  if (Array.isArray(x)) {
    if (depth > MAX_DEPTH) throw bad('Credentials nested too deeply');
    x.forEach((y) => credentials(y, depth + 1));
  } else if (x !== null && typeof x === 'object') {
    if (depth > MAX_DEPTH) throw bad('Credentials nested too deeply');
    Object.values(x).forEach((y) => credentials(y, depth + 1));
  } else if (!(x === null || typeof x === 'string' || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x)))) {
    throw bad('Credentials must be JSON data');
  }
  return x;
}

function encDatoms(ds) {
  return ds.map(([e, a, v, last]) => [e, encStr(a), encodeValue(v), last]);
}

const encPairs = (pairs) => pairs.map(([o, n]) => [encStr(o), encStr(n)]);

const MAX_BATCH = 4096;

Object.assign(DECODERS, {
  hello: (o) => {
    const m = { credentials: credentials(o.credentials === undefined ? null : o.credentials), ...fields(o, 't:i? db_id:s? client:c?') };
    if (m.client === null) delete m.client;
    if (o.batch !== undefined && typeof o.batch !== 'boolean') throw bad("Field 'batch' must be true or false", { field: 'batch' });
    if (o.batch) m.batch = true;
    return m;
  },
  // sent only to a client whose hello asked for batches (the browser client takes its deltas one by one)
  deltas: (o) => {
    const xs = o.deltas;
    if (!Array.isArray(xs) || !xs.length || xs.length > MAX_BATCH) throw bad(`Field 'deltas' must be a list of 1 to ${MAX_BATCH} delta messages`, { field: 'deltas' });
    return {
      deltas: xs.map((x) => {
        if (x === null || typeof x !== 'object' || x.v !== PROTOCOL_VERSION || x.type !== 'delta') throw bad('Each of \'deltas\' is a delta message', { field: 'deltas' });
        return { type: 'delta', ...DECODERS.delta(x) };
      }),
    };
  },
  sync: (o) => fields(o, 't:i?'),
  ack: (o) => fields(o, 't:i'),
  submit: (o) => {
    const { req, client, seq } = fields(o, 'req:r client:c? seq:i?');
    if (!Object.hasOwn(o, 'tx')) throw bad("Missing 'tx'", { field: 'tx' });
    const tx = decodeValue(o.tx, 1);
    if (!Array.isArray(tx) || tx instanceof Tuple) throw bad("Field 'tx' must be a list of forms");
    if ((client === null) !== (seq === null)) throw bad('A submit names its client and seq together, or neither');
    if (seq !== null && seq < 1) throw bad(`A submission's seq is at least 1, got ${seq}`);
    return client === null ? { req, tx } : { req, tx, client, seq };
  },
  scopes: (o) => {
    if (!Object.hasOwn(o, 'scopes')) throw bad("Missing 'scopes'", { field: 'scopes' });
    const xs = o.scopes;
    if (!Array.isArray(xs) || xs.length > 1024) throw bad("Field 'scopes' must be a list of [name, [args...]]");
    const scopes = xs.map((x) => {
      if (!Array.isArray(x) || x.length !== 2 || typeof x[0] !== 'string' || !Array.isArray(x[1])) throw bad('A scope is [name, [args...]]');
      return [decKey(x[0]), x[1].map((a) => decodeValue(a, 1))];
    });
    return { ...fields(o, 'req:r'), scopes };
  },
});

Object.assign(ENCODERS, {
  welcome: (m) => ({ db_id: encStr(m.db_id), t: m.t, mode: m.mode, ack_every: m.ack_every }),
  'tx-ok': (m) => ({ req: encReq(m.req), t: m.t, tempids: encodeValue(m.tempids) }),
  'tx-rejected': (m) => ({ req: encReq(m.req), code: encStr(m.code), message: encStr(m.message) }),
  'scopes-ok': (m) => ({ req: encReq(m.req), t: m.t, datoms: encDatoms(m.datoms) }),
  'scopes-rejected': (m) => ({ req: encReq(m.req), code: encStr(m.code), message: encStr(m.message) }),
  resync: (m) => ({ reason: encStr(m.reason), t: m.t }),
  delta: (m) => {
    const out = { t: m.t, tx: m.tx, instant: encodeValue(m.instant), datoms: encDatoms(m.datoms) };
    if (m.schema && Object.keys(m.schema).length) {
      out.schema = object(Object.entries(m.schema), encStr, (p) => (p === null ? null : object(Object.entries(p), encStr, encodeValue)));
    }
    if (m.renames && m.renames.length) out.renames = encPairs(m.renames);
    if (m.origin) out.origin = { client: m.origin.client, seq: m.origin.seq, tempids: encodeValue(m.origin.tempids ?? {}) };
    return out;
  },
  'snapshot-begin': (m) => {
    const out = { t: m.t, tx: m.tx, max_eid: m.max_eid, datoms: m.datoms, chunks: m.chunks, db_id: m.db_id == null ? null : encStr(m.db_id) };
    if (m.aliases && m.aliases.length) out.aliases = encPairs(m.aliases);
    return out;
  },
  'snapshot-chunk': (m) => ({ t: m.t, seq: m.seq, datoms: encDatoms(m.datoms) }),
  'snapshot-end': (m) => ({ t: m.t, chunks: m.chunks }),
  deltas: (m) => ({ deltas: m.deltas.map((d) => ({ v: PROTOCOL_VERSION, type: 'delta', ...ENCODERS.delta(d) })) }),
});
