// The shared protocol vectors' unambiguous spelling of decoded values (tests/vectors/protocol_vectors.py).
import {
  BigDecimal, BigInteger, Double, Keyword, Sym, Tuple, UUID, base64, instantText, pyFloatRepr,
} from '../../shell/web/values.js';

/** JSON with sorted keys (Python's json.dumps(sort_keys=True), compact), for ordering set members. */
export function canonical(x) {
  if (x === null || typeof x !== 'object') return JSON.stringify(x);
  if (Array.isArray(x)) return '[' + x.map(canonical).join(',') + ']';
  return '{' + Object.keys(x).sort().map((k) => JSON.stringify(k) + ':' + canonical(x[k])).join(',') + '}';
}

export function describe(v) {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') {
    if (Number.isInteger(v) && !Object.is(v, -0)) return v;
    return Number.isFinite(v) && !Number.isInteger(v) ? v : { $double: pyFloatRepr(v) };
  }
  if (v instanceof Double) {
    return Number.isFinite(v.value) && !Number.isInteger(v.value) ? v.value : { $double: pyFloatRepr(v.value) };
  }
  if (v instanceof BigInteger) return { $int: v.value.toString() };
  if (v instanceof Keyword) return { $keyword: v.name };
  if (v instanceof Sym) return { $symbol: v.name };
  if (v instanceof Date) return { $instant: instantText(v) };
  if (v instanceof UUID) return { $uuid: v.str };
  if (v instanceof BigDecimal) return { $bigdec: v.text };
  if (v instanceof Uint8Array) return { $bytes: base64(v) };
  if (v instanceof Tuple) return { $tuple: Array.from(v, describe) };
  if (Array.isArray(v)) return v.map(describe);
  if (v instanceof Set) return { $set: Array.from(v, describe).sort((a, b) => (canonical(a) < canonical(b) ? -1 : 1)) };
  if (v instanceof Map) {
    if (Array.from(v.keys()).every((k) => typeof k === 'string')) {
      return { $object: Object.fromEntries(Array.from(v, ([k, x]) => [k, describe(x)])) };
    }
    return { $map: Array.from(v, ([k, x]) => [describe(k), describe(x)]) };
  }
  if (typeof v === 'object') return { $object: Object.fromEntries(Object.entries(v).map(([k, x]) => [k, describe(x)])) };
  throw new TypeError('cannot describe ' + String(v));
}

const datoms = (ds) => ds.map(([e, a, v, last]) => [e, a, describe(v), last]);

export function describeMessage(m) {
  const out = { type: m.type };
  for (const [k, x] of Object.entries(m)) {
    if (k === 'type') continue;
    if (m.type === 'hello' || (m.type === 'submit' && (k === 'client' || k === 'seq'))) out[k] = x;
    else if (k === 'deltas') out[k] = x.map(describeMessage);
    else if (k === 'datoms' && Array.isArray(x)) out[k] = datoms(x);
    else if (m.type === 'scopes' && k === 'scopes') out[k] = x.map(([n, args]) => [n, args.map(describe)]);
    else if (m.type === 'delta' && k === 'schema') {
      if (Object.keys(x).length) {
        out.schema = Object.fromEntries(Object.entries(x).map(([a, p]) => [a, p === null ? null
          : Object.fromEntries(Object.entries(p).map(([pk, pv]) => [pk, describe(pv)]))]));
      }
    } else if (k === 'origin') {
      out.origin = { client: x.client, seq: x.seq, tempids: describe(x.tempids) };
    } else if (k === 'renames' || k === 'aliases') {
      if (x.length) out[k] = x;
    } else out[k] = describe(x);
  }
  return out;
}
