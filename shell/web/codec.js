// The wire codec (docs/protocol.md): protocol messages to and from UTF-8 JSON text, strictly
// validated, byte for byte what the server's codec (datsync.core.sync.codec) writes and reads.
//
// A message is a plain object {type: "delta", t, tx, instant, datoms, ...} with the fields the
// protocol names; values are those of values.js. decode() throws a ProtocolError (code
// protocol/malformed, protocol/version or protocol/too-large) for anything that is not a valid
// message, and nothing else.

import {
  BigDecimal, BigInteger, Double, Instant, Keyword, MAX_SAFE, Sym, Tuple, UUID, base64, bigdec, bigint,
  fromBase64, instantText, kw, parseInstant, pyFloatRepr, sym, uuid,
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

const MALFORMED = 'protocol/malformed';
const bad = (message, data) => new ProtocolError(MALFORMED, message, data);
const unencodable = (message) => new ProtocolError('protocol/unencodable', message);
const short = (x) => { try { return String(JSON.stringify(x)).slice(0, 60); } catch { return '?'; } };

// ------------------------------------------------------------------------------------------------
// Values to JSON-ready data

const encStr = (s) => (s[0] === '~' ? '~' + s : s);

function encNumber(x) {
  if (!Number.isFinite(x)) return '~f' + pyFloatRepr(x);
  if (Number.isInteger(x)) return Math.abs(x) <= MAX_SAFE ? x : '~n' + BigInt(x).toString();
  return x;
}

function encDouble(x) {
  if (!Number.isFinite(x)) return '~f' + pyFloatRepr(x);
  return Number.isInteger(x) ? '~d' + pyFloatRepr(x) : x;
}

function plainObject(v) {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

/** A value as JSON-ready data, tagged where JSON would lose its type (as the server does). */
export function encodeValue(v, depth = 0) {
  if (v === null || v === undefined) return null;
  switch (typeof v) {
    case 'string': return encStr(v);
    case 'boolean': return v;
    case 'number': return encNumber(v);
    case 'bigint': return (v >= -BigInt(MAX_SAFE) && v <= BigInt(MAX_SAFE)) ? Number(v) : '~n' + v.toString();
    default: break;
  }
  if (v instanceof Keyword) return '~:' + v.name;
  if (v instanceof Sym) return '~$' + v.name;
  if (v instanceof UUID) return '~u' + v.str;
  if (v instanceof BigInteger) return encodeValue(v.value);
  if (v instanceof BigDecimal) return '~m' + v.text;
  if (v instanceof Double) return encDouble(v.value);
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) throw unencodable('Cannot send an invalid Date');
    return '~t' + instantText(v);
  }
  if (v instanceof Uint8Array) return '~b' + base64(v);
  if (depth > MAX_DEPTH) throw unencodable('Value nested too deeply to send');
  if (v instanceof Tuple) return ['~#t', ...Array.from(v, (x) => encodeValue(x, depth + 1))];
  if (Array.isArray(v)) return v.map((x) => encodeValue(x, depth + 1));
  if (v instanceof Set) return ['~#s', ...Array.from(v, (x) => encodeValue(x, depth + 1))];
  if (v instanceof Map) {
    if (Array.from(v.keys()).every((k) => typeof k === 'string')) {
      const out = {};
      for (const [k, x] of v) setKey(out, encStr(k), encodeValue(x, depth + 1));
      return out;
    }
    const out = ['~#m'];
    for (const [k, x] of v) out.push(encodeValue(k, depth + 1), encodeValue(x, depth + 1));
    return out;
  }
  if (typeof v === 'object' && plainObject(v)) {
    const out = {};
    for (const k of Object.keys(v)) setKey(out, encStr(k), encodeValue(v[k], depth + 1));
    return out;
  }
  throw unencodable(`Cannot send a value of type ${typeof v === 'object' ? v.constructor?.name : typeof v}`);
}

function setKey(obj, k, v) {
  if (k === '__proto__') Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
  else obj[k] = v;
}

/** JSON text of JSON-ready data, formatted as the server formats it (Python's json, compact). */
export function dumps(x) {
  if (x === null) return 'null';
  switch (typeof x) {
    case 'string': return JSON.stringify(x);
    case 'boolean': return x ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(x)) throw unencodable('JSON cannot carry ' + x);
      return Number.isInteger(x) ? String(x) : pyFloatRepr(x);
    default: break;
  }
  if (Array.isArray(x)) return '[' + x.map(dumps).join(',') + ']';
  return '{' + Object.keys(x).map((k) => JSON.stringify(k) + ':' + dumps(x[k])).join(',') + '}';
}

// ------------------------------------------------------------------------------------------------
// JSON-ready data to values

function decTagged(s) {
  const tag = s[1];
  const body = s.slice(2);
  switch (tag) {
    case '~': return s.slice(1);
    case ':': return kw(':' + body);  // kw drops exactly this colon: a name may start with one
    case '$': return sym(body);
    case 't': {
      const d = parseInstant(body);
      if (d === null) throw bad(`Bad instant ${short(body)}`);
      return d;
    }
    case 'u':
      try { return uuid(body); } catch { throw bad(`Bad uuid ${short(body)}`); }
    case 'n': {
      if (!/^-?[0-9]+$/.test(body)) throw bad(`Bad integer ${short(body)}`);
      const b = BigInt(body);
      return (b >= -BigInt(MAX_SAFE) && b <= BigInt(MAX_SAFE)) ? Number(b) : bigint(b);
    }
    case 'd': {
      const x = Number(body);
      if (body.trim() === '' || !/^[-+0-9.eE]+$/.test(body) || Number.isNaN(x)) throw bad(`Bad double ${short(body)}`);
      return new Double(x);
    }
    case 'f':
      if (body === 'inf') return new Double(Infinity);
      if (body === '-inf') return new Double(-Infinity);
      if (body === 'nan') return new Double(NaN);
      throw bad(`Bad special double ${short(body)}`);
    case 'm':
      try { return bigdec(body); } catch { throw bad(`Bad decimal ${short(body)}`); }
    case 'b':
      try { return fromBase64(body); } catch { throw bad('Bad base64 bytes'); }
    default: throw bad(`Unknown tag in ${short(s.slice(0, 16))}`);
  }
}

function decKey(k) {
  if (k[0] !== '~') return k;
  if (k[1] === '~') return k.slice(1);
  throw bad(`Bad map key ${short(k.slice(0, 16))}`);
}

/** The value JSON-ready data stands for (ProtocolError if malformed). */
export function decodeValue(x, depth = 0) {
  if (x === null) return null;
  switch (typeof x) {
    case 'string': return x[0] === '~' ? decTagged(x) : x;
    case 'number': case 'boolean': return x;
    default: break;
  }
  if (depth > MAX_DEPTH) throw bad('Value nested too deeply');
  if (Array.isArray(x)) {
    if (x.length && typeof x[0] === 'string' && x[0].startsWith('~#')) {
      const tag = x[0];
      const items = x.slice(1).map((y) => decodeValue(y, depth + 1));
      if (tag === '~#t') return Tuple.of(...items);
      if (tag === '~#s') return new Set(items);
      if (tag === '~#m') {
        if (items.length % 2) throw bad('Odd ~#m map');
        const m = new Map();
        for (let i = 0; i < items.length; i += 2) m.set(items[i], items[i + 1]);
        return m;
      }
      throw bad(`Unknown tag ${short(tag.slice(0, 16))}`);
    }
    return x.map((y) => decodeValue(y, depth + 1));
  }
  const out = {};
  for (const k of Object.keys(x)) setKey(out, decKey(k), decodeValue(x[k], depth + 1));
  return out;
}

// ------------------------------------------------------------------------------------------------
// Field checks

function field(o, name) {
  if (!Object.prototype.hasOwnProperty.call(o, name)) throw bad(`Missing '${name}'`, { field: name });
  return o[name];
}

function int(o, name, lo = 0) {
  const x = field(o, name);
  if (typeof x !== 'number' || !Number.isInteger(x) || x < lo) {
    throw bad(`Bad '${name}' ${short(x)}`, { field: name });
  }
  return x;
}

const optInt = (o, name, lo = 0) => (o[name] === undefined || o[name] === null ? null : int(o, name, lo));

function str(o, name) {
  const x = field(o, name);
  if (typeof x !== 'string' || x.length > (1 << 16)) throw bad(`Bad '${name}' ${short(x)}`, { field: name });
  return decKey(x);
}

const optStr = (o, name) => (o[name] === undefined || o[name] === null ? null : str(o, name));

function req(o) {
  const x = field(o, 'req');
  if (typeof x === 'number' && Number.isInteger(x)) return x;
  if (typeof x === 'string' && x.length <= 256) return decKey(x);
  throw bad(`Bad 'req' ${short(x)}`, { field: 'req' });
}

function attr(a) {
  if (typeof a !== 'string' || !a) throw bad(`Bad attribute ${short(a)}`);
  return a[0] === '~' ? decKey(a) : a;
}

function instant(o, name) {
  const x = decodeValue(field(o, name), 1);
  if (!(x instanceof Date)) throw bad(`Bad '${name}'`, { field: name });
  return x;
}

function datoms(x, lastIsTx) {
  if (!Array.isArray(x)) throw bad("Bad 'datoms'");
  const out = new Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const d = x[i];
    if (!Array.isArray(d) || d.length !== 4) throw bad(`Bad datom ${short(d)}`);
    let [e, a, v, last] = d;
    const lastOk = lastIsTx ? (Number.isInteger(last) && last > 0) : typeof last === 'boolean';
    if (!Number.isInteger(e) || e <= 0 || !lastOk || typeof a !== 'string' || !a) throw bad(`Bad datom ${short(d)}`);
    if (a[0] === '~') a = decKey(a);
    if (typeof v === 'string') {
      if (v[0] === '~') v = decTagged(v);
    } else if (v !== null && typeof v === 'object') {
      v = decodeValue(v, 1);
      if ((Array.isArray(v) && !(v instanceof Tuple)) || v instanceof Set || v instanceof Map || plainObject(v)) {
        throw bad('Bad datom value');
      }
    }
    out[i] = [e, a, v, last];
  }
  return out;
}

function namePairs(o, name) {
  const x = o[name];
  if (x === undefined || x === null) return [];
  if (!Array.isArray(x)) throw bad(`Bad '${name}'`, { field: name });
  return x.map((r) => {
    if (!Array.isArray(r) || r.length !== 2) throw bad(`Bad '${name}' ${short(r)}`, { field: name });
    return [attr(r[0]), attr(r[1])];
  });
}

function schemaChanges(o) {
  const out = {};
  if (o.schema !== undefined && o.schema !== null) {
    const ch = o.schema;
    if (typeof ch !== 'object' || Array.isArray(ch)) throw bad("Bad 'schema'");
    const changes = {};
    for (const name of Object.keys(ch)) {
      const props = ch[name];
      if (props === null) { setKey(changes, attr(name), null); continue; }
      if (typeof props !== 'object' || Array.isArray(props)) throw bad(`Bad schema of ${short(name)}`);
      const p = {};
      for (const k of Object.keys(props)) setKey(p, attr(k), decodeValue(props[k], 1));
      setKey(changes, attr(name), p);
    }
    out.schema = changes;
  }
  if (o.renames !== undefined && o.renames !== null) out.renames = namePairs(o, 'renames');
  return out;
}

function tempids(o) {
  const x = decodeValue(field(o, 'tempids'), 1);
  const entries = x instanceof Map ? Array.from(x) : (x !== null && typeof x === 'object' && !Array.isArray(x)
    && plainObject(x) ? Object.entries(x) : null);
  if (entries === null) throw bad("Bad 'tempids'");
  for (const [k, v] of entries) {
    if (!((typeof k === 'string') || Number.isInteger(k)) || !Number.isInteger(v)) throw bad(`Bad tempid entry ${short(k)}`);
  }
  return x;
}

function clientId(x) {
  if (typeof x !== 'string' || x.length === 0 || x.length > MAX_CLIENT_ID) {
    throw bad(`Bad client id ${short(x)}`);
  }
  return x;
}

const optClient = (o) => (o.client === undefined || o.client === null ? null : clientId(o.client));

function origin(o) {
  const x = o.origin;
  if (x === undefined || x === null) return {};
  if (typeof x !== 'object' || Array.isArray(x)) throw bad("Bad 'origin'");
  return { origin: { client: clientId(x.client), seq: int(x, 'seq', 1), tempids: tempids(x) } };
}

/** Decoders of the messages a server sends (and ping, pong, error); codec_peer.js adds the others. */
export const DECODERS = {
  welcome: (o) => {
    const w = { db_id: str(o, 'db_id'), t: int(o, 't'), mode: str(o, 'mode'), ack_every: int(o, 'ack_every', 1) };
    if (w.mode !== 'resume' && w.mode !== 'bootstrap') throw bad(`Bad mode ${short(w.mode)}`);
    return w;
  },
  'tx-ok': (o) => ({ req: req(o), t: int(o, 't'), tempids: tempids(o) }),
  'tx-rejected': (o) => ({ req: req(o), code: str(o, 'code'), message: str(o, 'message') }),
  'scopes-ok': (o) => ({ req: req(o), t: int(o, 't'), datoms: datoms(field(o, 'datoms'), false) }),
  'scopes-rejected': (o) => ({ req: req(o), code: str(o, 'code'), message: str(o, 'message') }),
  resync: (o) => ({ reason: str(o, 'reason'), t: int(o, 't') }),
  ping: (o) => ({ n: int(o, 'n'), t: optInt(o, 't') }),
  pong: (o) => ({ n: int(o, 'n') }),
  error: (o) => ({ code: str(o, 'code'), message: str(o, 'message') }),
  delta: (o) => ({ t: int(o, 't', 1), tx: int(o, 'tx', 1), instant: instant(o, 'instant'), datoms: datoms(field(o, 'datoms'), false), ...schemaChanges(o), ...origin(o) }),
  'snapshot-begin': (o) => ({
    t: int(o, 't'), tx: int(o, 'tx'), max_eid: int(o, 'max_eid'), datoms: int(o, 'datoms'), chunks: int(o, 'chunks'), db_id: optStr(o, 'db_id'),
    aliases: namePairs(o, 'aliases'),
  }),
  'snapshot-chunk': (o) => ({ t: int(o, 't'), seq: int(o, 'seq'), datoms: datoms(field(o, 'datoms'), true) }),
  'snapshot-end': (o) => ({ t: int(o, 't'), chunks: int(o, 'chunks') }),
};

// ------------------------------------------------------------------------------------------------
// Messages

function encReq(r) {
  if (Number.isInteger(r)) return r;
  if (typeof r === 'string') return encStr(r);
  throw unencodable(`A request id is an int or a str, got ${short(r)}`);
}

function encCredentials(v, depth = 0) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (depth <= MAX_DEPTH) {
    if (Array.isArray(v)) return v.map((x) => encCredentials(x, depth + 1));
    if (typeof v === 'object' && plainObject(v)) {
      const out = {};
      for (const k of Object.keys(v)) setKey(out, k, encCredentials(v[k], depth + 1));
      return out;
    }
  }
  throw unencodable('Credentials must be JSON data (strings, finite numbers, booleans, null, lists, maps with string keys)');
}

const opt = (x) => (x === undefined ? null : x);

/** Encoders of the messages a client sends (and ping, pong, error); codec_peer.js adds the others. */
export const ENCODERS = {
  hello: (m) => {
    const out = { credentials: encCredentials(m.credentials), t: opt(m.t), db_id: m.db_id == null ? null : encStr(m.db_id) };
    if (m.client != null) out.client = m.client;
    return out;
  },
  sync: (m) => ({ t: opt(m.t) }),
  ack: (m) => ({ t: m.t }),
  submit: (m) => {
    const out = { req: encReq(m.req), tx: encodeValue(Array.from(m.tx)) };
    if (m.client != null) { out.client = m.client; out.seq = m.seq; }
    return out;
  },
  scopes: (m) => ({ req: encReq(m.req), scopes: m.scopes.map(([n, args]) => [encStr(n), Array.from(args, encodeValue)]) }),
  ping: (m) => ({ n: m.n, t: opt(m.t) }),
  pong: (m) => ({ n: m.n }),
  error: (m) => ({ code: encStr(m.code), message: encStr(m.message) }),
};

/** The JSON text of a message (what the server's codec writes for the same message). */
export function encode(message) {
  const f = ENCODERS[message?.type];
  if (f === undefined || !Object.prototype.hasOwnProperty.call(ENCODERS, message.type)) {
    throw unencodable(`Not a protocol message: ${short(message)}`);
  }
  return dumps({ v: PROTOCOL_VERSION, type: message.type, ...f(message) });
}

/** The field checks and writers codec_peer.js shares (not part of the client's API). */
export const internals = { bad, decKey, field, int, optInt, str, optStr, req, optClient, encStr, encReq, setKey, opt, short };

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** The message in ``data`` (a string, an ArrayBuffer or a byte view); ProtocolError otherwise. */
export function decode(data, { maxSize = DEFAULT_MAX_SIZE } = {}) {
  try {
    let text;
    let size;
    if (typeof data === 'string') {
      text = data;
      size = data.length * 3 > maxSize ? utf8Encoder.encode(data).length : data.length;
    } else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      size = bytes.length;
      if (size > maxSize) throw tooLarge(size, maxSize);
      try { text = utf8.decode(bytes); } catch { throw bad('Not UTF-8'); }
    } else {
      throw bad(`Expected bytes, got ${typeof data}`);
    }
    if (size > maxSize) throw tooLarge(size, maxSize);
    let obj;
    try { obj = JSON.parse(text); } catch (e) { throw bad(`Not JSON: ${e.message}`); }
    if (SURROGATE_ESCAPE.test(text) && hasLoneSurrogate(obj)) throw bad('Lone surrogate');
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw bad('Not a JSON object');
    const v = obj.v;
    if (!Number.isInteger(v)) throw bad("Missing 'v'");
    if (v !== PROTOCOL_VERSION) {
      throw new ProtocolError('protocol/version', `Unsupported protocol version ${v} (this side speaks ${PROTOCOL_VERSION})`,
        { version: v, supported: [PROTOCOL_VERSION] });
    }
    const kind = obj.type;
    const dec = typeof kind === 'string' && Object.prototype.hasOwnProperty.call(DECODERS, kind) ? DECODERS[kind] : undefined;
    if (dec === undefined) throw bad(`Unknown message type ${short(kind)}`, { type: kind });
    return { type: kind, ...dec(obj) };
  } catch (e) {
    if (e instanceof ProtocolError) throw e;
    throw bad(`Malformed message (${e?.name}: ${String(e?.message).slice(0, 80)})`);
  }
}

const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

function hasLoneSurrogate(x) {
  if (typeof x === 'string') return !x.isWellFormed();
  if (x === null || typeof x !== 'object') return false;
  return (Array.isArray(x) ? x : [...Object.keys(x), ...Object.values(x)]).some(hasLoneSurrogate);
}

function tooLarge(size, maxSize) {
  return new ProtocolError('protocol/too-large', `Message of ${size} bytes exceeds the limit of ${maxSize}`, { size, max_size: maxSize });
}
