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
const finalizer = globalThis.FinalizationRegistry
  && new FinalizationRegistry((key) => { if (registry.get(key)?.deref() === undefined) registry.delete(key); });

/** The one object for ``key`` (made by ``make`` once; forgotten when nothing holds it any more). */
function intern(key, make) {
  let obj = registry.get(key)?.deref();
  if (obj === undefined) {
    obj = make();
    registry.set(key, finalizer ? new WeakRef(obj) : { deref: () => obj });
    if (finalizer) finalizer.register(obj, key);
  }
  return obj;
}

// A value held in one field (``.name``, ``.str``, ...), its text the field's after ``prefix``.
const boxed = (key, prefix = '') => class {
  constructor(x) { this[key] = x; }
  toString() { return prefix + this[key]; }
  toJSON() { return this.toString(); }
};

export class Keyword extends boxed('name', ':') {}
export class Sym extends boxed('name') {}
export class UUID extends boxed('str') {}
export class BigDecimal extends boxed('text') {}
export class BigInteger extends boxed('value') {}

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

/** A tuple value (an Array; ``Tuple.of(...values)``); a plain Array in a transaction is a collection of values. */
export class Tuple extends Array {}

/** The keyword :name (name without the colon; a leading colon is dropped). */
export function kw(name) {
  if (typeof name !== 'string') throw new TypeError('kw(name): name is a string');
  const n = name[0] === ':' ? name.slice(1) : name;
  return intern('k' + n, () => new Keyword(n));
}

export const sym = (name) => intern('s' + name, () => new Sym(name));

/** ``make(text)`` interned, after ``text`` (lower-cased for a uuid) matched ``re``; TypeError if not. */
const checked = (what, re, tag, make, lower) => (x) => {
  const s = lower ? String(x).toLowerCase() : String(x);
  if (!re.test(s)) throw new TypeError(`Bad ${what} ${s.slice(0, 60)}`);
  return intern(tag + s, () => make(s));
};

export const uuid = checked('uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'u', (s) => new UUID(s), 1);
export const bigdec = checked('decimal', /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/, 'm', (s) => new BigDecimal(s));

export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** A big integer (a native BigInt, a digit string or a safe integer) as the interned BigInteger. */
export function bigint(x) {
  const b = BigInt(x);
  return intern('n' + b, () => new BigInteger(b));
}

/** An integer from the wire or an application: a number when safe, else a BigInteger. */
export function integer(x) {
  const b = BigInt(x);
  return b >= -MAX_SAFE && b <= MAX_SAFE ? Number(b) : bigint(b);
}

export const double = (x) => new Double(Number(x));

export const tuple = (...xs) => Tuple.of(...xs);

/** Python's repr of a float (what the server writes), so both sides produce the same bytes. */
export function pyFloatRepr(x) {
  if (Number.isNaN(x)) return 'nan';
  if (Math.abs(x) === Infinity) return x > 0 ? 'inf' : '-inf';
  const [mant, exp] = x.toExponential().split('e');
  if (exp < -4 || exp >= 16) return mant + 'e' + exp[0] + exp.slice(1).padStart(2, '0');
  return Object.is(x, -0) ? '-0.0' : x + (Number.isInteger(x) ? '.0' : '');
}

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|([+-])(\d{2}):(\d{2})(?::(\d{2}(?:\.\d{1,6})?))?)?$/;

/** The Instant an ISO 8601 text names (a naive time is taken as UTC); null if it is not one. */
export function parseInstant(text) {
  const m = ISO_RE.exec(text);
  if (m === null) return null;
  const [, y, mo, d, h, mi, s = 0, frac = '', , sign, oh = 0, om = 0, os = 0] = m;
  const ms = Date.UTC(y, mo - 1, d, h, mi, s, (frac + '00').slice(0, 3))
    - (sign === '-' ? -1 : 1) * ((oh * 60 + +om) * 60000 + Math.trunc(os * 1000));
  return mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59 || Number.isNaN(ms) ? null : new Instant(ms, text);
}

/** A Date as the server writes instants (UTC, microseconds only when there are milliseconds). */
export function instantText(date) {
  if (date.iso && parseInstant(date.iso)?.getTime() === date.getTime()) return date.iso;
  const ms = date.getUTCMilliseconds();
  return date.toISOString().slice(0, 19) + (ms ? '.' + String(ms).padStart(3, '0') + '000' : '') + '+00:00';
}

export const base64 = (bytes) => btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(''));

export function fromBase64(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) throw new TypeError('Bad base64 bytes');
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** True for values JavaScript compares by value (DataScript's own comparisons work on them). */
export const isPrimitive = (v) => v === null || ['string', 'number', 'boolean'].includes(typeof v);
