// The datsync browser client: a DataScript connection kept equal to a datsync server.
//
//   import { connect } from '/datsync/client.js';
//   const replica = connect('ws://127.0.0.1:8765/', { token, store: indexedDBStore('todos') });
//   await replica.ready;                       // bootstrapped (or restored from the store)
//   d.q('[:find ?t :where [?e "todo/title" ?t]]', d.db(replica.conn));
//   const { tempids } = await replica.transact([{ ':db/id': 'new', 'todo/title': 'Milk' }]);
//
// ``replica.conn`` is a real DataScript connection: d.q, d.pull, d.entity and d.listen work on it.
// It holds the server's datoms with the server's entity and transaction ids; only the server
// changes it (write with replica.transact, never d.transact). The client speaks the sync protocol
// (docs/protocol.md): hello with credentials and the replica's t, bootstrap from a snapshot or
// resume from t, deltas, acks, heartbeats, gap catch-up, writes with tempids, and reconnects with
// exponential backoff and jitter.

import d from './datascript.js';
import {
  DatsyncError, PROTOCOL_VERSION, ProtocolError, decode, decodeValue, encode, encodeValue,
} from './codec.js';
import {
  SyncError, TX0, TxTranslator, applyAliases, applySchemaDelta, buildDb, deltaOps, localTempids, renameDatoms,
  prepareDatoms, serverDatoms, serverSchemaFromDatoms, toLocalTx,
} from './replica.js';

export { d as datascript, DatsyncError, PROTOCOL_VERSION, ProtocolError, SyncError };
export * from './values.js';

const FATAL = new Set(['protocol/unauthorized', 'protocol/version']);
const MAX_IN_FLIGHT = 32;
const COMPACT_AFTER = 1000;  // deltas kept in the store before a new snapshot is written
const utf8 = new TextDecoder();

function newClientId() {
  if (globalThis.crypto?.randomUUID) return 'web-' + globalThis.crypto.randomUUID();
  return 'web-' + Array.from({ length: 4 }, () => Math.random().toString(36).slice(2, 10)).join('');
}
const STALL_TICKS = 2;

/** A rejected or failed transaction: ``code`` is the server's (e.g. db.error/unique-conflict). */
export class TxError extends DatsyncError {}

// ------------------------------------------------------------------------------------------------
// Stores: where a replica keeps its data between page loads

/** A store in memory (the default: nothing survives a reload). A store keeps a few values by key:
 * "replica" (the datoms at t) and "writes" (the client id and the submissions not yet answered). */
export function memoryStore({ persistent = false } = {}) {
  const saved = new Map();
  return {
    persistent,  // false: the replica's data is not kept (nothing would survive a reload); writes are
    load: async (key) => saved.get(key) ?? null,
    save: async (key, value) => { saved.set(key, value); },
    clear: async () => { saved.clear(); },
  };
}

/** A store in the browser's IndexedDB database ``name``: a reload shows the data at once. */
export function indexedDBStore(name = 'datsync') {
  const open = () => new Promise((resolve, reject) => {
    const r = indexedDB.open(name, 1);
    r.onupgradeneeded = () => r.result.createObjectStore('replica');
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  const run = async (mode, fn) => {
    const db = await open();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction('replica', mode);
        const req = fn(tx.objectStore('replica'));
        tx.oncomplete = () => resolve(req?.result);
        tx.onerror = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  };
  return {
    load: async (key) => (await run('readonly', (s) => s.get(key))) ?? null,
    save: (key, value) => run('readwrite', (s) => s.put(value, key)),
    clear: () => run('readwrite', (s) => s.clear()),
  };
}

// ------------------------------------------------------------------------------------------------
// The replica

/**
 * Connect a replica to the datsync server at ``url`` (ws:// or wss://), or to the first of several
 * (an array: processes serving the same store) that answers, moving to the next when one goes away.
 *
 * options: token (the server's token), scopes (sent with the credentials), store (memoryStore() by
 * default; indexedDBStore(name) in browsers), WebSocket (a constructor, for Node without a global
 * one), heartbeatInterval / heartbeatTimeout (seconds, 10 / 30), backoff ([first, max] seconds,
 * [0.5, 30]), saveDelay (ms between saves to the store, 500), compactAfter (deltas kept in the store before
 * a new snapshot is written, 1000).
 */
export function connect(url, options = {}) {
  return new Replica(url, options);
}

export class Replica {
  constructor(url, options = {}) {
    this.urls = Array.isArray(url) ? [...url] : [url];
    if (!this.urls.length) throw new TypeError('connect: no URL');
    this.url = this.urls[0];
    this.options = options;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocket !== 'function') throw new TypeError('No WebSocket: pass options.WebSocket');
    this.store = options.store ?? memoryStore();
    this.interval = (options.heartbeatInterval ?? 10) * 1000;
    this.timeout = (options.heartbeatTimeout ?? 30) * 1000;
    [this.backoffFirst, this.backoffMax] = (options.backoff ?? [0.5, 30]).map((s) => s * 1000);
    this.saveDelay = options.saveDelay ?? 500;
    this.compactAfter = options.compactAfter ?? COMPACT_AFTER;

    this.confirmed = d.empty_db({});   // the server's database at t; the conn shows it plus the queue
    this.conn = d.conn_from_db(this.confirmed);
    this.t = null;
    this.dbId = null;
    this.schema = {};
    this.aliases = {};
    this.status = 'connecting';       // connecting | online | offline | failed | closed
    this.phase = 'closed';            // closed | handshake | bootstrapping | live
    this.error = null;
    this.listeners = new Set();
    this.clientId = null;             // stable across page loads (kept in the store)
    this.nextSeq = 1;
    this.queue = new Map();           // seq -> {seq, tx, sent, answer, resolve, reject}: not answered yet
    this.ws = null;
    this.attempt = 0;
    this.closed = false;
    this.retryTimer = null;
    this.tickTimer = null;
    this.saveTimer = null;
    this.savedT = null;               // t of the snapshot in the store (null: none)
    this.snapshotTexts = null;        // a snapshot's chunks (JSON text) received and not stored yet
    this.snapshotT = null;
    this.log = [];                    // the deltas (JSON text) applied since that snapshot
    this.waiters = [];
    this.ready = new Promise((resolve, reject) => { this.readyResolve = resolve; this.readyReject = reject; });
    this.ready.catch(() => {});
    this.restored = this.restore().finally(() => this.open());
  }

  // -- public ---------------------------------------------------------------------------------

  /** What the application reads: the server's database at t with the queued writes applied on top
   * (optimistic: a write shows at once; a rejected one leaves no trace). */
  get db() { return d.db(this.conn); }

  /** The server's database at t, without the queued writes. */
  get confirmedDb() { return this.confirmed; }

  get online() { return this.status === 'online'; }

  /** Writes not answered yet (queued while offline, or waiting for the server). */
  get pendingCount() { return this.queue.size; }

  /** The queued writes, oldest first: {seq, sent, conflict} (conflict: {code, message} when the write
   * does not apply on the current database locally; the server decides). */
  get pendingWrites() {
    return Array.from(this.queue.values(), (w) => ({ seq: w.seq, sent: w.sent, conflict: w.conflict ?? null }));
  }

  /** Call ``fn(event)`` on every change: {kind: "status" | "synced" | "delta" | "error", ...}. */
  listen(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Submit ``txData``; resolves {t, tx, tempids} once the replica has the transaction (tempids
   * keyed as given, ":db/current-tx" included); rejects with TxError. Offline, the write waits in
   * the store's queue and is sent on reconnect; it commits exactly once, however often it is sent. */
  async transact(txData) {
    await this.restored;
    if (this.t === null) await this.ready;
    if (this.status === 'failed') throw this.error;
    if (this.closed) throw new TxError('sync/closed', 'The replica is closed');
    let tx;
    try {
      tx = new TxTranslator(this.schema, this.aliases).tx(txData);
      encode({ type: 'submit', req: 0, tx });
    } catch (e) {
      throw new TxError(e.code ?? 'sync/invalid-tx', e.message);
    }
    const seq = this.nextSeq++;
    const done = new Promise((resolve, reject) => {
      this.queue.set(seq, { seq, tx, sent: false, answer: null, resolve, reject });
    });
    this.emit({ kind: 'pending', count: this.queue.size });
    this.show({ kind: 'local', seq });
    await this.saveWrites();
    this.pump();
    return done;
  }

  /** Resolves once the replica has reached ``t`` (rejects after ``timeoutMs``). */
  waitForT(t, timeoutMs = 10000) {
    if (this.t !== null && this.t >= t) return Promise.resolve(this.t);
    return new Promise((resolve, reject) => {
      const w = { t, resolve, timer: setTimeout(() => { this.waiters = this.waiters.filter((x) => x !== w); reject(new Error(`t=${t} not reached`)); }, timeoutMs) };
      this.waiters.push(w);
    });
  }

  /** The replica's datoms [e, a, v, tx] with values as the server has them (for comparisons). */
  datoms() { return serverDatoms(this.confirmed, this.schema, this.aliases); }

  /** Stop: close the connection, stop reconnecting, save the replica. */
  async close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.tickTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try { ws.close(1000, 'closed by the application'); } catch { /* already closed */ }
    }
    this.lost();
    this.setStatus('closed');
    for (const w of this.queue.values()) {
      if (w.reject) w.reject(new TxError('sync/closed', 'The replica was closed before the answer: the write stays queued in the store and is sent by the next connect with it'));
      w.resolve = w.reject = null;
    }
    await this.restored;
    await this.save();
  }

  // -- persistence ------------------------------------------------------------------------------

  async restore() {
    let state = null;
    let writes = null;
    try {
      [state, writes] = await Promise.all([this.store.load('replica'), this.store.load('writes')]);
    } catch (e) {
      this.emit({ kind: 'error', code: 'store/load', message: String(e) });
    }
    if (writes && writes.version === 1) {
      this.clientId = writes.client;
      this.nextSeq = writes.next_seq;
      for (const w of writes.queue) {
        this.queue.set(w.seq, { seq: w.seq, tx: decodeValue(w.tx), sent: false, answer: null, resolve: null, reject: null });
      }
      if (this.queue.size) this.emit({ kind: 'pending', count: this.queue.size });
    } else {
      this.clientId = newClientId();
      await this.saveWrites();
    }
    if (!state || (state.version !== 1 && state.version !== 2) || this.t !== null) return;
    try {
      // version 2: the snapshot's chunks as they came over the wire; 1: every datom, encoded
      const datoms = state.version === 2
        ? state.chunks.flatMap((text) => decode(text).datoms)
        : state.datoms.map(([e, a, v, tx]) => [e, a, decodeValue(v), tx]);
      this.aliases = state.aliases ?? {};
      this.install(datoms, state.t, state.db_id, 'restored');
      this.savedT = state.t;
      const log = await this.store.load('deltas');
      for (const text of (log && log.base_t === state.t ? log.items : [])) {
        const m = decode(text);
        if (m.type === 'delta' && m.t === this.t + 1) { this.applyDelta(m); this.log.push(text); }
      }
    } catch (e) {
      this.emit({ kind: 'error', code: 'store/load', message: String(e) });
    }
  }

  scheduleSave() {
    if (this.saveTimer !== null) return;
    this.saveTimer = setTimeout(() => { this.saveTimer = null; this.save(); }, this.saveDelay);
  }

  /** Keep the replica in the store: the deltas since the last snapshot (small, often), and a new
   * snapshot of every datom once the log is long (or after a bootstrap). */
  async save() {
    if (this.t === null || this.store.persistent === false) return;
    try {
      if (this.snapshotTexts !== null) {  // after a bootstrap: the chunks as received, no re-encoding
        const state = { version: 2, t: this.snapshotT, db_id: this.dbId, aliases: this.snapshotAliases, chunks: this.snapshotTexts };
        this.snapshotTexts = null;
        this.savedT = state.t;
        await this.store.save('replica', state);
      } else if (this.savedT === null || this.log.length >= this.compactAfter) {
        const state = {
          version: 1, t: this.t, db_id: this.dbId, aliases: this.aliases,
          datoms: this.datoms().map(([e, a, v, tx]) => [e, a, encodeValue(v), tx]),
        };
        this.log = [];
        this.savedT = this.t;
        await this.store.save('replica', state);
      }
      await this.store.save('deltas', { base_t: this.savedT, items: this.log.slice() });
    } catch (e) {
      this.emit({ kind: 'error', code: 'store/save', message: String(e) });
    }
  }

  async saveWrites() {
    const writes = {
      version: 1, client: this.clientId, next_seq: this.nextSeq,
      queue: Array.from(this.queue.values(), (w) => ({ seq: w.seq, tx: encodeValue(w.tx) })),
    };
    try { await this.store.save('writes', writes); } catch (e) { this.emit({ kind: 'error', code: 'store/save', message: String(e) }); }
  }

  /** Send queued writes, oldest first, at most MAX_IN_FLIGHT unanswered at a time. */
  pump() {
    if (this.phase !== 'live' && this.phase !== 'bootstrapping') return;
    let inFlight = 0;
    for (const w of this.queue.values()) if (w.sent && w.answer === null) inFlight++;
    for (const w of this.queue.values()) {
      if (inFlight >= MAX_IN_FLIGHT) break;
      if (w.sent) continue;
      w.sent = true;
      inFlight++;
      this.send({ type: 'submit', req: w.seq, tx: w.tx, client: this.clientId, seq: w.seq });
    }
  }

  // -- connection -------------------------------------------------------------------------------

  open() {
    if (this.closed) return;
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (e) {
      this.retry(String(e));
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => { if (this.ws === ws) this.opened(); };
    ws.onmessage = (ev) => { if (this.ws === ws) this.received(ev.data); };
    ws.onclose = (ev) => { if (this.ws === ws) { this.ws = null; this.dropped(ev.reason || `closed (${ev.code})`); } };
    ws.onerror = () => {
      // a connection that failed before opening: some WebSocket implementations never fire close
      if (this.ws === ws && this.phase === 'closed') { this.ws = null; try { ws.close(); } catch { /* never opened */ } this.dropped('cannot connect'); }
    };
  }

  opened() {
    const creds = this.options.token == null && this.options.scopes == null ? null
      : { ...(this.options.token != null ? { token: this.options.token } : {}), ...(this.options.scopes != null ? { scopes: this.options.scopes } : {}) };
    this.phase = 'handshake';
    this.builder = null;
    this.syncFrom = null;
    this.ackedT = this.t ?? 0;
    this.ackEvery = 1;
    this.heard = false;
    this.sentSinceTick = false;
    this.lastHeard = Date.now();
    this.pingN = 0;
    this.stall = [null, 0];
    this.send({ type: 'hello', credentials: creds, t: this.t, db_id: this.dbId, client: this.clientId });
    this.tick();
  }

  dropped(reason) {
    clearTimeout(this.tickTimer);
    this.url = this.urls[(this.urls.indexOf(this.url) + 1) % this.urls.length];  // next time, the next server
    this.lost();
    if (this.closed || this.status === 'failed') return;
    this.setStatus('offline');
    this.retry(reason);
  }

  lost() {
    this.phase = 'closed';
    this.builder = null;
    for (const w of this.queue.values()) if (w.answer === null) w.sent = false;  // sent again on reconnect
  }

  retry(reason) {
    if (this.closed) return;
    const base = Math.min(this.backoffMax, this.backoffFirst * 2 ** this.attempt);
    this.attempt += 1;
    const delay = base / 2 + Math.random() * base / 2;
    this.emit({ kind: 'retry', delay, reason });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  fail(code, message) {
    this.error = new TxError(code, message);
    this.closed = true;
    this.setStatus('failed');
    this.readyReject(this.error);
    if (this.ws) { const ws = this.ws; this.ws = null; try { ws.close(1000); } catch { /* closed */ } }
    this.lost();
    for (const w of this.queue.values()) if (w.reject) w.reject(this.error);
  }

  close_(code, message) {
    // a protocol failure: say why, close; reconnecting resumes from t
    try { this.send({ type: 'error', code, message: String(message).slice(0, 500) }); } catch { /* closing */ }
    const ws = this.ws;
    this.ws = null;
    if (ws) try { ws.close(1002, code); } catch { /* closed */ }
    this.dropped(message);
  }

  send(msg) { this.sendRaw(encode(msg)); }

  sendRaw(data) {
    if (!this.ws || this.ws.readyState !== 1) return;
    this.ws.send(data);
    this.sentSinceTick = true;
  }

  tick() {
    clearTimeout(this.tickTimer);
    this.tickTimer = setTimeout(() => this.onTick(), this.interval);
  }

  onTick() {
    if (this.phase === 'closed') return;
    const now = Date.now();
    if (this.heard) this.lastHeard = now;
    this.heard = false;
    if (now - this.lastHeard >= this.timeout) {
      const ws = this.ws;
      this.ws = null;
      if (ws) try { ws.close(1000, 'heartbeat timeout'); } catch { /* closed */ }
      this.dropped('heartbeat timeout: nothing heard from the server');
      return;
    }
    const sent = this.sentSinceTick;
    this.sentSinceTick = false;
    this.maybeAck(true);
    this.checkStall();
    if (!sent && !this.sentSinceTick) this.send({ type: 'ping', n: ++this.pingN });
    this.sentSinceTick = false;
    this.tick();
  }

  checkStall() {
    let key = null;
    if (this.phase === 'bootstrapping') key = 'snapshot:' + (this.builder ? `${this.builder.head.t}:${this.builder.chunks.size}` : '-');
    else if (this.phase === 'live' && this.syncFrom !== null) key = 'catch-up:' + this.t;
    if (key === null) { this.stall = [null, 0]; return; }
    if (this.stall[0] !== key) { this.stall = [key, 0]; return; }
    const n = this.stall[1] + 1;
    if (n < STALL_TICKS) { this.stall = [key, n]; return; }
    this.send({ type: 'sync', t: this.phase === 'bootstrapping' ? null : this.t });
    this.stall = [key, 0];
  }

  maybeAck(force = false) {
    if (this.phase !== 'live' || this.t === null || this.t <= this.ackedT) return;
    if (force || this.t - this.ackedT >= this.ackEvery) {
      this.send({ type: 'ack', t: this.t });
      this.ackedT = this.t;
    }
  }

  // -- messages ---------------------------------------------------------------------------------

  received(data) {
    if (this.phase === 'closed') return;
    this.heard = true;
    let m;
    try {
      m = decode(data);
      if (m.type === 'delta' || (m.type === 'snapshot-chunk' && this.store.persistent !== false)) {
        m.text = typeof data === 'string' ? data : utf8.decode(data);  // kept in the store as it came
      }
    } catch (e) {
      this.close_(e.code ?? 'protocol/malformed', `malformed message from the server: ${e.message}`);
      return;
    }
    try {
      const handler = this.handlers[m.type];
      if (handler === undefined) this.send({ type: 'error', code: 'protocol/unexpected', message: `a server does not send ${m.type} messages` });
      else handler.call(this, m);
    } catch (e) {
      this.close_(e.code && String(e.code).startsWith('sync/') ? e.code : 'protocol/internal', `${e.name}: ${e.message}`);
    }
  }

  get handlers() { return HANDLERS; }

  onWelcome(m) {
    if (this.phase !== 'handshake') { this.send({ type: 'error', code: 'protocol/unexpected', message: 'welcome outside the handshake' }); return; }
    if (m.mode === 'resume' && this.t === null) { this.close_('protocol/unexpected', 'the server resumed a client that has no replica'); return; }
    this.attempt = 0;
    this.ackEvery = m.ack_every;
    this.phase = m.mode === 'resume' ? 'live' : 'bootstrapping';
    this.setStatus('online');
    if (m.mode === 'resume') this.readyResolve(this);
    this.pump();
  }

  onError(m) {
    this.emit({ kind: 'error', code: m.code, message: m.message });
    if (FATAL.has(m.code)) this.fail(m.code, m.message);
  }

  onPing(m) {
    this.send({ type: 'pong', n: m.n });
    if (m.t !== null && this.phase === 'live' && this.t !== null && m.t > this.t && this.syncFrom !== this.t) {
      this.send({ type: 'sync', t: this.t });
      this.syncFrom = this.t;
    }
  }

  onResync(m) {
    if (this.phase === 'handshake') return;
    this.emit({ kind: 'resync', reason: m.reason, t: m.t });
    if (!(this.builder && this.builder.head.t >= m.t)) this.builder = null;
    this.phase = 'bootstrapping';
  }

  onSnapshotBegin(m) {
    if (this.phase === 'handshake') return;
    if (this.phase === 'live' && this.t !== null && m.t <= this.t) return;
    if (this.builder && m.t <= this.builder.head.t) return;
    this.phase = 'bootstrapping';
    this.builder = { head: m, chunks: new Map(), count: 0 };
    if (m.chunks === 0 && m.datoms === 0) this.finishSnapshot(this.builder);
  }

  onSnapshotChunk(m) {
    const b = this.builder;
    if (!b || this.phase !== 'bootstrapping' || m.t !== b.head.t) return;
    if (m.seq >= b.head.chunks || b.count + m.datoms.length > b.head.datoms) {
      this.send({ type: 'sync', t: null });
      this.builder = null;
      return;
    }
    if (b.chunks.has(m.seq)) return;
    b.chunks.set(m.seq, [m.datoms, prepareDatoms(m.datoms), m.text]);
    b.count += m.datoms.length;
    if (b.chunks.size === b.head.chunks && b.count === b.head.datoms) this.finishSnapshot(b);
  }

  onSnapshotEnd(m) {
    const b = this.builder;
    if (!b || this.phase !== 'bootstrapping' || m.t !== b.head.t || m.chunks === b.head.chunks) return;
    this.send({ type: 'sync', t: null });
    this.builder = null;
  }

  finishSnapshot(b) {
    const datoms = [];
    const prepared = [];
    for (let seq = 0; seq < b.head.chunks; seq++) {
      const [raw, ds] = b.chunks.get(seq);
      for (let i = 0; i < raw.length; i++) { datoms.push(raw[i]); prepared.push(ds[i]); }
    }
    this.aliases = Object.fromEntries(b.head.aliases ?? []);
    this.install(datoms, b.head.t, b.head.db_id, 'synced', prepared);
    this.savedT = null;  // a new snapshot to keep: its chunks as received
    this.snapshotTexts = this.store.persistent === false ? null
      : Array.from({ length: b.head.chunks }, (_, seq) => b.chunks.get(seq)[2]);
    this.snapshotT = b.head.t;
    this.snapshotAliases = this.aliases;
    this.log = [];
    this.builder = null;
    this.phase = 'live';
    this.syncFrom = null;
    this.maybeAck(true);
    this.readyResolve(this);
    this.release();
    this.scheduleSave();
  }

  install(datoms, t, dbId, kind, prepared = null) {
    this.schema = serverSchemaFromDatoms(datoms, this.aliases);
    this.confirmed = buildDb(datoms, this.schema, prepared);
    this.t = t;
    this.dbId = dbId;
    this.show({ kind, t });
    this.emit({ kind, t });
    if (kind === 'restored') this.readyResolve(this);
    this.wake();
  }

  onDelta(m) {
    if (this.phase !== 'live' || this.t === null) return;
    if (m.t <= this.t) return;
    if (m.t > this.t + 1) {
      if (this.syncFrom !== this.t) {
        this.send({ type: 'sync', t: this.t });
        this.syncFrom = this.t;
      }
      return;
    }
    const own = m.origin && m.origin.client === this.clientId ? this.queue.get(m.origin.seq) : undefined;
    if (own !== undefined && own.answer === null) own.answer = { t: m.t, tempids: m.origin.tempids };
    this.applyDelta(m);
    this.log.push(m.text);
    this.syncFrom = null;
    this.emit({ kind: 'delta', t: m.t, tx: m.tx });
    this.maybeAck();
    this.release();
    this.scheduleSave();
  }

  applyDelta(m) {
    const meta = { kind: 'delta', t: m.t, tx: m.tx };
    const renames = m.renames ?? [];
    let direct = this.queue.size === 0 && d.db(this.conn) === this.confirmed;
    if (m.schema || renames.length) {
      const before = this.datoms();
      this.schema = applySchemaDelta(this.schema, m.schema ?? {}, renames);
      this.aliases = applyAliases(this.aliases, renames, this.schema);
      this.confirmed = buildDb(renameDatoms(before, renames), this.schema);
      direct = false;
    }
    const ops = deltaOps(this.confirmed, m.datoms, m.tx, this.schema);
    // the conn's own listeners see the delta's datoms when nothing else changes the view
    const conn = direct ? this.conn : d.conn_from_db(this.confirmed);
    const report = direct ? this.swap(() => d.transact(conn, ops, { datsync: meta })) : d.transact(conn, ops);
    this.confirmed = d.db(conn);
    if (report !== null && report.tempids[':db/current-tx'] !== m.tx) {
      // DataScript gave some datom another tx id: rebuild from the datoms with the right ones
      const fixed = this.datoms().map(([e, a, v, tx]) => [e, a, v, tx === report.tempids[':db/current-tx'] ? m.tx : tx]);
      this.confirmed = buildDb(fixed, this.schema);
      direct = false;
    }
    this.t = m.t;
    if (!direct) this.show(meta);
    this.wake();
  }

  /** Show the confirmed database with the queued writes on top (those the replica has not reached
   * yet), in order, in the conn. A write that does not apply locally (its db/cas fails now, say)
   * is left out of the view and marked ``conflict``; the server decides. */
  show(meta) {
    let view = this.confirmed;
    for (const w of this.queue.values()) {
      if (w.answer !== null && this.t !== null && w.answer.t <= this.t) continue;  // in confirmed already
      try {
        w.local ??= toLocalTx(w.tx);
        view = d.db_with(view, w.local);
        w.conflict = null;
      } catch (e) {
        w.conflict = { code: e.code ?? 'sync/conflict', message: String(e.message ?? e) };
      }
    }
    if (view !== d.db(this.conn)) this.swap(() => d.reset_conn(this.conn, view, { datsync: meta }));
  }

  /** Change the conn with ``fn``; a failing d.listen listener (DataScript calls them inside
   * transact, after the change) is reported, never taken for a failed change. */
  swap(fn) {
    const before = d.db(this.conn);
    try {
      return fn();
    } catch (e) {
      if (d.db(this.conn) === before) throw e;
      console.error('datsync: a d.listen listener failed', e);
      this.emit({ kind: 'error', code: 'listener', message: String(e?.message ?? e) });
      return null;
    }
  }

  wake() {
    const due = this.waiters.filter((w) => this.t >= w.t);
    this.waiters = this.waiters.filter((w) => this.t < w.t);
    for (const w of due) { clearTimeout(w.timer); w.resolve(this.t); }
  }

  onTxOk(m) {
    const w = this.queue.get(m.req);
    if (!w) return;
    if (w.answer === null) w.answer = { t: m.t, tempids: m.tempids };
    this.release();
  }

  onTxRejected(m) {
    const w = this.queue.get(m.req);
    if (!w || w.answer !== null) return;
    if (m.code === 'sync/overloaded' || m.code === 'sync/duplicate-request' || m.code === 'server/shutdown') {
      w.sent = false;  // not transacted: sent again later
      return;
    }
    this.queue.delete(m.req);
    this.show({ kind: 'rejected', seq: w.seq });
    this.saveWrites();
    this.emit({ kind: 'pending', count: this.queue.size });
    this.emit({ kind: 'rejected', seq: w.seq, code: m.code, message: m.message });
    if (w.reject) w.reject(new TxError(m.code, m.message));
    this.pump();
  }

  /** Resolve the answered writes whose t the replica has reached. */
  release() {
    let changed = false;
    for (const [seq, w] of this.queue) {
      if (w.answer !== null && this.t !== null && w.answer.t <= this.t) {
        this.queue.delete(seq);
        changed = true;
        const tempids = localTempids(w.answer.tempids);
        if (w.resolve) w.resolve({ t: w.answer.t, tx: tempids[':db/current-tx'] ?? TX0 + w.answer.t, tempids });
      }
    }
    if (changed) {
      this.show({ kind: 'confirmed', t: this.t });
      this.saveWrites();
      this.emit({ kind: 'pending', count: this.queue.size });
      this.pump();
    }
  }

  // -- events -------------------------------------------------------------------------------------

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.emit({ kind: 'status', status });
  }

  emit(event) {
    for (const fn of this.listeners) {
      try { fn(event, this); } catch (e) { console.error('datsync listener failed', e); }
    }
  }
}

const HANDLERS = {
  welcome: Replica.prototype.onWelcome,
  error: Replica.prototype.onError,
  ping: Replica.prototype.onPing,
  pong: () => {},
  resync: Replica.prototype.onResync,
  'snapshot-begin': Replica.prototype.onSnapshotBegin,
  'snapshot-chunk': Replica.prototype.onSnapshotChunk,
  'snapshot-end': Replica.prototype.onSnapshotEnd,
  delta: Replica.prototype.onDelta,
  'tx-ok': Replica.prototype.onTxOk,
  'tx-rejected': Replica.prototype.onTxRejected,
};
