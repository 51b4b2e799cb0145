// The wire codec (docs/protocol.md): protocol messages to and from UTF-8 JSON text, strictly
// validated, byte for byte what the server's codec (datsync.core.sync.codec) writes and reads.
//
// A message is a plain object {type: "delta", t, tx, instant, datoms, ...} with the fields the
// protocol names; values are those of values.js. decode() throws a ProtocolError (code
// protocol/malformed, protocol/version or protocol/too-large) for anything that is not a valid
// message, and nothing else. Each message type's fields are checked by one table (FIELDS).

import {
  BigDecimal, BigInteger, Double, Keyword, MAX_SAFE, Sym, Tuple, UUID, base64, bigdec, fromBase64, instantText,
  integer, kw, parseInstant, pyFloatRepr, sym, uuid,
} from './values.js';

export const PROTOCOL_VERSION = 2;
export const DEFAULT_MAX_SIZE = 16 << 20;
export const MAX_DEPTH = 64;
export const MAX_CLIENT_ID = 128;

/** An error with a code (docs/protocol.md lists them): the base of every error the client raises. */
export class DatsyncError extends Error {
  constructor(code, message, data = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.data = data;
  }
}

/** Bytes that are not a valid message, or a value the wire cannot carry. */
export class ProtocolError extends DatsyncError {}

const bad = (message, data) => new ProtocolError('protocol/malformed', message, data);
const unencodable = (message) => new ProtocolError('protocol/unencodable', message);
const short = (x) => { try { return String(JSON.stringify(x)).slice(0, 60); } catch { return '?'; } };
const plainObject = (v) => v !== null && typeof v === 'object' && [Object.prototype, null].includes(Object.getPrototypeOf(v));

function setKey(obj, k, v) {
  if (k === '__proto__') Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
  else obj[k] = v;
}

/** An object of ``entries`` with each key made by ``key`` and each value by ``value``. */
function object(entries, key, value) {
  const out = {};
  for (const [k, x] of entries) setKey(out, key(k), value(x));
  return out;
}

// ------------------------------------------------------------------------------------------------
// Values to JSON-ready data

const encStr = (s) => (s[0] === '~' ? '~' + s : s);
const TAGS = new Map([[Keyword, '~:'], [Sym, '~$'], [UUID, '~u'], [BigDecimal, '~m']]);

/** A value as JSON-ready data, tagged where JSON would lose its type (as the server does). */
export function encodeValue(v, depth = 0) {
  switch (typeof v) {
    case 'string': return encStr(v);
    case 'boolean': return v;
    case 'number':
      if (!Number.isFinite(v)) return '~f' + pyFloatRepr(v);
      return Number.isInteger(v) && Math.abs(v) > MAX_SAFE ? '~n' + BigInt(v) : v;
    case 'bigint': return v >= -MAX_SAFE && v <= MAX_SAFE ? Number(v) : '~n' + v;
    default: if (v == null) return null;
  }
  const tag = TAGS.get(v.constructor);
  if (tag) return tag + (v.name ?? v.str ?? v.text);
  if (v instanceof BigInteger) return encodeValue(v.value);
  if (v instanceof Double) return Number.isInteger(v.value) ? '~d' + pyFloatRepr(v.value) : encodeValue(v.value);
  if (v instanceof Date) {
    if (Number.isNaN(+v)) throw unencodable('Cannot send an invalid Date');
    return '~t' + instantText(v);
  }
  if (v instanceof Uint8Array) return '~b' + base64(v);
  if (depth > MAX_DEPTH) throw unencodable('Value nested too deeply to send');
  const sub = (x) => encodeValue(x, depth + 1);
  if (v instanceof Tuple) return ['~#t', ...Array.from(v, sub)];
  if (Array.isArray(v)) return v.map(sub);
  if (v instanceof Set) return ['~#s', ...Array.from(v, sub)];
  if (v instanceof Map) {
    return [...v.keys()].every((k) => typeof k === 'string') ? object(v, encStr, sub) : ['~#m', ...[...v].flat().map(sub)];
  }
  if (plainObject(v)) return object(Object.entries(v), encStr, sub);
  throw unencodable(`Cannot send a value of type ${typeof v === 'object' ? v.constructor?.name : typeof v}`);
}

/** JSON text of JSON-ready data, formatted as the server formats it (Python's json, compact). */
export function dumps(x) {
  if (x === null || typeof x === 'string' || typeof x === 'boolean') return JSON.stringify(x);
  if (typeof x === 'number') {
    if (!Number.isFinite(x)) throw unencodable('JSON cannot carry ' + x);
    return Number.isInteger(x) ? String(x) : pyFloatRepr(x);
  }
  if (Array.isArray(x)) return '[' + x.map(dumps).join(',') + ']';
  return '{' + Object.keys(x).map((k) => JSON.stringify(k) + ':' + dumps(x[k])).join(',') + '}';
}

// ------------------------------------------------------------------------------------------------
// JSON-ready data to values

// "~" + tag + text: the value, or null if the text is not one
const TAGGED = {
  '~': (text) => '~' + text,
  ':': (text) => kw(':' + text),  // kw drops exactly this colon: a name may start with one
  $: sym,
  t: parseInstant,
  u: uuid,
  n: (text) => (/^-?\d+$/.test(text) ? integer(text) : null),
  d: (text) => (/^[-+\d.eE]+$/.test(text) && !Number.isNaN(+text) ? new Double(+text) : null),
  f: (text) => { const i = ['-inf', 'nan', 'inf'].indexOf(text); return i < 0 ? null : new Double((i - 1) / 0); },
  m: bigdec,
  b: fromBase64,
};

function decTagged(s) {
  let v = null;
  try { v = Object.hasOwn(TAGGED, s[1]) ? TAGGED[s[1]](s.slice(2)) : null; } catch { /* reported below */ }
  if (v === null) throw bad(`Bad tagged value ${short(s)}`);
  return v;
}

function decKey(k) {
  if (k[0] !== '~') return k;
  if (k[1] === '~') return k.slice(1);
  throw bad(`Bad map key ${short(k.slice(0, 16))}`);
}

/** The value JSON-ready data stands for (ProtocolError if malformed). */
export function decodeValue(x, depth = 0) {
  if (typeof x === 'string') return x[0] === '~' ? decTagged(x) : x;
  if (x === null || typeof x !== 'object') return x;
  if (depth > MAX_DEPTH) throw bad('Value nested too deeply');
  const sub = (y) => decodeValue(y, depth + 1);
  if (!Array.isArray(x)) return object(Object.entries(x), decKey, sub);
  const tag = typeof x[0] === 'string' && x[0].startsWith('~#') ? x[0] : null;
  if (tag === null) return x.map(sub);
  const items = x.slice(1).map(sub);
  if (tag === '~#t') return Tuple.of(...items);
  if (tag === '~#s') return new Set(items);
  if (tag !== '~#m' || items.length % 2) throw bad(`Bad tagged list ${short(tag.slice(0, 16))}`);
  const m = new Map();
  for (let i = 0; i < items.length; i += 2) m.set(items[i], items[i + 1]);
  return m;
}

// ------------------------------------------------------------------------------------------------
// Field checks: one checker per kind of field, one table of each message's fields

const fail = (name, x) => { throw bad(`Bad '${name}' ${short(x)}`, { field: name }); };
const int = (lo) => (x, name) => (Number.isInteger(x) && x >= lo ? x : fail(name, x));
const attr = (a, name) => (typeof a === 'string' && a ? decKey(a) : fail(name, a));
const pairs = (x, name) => (Array.isArray(x) ? x : fail(name, x))
  .map((r) => (Array.isArray(r) && r.length === 2 ? [attr(r[0], name), attr(r[1], name)] : fail(name, r)));

/** Datoms [e, a, v, added] (or [e, a, v, tx] when ``lastIsTx``), values decoded. */
const datoms = (lastIsTx) => (x, name) => (Array.isArray(x) ? x : fail(name, x)).map((d) => {
  if (!Array.isArray(d) || d.length !== 4) fail(name, d);
  let [e, a, v, last] = d;
  if (!Number.isInteger(e) || e <= 0 || !(lastIsTx ? Number.isInteger(last) && last > 0 : typeof last === 'boolean')) fail(name, d);
  if (typeof v === 'string') {
    if (v[0] === '~') v = decTagged(v);
  } else if (typeof v === 'object' && v !== null) {
    v = decodeValue(v, 1);
    if ((Array.isArray(v) && !(v instanceof Tuple)) || v instanceof Set || v instanceof Map || plainObject(v)) fail(name, d);
  }
  return [e, attr(a, name), v, last];
});

const CHECKS = {
  i: int(0),
  1: int(1),
  s: (x, name) => (typeof x === 'string' && x.length <= 1 << 16 ? decKey(x) : fail(name, x)),
  r: (x, name) => (Number.isInteger(x) ? x : typeof x === 'string' && x.length <= 256 ? decKey(x) : fail(name, x)),
  c: (x, name) => (typeof x === 'string' && x && x.length <= MAX_CLIENT_ID ? x : fail(name, x)),
  m: (x, name) => (x === 'resume' || x === 'bootstrap' ? x : fail(name, x)),
  N: (x, name) => { const v = decodeValue(x, 1); return v instanceof Date ? v : fail(name, x); },
  D: datoms(false),
  C: datoms(true),
  T: (x, name) => {
    const v = decodeValue(x, 1);
    const entries = v instanceof Map ? [...v] : plainObject(v) ? Object.entries(v) : fail(name, x);
    for (const [k, id] of entries) if (!(typeof k === 'string' || Number.isInteger(k)) || !Number.isInteger(id)) fail(name, k);
    return v;
  },
  p: (x, name) => (x == null ? [] : pairs(x, name)),
  R: (x, name) => (x == null ? undefined : pairs(x, name)),
  S: (x, name) => (x == null ? undefined : object(Object.entries(plainObject(x) ? x : fail(name, x)), (a) => attr(a, name),
    (p) => (p === null ? null : object(Object.entries(plainObject(p) ? p : fail(name, p)), (k) => attr(k, name), (v) => decodeValue(v, 1))))),
  O: (x, name) => (x == null ? undefined : fields(plainObject(x) ? x : fail(name, x), 'client:c seq:1 tempids:T')),
};

/** The fields ``spec`` names ("name:kind ...", CHECKS' kinds; "?": null when absent or null) of
 * the JSON object ``o``, checked and decoded. */
function fields(o, spec) {
  const out = {};
  for (const f of spec.split(' ')) {
    const [name, kind] = f.split(':');
    const x = o[name];
    if (!'?pRSO'.includes(kind.at(-1)) && !Object.hasOwn(o, name)) throw bad(`Missing '${name}'`, { field: name });
    const v = kind[1] && x == null ? null : CHECKS[kind[0]](x, name);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

const REFUSED = 'req:r code:s message:s';

/** The fields of each message a server sends (and ping, pong, error); codec_peer.js adds the others. */
const FIELDS = {
  welcome: 'db_id:s t:i mode:m ack_every:1',
  'tx-ok': 'req:r t:i tempids:T',
  'tx-rejected': REFUSED,
  'scopes-ok': 'req:r t:i datoms:D',
  'scopes-rejected': REFUSED,
  resync: 'reason:s t:i',
  ping: 'n:i t:i?',
  pong: 'n:i',
  error: 'code:s message:s',
  delta: 't:1 tx:1 instant:N datoms:D schema:S renames:R origin:O',
  'snapshot-begin': 't:i tx:i max_eid:i datoms:i chunks:i db_id:s? aliases:p',
  'snapshot-chunk': 't:i seq:i datoms:C',
  'snapshot-end': 't:i chunks:i',
};

/** Decoders of the messages a server sends (and ping, pong, error); codec_peer.js adds the others. */
export const DECODERS = Object.fromEntries(Object.entries(FIELDS).map(([type, spec]) => [type, (o) => fields(o, spec)]));

// ------------------------------------------------------------------------------------------------
// Messages

function encReq(r) {
  if (Number.isInteger(r)) return r;
  if (typeof r === 'string') return encStr(r);
  throw unencodable(`A request id is an int or a str, got ${short(r)}`);
}

function encCredentials(v, depth = 0) {
  if (v == null) return null;
  if (typeof v === 'string' || typeof v === 'boolean' || Number.isFinite(v)) return v;
  const sub = (x) => encCredentials(x, depth + 1);
  if (depth <= MAX_DEPTH && Array.isArray(v)) return v.map(sub);
  if (depth <= MAX_DEPTH && plainObject(v)) return object(Object.entries(v), (k) => k, sub);
  throw unencodable('Credentials must be JSON data');
}

const opt = (x) => (x === undefined ? null : x);

/** Encoders of the messages a client sends (and ping, pong, error); codec_peer.js adds the others. */
export const ENCODERS = {
  hello: (m) => ({
    credentials: encCredentials(m.credentials), t: opt(m.t), db_id: m.db_id == null ? null : encStr(m.db_id),
    ...(m.client != null && { client: m.client }), ...(m.batch && { batch: !0 }),
  }),
  sync: (m) => ({ t: opt(m.t) }),
  ack: (m) => ({ t: m.t }),
  submit: (m) => ({ req: encReq(m.req), tx: encodeValue(Array.from(m.tx)), ...(m.client != null && { client: m.client, seq: m.seq }) }),
  scopes: (m) => ({ req: encReq(m.req), scopes: m.scopes.map(([n, args]) => [encStr(n), Array.from(args, encodeValue)]) }),
  ping: (m) => ({ n: m.n, t: opt(m.t) }),
  pong: (m) => ({ n: m.n }),
  error: (m) => ({ code: encStr(m.code), message: encStr(m.message) }),
};

/** The JSON text of a message (what the server's codec writes for the same message). */
export function encode(message) {
  if (!Object.hasOwn(ENCODERS, message?.type)) throw unencodable(`Not a protocol message: ${short(message)}`);
  return dumps({ v: PROTOCOL_VERSION, type: message.type, ...ENCODERS[message.type](message) });
}

/** The field checks and writers codec_peer.js shares (not part of the client's API). */
export const internals = { bad, decKey, fields, encStr, encReq, object, opt };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The message in ``data`` (a string, an ArrayBuffer or a byte view); ProtocolError otherwise. */
export function decode(data, { maxSize = DEFAULT_MAX_SIZE } = {}) {
  try {
    let text = data;
    let size;
    if (typeof data === 'string') {
      size = data.length * 3 > maxSize ? new TextEncoder().encode(data).length : data.length;
    } else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
      size = data.byteLength;
      if (size <= maxSize) try { text = utf8.decode(data); } catch { throw bad('Not UTF-8'); }
    } else {
      throw bad(`Expected bytes, got ${typeof data}`);
    }
    if (size > maxSize) {
      throw new ProtocolError('protocol/too-large', `Message of ${size} bytes exceeds the limit of ${maxSize}`, { size, max_size: maxSize });
    }
    let obj;
    try { obj = JSON.parse(text); } catch (e) { throw bad(`Not JSON: ${e.message}`); }
    if (/\\u[dD][89a-fA-F]/.test(text) && hasLoneSurrogate(obj)) throw bad('Lone surrogate');
    if (!plainObject(obj)) throw bad('Not a JSON object');
    const { v, type } = obj;
    if (!Number.isInteger(v)) throw bad("Missing 'v'");
    if (v !== PROTOCOL_VERSION) {
      throw new ProtocolError('protocol/version', `Unsupported protocol version ${v} (this side speaks ${PROTOCOL_VERSION})`,
        { version: v, supported: [PROTOCOL_VERSION] });
    }
    if (typeof type !== 'string' || !Object.hasOwn(DECODERS, type)) throw bad(`Unknown message type ${short(type)}`, { type });
    return { type, ...DECODERS[type](obj) };
  } catch (e) {
    if (e instanceof ProtocolError) throw e;
    throw bad(`Malformed message (${e?.name}: ${String(e?.message).slice(0, 80)})`);
  }
}

function hasLoneSurrogate(x) {
  if (typeof x === 'string') return !x.isWellFormed();
  return x !== null && typeof x === 'object' && [...Object.keys(x), ...Object.values(x)].some(hasLoneSurrogate);
}
