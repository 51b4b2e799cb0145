// The browser client's values and replica logic on the real DataScript, without a server.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import d from '../../shell/web/datascript.js';
import {
  SyncError, TxTranslator, applyAliases, applySchemaDelta, buildDb, datascriptSchema, deltaOps, fromStored,
  localTempids, netOps, serverDatoms, serverSchemaFromDatoms, toLocalTx,
} from '../../shell/web/replica.js';
import {
  BigDecimal, BigInteger, Double, Instant, Keyword, Tuple, UUID, bigdec, bigint, integer, instantText, kw,
  parseInstant, pyFloatRepr, uuid,
} from '../../shell/web/values.js';

const TX0 = 0x20000000;

test('interned values are the same object, so DataScript finds them', () => {
  assert.equal(kw('a/b'), kw(':a/b'));
  assert.ok(kw('a/b') instanceof Keyword);
  assert.equal(uuid('6F1C2A4E-8B3D-4C5E-9F00-112233445566'), uuid('6f1c2a4e-8b3d-4c5e-9f00-112233445566'));
  assert.equal(bigint(2n ** 70n), bigint((2n ** 70n).toString()));
  assert.equal(bigdec('1.50'), bigdec('1.50'));
  assert.notEqual(bigdec('1.50'), bigdec('1.5'));  // digits kept
  assert.equal(integer(5n), 5);
  assert.ok(integer(2n ** 60n) instanceof BigInteger);
  assert.throws(() => uuid('nope'), TypeError);
});

test('floats print as Python prints them', () => {
  const cases = [[1, '1.0'], [-0, '-0.0'], [1.5, '1.5'], [1e16, '1e+16'], [1e-5, '1e-05'], [1.2345e-7, '1.2345e-07'],
    [123456789.125, '123456789.125'], [0.0001, '0.0001'], [1.5e300, '1.5e+300'], [Infinity, 'inf'], [NaN, 'nan']];
  for (const [x, text] of cases) assert.equal(pyFloatRepr(x), text, String(x));
});

test('instants keep the server text and read offsets', () => {
  const i = parseInstant('2024-05-01T12:00:00.123456+02:00');
  assert.ok(i instanceof Instant && i instanceof Date);
  assert.equal(i.toISOString(), '2024-05-01T10:00:00.123Z');
  assert.equal(instantText(i), '2024-05-01T12:00:00.123456+02:00');
  assert.equal(instantText(new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 60))), '2024-01-02T03:04:05.060000+00:00');
  assert.equal(instantText(new Date(Date.UTC(2024, 0, 2))), '2024-01-02T00:00:00+00:00');
  assert.equal(parseInstant('2024-13-01T00:00:00+00:00'), null);
});

// A server snapshot: the built-in schema entities the server has, then data.
const ident = (e, name) => [e, 'db/ident', kw(name), TX0];
const SNAPSHOT = [
  ident(18, 'db.type/string'), ident(20, 'db.type/long'), ident(22, 'db.type/double'), ident(30, 'db.type/ref'),
  ident(32, 'db.type/tuple'), ident(33, 'db.cardinality/one'), ident(34, 'db.cardinality/many'), ident(35, 'db.unique/identity'),
  ident(101, 'p/name'), [101, 'db/valueType', 18, TX0 + 1], [101, 'db/cardinality', 33, TX0 + 1], [101, 'db/unique', 35, TX0 + 1],
  ident(102, 'p/friend'), [102, 'db/valueType', 30, TX0 + 1], [102, 'db/cardinality', 34, TX0 + 1],
  ident(103, 'p/score'), [103, 'db/valueType', 22, TX0 + 1], [103, 'db/cardinality', 33, TX0 + 1],
  ident(104, 'p/pos'), [104, 'db/valueType', 32, TX0 + 1], [104, 'db/cardinality', 33, TX0 + 1],
  [104, 'db/tupleTypes', Tuple.of(kw('db.type/long'), kw('db.type/ref')), TX0 + 1],
  ident(105, 'p/kind'), [105, 'db/valueType', 18, TX0 + 1], [105, 'db/cardinality', 33, TX0 + 1],
  [TX0 + 2, 'db/txInstant', parseInstant('2024-05-01T10:00:00+00:00'), TX0 + 2],
  [200, 'p/name', 'Ann', TX0 + 2], [201, 'p/name', 'Bob', TX0 + 2], [201, 'p/friend', 200, TX0 + 2],
  [201, 'p/score', new Double(3), TX0 + 2], [201, 'p/pos', Tuple.of(1, 200), TX0 + 2],
  [201, 'p/bytes', new Uint8Array([1, 2]), TX0 + 2],
];

test('the server schema and the DataScript schema derive from schema datoms', () => {
  const schema = serverSchemaFromDatoms(SNAPSHOT);
  assert.deepEqual(schema['p/name'], { 'db/valueType': 'db.type/string', 'db/cardinality': 'db.cardinality/one', 'db/unique': 'db.unique/identity' });
  assert.deepEqual(schema['p/pos']['db/tupleTypes'], ['db.type/long', 'db.type/ref']);
  assert.deepEqual(datascriptSchema(schema)['p/friend'], { ':db/cardinality': ':db.cardinality/many', ':db/valueType': ':db.type/ref' });
  assert.deepEqual(datascriptSchema(schema)['p/pos'], { ':db/cardinality': ':db.cardinality/one' });  // no tuple typing
  const renamed = applySchemaDelta(schema, { 'p/age': { 'db/valueType': kw('db.type/long') } }, [['p/kind', 'p/type']]);
  assert.ok(!('p/kind' in renamed) && renamed['p/type'] && renamed['p/age']['db/valueType'] === 'db.type/long');
  assert.deepEqual(applyAliases({}, [['p/kind', 'p/type']], renamed), { 'p/kind': 'p/type' });
});

test('a snapshot becomes a DataScript database with the server ids and tx ids', () => {
  const schema = serverSchemaFromDatoms(SNAPSHOT);
  const db = buildDb(SNAPSHOT, schema);
  const back = serverDatoms(db, schema);
  assert.equal(back.length, SNAPSHOT.length);
  const friend = back.find(([e, a]) => e === 201 && a === 'p/friend');
  assert.deepEqual(friend, [201, 'p/friend', 200, TX0 + 2]);
  const score = back.find(([, a]) => a === 'p/score')[2];
  assert.ok(score instanceof Double && score.value === 3);  // a double again
  const pos = back.find(([, a]) => a === 'p/pos')[2];
  assert.ok(pos instanceof Tuple);
  assert.deepEqual([...pos], [1, 200]);
  assert.deepEqual(d.q('[:find ?n . :where [?b "p/name" "Bob"] [?b "p/friend" ?f] [?f "p/name" ?n]]', db), 'Ann');
  assert.deepEqual(d.q('[:find ?e . :in $ ?k :where [?e "db/ident" ?k]]', db, kw('p/name')), 101);
  assert.throws(() => buildDb([[2 ** 31, 'p/name', 'X', TX0]], schema), SyncError);
});

test('a delta retracts stored values by content and keeps the server tx id, refs included', () => {
  const schema = serverSchemaFromDatoms(SNAPSHOT);
  const conn = d.conn_from_db(buildDb(SNAPSHOT, schema));
  const tx = TX0 + 3;
  const datoms = [
    [201, 'p/pos', Tuple.of(1, 200), false], [201, 'p/pos', Tuple.of(2, 200), true],
    [201, 'p/bytes', new Uint8Array([1, 2]), false],
    [201, 'p/score', new Double(3), false], [201, 'p/score', 2.5, true],
    [202, 'p/friend', 201, true], [202, 'p/name', 'Cy', true],
    [tx, 'db/txInstant', parseInstant('2024-05-01T10:00:01+00:00'), true],
  ];
  const report = d.transact(conn, deltaOps(d.db(conn), datoms, tx, schema));
  assert.equal(report.tempids[':db/current-tx'], tx);
  const after = serverDatoms(d.db(conn), schema).filter(([e]) => e >= 200 && e < TX0);
  assert.deepEqual(after.map(([e, a, v, t]) => [e, a, v instanceof Tuple ? [...v] : fromStored(v), t]).filter(([, a]) => a !== 'p/score'), [
    [200, 'p/name', 'Ann', TX0 + 2], [201, 'p/friend', 200, TX0 + 2], [201, 'p/name', 'Bob', TX0 + 2],
    [201, 'p/pos', [2, 200], tx], [202, 'p/friend', 201, tx], [202, 'p/name', 'Cy', tx],
  ]);
});

test('transactions are translated for the server: typed values, lookup refs, tuples, ops', () => {
  const schema = {
    ...serverSchemaFromDatoms(SNAPSHOT),
    'p/kind': { 'db/valueType': 'db.type/keyword' }, 'p/id': { 'db/valueType': 'db.type/uuid' },
    'p/at': { 'db/valueType': 'db.type/instant' }, 'p/price': { 'db/valueType': 'db.type/bigdec' },
    'p/big': { 'db/valueType': 'db.type/bigint' },
  };
  const t = new TxTranslator(schema, { 'p/old': 'p/name' });
  const [m, add, retract, cas] = t.tx([
    { ':db/id': 'x', 'p/name': 'Dee', 'p/score': 2, 'p/kind': ':k/a', 'p/id': '6f1c2a4e-8b3d-4c5e-9f00-112233445566',
      'p/at': '2024-05-01T10:00:00Z', 'p/price': '1.50', 'p/big': '123456789012345678901', 'p/pos': [1, ['p/name', 'Ann']],
      'p/friend': [['p/name', 'Ann'], 'y'] },
    [':db/add', ['p/old', 'Ann'], 'p/score', 1],
    [':db/retractEntity', 200],
    [':db.fn/cas', 201, 'p/score', 3, 4],
  ]);
  assert.equal(m['db/id'], 'x');
  assert.ok(m['p/score'] instanceof Double && m['p/kind'] === kw('k/a') && m['p/id'] instanceof UUID);
  assert.ok(m['p/at'] instanceof Date && m['p/price'] instanceof BigDecimal && m['p/big'] instanceof BigInteger);
  assert.ok(m['p/pos'] instanceof Tuple && m['p/pos'][1] instanceof Tuple);  // a ref element: a lookup ref
  assert.ok(Array.isArray(m['p/friend']) && m['p/friend'][0] instanceof Tuple && m['p/friend'][1] === 'y');
  assert.deepEqual([add[0], [...add[1]], add[2]], ['db/add', ['p/name', 'Ann'], 'p/score']);
  assert.ok(add[3] instanceof Double);
  assert.deepEqual(retract, ['db/retractEntity', 200]);
  assert.equal(cas[0], 'db.fn/cas');
  assert.throws(() => t.tx([[':db.fn/call', 'f']]), (e) => e.code === 'sync/forbidden-op');
  // and back in DataScript's spelling for the replica's optimistic view
  const local = toLocalTx([m, add]);
  assert.equal(local[0][':db/id'], 'x');
  assert.equal(local[0]['p/score'], 2);
  assert.deepEqual(local[1].slice(0, 2), [':db/add', ['p/name', 'Ann']]);
  assert.deepEqual(localTempids(new Map([[-1, 5], ['db/current-tx', TX0 + 9]])), { '-1': 5, ':db/current-tx': TX0 + 9 });
});

test('netOps turns one database into another on the touched pairs only, each datom keeping its tx', () => {
  const schema = { 'p/friend': { ':db/valueType': ':db.type/ref' }, 'p/id': { ':db/unique': ':db.unique/identity' } };
  const before = d.init_db([], schema);
  const conn = d.conn_from_db(before);
  d.transact(conn, [[':db/add', 1, 'p/id', 'a', TX0 + 1], [':db/add', 1, 'p/n', 1, TX0 + 1], [':db/add', 2, 'p/n', 2, TX0 + 1]]);
  const shown = d.db(conn);
  const target = d.db_with(shown, [[':db/retract', 1, 'p/id', 'a'], [':db/add', 3, 'p/id', 'a', TX0 + 2],
    [':db/add', 3, 'p/friend', 2, TX0 + 2], [':db/add', 1, 'p/n', 5, TX0 + 2]]);
  const reports = [];
  d.listen(conn, 'k', (r) => reports.push(r.tx_data.length));
  const touched = [[1, 'p/id'], [1, 'p/n'], [3, 'p/id'], [3, 'p/friend'], [2, 'p/n']];
  d.transact(conn, netOps(shown, target, touched));
  const all = (db) => d.datoms(db, ':eavt').map((x) => [x.e, x.a, x.v, x.tx]);
  assert.deepEqual(all(d.db(conn)), all(target));
  assert.deepEqual(reports, [5]);  // the net change: 2 retractions, 3 additions; 2's datom unchanged
  assert.deepEqual(netOps(target, target, touched), []);
});
