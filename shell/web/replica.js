// The replica's data on the real DataScript: the server schema derived from schema datoms (as
// datsync.core.sync.schema does), the DataScript schema a replica uses, snapshots and deltas
// applied with the server's entity and transaction ids, and transactions translated for the server.
//
// No I/O here: client.js drives it.

import { DatsyncError } from './codec.js';
import d from './datascript.js';
import {
  Double, Keyword, Tuple, base64, bigdec, bigint, double, integer, isPrimitive, kw, sym, uuid,
} from './values.js';

export const TX0 = 0x20000000;
export const EMAX = 0x7fffffff;

const REF = 'db.type/ref';
const TUPLE = 'db.type/tuple';
const EAVT = ':eavt';
const TYPE = 'db/valueType';

/** A transaction the client refuses before sending it, or an id DataScript cannot hold. */
export class SyncError extends DatsyncError {}

/** ``e``, if DataScript can hold it as an entity id (SyncError if not). */
function entityId(e) {
  if (e > EMAX) throw new SyncError('sync/id-space-exhausted', `Entity id ${e} is beyond DataScript's id space`);
  return e;
}

// ------------------------------------------------------------------------------------------------
// Schema

const nameOf = (x) => (x instanceof Keyword ? x.name : typeof x === 'string' && x[0] === ':' ? x.slice(1) : x);
const names = (x) => Array.from(x, nameOf);

// the schema attributes a server schema is made of (db/ident names the attribute)
const BOOL_PROPS = ['db/index', 'db/isComponent', 'db/noHistory', 'db/fulltext'];
const SCHEMA_ATTRS = new Set(['db/ident', TYPE, 'db/cardinality', 'db/unique', 'db/doc', 'db/tupleAttrs', 'db/tupleType',
  'db/tupleTypes', ...BOOL_PROPS]);

/** Schema properties from the wire (keywords, tuples of keywords) with names as plain strings. */
export function plainProps(props) {
  const out = {};
  for (const [k, v] of Object.entries(props)) out[k] = Array.isArray(v) ? names(v) : nameOf(v);
  return out;
}

/** The server's schema ({attr: props}) from its schema datoms [e, a, v, ...]; ``aliases`` maps old
 * attribute names to current ones (a composite's members keep the names it was installed with). */
export function serverSchemaFromDatoms(datoms, aliases = {}) {
  const ents = new Map();
  const identOf = new Map();
  const eOf = new Map();
  for (const x of datoms) {  // (a snapshot's many datoms: no destructuring)
    const a = x[1];
    if (!SCHEMA_ATTRS.has(a)) continue;
    const e = x[0];
    const v = x[2];
    if (!ents.has(e)) ents.set(e, {});
    ents.get(e)[a] = v;
    if (a === 'db/ident' && v instanceof Keyword) {
      identOf.set(e, v.name);
      eOf.set(v.name, e);
    }
  }
  const schema = {};
  for (const [e, ent] of ents) {
    const ident = identOf.get(e);
    if (ident === undefined || !Object.keys(ent).some((a) => a !== 'db/ident' && a !== 'db/doc')) continue;
    const p = (schema[ident] = {});
    for (const [a, v] of Object.entries(ent)) {
      if (BOOL_PROPS.includes(a)) { if (v === true) p[a] = v; }
      else if (a === 'db/doc') p[a] = v;
      else if (a === 'db/tupleTypes') p[a] = names(v);
      else if (a === 'db/tupleAttrs') p[a] = names(v).map((n) => identOf.get(eOf.get(n)) ?? aliases[n] ?? n);
      else if (a !== 'db/ident') p[a] = typeof v === 'number' ? identOf.get(v) : nameOf(v);  // a ref to an ident, or a keyword
    }
  }
  return schema;
}

/** ``schema`` after a delta's schema change: renames first, then each attribute's new properties. */
export function applySchemaDelta(schema, changes = {}, renames = []) {
  const out = { ...schema };
  const rn = new Map(renames);
  const moved = {};
  for (const [o, n] of renames) if (o in out) { moved[n] = out[o]; delete out[o]; }
  Object.assign(out, moved);
  for (const [a, p] of Object.entries(out)) {
    const ta = p['db/tupleAttrs'];
    if (ta?.some((x) => rn.has(x))) out[a] = { ...p, 'db/tupleAttrs': ta.map((x) => rn.get(x) ?? x) };
  }
  for (const [a, p] of Object.entries(changes)) {
    if (p === null) delete out[a];
    else out[a] = plainProps(p);
  }
  return out;
}

/** ``aliases`` (old name -> current) after a schema change (as datsync.core.sync.schema.apply_aliases). */
export function applyAliases(aliases, renames, schema) {
  const rn = new Map(renames);
  const out = {};
  for (const [o, c] of Object.entries(aliases)) out[o] = rn.get(c) ?? c;
  for (const [o, n] of renames) out[o] = n;
  for (const o of Object.keys(out)) if (o in schema || !(out[o] in schema)) delete out[o];
  return out;
}

/** The DataScript schema (in DataScript's JS spelling) of a replica of a server with ``schema``:
 * cardinality, uniqueness, db/index, components and refs carry over; composite tuples do not (the
 * server sends their datoms; DataScript would compute them again), nor other value types. */
export function datascriptSchema(schema) {
  const out = {};
  for (const [a, p] of Object.entries(schema)) {
    const ref = p[TYPE] === REF;
    out[a] = Object.fromEntries([
      ['cardinality', p['db/cardinality'] && ':' + p['db/cardinality']], ['unique', p['db/unique'] && ':' + p['db/unique']],
      ['valueType', ref && ':' + REF], ['isComponent', ref && p['db/isComponent']], ['index', p['db/index']],
    ].filter(([, v]) => v).map(([k, v]) => [':db/' + k, v]));
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Values in DataScript

// a tuple as DataScript holds it (a vector: iterable; the other values are not, bytes aside)
const isVector = (v) => typeof v === 'object' && typeof v?.[Symbol.iterator] === 'function' && !(v instanceof Uint8Array);

/** A wire value as DataScript holds it (an integral double is a plain number there). */
export function toStored(v) {
  if (v instanceof Double) return v.value;
  if (v instanceof Tuple) return Tuple.of(...Array.from(v, toStored));
  return v;
}

const elementType = (p, i) => p?.['db/tupleTypes']?.[i] ?? p?.['db/tupleType'];

/** A value DataScript holds, back as the wire value the server has (``props``: the attribute's). */
export function fromStored(v, props, type = props?.[TYPE]) {
  if (typeof v === 'number') return type === 'db.type/double' || type === 'db.type/float' ? double(v) : v;
  if (isVector(v)) return Tuple.of(...Array.from(v, (x, i) => fromStored(x, undefined, elementType(props, i))));
  return v;
}

/** A key equal for equal values (DataScript compares objects by identity; interned values are the
 * same object, Dates, bytes and tuples are compared here by content; a Double is its number). */
export function valueKey(v) {
  if (v instanceof Double) v = v.value;
  if (isVector(v)) return '[' + Array.from(v, valueKey).join(',') + ']';
  if (v instanceof Date) return 'date:' + +v;
  if (v instanceof Uint8Array) return 'bytes:' + base64(v);
  return (v?.constructor?.name ?? '') + ':' + v;
}

let Datom;

/** DataScript datoms of server datoms [e, a, v, tx] (wire values), ids and tx ids kept: done per
 * snapshot chunk as chunks arrive, so little is left for the end. */
export function prepareDatoms(datoms) {
  Datom ??= d.datoms(d.db_with(d.empty_db({}), [[':db/add', 1, 'x', 1]]), EAVT)[0].constructor;
  const tuples = [];
  const out = datoms.map((x, i) => {
    if (x[2] instanceof Tuple) tuples.push(i);
    return new Datom(entityId(x[0]), x[1], toStored(x[2]), x[3], 0, 0);
  });
  if (tuples.length) {  // as DataScript holds tuples (vectors): init_db takes values as they are, transactions convert
    const db = d.db_with(d.empty_db({}), tuples.map((i, j) => [':db/add', j + 1, 'v', out[i].v]));
    for (const x of d.datoms(db, EAVT)) {
      const dt = out[tuples[x.e - 1]];
      out[tuples[x.e - 1]] = new Datom(dt.e, dt.a, x.v, dt.tx, 0, 0);
    }
  }
  return out;
}

/** A DataScript database of server datoms [e, a, v, tx] (or of ``prepared`` DataScript datoms). */
export function buildDb(datoms, schema, prepared = null) {
  return d.init_db(prepared ?? prepareDatoms(datoms), datascriptSchema(schema));
}

/** Every datom of a DataScript database as [e, a, v, tx] with wire values (for storage, comparison). */
export function serverDatoms(db, schema, aliases = {}) {
  return d.datoms(db, EAVT).map((x) => [x.e, x.a, fromStored(x.v, schema[x.a] ?? schema[aliases[x.a]]), x.tx]);
}

/** The transaction ops that apply a delta's datoms to ``db``: retractions first (of the stored
 * values, found by content), then additions with the server's tx id. */
export function deltaOps(db, datoms, tx, schema) {
  const ops = [];
  for (const [e, a, v, added] of datoms) {
    entityId(e);
    if (added) continue;
    const key = valueKey(v);
    const hit = isPrimitive(v) ? { v } : d.datoms(db, EAVT, e, a).find((x) => valueKey(x.v) === key);
    if (hit !== undefined) ops.push([':db/retract', e, a, hit.v]);
  }
  for (const [e, a, v, added] of datoms) {
    if (added) ops.push([':db/add', e, a, toStored(v), ...(schema[a]?.[TYPE] === REF ? [] : [tx])]);
  }
  return ops;
}

/** A datom as a string: its e, a, value (by content) and tx. */
export const datomKey = (e, a, v, tx) => `${e} ${a} ${valueKey(v)} ${tx}`;

/** The operations that turn the database ``before`` into ``after`` where the two can differ: the
 * (e, a) pairs of ``touched`` ([e, a, ...] items). Retractions first; additions keep their tx. */
export function netOps(before, after, touched) {
  const retracts = [];
  const adds = [];
  const seen = new Set();
  for (const [e, a] of touched) {
    if (seen.has(e + ' ' + a)) continue;
    seen.add(e + ' ' + a);
    const key = (x) => datomKey(e, a, x.v, x.tx);
    const was = d.datoms(before, EAVT, e, a) ?? [];
    const now = d.datoms(after, EAVT, e, a) ?? [];
    const old = new Set(Array.from(was, key));
    const fresh = new Set(Array.from(now, key));
    for (const x of was) if (!fresh.has(key(x))) retracts.push([':db/retract', e, a, x.v]);
    for (const x of now) if (!old.has(key(x))) adds.push([':db/add', e, a, x.v, x.tx]);
  }
  return retracts.concat(adds);
}

/** ``datoms`` [e, a, v, tx] with the renamed attributes' datoms under their new names. */
export function renameDatoms(datoms, renames) {
  const rn = new Map(renames);
  return datoms.map(([e, a, v, tx]) => [e, rn.get(a) ?? a, v, tx]);
}

// ------------------------------------------------------------------------------------------------
// Transactions for the server

const OPS = new Set(['db/add', 'db/retract', 'db/retractEntity', 'db.fn/retractEntity', 'db/cas', 'db.fn/cas',
  'db.fn/retractAttribute']);

// the application's spellings of a value of a type (db.type/...): the typeofs converted, and how
const CONVERT = {
  __proto__: null,
  double: ['number', double],
  float: ['number', double],
  long: ['bigint string', (v) => (typeof v === 'string' && !/^-?\d+$/.test(v) ? v : integer(v))],
  keyword: ['string', kw],
  symbol: ['string', sym],
  uuid: ['string', uuid],
  bigdec: ['string number', bigdec],
  instant: ['number string', (v) => new Date(v)],
};
CONVERT.bigint = CONVERT.long;

function typed(type, v) {
  const [types, convert] = CONVERT[type?.slice(8)] ?? ['bigint', bigint];
  return v != null && types.includes(typeof v) ? convert(v) : v;
}

/** Translates an application's tx data (DataScript's JS spelling: ":db/add", ":db/id", arrays
 * for lookup refs and collections) into the server's (typed values, tuples, lookup refs). */
export class TxTranslator {
  constructor(schema, aliases = {}) {
    this.schema_ = schema;
    this.aliases_ = aliases;
  }

  attr_(a) {
    const n = nameOf(a);
    return (n in this.schema_ || !(n in this.aliases_)) ? n : this.aliases_[n];
  }

  props_(a) { return this.schema_[this.attr_(a)] ?? this.schema_[reverseOf(this.attr_(a))]; }

  isLookupRef_(x) {
    return Array.isArray(x) && !(x instanceof Tuple) && x.length === 2 && typeof x[0] === 'string'
      && (nameOf(x[0]) in this.schema_ || nameOf(x[0]) in this.aliases_);
  }

  entity_(x) {
    if (x instanceof Keyword) return x;
    if (typeof x === 'string') return x === ':db/current-tx' ? 'datomic.tx' : x;
    if (this.isLookupRef_(x)) return Tuple.of(this.attr_(x[0]), this.value_(x[0], x[1]));
    if (x !== null && typeof x === 'object' && !Array.isArray(x) && !(x instanceof Date)) return this.mapForm_(x);
    return x;
  }

  value_(a, v) {
    const p = this.props_(a);
    const type = p?.[TYPE];
    if (type === REF) return this.entity_(v);
    if (type === TUPLE || v instanceof Tuple) {
      if (!Array.isArray(v)) return v;
      return Tuple.of(...Array.from(v, (x, i) => {
        const t = elementType(p, i);
        return t === REF ? this.entity_(x) : typed(t, x);
      }));
    }
    return typed(type, v);
  }

  many_(a, vs) {
    const p = this.props_(a);
    const many = p?.['db/cardinality'] === 'db.cardinality/many' || isReverse(nameOf(a));
    if (!many || !Array.isArray(vs) || vs instanceof Tuple || this.isLookupRef_(vs)) return this.value_(a, vs);
    if (p?.[TYPE] === TUPLE && !vs.every((x) => Array.isArray(x))) return this.value_(a, vs);
    return vs.map((x) => this.value_(a, x));
  }

  mapForm_(m) {
    const out = {};
    for (const [k, v] of Object.entries(m)) {
      const n = nameOf(k);
      if (n === 'db/id') out['db/id'] = this.entity_(v);
      else if (isReverse(n)) out[this.attr_(n)] = Array.isArray(v) && !this.isLookupRef_(v) ? v.map((x) => this.entity_(x)) : this.entity_(v);
      else out[this.attr_(n)] = this.many_(n, v);
    }
    return out;
  }

  form_(f) {
    if (!Array.isArray(f)) {
      if (f !== null && typeof f === 'object') return this.mapForm_(f);
      throw new SyncError('sync/invalid-tx', `A form is a map or a list, got ${String(f).slice(0, 60)}`);
    }
    const op = nameOf(f[0]);
    if (!OPS.has(op)) {
      throw new SyncError('sync/forbidden-op', `Operation ${String(f[0]).slice(0, 60)} is not allowed from a replica`);
    }
    const out = [op];
    if (f.length > 1) out.push(this.entity_(f[1]));
    if (f.length > 2) out.push(this.attr_(f[2]));
    for (let i = 3; i < f.length; i++) out.push(this.value_(f[2], f[i]));
    return out;
  }

  tx(txData) {
    if (!Array.isArray(txData)) throw new SyncError('sync/invalid-tx', 'Transaction data is a list of forms');
    return txData.map((f) => this.form_(f));
  }
}

const isReverse = (n) => typeof n === 'string' && n.includes('/_');
const reverseOf = (n) => (isReverse(n) ? n.replace('/_', '/') : n);

function localValue(v) {
  if (v instanceof Double) return v.value;
  if (Array.isArray(v)) return Array.from(v, localValue);  // tuples and lookup refs: arrays to DataScript
  if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) return localMap(v);
  return v;
}

function localMap(m) {
  const out = {};
  for (const [k, v] of Object.entries(m)) out[k === 'db/id' ? ':db/id' : k] = localValue(v);
  return out;
}

/** A transaction as TxTranslator wrote it for the server, in DataScript's JS spelling again (typed
 * values kept), to apply it on the replica's view. */
export function toLocalTx(tx) {
  return tx.map((f) => (Array.isArray(f) ? [':' + f[0], ...f.slice(1).map(localValue)] : localMap(f)));
}

/** A tx-ok's tempids as the application names them: keys as strings, ":db/current-tx" for the tx. */
export function localTempids(tempids) {
  const entries = tempids instanceof Map ? Array.from(tempids) : Object.entries(tempids);
  const out = {};
  for (const [k, v] of entries) out[k === 'db/current-tx' || k === 'datomic.tx' ? ':db/current-tx' : String(k)] = v;
  return out;
}
