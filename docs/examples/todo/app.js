// The todo demo on the datsync browser client: the page's data is a DataScript replica of the
// server; writes go to the server (queued while offline) and come back as deltas.
import { connect, datascript as d, indexedDBStore } from '/datsync/client.js';

const params = new URLSearchParams(location.search);
const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
// optional URL parameters: token=... (the server's --token), store=NAME (IndexedDB), backoff=FIRST,MAX (seconds)
const replica = connect(url, {
  token: params.get('token') ?? undefined,
  store: indexedDBStore(params.get('store') ?? 'datsync-todo'),
  backoff: params.get('backoff')?.split(',').map(Number),
});
window.replica = replica;  // for the console (and the browser tests)

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
let current = localStorage.getItem('todo-list') || 'Inbox';

const LISTS = '[:find [?name ...] :where [_ "list/name" ?name]]';
const TODOS = `[:find ?e ?title ?done ?created :in $ ?list
                :where [?l "list/name" ?list] [?e "todo/list" ?l] [?e "todo/title" ?title]
                       [?e "todo/done" ?done] [?e "todo/created" ?created]]`;

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function render() {
  const db = replica.db;
  const names = [...new Set(['Inbox', ...d.q(LISTS, db)])].sort();
  $('lists').replaceChildren(...names.map((name) => el('button', {
    className: name === current ? 'current' : '', textContent: name, onclick: () => select(name),
  })));
  const todos = d.q(TODOS, db, current).sort((a, b) => a[3] - b[3] || a[0] - b[0]);
  // a todo whose state the server has not confirmed yet (a queued write) is marked pending
  const confirmed = new Set(d.q(TODOS, replica.confirmedDb, current).map(([e, title, done]) => `${e} ${title} ${done}`));
  const mark = (e, title, done) => (done ? 'done' : '') + (confirmed.has(`${e} ${title} ${done}`) ? '' : ' unconfirmed');
  $('todos').replaceChildren(...todos.map(([e, title, done]) => el('li', { className: mark(e, title, done), title: confirmed.has(`${e} ${title} ${done}`) ? '' : 'not confirmed by the server yet' },
    el('input', { type: 'checkbox', checked: done, title: 'done', onchange: () => write([[':db/add', e, 'todo/done', !done]]) }),
    el('span', { className: 'title', textContent: title }),
    el('button', { textContent: '✕', title: 'delete', onclick: () => write([[':db/retractEntity', e]]) }))));
  $('info').textContent = replica.t === null ? 'no data yet' : `replica at t=${replica.t}, ${todos.length} todo(s) in ${current}`;
}

function renderStatus() {
  $('status').textContent = replica.status;
  $('status').className = `badge ${replica.status}`;
  const n = replica.pendingCount;
  $('pending').hidden = n === 0;
  $('pending').textContent = `${n} pending`;
}

function select(name) {
  current = name;
  localStorage.setItem('todo-list', name);
  render();
}

function write(tx) {
  replica.transact(tx).catch((e) => { $('info').textContent = `not saved: ${e.code}: ${e.message}`; });
  renderStatus();
}

$('new-todo').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = ev.target.elements.title;
  const title = input.value.trim();
  if (!title) return;
  input.value = '';
  write([{ ':db/id': 'list', 'list/name': current },
         { ':db/id': 'todo', 'todo/title': title, 'todo/done': false, 'todo/list': 'list', 'todo/created': new Date() }]);
});

$('new-list').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = ev.target.elements.name;
  const name = input.value.trim();
  if (!name) return;
  input.value = '';
  write([{ 'list/name': name }]);
  select(name);
});

d.listen(replica.conn, 'todo', render);
replica.listen(renderStatus);
render();
renderStatus();
