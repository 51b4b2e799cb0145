// The replica's data on the real DataScript: the server schema derived from schema datoms (as
// datsync.core.sync.schema does), the DataScript schema a replica uses, snapshots and deltas
// applied with the server's entity and transaction ids, and transactions translated for the server.
//
// No I/O here: client.js drives it.

import { DatsyncError } from './codec.js';
import d from './datascript.js';
import {
  BigDecimal, BigInteger, Double, Keyword, Sym, Tuple, UUID, base64, bigdec, bigint, double, integer, isPrimitive, kw,
  sym, uuid,
} from './values.js';

export const TX0 = 0x20000000;
export const EMAX = 0x7fffffff;

const SCHEMA_ATTRS = new Set([
  'db/ident', 'db/valueType', 'db/cardinality', 'db/unique', 'db/index', 'db/isComponent', 'db/noHistory',
  'db/fulltext', 'db/doc', 'db/tupleAttrs', 'db/tupleType', 'db/tupleTypes',
]);
const BOOL_PROPS = ['db/index', 'db/isComponent', 'db/noHistory', 'db/fulltext'];
const REF = 'db.type/ref';
const TUPLE = 'db.type/tuple';

/** A transaction the client refuses before sending it, or an id DataScript cannot hold. */
export class SyncError extends DatsyncError {}

// ------------------------------------------------------------------------------------------------
// Schema

const nameOf = (x) => (x instanceof Keyword ? x.name : typeof x === 'string' ? (x[0] === ':' ? x.slice(1) : x) : x);

/** Schema properties from the wire (keywords, tuples of keywords) with names as plain strings. */
export function plainProps(props) {
  const out = {};
  for (const [k, v] of Object.entries(props)) {
    out[k] = (Array.isArray(v) || v instanceof Tuple) ? Array.from(v, nameOf) : nameOf(v);
  }
  return out;
}

/** The server's schema ({attr: props}) from its schema datoms [e, a, v, ...]; ``aliases`` maps old
 * attribute names to current ones (a composite's members keep the names it was installed with). */
export function serverSchemaFromDatoms(datoms, aliases = {}) {
  const vals = new Map();
  const identOf = new Map();
  const eOf = new Map();
  for (let i = 0, n = datoms.length; i < n; i++) {
    const x = datoms[i];
    const a = x[1];
    if (!SCHEMA_ATTRS.has(a)) continue;
    const e = x[0];
    const v = x[2];
    if (!vals.has(e)) vals.set(e, {});
    vals.get(e)[a] = v;
    if (a === 'db/ident' && v instanceof Keyword) {
      identOf.set(e, v.name);
      eOf.set(v.name, e);
    }
  }
  const schema = {};
  for (const [e, ent] of vals) {
    const ident = identOf.get(e);
    if (ident === undefined || !Object.keys(ent).some((a) => a !== 'db/ident' && a !== 'db/doc')) continue;
    const p = {};
    for (const a of ['db/valueType', 'db/cardinality', 'db/unique']) {
      if (ent[a] !== undefined) p[a] = typeof ent[a] === 'number' ? identOf.get(ent[a]) : nameOf(ent[a]);
    }
    for (const b of BOOL_PROPS) if (ent[b] === true) p[b] = true;
    if (ent['db/doc'] !== undefined) p['db/doc'] = ent['db/doc'];
    if (ent['db/tupleType'] !== undefined) p['db/tupleType'] = nameOf(ent['db/tupleType']);
    if (ent['db/tupleTypes'] !== undefined) p['db/tupleTypes'] = Array.from(ent['db/tupleTypes'], nameOf);
    if (ent['db/tupleAttrs'] !== undefined) {
      p['db/tupleAttrs'] = Array.from(ent['db/tupleAttrs'], (x) => {
        const n = nameOf(x);
        const cur = identOf.get(eOf.get(n));
        return cur !== undefined ? cur : (aliases[n] ?? n);
      });
    }
    schema[ident] = p;
  }
  return schema;
}

/** ``schema`` after a delta's schema change: renames first, then each attribute's new properties. */
export function applySchemaDelta(schema, changes = {}, renames = []) {
  const out = { ...schema };
  if (renames.length) {
    const rn = new Map(renames);
    const moved = {};
    for (const [o, n] of renames) if (o in out) { moved[n] = out[o]; delete out[o]; }
    Object.assign(out, moved);
    for (const [a, p] of Object.entries(out)) {
      const ta = p['db/tupleAttrs'];
      if (ta && ta.some((x) => rn.has(x))) out[a] = { ...p, 'db/tupleAttrs': ta.map((x) => rn.get(x) ?? x) };
    }
  }
  for (const [a, p] of Object.entries(changes)) {
    if (p === null) delete out[a];
    else out[a] = plainProps(p);
  }
  return out;
}

/** ``aliases`` (old name -> current) after a schema change (as datsync.core.sync.schema.apply_aliases). */
export function applyAliases(aliases, renames, schema) {
  if (!renames.length && !Object.keys(aliases).length) return aliases;
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
    const s = {};
    if (p['db/cardinality']) s[':db/cardinality'] = ':' + p['db/cardinality'];
    if (p['db/unique']) s[':db/unique'] = ':' + p['db/unique'];
    if (p['db/valueType'] === REF) s[':db/valueType'] = ':' + REF;
    if (p['db/isComponent'] && p['db/valueType'] === REF) s[':db/isComponent'] = true;
    if (p['db/index']) s[':db/index'] = true;
    out[a] = s;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Values in DataScript

const isVector = (v) => v !== null && typeof v === 'object' && !(v instanceof Date) && !(v instanceof Uint8Array)
  && !(v instanceof Keyword) && !(v instanceof Sym) && !(v instanceof UUID) && !(v instanceof BigInteger)
  && !(v instanceof BigDecimal) && !(v instanceof Double) && typeof v[Symbol.iterator] === 'function';

/** A wire value as DataScript holds it (an integral double is a plain number there). */
export function toStored(v) {
  if (v instanceof Double) return v.value;
  if (v instanceof Tuple) return Tuple.of(...Array.from(v, toStored));
  return v;
}

function elementType(p, i) {
  if (!p) return undefined;
  if (p['db/tupleTypes']) return p['db/tupleTypes'][i];
  return p['db/tupleType'];
}

/** A value DataScript holds, back as the wire value the server has (``props``: the attribute's). */
export function fromStored(v, props, type = props?.['db/valueType']) {
  if (typeof v === 'number') return (type === 'db.type/double' || type === 'db.type/float') ? double(v) : v;
  if (isVector(v)) return Tuple.of(...Array.from(v, (x, i) => fromStored(x, undefined, elementType(props, i))));
  return v;
}

/** A key equal for equal values (DataScript compares objects by identity; interned values are the
 * same object, Dates, bytes and tuples are compared here by content). */
export function valueKey(v) {
  if (isPrimitive(v)) return typeof v + ':' + String(v);
  if (v instanceof Double) return 'number:' + String(v.value);
  if (v instanceof Date) return 'date:' + v.getTime();
  if (v instanceof Uint8Array) return 'bytes:' + base64(v);
  if (v instanceof Keyword) return 'kw:' + v.name;
  if (v instanceof Sym) return 'sym:' + v.name;
  if (v instanceof UUID) return 'uuid:' + v.str;
  if (v instanceof BigInteger) return 'int:' + v.value;
  if (v instanceof BigDecimal) return 'dec:' + v.text;
  if (isVector(v)) return '[' + Array.from(v, valueKey).join(',') + ']';
  return 'obj:' + String(v);
}

let DatomClass = null;

function datomClass() {
  if (DatomClass === null) {
    const db = d.db_with(d.empty_db({}), [[':db/add', 1, 'x', 1]]);
    DatomClass = d.datoms(db, ':eavt')[0].constructor;
  }
  return DatomClass;
}

/** Tuples as DataScript holds them (vectors): init_db takes values as they are, transactions convert. */
function asVectors(tuples) {
  if (!tuples.length) return [];
  const db = d.db_with(d.empty_db({}), tuples.map((t, i) => [':db/add', i + 1, 'v', t]));
  const out = new Array(tuples.length);
  for (const dt of d.datoms(db, ':eavt')) out[dt.e - 1] = dt.v;
  return out;
}

/** DataScript datoms of server datoms [e, a, v, tx] (wire values), ids and tx ids kept: done per
 * snapshot chunk as chunks arrive, so little is left for the end. */
export function prepareDatoms(datoms) {
  const Datom = datomClass();
  const n = datoms.length;
  const out = new Array(n);
  const tuples = [];
  for (let i = 0; i < n; i++) {
    const x = datoms[i];
    const e = x[0];
    let v = x[2];
    if (v !== null && typeof v === 'object') {
      v = toStored(v);
      if (v instanceof Tuple) tuples.push(i);
    }
    if (e > EMAX) throw new SyncError('sync/id-space-exhausted', `Entity id ${e} is beyond DataScript's id space`);
    out[i] = new Datom(e, x[1], v, x[3], 0, 0);
  }
  if (tuples.length) {
    const vectors = asVectors(tuples.map((i) => out[i].v));
    tuples.forEach((i, j) => { out[i] = new Datom(out[i].e, out[i].a, vectors[j], out[i].tx, 0, 0); });
  }
  return out;
}

/** A DataScript database of server datoms [e, a, v, tx] (or of ``prepared`` DataScript datoms). */
export function buildDb(datoms, schema, prepared = null) {
  return d.init_db(prepared ?? prepareDatoms(datoms), datascriptSchema(schema));
}

/** Every datom of a DataScript database as [e, a, v, tx] with wire values (for storage, comparison). */
export function serverDatoms(db, schema, aliases = {}) {
  return d.datoms(db, ':eavt').map((x) => [x.e, x.a, fromStored(x.v, schema[x.a] ?? schema[aliases[x.a]]), x.tx]);
}

/** The transaction ops that apply a delta's datoms to ``db``: retractions first (of the stored
 * values, found by content), then additions with the server's tx id. */
export function deltaOps(db, datoms, tx, schema) {
  const ops = [];
  for (const [e] of datoms) {
    if (e > EMAX) throw new SyncError('sync/id-space-exhausted', `Entity id ${e} is beyond DataScript's id space`);
  }
  for (const [e, a, v, added] of datoms) {
    if (added) continue;
    if (isPrimitive(v)) { ops.push([':db/retract', e, a, v]); continue; }
    const key = valueKey(v);
    const hit = d.datoms(db, ':eavt', e, a).find((x) => valueKey(x.v) === key);
    if (hit !== undefined) ops.push([':db/retract', e, a, hit.v]);
  }
  for (const [e, a, v, added] of datoms) {
    if (!added) continue;
    const p = schema[a];
    const s = toStored(v);
    ops.push(p && p['db/valueType'] === REF ? [':db/add', e, a, s] : [':db/add', e, a, s, tx]);
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
    const key = (x) => datomKey(e, a, x.v, x.tx);
    const pair = e + ' ' + a;
    if (seen.has(pair)) continue;
    seen.add(pair);
    const was = d.datoms(before, ':eavt', e, a) ?? [];
    const now = d.datoms(after, ':eavt', e, a) ?? [];
    const old = new Set(Array.from(was, key));
    const fresh = new Set(Array.from(now, key));
    for (const x of was) if (!fresh.has(key(x))) retracts.push([':db/retract', e, a, x.v]);
    for (const x of now) if (!old.has(key(x))) adds.push([':db/add', e, a, x.v, x.tx]);
  }
  return retracts.concat(adds);
}

/** ``datoms`` [e, a, v, tx] with the renamed attributes' datoms under their new names. */
export function renameDatoms(datoms, renames) {
  if (!renames.length) return datoms;
  const rn = new Map(renames);
  return datoms.map(([e, a, v, tx]) => [e, rn.get(a) ?? a, v, tx]);
}

// ------------------------------------------------------------------------------------------------
// Transactions for the server

const OPS = new Set(['db/add', 'db/retract', 'db/retractEntity', 'db.fn/retractEntity', 'db/cas', 'db.fn/cas',
  'db.fn/retractAttribute']);

function typed(type, v) {
  if (v === null || v === undefined) return v;
  switch (type) {
    case 'db.type/double': case 'db.type/float':
      return typeof v === 'number' ? double(v) : v;
    case 'db.type/long': case 'db.type/bigint':
      return (typeof v === 'bigint' || (typeof v === 'string' && /^-?\d+$/.test(v))) ? integer(v) : v;
    case 'db.type/keyword': return typeof v === 'string' ? kw(v) : v;
    case 'db.type/symbol': return typeof v === 'string' ? sym(v) : v;
    case 'db.type/uuid': return typeof v === 'string' ? uuid(v) : v;
    case 'db.type/bigdec': return (typeof v === 'string' || typeof v === 'number') ? bigdec(v) : v;
    case 'db.type/instant': return (typeof v === 'number' || typeof v === 'string') ? new Date(v) : v;
    default: return typeof v === 'bigint' ? bigint(v) : v;
  }
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
    const type = p?.['db/valueType'];
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
    if (p?.['db/valueType'] === TUPLE && !vs.every((x) => Array.isArray(x))) return this.value_(a, vs);
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
