// Datomic value types in JavaScript, and back, without loss.
//
//   Datomic            JavaScript (what d.q, d.pull and d.datoms return)
//   string, boolean    string, boolean
//   long               number (|n| <= 2^53 - 1), else BigInteger (its .value is a native BigInt)
//   bigint             number when safe, else BigInteger
//   double, float      number (an integral double arriving from the server is a Double until it is
//                      stored in DataScript, where it is a plain number; writes to a double
//                      attribute are sent as doubles)
//   bigdec             BigDecimal (.text keeps every digit and the exponent: "1.50")
//   instant            Date (an Instant, a Date that remembers the server's exact text)
//   uuid               UUID (.str)
//   keyword            Keyword (.name, without the colon): kw("status/done")
//   symbol             Sym (.name)
//   bytes              Uint8Array
//   uri                string
//   tuple              Tuple (an Array); DataScript hands tuples back as vectors (iterable)
//   ref                number (the entity id)
//
// Keyword, Sym, UUID, BigInteger and BigDecimal are interned: equal values are the same object, so
// DataScript (which compares objects by identity) finds them in its indexes, and lookup refs and
// :db/unique work on them. Always make them with kw(), sym(), uuid(), bigint(), bigdec().

const registry = new Map();
const finalizer = typeof FinalizationRegistry === 'function'
  ? new FinalizationRegistry((key) => {
    const ref = registry.get(key);
    if (ref !== undefined && ref.deref() === undefined) registry.delete(key);
  })
  : null;

function intern(key, make) {
  const ref = registry.get(key);
  const hit = ref === undefined ? undefined : ref.deref();
  if (hit !== undefined) return hit;
  const obj = make();
  if (finalizer !== null) {
    registry.set(key, new WeakRef(obj));
    finalizer.register(obj, key);
  } else {
    registry.set(key, { deref: () => obj });
  }
  return obj;
}

export class Keyword {
  constructor(name) { this.name = name; }
  toString() { return ':' + this.name; }
  toJSON() { return ':' + this.name; }
}

export class Sym {
  constructor(name) { this.name = name; }
  toString() { return this.name; }
  toJSON() { return this.name; }
}

export class UUID {
  constructor(str) { this.str = str; }
  toString() { return this.str; }
  toJSON() { return this.str; }
}

export class BigInteger {
  constructor(value) { this.value = value; }
  toString() { return this.value.toString(); }
  toJSON() { return this.value.toString(); }
}

export class BigDecimal {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
  toJSON() { return this.text; }
}

/** A double: an integral number sent or received as a double (1.0 is not the long 1). */
export class Double {
  constructor(value) { this.value = value; }
  valueOf() { return this.value; }
  toString() { return pyFloatRepr(this.value); }
}

/** A Date carrying the server's exact ISO text (microseconds, offset), so it goes back unchanged. */
export class Instant extends Date {
  constructor(ms, iso) { super(ms); this.iso = iso; }
}

/** A tuple value (an Array); a plain Array in a transaction is a collection of values. */
export class Tuple extends Array {
  static of(...xs) { const t = new Tuple(); t.push(...xs); return t; }
}

/** The keyword :name (name without the colon; a leading colon is dropped). */
export function kw(name) {
  if (typeof name !== 'string') throw new TypeError('kw(name): name is a string');
  const n = name[0] === ':' ? name.slice(1) : name;
  return intern('k' + n, () => new Keyword(n));
}

export function sym(name) { return intern('s' + name, () => new Sym(name)); }

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function uuid(str) {
  const s = String(str).toLowerCase();
  if (!UUID_RE.test(s)) throw new TypeError('Bad uuid ' + String(str).slice(0, 60));
  return intern('u' + s, () => new UUID(s));
}

export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** A big integer (a native BigInt, a digit string or a safe integer) as the interned BigInteger. */
export function bigint(x) {
  const b = typeof x === 'bigint' ? x : BigInt(x);
  return intern('n' + b.toString(), () => new BigInteger(b));
}

/** An integer from the wire or an application: a number when safe, else a BigInteger. */
export function integer(x) {
  const b = typeof x === 'bigint' ? x : BigInt(x);
  return (b >= -BigInt(MAX_SAFE) && b <= BigInt(MAX_SAFE)) ? Number(b) : bigint(b);
}

const DECIMAL_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

export function bigdec(x) {
  const s = typeof x === 'number' ? String(x) : String(x);
  if (!DECIMAL_RE.test(s)) throw new TypeError('Bad decimal ' + s.slice(0, 60));
  return intern('m' + s, () => new BigDecimal(s));
}

export function double(x) { return new Double(Number(x)); }

export function tuple(...xs) { return Tuple.of(...xs); }

/** Python's repr of a float (what the server writes), so both sides produce the same bytes. */
export function pyFloatRepr(x) {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  let [mant, exp] = x.toExponential().split('e');
  const e = parseInt(exp, 10);
  const neg = mant[0] === '-';
  if (neg) mant = mant.slice(1);
  const digits = mant.replace('.', '');
  let s;
  if (e < -4 || e >= 16) {
    s = digits[0] + (digits.length > 1 ? '.' + digits.slice(1) : '') + 'e' + (e < 0 ? '-' : '+')
      + String(Math.abs(e)).padStart(2, '0');
  } else if (e >= 0) {
    s = digits.length <= e + 1
      ? digits + '0'.repeat(e + 1 - digits.length) + '.0'
      : digits.slice(0, e + 1) + '.' + digits.slice(e + 1);
  } else {
    s = '0.' + '0'.repeat(-e - 1) + digits;
  }
  return (neg ? '-' : '') + s;
}

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|[+-]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?$/;

/** The Instant an ISO 8601 text names (a naive time is taken as UTC); null if it is not one. */
export function parseInstant(text) {
  const m = ISO_RE.exec(text);
  if (m === null) return null;
  const [, y, mo, d, h, mi, s, frac, off] = m;
  let ms = Date.UTC(+y, +mo - 1, +d, +h, +mi, s === undefined ? 0 : +s, frac === undefined ? 0 : +(frac + '00').slice(0, 3));
  if (off !== undefined && off !== 'Z') {
    const sign = off[0] === '-' ? -1 : 1;
    const [oh, om, os] = off.slice(1).split(':');
    ms -= sign * ((+oh * 60 + +om) * 60000 + (os === undefined ? 0 : Math.trunc(parseFloat(os) * 1000)));
  }
  if (!Number.isFinite(ms) || +mo < 1 || +mo > 12 || +d < 1 || +d > 31 || +h > 23 || +mi > 59
      || (s !== undefined && +s > 59)) return null;
  return new Instant(ms, text);
}

/** A Date as the server writes instants (UTC, microseconds only when there are milliseconds). */
export function instantText(date) {
  if (date instanceof Instant && date.iso && parseInstant(date.iso)?.getTime() === date.getTime()) return date.iso;
  const iso = date.toISOString(); // 2020-01-01T00:00:00.000Z
  const ms = date.getUTCMilliseconds();
  return iso.slice(0, 19) + (ms ? '.' + String(ms).padStart(3, '0') + '000' : '') + '+00:00';
}

export function base64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s);
}

export function fromBase64(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new TypeError('Bad base64 bytes');
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** True for values JavaScript compares by value (DataScript's own comparisons work on them). */
export function isPrimitive(v) {
  return v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}
