// pipehook admin page: plain JS, no build step. Every value from the log is untrusted text and is
// rendered with textContent only.
'use strict';

const $ = (sel) => document.querySelector(sel);
const state = { token: sessionStorage.getItem('pipehook-token') || '', cursor: null, pages: [], rows: [],
                selected: -1, newestId: 0, detail: null, view: 'events' };

async function api(path) {
  const headers = state.token ? { Authorization: 'Bearer ' + state.token } : {};
  const res = await fetch(path, { headers });
  if (res.status === 401) {
    $('#token-form').hidden = false;
    $('#token-error').textContent = state.token ? 'that token was refused' : '';
    $('#token').focus();
    throw new Error('the admin token is needed');
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.detail || res.status + ' ' + res.statusText);
  return body;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function age(iso) {
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm';
  if (s < 86400) return Math.floor(s / 3600) + 'h';
  return Math.floor(s / 86400) + 'd';
}

function showStatus(text) { $('#status').textContent = text; }

function filterQuery(extra) {
  const p = new URLSearchParams();
  for (const [k, v] of new FormData($('#filters'))) if (v.trim()) p.set(k, v.trim());
  for (const [k, v] of Object.entries(extra || {})) if (v) p.set(k, v);
  return p.toString();
}

function eventRow(e, fresh) {
  const tr = el('tr', undefined, fresh ? 'fresh' : '');
  tr.tabIndex = 0;
  tr.dataset.id = e.id;
  for (const v of [e.id, e.occurred_at.replace('T', ' ').replace('Z', ''), age(e.occurred_at), e.entity,
                   e.action, e.entity_id ?? '', e.user_id ?? '', e.change_source ?? '', e.version])
    tr.append(el('td', v));
  tr.addEventListener('click', () => openEvent(e.id));
  tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') openEvent(e.id); });
  return tr;
}

async function loadEvents(cursor) {
  try {
    const page = await api('/api/v1/events?' + filterQuery({ limit: 50, cursor }));
    state.rows = page.events;
    state.cursor = page.next_cursor;
    const body = $('#events tbody');
    body.replaceChildren(...page.events.map((e) => eventRow(e)));
    if (!cursor) state.newestId = page.events.length ? page.events[0].id : 0;
    state.selected = -1;
    $('#older').disabled = !page.next_cursor;
    showStatus(page.events.length ? `${page.events.length} events${page.next_cursor ? ' (more: Older →)' : ''}` : 'no events match');
  } catch (err) { showStatus(err.message); }
}

// Live: while the first page is shown, new matching events are prepended as they arrive.
async function pollNew() {
  if (!$('#live').checked || state.pages.length || state.view !== 'events' || document.hidden) return;
  try {
    const page = await api('/api/v1/events?' + filterQuery({ limit: 50 }));
    const fresh = page.events.filter((e) => e.id > state.newestId);
    if (!fresh.length) return;
    state.newestId = fresh[0].id;
    const body = $('#events tbody');
    for (const e of fresh.reverse()) body.prepend(eventRow(e, true));
    while (body.children.length > 50) body.lastChild.remove();
    showStatus(`${fresh.length} new event${fresh.length > 1 ? 's' : ''}`);
  } catch (err) { /* shown by the next explicit load */ }
}

function jsonText(v) { return v === null || v === undefined ? '—' : (typeof v === 'string' ? v : JSON.stringify(v)); }

function diffRows(changes) {
  if (!changes.length) {
    const tr = el('tr');
    const td = el('td', 'no field changes');
    td.colSpan = 3;
    tr.append(td);
    return [tr];
  }
  return changes.map((c) => {
    const tr = el('tr');
    // The field's name in Pipedrive beside its key, and option labels beside the ids, when known.
    const field = el('td');
    if (c.label) field.append(el('strong', c.label), ' ');
    field.append(el('code', c.field));
    tr.append(field);
    const before = el('td', undefined, c.kind === 'added' ? '' : 'before');
    before.append(el('code', c.kind === 'added' ? '(not set)' : jsonText(c.before)));
    if (c.before_label) before.append(' ', el('span', c.before_label, 'option'));
    const after = el('td', undefined, c.kind === 'removed' ? '' : 'after');
    after.append(el('code', c.kind === 'removed' ? '(removed)' : jsonText(c.after)));
    if (c.after_label) after.append(' ', el('span', c.after_label, 'option'));
    tr.append(before, after);
    return tr;
  });
}

async function openEvent(id) {
  try {
    const e = await api('/api/v1/events/' + encodeURIComponent(id));
    state.detail = e;
    $('#detail-title').textContent = `#${e.id} ${e.entity} ${e.entity_id ?? ''} ${e.action}`;
    const meta = $('#detail-meta');
    meta.replaceChildren();
    for (const k of ['occurred_at', 'received_at', 'user_id', 'company_id', 'change_source', 'webhook_id', 'event_key',
                     'version', 'deliveries', 'last_attempt', 'correlation_id'])
      meta.append(el('dt', k), el('dd', jsonText(e[k])));
    $('#diff tbody').replaceChildren(...diffRows(e.changes));
    $('#detail-body').textContent = JSON.stringify(e.body, null, 2);
    $('#timeline').hidden = true;
    $('#timeline-link').hidden = !e.entity_id;
    $('#timeline-link').textContent = `Timeline of ${e.entity} ${e.entity_id ?? ''}`;
    // The record in Pipedrive, when the server knows its page (only https://*.pipedrive.com links).
    const link = $('#record-link');
    link.hidden = !e.url;
    if (e.url) link.href = e.url; else link.removeAttribute('href');
    $('#detail').hidden = false;
    $('#detail').focus();
  } catch (err) { showStatus(err.message); }
}

async function openTimeline() {
  const e = state.detail;
  if (!e || !e.entity_id) return;
  try {
    const t = await api(`/api/v1/entities/${encodeURIComponent(e.entity)}/${encodeURIComponent(e.entity_id)}/timeline?limit=200`);
    const box = $('#timeline');
    box.replaceChildren(el('h3', `Timeline of ${e.entity} ${e.entity_id} (${t.events.length}${t.next_cursor ? '+' : ''} events)`));
    for (const item of t.events) {
      const div = el('div', undefined, 'tl-entry');
      div.append(el('strong', `#${item.id} ${item.action}`), el('span', ` ${item.occurred_at} by user ${item.user_id ?? '?'}`));
      const table = el('table');
      table.append(...diffRows(item.changes));
      div.append(table);
      box.append(div);
    }
    box.hidden = false;
    box.scrollIntoView();
  } catch (err) { showStatus(err.message); }
}

function closeDetail() {
  $('#detail').hidden = true;
  const rows = $('#events tbody').children;
  if (state.selected >= 0 && rows[state.selected]) rows[state.selected].focus();
}

function select(delta) {
  const rows = $('#events tbody').children;
  if (!rows.length) return;
  if (state.selected >= 0 && rows[state.selected]) rows[state.selected].removeAttribute('aria-selected');
  state.selected = Math.max(0, Math.min(rows.length - 1, state.selected + delta));
  rows[state.selected].setAttribute('aria-selected', 'true');
  rows[state.selected].focus();
}

async function loadStats() {
  try {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData($('#stats-form'))) if (v.trim()) p.set(k, v.trim());
    const s = await api('/api/v1/stats?' + p);
    $('#stats-summary').textContent = `${s.events} events, ${s.duplicates} duplicate deliveries, ${s.quarantined} quarantined ` +
      `(${s.since} to ${s.until})`;
    const st = s.storage || {};
    $('#stats-storage').textContent = st.events === undefined ? '' :
      `On disk: ${st.bytes_on_disk} bytes for ${st.events} events` +
      (st.bytes_per_event === null ? '' : ` (${st.bytes_per_event} bytes per event` +
        (st.disk_per_raw_body === null ? ')' : `, ${st.disk_per_raw_body}x the average body)`)) +
      (st.compression_ratio === null ? '' : `; bodies stored at ${st.compression_ratio}x their size (newest ${st.sampled_events})`) +
      (st.uncompressed_events ? `; ${st.uncompressed_events} from before compression still being compressed` : '');
    const peak = Math.max(1, ...s.per_hour.map((h) => h.events));
    $('#chart').replaceChildren(...s.per_hour.map((h) => {
      const bar = el('div');
      bar.style.height = Math.max(2, (h.events / peak) * 100) + '%';
      bar.dataset.label = `${h.hour.slice(0, 13)}h: ${h.events}`;
      bar.title = bar.dataset.label;
      return bar;
    }));
    $('#stats-table tbody').replaceChildren(...s.by_entity_action.map((r) => {
      const tr = el('tr');
      tr.append(el('td', r.entity), el('td', r.action), el('td', r.events), el('td', r.duplicates));
      return tr;
    }));
    $('#rejected-table tbody').replaceChildren(...Object.entries(s.rejected_since_start || {}).map(([k, v]) => {
      const tr = el('tr');
      tr.append(el('td', k), el('td', v));
      return tr;
    }));
  } catch (err) { $('#stats-summary').textContent = err.message; }
}

async function loadHandlers() {
  try {
    const h = await api('/api/v1/handlers');
    $('#handlers-table tbody').replaceChildren(...h.handlers.map((r) => {
      const tr = el('tr');
      // paused by its breaker: since when and the next probe; by hand: until someone resumes it
      let st = r.state === 'active' ? 'active' : r.state === 'paused_by_hand' ? 'paused by hand' : 'paused';
      if (r.paused_since) st += ' ' + age(r.paused_since);
      if (r.next_probe_at) st += ', probe at ' + new Date(r.next_probe_at).toLocaleTimeString();
      const stateCell = el('td', st, r.state === 'active' ? '' : 'warn');
      if (r.pause_reason) stateCell.title = r.pause_reason;
      const btn = el('button', r.state === 'active' ? 'Pause' : 'Resume');
      btn.type = 'button';
      btn.addEventListener('click', async () => {
        const headers = state.token ? { Authorization: 'Bearer ' + state.token } : {};
        const res = await fetch(`/api/v1/handlers/${encodeURIComponent(r.handler)}/${r.state === 'active' ? 'pause' : 'resume'}`,
                                { method: 'POST', headers });
        const body = await res.json().catch(() => ({}));
        if (!res.ok) showStatus(body.detail || res.status + ' ' + res.statusText);
        loadHandlers();
      });
      const act = el('td');
      act.append(btn);
      tr.append(el('td', r.handler), stateCell, el('td', r.pending), el('td', r.retrying), el('td', r.dead), el('td', r.done),
                el('td', r.oldest_pending_at ? age(r.oldest_pending_at) : '—'), el('td', r.last_error ?? '—'), act);
      return tr;
    }));
  } catch (err) { showStatus(err.message); }
}

async function loadQuarantine() {
  try {
    const q = await api('/api/v1/quarantine?limit=100');
    $('#quarantine-table tbody').replaceChildren(...q.quarantine.map((r) => {
      const tr = el('tr');
      const btn = el('button', 'Re-parse');
      btn.type = 'button';
      btn.addEventListener('click', async () => {
        const headers = state.token ? { Authorization: 'Bearer ' + state.token } : {};
        const res = await fetch(`/api/v1/quarantine/${r.id}/reparse`, { method: 'POST', headers });
        const body = await res.json().catch(() => ({}));
        btn.textContent = res.ok ? `${body.status} as #${body.event_id}` : (body.detail || res.status);
        btn.disabled = true;
      });
      const action = el('td');
      action.append(btn);
      tr.append(el('td', r.id), el('td', r.received_at), el('td', r.reason), el('td', r.remote ?? ''), action);
      return tr;
    }));
  } catch (err) { showStatus(err.message); }
}

async function loadBackfills() {
  try {
    const b = await api('/api/v1/backfills?limit=100');
    $('#backfill-form button').disabled = !b.can_run;
    if (!b.can_run) $('#backfill-note').textContent = 'this pipehook has no Pipedrive token: it cannot backfill';
    $('#backfills-table tbody').replaceChildren(...b.backfills.map((r) => {
      const tr = el('tr');
      tr.append(el('td', r.id), el('td', age(r.created_at)), el('td', r.reason + (r.dry_run ? ' (dry run)' : '')),
                el('td', r.state, 'state-' + r.state), el('td', `${r.since} .. ${r.until}`), el('td', r.objects.join(', ')),
                el('td', r.records_read), el('td', r.events_stored), el('td', r.already_known), el('td', r.api_calls),
                el('td', r.token_cost), el('td', r.error ? `${r.detail} — ${r.error}` : r.detail));
      return tr;
    }));
  } catch (err) { showStatus(err.message); }
}

async function startBackfill(ev) {
  ev.preventDefault();
  const form = new FormData($('#backfill-form'));
  const body = { since: form.get('since'), dry_run: form.get('dry_run') === 'on' };
  if (form.get('until')) body.until = form.get('until');
  if (form.get('objects')) body.objects = form.get('objects');
  const headers = { 'Content-Type': 'application/json' };
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  const res = await fetch('/api/v1/backfills', { method: 'POST', headers, body: JSON.stringify(body) });
  const answer = await res.json().catch(() => ({}));
  $('#backfill-note').textContent = res.ok ? `run #${answer.id} queued` : (answer.detail || res.status + ' ' + res.statusText);
  loadBackfills();
}

function showView(name) {
  state.view = name;
  for (const b of document.querySelectorAll('nav button'))
    if (b.dataset.view === name) b.setAttribute('aria-current', 'page'); else b.removeAttribute('aria-current');
  for (const v of ['events', 'stats', 'handlers', 'quarantine', 'backfills']) $('#view-' + v).hidden = v !== name;
  if (name === 'stats') loadStats();
  if (name === 'handlers') loadHandlers();
  if (name === 'quarantine') loadQuarantine();
  if (name === 'backfills') loadBackfills();
}

document.addEventListener('DOMContentLoaded', () => {
  $('#filters').addEventListener('submit', (ev) => { ev.preventDefault(); state.pages = []; loadEvents(null); });
  $('#filters').addEventListener('reset', () => setTimeout(() => { state.pages = []; loadEvents(null); }));
  $('#older').addEventListener('click', () => { if (state.cursor) { state.pages.push(state.cursor); loadEvents(state.cursor); } });
  $('#newest').addEventListener('click', () => { state.pages = []; loadEvents(null); });
  $('#close-detail').addEventListener('click', closeDetail);
  $('#timeline-link').addEventListener('click', openTimeline);
  $('#stats-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadStats(); });
  $('#backfill-form').addEventListener('submit', startBackfill);
  $('#token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.token = $('#token').value;
    sessionStorage.setItem('pipehook-token', state.token);
    $('#token').blur();
    $('#token-form').hidden = true;
    showView(state.view);
    loadEvents(null);
  });
  for (const b of document.querySelectorAll('nav button')) b.addEventListener('click', () => showView(b.dataset.view));
  document.addEventListener('keydown', (ev) => {
    const typing = ['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement.tagName);
    if (ev.key === 'Escape' && !$('#detail').hidden) { closeDetail(); return; }
    if (typing) return;
    if (ev.key === '/') { ev.preventDefault(); $('#filters input').focus(); }
    else if (ev.key === 'j') select(1);
    else if (ev.key === 'k') select(-1);
    else if (ev.key === 't' && !$('#detail').hidden) openTimeline();
  });
  loadEvents(null);
  setInterval(pollNew, 2000);
});
