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
// resume from t, deltas, acks, heartbeats, gap catch-up, writes with tempids, changes of scopes,
// and reconnects with exponential backoff and jitter.

import d from './datascript.js';
import {
  DatsyncError, PROTOCOL_VERSION, ProtocolError, decode, decodeValue, encode, encodeValue,
} from './codec.js';
import {
  SyncError, TX0, TxTranslator, applyAliases, applySchemaDelta, buildDb, deltaOps, datomKey, localTempids, netOps, renameDatoms,
  prepareDatoms, serverDatoms, serverSchemaFromDatoms, toLocalTx,
} from './replica.js';

export { d as datascript, DatsyncError, PROTOCOL_VERSION, ProtocolError, SyncError };
export * from './values.js';

const FATAL = ['protocol/unauthorized', 'protocol/version'];
const RESEND = ['sync/overloaded', 'sync/duplicate-request', 'server/shutdown'];  // not transacted: sent again
const MAX_IN_FLIGHT = 32;
const STALL_TICKS = 2;
const utf8 = new TextDecoder();
// the connection's phases
const CLOSED = 0;
const HANDSHAKE = 1;
const BOOTSTRAPPING = 2;
const LIVE = 3;

/** A rejected or failed transaction: ``code`` is the server's (e.g. db.error/unique-conflict). */
export class TxError extends DatsyncError {}

/** A change of scopes the server refused (policy/unknown-scope, policy/invalid, policy/none). */
export class ScopesRefused extends DatsyncError {}

/** A promise settled through ``request.resolve_`` and ``request.reject_`` (a write, a change of scopes). */
const answer = (request) => new Promise((resolve, reject) => { request.resolve_ = resolve; request.reject_ = reject; });

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
  const run = async (mode, fn) => {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open(name, 1);
      r.onupgradeneeded = () => r.result.createObjectStore('replica');
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction('replica', mode);
        const req = fn(tx.objectStore('replica'));
        tx.oncomplete = () => resolve(req.result);
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
    this.urls_ = [url].flat();
    if (!this.urls_.length) throw new TypeError('connect: no URL');
    this.url = this.urls_[0];
    this.options_ = options;
    this.WebSocket_ = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocket_ !== 'function') throw new TypeError('No WebSocket: pass options.WebSocket');
    this.store_ = options.store ?? memoryStore();
    this.scopes_ = options.scopes;     // the hello's scopes (a change of scopes replaces them)
    this.scoping_ = new Map();         // req -> {scopes_, sent_, resolve_, reject_}: changes not answered yet
    this.afterSnapshot_ = [];          // changes answered while bootstrapping: resolved by the snapshot
    this.nextReq_ = 1;
    this.confirmed_ = d.empty_db({});  // the server's database at t; the conn shows it plus the queue
    this.layer_ = null;                // the (e, a) pairs the queued writes changed in the view (null: unknown)
    this.conn = d.conn_from_db(this.confirmed_);
    this.t = this.dbId = this.error = null;
    this.clientId = null;              // stable across page loads (kept in the store)
    this.schema_ = {};
    this.aliases_ = {};
    this.status = 'connecting';        // connecting | online | offline | failed | closed
    this.phase_ = CLOSED;
    this.listeners_ = new Set();
    this.nextSeq_ = 1;
    this.queue_ = new Map();           // seq -> {seq, tx, sent_, answer_, resolve_, reject_}: not answered yet
    this.attempt_ = 0;
    this.savedT_ = null;               // t of the snapshot in the store (null: none)
    this.snapshotTexts_ = null;        // a snapshot's chunks (JSON text) received and not stored yet
    this.log_ = [];                    // the deltas (JSON text) applied since that snapshot
    this.waiters_ = [];
    this.ready = new Promise((resolve, reject) => { this.readyResolve_ = resolve; this.readyReject_ = reject; });
    this.ready.catch(() => {});
    this.restored = this.restore_().finally(() => this.open_());
  }

  // -- public ---------------------------------------------------------------------------------

  /** What the application reads: the server's database at t with the queued writes applied on top
   * (optimistic: a write shows at once; a rejected one leaves no trace). */
  get db() { return d.db(this.conn); }

  /** The server's database at t, without the queued writes. */
  get confirmedDb() { return this.confirmed_; }

  get online() { return this.status === 'online'; }

  /** Writes not answered yet (queued while offline, or waiting for the server). */
  get pendingCount() { return this.queue_.size; }

  /** The queued writes, oldest first: {seq, sent, conflict} (conflict: {code, message} when the write
   * does not apply on the current database locally; the server decides). */
  get pendingWrites() {
    return Array.from(this.queue_.values(), (w) => ({ seq: w.seq, sent: !!w.sent_, conflict: w.conflict_ ?? null }));
  }

  /** Call ``fn(event)`` on every change: {kind: "status" | "synced" | "delta" | "error", ...}. */
  listen(fn) {
    this.listeners_.add(fn);
    return () => this.listeners_.delete(fn);
  }

  /** Submit ``txData``; resolves {t, tx, tempids} once the replica has the transaction (tempids
   * keyed as given, ":db/current-tx" included); rejects with TxError. Offline, the write waits in
   * the store's queue and is sent on reconnect; it commits exactly once, however often it is sent. */
  async transact(txData) {
    await this.restored;
    if (this.t === null) await this.ready;
    this.usable_();
    let tx;
    try {
      tx = new TxTranslator(this.schema_, this.aliases_).tx(txData);
      encode({ type: 'submit', req: 0, tx });
    } catch (e) {
      throw new TxError(e.code ?? 'sync/invalid-tx', e.message);
    }
    const seq = this.nextSeq_++;
    const w = { seq, tx, answer_: null };
    const done = answer(w);
    this.queue_.set(seq, w);
    this.pending_();
    this.show_({ kind: 'local', seq });
    await this.saveWrites_();
    this.pump_();
    return done;
  }

  /** Under the server's policy: hold ``scopes`` (the full list, [['team', ['red']]]) instead of the
   * current ones, live, without a new bootstrap. Resolves with the datoms that came (added) or went
   * ([e, a, v, added]) once the replica holds exactly them; later connections subscribe to them.
   * Rejects with ScopesRefused (the server's code): nothing changes. Sent once live; a change the
   * connection lost before its answer is asked again on reconnect. */
  async setScopes(scopes) {
    this.usable_();
    const c = { scopes_: Array.from(scopes, ([name, args]) => [String(name), Array.from(args)]) };
    encode({ type: 'scopes', req: 0, scopes: c.scopes_ });  // refuse what the wire cannot carry before queueing it
    const done = answer(c);
    this.scoping_.set('s' + this.nextReq_++, c);
    this.pump_();
    return done;
  }

  /** Resolves once the replica has reached ``t`` (rejects after ``timeoutMs``). */
  waitForT(t, timeoutMs = 10000) {
    if (this.t !== null && this.t >= t) return Promise.resolve(this.t);
    return new Promise((resolve, reject) => {
      const w = {
        t_: t,
        resolve_: resolve,
        timer_: setTimeout(() => { this.waiters_ = this.waiters_.filter((x) => x !== w); reject(new Error(`t=${t} not reached`)); }, timeoutMs),
      };
      this.waiters_.push(w);
    });
  }

  /** The replica's datoms [e, a, v, tx] with values as the server has them (for comparisons). */
  datoms() { return serverDatoms(this.confirmed_, this.schema_, this.aliases_); }

  /** Stop: close the connection, stop reconnecting, save the replica. */
  async close() {
    this.closed_ = true;
    clearTimeout(this.retryTimer_);
    clearTimeout(this.tickTimer_);
    this.hangUp_(1000, 'closed by the application');
    this.lost_();
    this.setStatus_('closed');
    this.refuse_(new TxError('sync/closed', 'Closed before the answer (a write stays queued in the store)'));
    await this.restored;
    await this.save_();
  }

  // -- persistence ------------------------------------------------------------------------------

  async restore_() {
    let state;
    let writes;
    try {
      [state, writes] = await Promise.all([this.store_.load('replica'), this.store_.load('writes')]);
    } catch (e) {
      this.report_('store/load', e);
    }
    if (writes?.version === 1) {
      this.clientId = writes.client;
      this.nextSeq_ = writes.next_seq;
      for (const w of writes.queue) this.queue_.set(w.seq, { seq: w.seq, tx: decodeValue(w.tx), answer_: null });
      if (this.queue_.size) this.pending_();
    } else {
      this.clientId = 'web-' + Array.from(crypto.getRandomValues(new Uint32Array(4)), (x) => x.toString(36)).join('-');
      await this.saveWrites_();
    }
    if (![1, 2].includes(state?.version) || this.t !== null) return;
    try {
      // version 2: the snapshot's chunks as they came over the wire; 1: every datom, encoded
      const datoms = state.version === 2
        ? state.chunks.flatMap((text) => decode(text).datoms)
        : state.datoms.map(([e, a, v, tx]) => [e, a, decodeValue(v), tx]);
      this.aliases_ = state.aliases ?? {};
      this.install_(datoms, state.t, state.db_id, 'restored');
      this.savedT_ = state.t;
      const log = await this.store_.load('deltas');
      for (const text of (log?.base_t === state.t ? log.items : [])) {
        const m = decode(text);
        if (m.type === 'delta' && m.t === this.t + 1) { this.applyDelta_(m); this.log_.push(text); }
      }
    } catch (e) {
      this.report_('store/load', e);
    }
  }

  scheduleSave_() {
    this.saveTimer_ ??= setTimeout(() => { this.saveTimer_ = null; this.save_(); }, this.options_.saveDelay ?? 500);
  }

  /** Keep the replica in the store: the deltas since the last snapshot (small, often), and a new
   * snapshot of every datom once the log is long (or after a bootstrap or a change of scopes). */
  async save_() {
    if (this.t === null || this.store_.persistent === false) return;
    try {
      let state = null;
      if (this.snapshotTexts_ !== null) {  // after a bootstrap: the chunks as received, no re-encoding
        state = { version: 2, t: this.snapshotT_, db_id: this.dbId, aliases: this.snapshotAliases_, chunks: this.snapshotTexts_ };
        this.snapshotTexts_ = null;
      } else if (this.savedT_ === null || this.log_.length >= (this.options_.compactAfter ?? 1000)) {
        state = {
          version: 1, t: this.t, db_id: this.dbId, aliases: this.aliases_,
          datoms: this.datoms().map(([e, a, v, tx]) => [e, a, encodeValue(v), tx]),
        };
        this.log_ = [];
      }
      if (state !== null) {
        this.savedT_ = state.t;
        await this.store_.save('replica', state);
      }
      await this.store_.save('deltas', { base_t: this.savedT_, items: this.log_.slice() });
    } catch (e) {
      this.report_('store/save', e);
    }
  }

  async saveWrites_() {
    const writes = {
      version: 1, client: this.clientId, next_seq: this.nextSeq_,
      queue: Array.from(this.queue_.values(), (w) => ({ seq: w.seq, tx: encodeValue(w.tx) })),
    };
    try { await this.store_.save('writes', writes); } catch (e) { this.report_('store/save', e); }
  }

  /** Send queued writes, oldest first, at most MAX_IN_FLIGHT unanswered at a time; once live, the
   * changes of scopes not sent yet. */
  pump_() {
    if (this.phase_ < BOOTSTRAPPING) return;
    for (const [req, c] of this.scoping_) {
      if (this.phase_ === LIVE && !c.sent_) { c.sent_ = true; this.send_({ type: 'scopes', req, scopes: c.scopes_ }); }
    }
    const writes = [...this.queue_.values()];
    let inFlight = writes.filter((w) => w.sent_ && w.answer_ === null).length;
    for (const w of writes) {
      if (inFlight >= MAX_IN_FLIGHT) break;
      if (w.sent_) continue;
      w.sent_ = true;
      inFlight++;
      this.send_({ type: 'submit', req: w.seq, tx: w.tx, client: this.clientId, seq: w.seq });
    }
  }

  // -- connection -------------------------------------------------------------------------------

  open_() {
    if (this.closed_) return;
    let ws;
    try {
      ws = new this.WebSocket_(this.url);
    } catch (e) {
      this.retry_(String(e));
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws_ = ws;
    ws.onopen = () => { if (this.ws_ === ws) this.opened_(); };
    ws.onmessage = (ev) => { if (this.ws_ === ws) this.received_(ev.data); };
    ws.onclose = (ev) => { if (this.ws_ === ws) { this.ws_ = null; this.dropped_(ev.reason || `closed (${ev.code})`); } };
    ws.onerror = () => {
      // a connection that failed before opening: some WebSocket implementations never fire close
      if (this.ws_ === ws && this.phase_ === CLOSED) { this.hangUp_(); this.dropped_('cannot connect'); }
    };
  }

  opened_() {
    const { token } = this.options_;
    const scopes = this.scopes_;
    this.phase_ = HANDSHAKE;
    this.builder_ = this.syncFrom_ = null;
    this.ackedT_ = this.t ?? 0;
    this.ackEvery_ = 1;
    this.heard_ = this.sentSinceTick_ = false;
    this.lastHeard_ = Date.now();
    this.pingN_ = 0;
    this.stall_ = [null, 0];
    this.send_({
      type: 'hello',
      credentials: token == null && scopes == null ? null : { ...(token != null && { token }), ...(scopes != null && { scopes }) },
      t: this.t, db_id: this.dbId, client: this.clientId,
    });
    this.tick_();
  }

  /** Close the socket (if any) with ``code`` and ``reason``; its events are no longer ours. */
  hangUp_(code, reason) {
    const ws = this.ws_;
    this.ws_ = null;
    try { ws?.close(code, reason); } catch { /* closed already */ }
  }

  dropped_(reason) {
    clearTimeout(this.tickTimer_);
    this.url = this.urls_[(this.urls_.indexOf(this.url) + 1) % this.urls_.length];  // next time, the next server
    this.lost_();
    if (this.closed_) return;
    this.setStatus_('offline');
    this.retry_(reason);
  }

  lost_() {
    this.phase_ = CLOSED;
    this.builder_ = null;
    for (const w of this.queue_.values()) if (w.answer_ === null) w.sent_ = false;  // sent again on reconnect
    for (const c of this.scoping_.values()) c.sent_ = false;  // asked again once live
  }

  retry_(reason) {
    if (this.closed_) return;
    const [first, max] = this.options_.backoff ?? [0.5, 30];
    const base = Math.min(max, first * 2 ** this.attempt_++) * 1000;
    const delay = base / 2 + Math.random() * base / 2;
    this.emit_({ kind: 'retry', delay, reason });
    clearTimeout(this.retryTimer_);
    this.retryTimer_ = setTimeout(() => this.open_(), delay);
  }

  /** Stop for good (refused credentials or protocol version): say why to every waiting promise. */
  fail_(code, message) {
    this.error = new TxError(code, message);
    this.closed_ = true;
    this.setStatus_('failed');
    this.readyReject_(this.error);
    this.hangUp_(1000);
    this.lost_();
    this.refuse_(this.error);
  }

  /** Reject the waiting writes (they stay queued in the store) and changes of scopes with ``error``. */
  refuse_(error) {
    for (const r of [...this.queue_.values(), ...this.scoping_.values(), ...this.afterSnapshot_]) {
      r.reject_?.(error);
      r.resolve_ = r.reject_ = null;
    }
    this.scoping_.clear();
    this.afterSnapshot_ = [];
  }

  close_(code, message) {
    // a protocol failure: say why, close; reconnecting resumes from t
    try { this.send_({ type: 'error', code, message: String(message).slice(0, 500) }); } catch { /* closing */ }
    this.hangUp_(1002, code);
    this.dropped_(message);
  }

  send_(msg) {
    if (this.ws_?.readyState !== 1) return;
    this.ws_.send(encode(msg));
    this.sentSinceTick_ = true;
  }

  tick_() {
    clearTimeout(this.tickTimer_);
    this.tickTimer_ = setTimeout(() => this.onTick_(), (this.options_.heartbeatInterval ?? 10) * 1000);
  }

  onTick_() {
    if (this.phase_ === CLOSED) return;
    const now = Date.now();
    if (this.heard_) this.lastHeard_ = now;
    this.heard_ = false;
    if (now - this.lastHeard_ >= (this.options_.heartbeatTimeout ?? 30) * 1000) {
      this.hangUp_(1000, 'heartbeat timeout');
      this.dropped_('heartbeat timeout');
      return;
    }
    const sent = this.sentSinceTick_;
    this.sentSinceTick_ = false;
    this.maybeAck_(true);
    this.checkStall_();
    this.pump_();
    if (!sent && !this.sentSinceTick_) this.send_({ type: 'ping', n: ++this.pingN_ });
    this.sentSinceTick_ = false;
    this.tick_();
  }

  /** Ask again (``sync``) when a snapshot or a catch-up made no progress for STALL_TICKS ticks. */
  checkStall_() {
    const b = this.builder_;
    const key = this.phase_ === BOOTSTRAPPING ? 'snapshot:' + (b ? `${b.head_.t}:${b.chunks_.size}` : '-')
      : this.phase_ === LIVE && this.syncFrom_ !== null ? 'catch-up:' + this.t : null;
    let n = key !== null && this.stall_[0] === key ? this.stall_[1] + 1 : 0;
    if (n >= STALL_TICKS) {
      this.send_({ type: 'sync', t: this.phase_ === BOOTSTRAPPING ? null : this.t });
      n = 0;
    }
    this.stall_ = [key, n];
  }

  maybeAck_(force = false) {
    if (this.phase_ !== LIVE || this.t === null || this.t <= this.ackedT_) return;
    if (force || this.t - this.ackedT_ >= this.ackEvery_) {
      this.send_({ type: 'ack', t: this.t });
      this.ackedT_ = this.t;
    }
  }

  /** Ask for the deltas after t (once per t). */
  catchUp_() {
    if (this.syncFrom_ === this.t) return;
    this.send_({ type: 'sync', t: this.t });
    this.syncFrom_ = this.t;
  }

  /** Ask for a new snapshot. */
  resnapshot_() {
    this.send_({ type: 'sync', t: null });
    this.phase_ = BOOTSTRAPPING;
    this.builder_ = null;
  }

  unexpected_(message) { this.send_({ type: 'error', code: 'protocol/unexpected', message }); }

  // -- messages ---------------------------------------------------------------------------------

  received_(data) {
    if (this.phase_ === CLOSED) return;
    this.heard_ = true;
    let m;
    try {
      m = decode(data);
      if (m.type === 'delta' || (m.type === 'snapshot-chunk' && this.store_.persistent !== false)) {
        m.text = typeof data === 'string' ? data : utf8.decode(data);  // kept in the store as it came
      }
    } catch (e) {
      this.close_(e.code ?? 'protocol/malformed', `malformed message from the server: ${e.message}`);
      return;
    }
    try {
      const handler = HANDLERS[m.type];
      if (handler === undefined) this.unexpected_(`a server does not send ${m.type} messages`);
      else handler.call(this, m);
    } catch (e) {
      this.close_(String(e.code).startsWith('sync/') ? e.code : 'protocol/internal', `${e.name}: ${e.message}`);
    }
  }

  finishSnapshot_(b) {
    const datoms = [];
    const prepared = [];
    for (let seq = 0; seq < b.head_.chunks; seq++) {
      const [raw, ds] = b.chunks_.get(seq);
      for (let i = 0; i < raw.length; i++) { datoms.push(raw[i]); prepared.push(ds[i]); }
    }
    this.aliases_ = Object.fromEntries(b.head_.aliases);
    this.install_(datoms, b.head_.t, b.head_.db_id, 'synced', prepared);
    this.savedT_ = null;  // a new snapshot to keep: its chunks as received
    this.snapshotTexts_ = this.store_.persistent === false ? null
      : Array.from({ length: b.head_.chunks }, (_, seq) => b.chunks_.get(seq)[2]);
    this.snapshotT_ = b.head_.t;
    this.snapshotAliases_ = this.aliases_;
    this.log_ = [];
    this.builder_ = this.syncFrom_ = null;
    this.phase_ = LIVE;
    this.maybeAck_(true);
    this.readyResolve_(this);
    for (const c of this.afterSnapshot_) c.resolve_([]);
    this.afterSnapshot_ = [];
    this.release_();
    this.pump_();
    this.scheduleSave_();
  }

  install_(datoms, t, dbId, kind, prepared = null) {
    this.schema_ = serverSchemaFromDatoms(datoms, this.aliases_);
    this.confirmed_ = buildDb(datoms, this.schema_, prepared);
    this.t = t;
    this.dbId = dbId;
    this.show_({ kind, t }, null);
    this.emit_({ kind, t });
    if (kind === 'restored') this.readyResolve_(this);
    this.wake_();
  }

  applyDelta_(m) {
    const meta = { kind: 'delta', t: m.t, tx: m.tx };
    const renames = m.renames ?? [];
    let direct = this.queue_.size === 0 && d.db(this.conn) === this.confirmed_;
    let exact = true;  // the confirmed database changed by m.datoms only
    if (m.schema || renames.length) {
      const before = this.datoms();
      this.schema_ = applySchemaDelta(this.schema_, m.schema, renames);
      this.aliases_ = applyAliases(this.aliases_, renames, this.schema_);
      this.confirmed_ = buildDb(renameDatoms(before, renames), this.schema_);
      direct = exact = false;
    }
    const ops = deltaOps(this.confirmed_, m.datoms, m.tx, this.schema_);
    // the conn's own listeners see the delta's datoms when nothing else changes the view
    const conn = direct ? this.conn : d.conn_from_db(this.confirmed_);
    const report = direct ? this.swap_(() => d.transact(conn, ops, { datsync: meta })) : d.transact(conn, ops);
    this.confirmed_ = d.db(conn);
    if (report?.tx_data.some((x) => x.tx > 0 && x.tx !== m.tx)) {
      // DataScript gave some datom another tx id: rebuild from the datoms with the right ones
      const fixed = this.datoms().map(([e, a, v, tx]) => [e, a, v, tx === report.tempids[':db/current-tx'] ? m.tx : tx]);
      this.confirmed_ = buildDb(fixed, this.schema_);
      direct = exact = false;
    }
    this.t = m.t;
    if (!direct) this.show_(meta, exact ? m.datoms : null);
    this.wake_();
  }

  /** Show the confirmed database with the queued writes on top (those the replica has not reached
   * yet), in order, in the conn. A write that does not apply locally (its db/cas fails now, say)
   * is left out of the view and marked ``conflict``; the server decides. ``changed``: the datoms
   * ([e, a, ...]) by which the confirmed database changed since the last view (null: anything may
   * have); the conn then gets only the net change (the layers' datoms and ``changed`` compared). */
  show_(meta, changed = []) {
    let view = this.confirmed_;
    const layer = [];
    for (const w of this.queue_.values()) {
      if (w.answer_?.t <= this.t) continue;  // in confirmed already
      try {
        w.local_ ??= toLocalTx(w.tx);
        const conn = d.conn_from_db(view);
        for (const x of d.transact(conn, w.local_).tx_data) layer.push([x.e, x.a]);
        view = d.db(conn);
        w.conflict_ = null;
      } catch (e) {
        w.conflict_ = { code: e.code ?? 'sync/conflict', message: String(e.message ?? e) };
      }
    }
    const shown = d.db(this.conn);
    const previous = this.layer_;
    this.layer_ = layer;
    if (view === shown) return;
    if (changed !== null && previous !== null && this.showNet_(shown, view, [...changed, ...previous, ...layer], meta)) {
      if (view === this.confirmed_) this.confirmed_ = d.db(this.conn);  // the same datoms: deltas go to the conn again
      return;
    }
    this.swap_(() => d.reset_conn(this.conn, view, { datsync: meta }));
  }

  /** Bring the conn from ``shown`` to ``view`` by one transaction of their net change on the
   * ``touched`` pairs. False when the conn does not hold ``view``'s datoms then: the transaction
   * failed, or DataScript gave a ref datom the transaction's own tx instead of the datom's. */
  showNet_(shown, view, touched, meta) {
    const ops = netOps(shown, view, touched);
    if (!ops.length) return true;
    const want = new Set(ops.filter((o) => o.length === 5).map(([, e, a, v, tx]) => datomKey(e, a, v, tx)));
    try {
      const report = this.swap_(() => d.transact(this.conn, ops, { datsync: meta }));
      return report?.tx_data.every((x) => x.tx < 0 || want.has(datomKey(x.e, x.a, x.v, x.tx))) ?? false;
    } catch {
      return false;
    }
  }

  /** Change the conn with ``fn``; a failing d.listen listener (DataScript calls them inside
   * transact, after the change) is reported, never taken for a failed change. */
  swap_(fn) {
    const before = d.db(this.conn);
    try {
      return fn();
    } catch (e) {
      if (d.db(this.conn) === before) throw e;
      console.error('datsync: a d.listen listener failed', e);
      this.report_('listener', e);
      return null;
    }
  }

  wake_() {
    for (const w of this.waiters_) if (this.t >= w.t_) { clearTimeout(w.timer_); w.resolve_(this.t); }
    this.waiters_ = this.waiters_.filter((w) => this.t < w.t_);
  }

  /** Resolve the answered writes whose t the replica has reached. */
  release_() {
    let changed = false;
    for (const [seq, w] of this.queue_) {
      if (w.answer_?.t <= this.t) {
        this.queue_.delete(seq);
        changed = true;
        const tempids = localTempids(w.answer_.tempids);
        w.resolve_?.({ t: w.answer_.t, tx: tempids[':db/current-tx'] ?? TX0 + w.answer_.t, tempids });
      }
    }
    if (changed) {
      this.show_({ kind: 'confirmed', t: this.t });
      this.saveWrites_();
      this.pending_();
      this.pump_();
    }
  }

  // -- events -------------------------------------------------------------------------------------

  usable_() {
    if (this.closed_) throw this.error ?? new TxError('sync/closed', 'The replica is closed');
  }

  setStatus_(status) {
    if (this.status === status) return;
    this.status = status;
    this.emit_({ kind: 'status', status });
  }

  pending_() { this.emit_({ kind: 'pending', count: this.queue_.size }); }

  report_(code, e) { this.emit_({ kind: 'error', code, message: String(e?.message ?? e) }); }

  emit_(event) {
    for (const fn of this.listeners_) {
      try { fn(event, this); } catch (e) { console.error('datsync listener failed', e); }
    }
  }
}

/** What the replica does with each message a server sends (``this``: the replica). */
const HANDLERS = {
  welcome(m) {
    if (this.phase_ !== HANDSHAKE) return this.unexpected_('welcome outside the handshake');
    if (m.mode === 'resume' && this.t === null) return this.close_('protocol/unexpected', 'the server resumed a client that has no replica');
    this.attempt_ = 0;
    this.ackEvery_ = m.ack_every;
    this.phase_ = m.mode === 'resume' ? LIVE : BOOTSTRAPPING;
    this.setStatus_('online');
    if (this.phase_ === LIVE) this.readyResolve_(this);
    this.pump_();
  },

  error(m) {
    this.report_(m.code, m.message);
    if (FATAL.includes(m.code)) this.fail_(m.code, m.message);
  },

  ping(m) {
    this.send_({ type: 'pong', n: m.n });
    if (m.t !== null && this.phase_ === LIVE && this.t !== null && m.t > this.t) this.catchUp_();
  },

  pong() {},

  resync(m) {
    if (this.phase_ === HANDSHAKE) return;
    this.emit_({ kind: 'resync', reason: m.reason, t: m.t });
    if (!(this.builder_?.head_.t >= m.t)) this.builder_ = null;
    this.phase_ = BOOTSTRAPPING;
  },

  'snapshot-begin'(m) {
    if (this.phase_ === HANDSHAKE || (this.phase_ === LIVE && this.t !== null && m.t <= this.t) || m.t <= this.builder_?.head_.t) return;
    this.phase_ = BOOTSTRAPPING;
    this.builder_ = { head_: m, chunks_: new Map(), count_: 0 };
    if (m.chunks === 0 && m.datoms === 0) this.finishSnapshot_(this.builder_);
  },

  'snapshot-chunk'(m) {
    const b = this.builder_;
    if (!b || this.phase_ !== BOOTSTRAPPING || m.t !== b.head_.t) return;
    if (m.seq >= b.head_.chunks || b.count_ + m.datoms.length > b.head_.datoms) return this.resnapshot_();
    if (b.chunks_.has(m.seq)) return;
    b.chunks_.set(m.seq, [m.datoms, prepareDatoms(m.datoms), m.text]);
    b.count_ += m.datoms.length;
    if (b.chunks_.size === b.head_.chunks && b.count_ === b.head_.datoms) this.finishSnapshot_(b);
  },

  'snapshot-end'(m) {
    const b = this.builder_;
    if (b && this.phase_ === BOOTSTRAPPING && m.t === b.head_.t && m.chunks !== b.head_.chunks) this.resnapshot_();
  },

  delta(m) {
    if (this.phase_ !== LIVE || this.t === null || m.t <= this.t) return;
    if (m.t > this.t + 1) return this.catchUp_();
    const own = m.origin?.client === this.clientId ? this.queue_.get(m.origin.seq) : undefined;
    if (own) own.answer_ ??= { t: m.t, tempids: m.origin.tempids };
    this.applyDelta_(m);
    this.log_.push(m.text);
    this.syncFrom_ = null;
    this.emit_({ kind: 'delta', t: m.t, tx: m.tx });
    this.maybeAck_();
    this.release_();
    this.pump_();  // a change of scopes the server asked to send again (sync/retry) goes now
    this.scheduleSave_();
  },

  'tx-ok'(m) {
    const w = this.queue_.get(m.req);
    if (!w) return;
    w.answer_ ??= { t: m.t, tempids: m.tempids };
    this.release_();
  },

  'tx-rejected'(m) {
    const w = this.queue_.get(m.req);
    if (!w || w.answer_ !== null) return;
    if (RESEND.includes(m.code)) { w.sent_ = false; return; }
    this.queue_.delete(m.req);
    this.show_({ kind: 'rejected', seq: w.seq });
    this.saveWrites_();
    this.pending_();
    this.emit_({ kind: 'rejected', seq: w.seq, code: m.code, message: m.message });
    w.reject_?.(new TxError(m.code, m.message));
    this.pump_();
  },

  'scopes-ok'(m) {
    const c = this.scoping_.get(m.req);
    if (!c) return;
    this.scoping_.delete(m.req);
    this.scopes_ = c.scopes_;  // later connections subscribe to them
    if (this.phase_ !== LIVE || this.t !== m.t) {
      // answered before a snapshot under the new scopes (sent again, without datoms), or for another
      // t: the next snapshot holds the new share
      if (this.phase_ !== BOOTSTRAPPING || m.datoms.length) this.resnapshot_();
      this.afterSnapshot_.push(c);
      return;
    }
    // the datoms that enter (with the tx of t, as the Python replica gives them) and leave, at t
    const held = new Map(this.datoms().map((x) => [datomKey(x[0], x[1], x[2]), x]));
    for (const [e, a, v, added] of m.datoms) {
      const key = datomKey(e, a, v);
      if (!added) held.delete(key);
      else if (!held.has(key)) held.set(key, [e, a, v, TX0 + m.t]);
    }
    this.install_([...held.values()], m.t, this.dbId, 'scopes');
    this.savedT_ = this.snapshotTexts_ = null;  // the store gets a snapshot of the new share
    this.scheduleSave_();
    c.resolve_(m.datoms);
  },

  'scopes-rejected'(m) {
    const c = this.scoping_.get(m.req);
    if (!c) return;
    // asked again with the next delta or heartbeat tick (sync/retry: the server's session was busy)
    if (m.code === 'sync/retry' || m.code === 'sync/not-connected') { c.sent_ = false; return; }
    this.scoping_.delete(m.req);
    c.reject_(new ScopesRefused(m.code, m.message));
  },
};
