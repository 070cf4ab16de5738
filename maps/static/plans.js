/* Qorgau: the commander's plans console (/plans).
 *
 * The form makes a plan through the plans API (POST /api/plans: incidents from Qorgau's own alert
 * history over a period, or from a file read here and sent as text), then polls
 * GET /api/plans/{id} until the plan is done or failed, showing how long it has run. A done plan
 * shows its summary, its own map (GET /api/plans/{id}/map, in a frame), its files and the button
 * that issues it to the patrols (POST /api/plans/{id}/issue); an issued plan shows the dose its patrols
 * delivered (GET /api/plans/{id}/dosage: per patrol and per hot spot, the hot spots that got nothing,
 * the minutes in hot spots, the Koper-window visits), asked again every C.dosage_refresh_s seconds
 * until it is final (five minutes after the shift's end: late fixes still count). Every request carries the HttpOnly
 * session cookie and the X-Qorgau-Request header, so the API's roles and audit trail apply.
 * Booths are picked on a Leaflet map over the city's own streets: no request leaves the origin.
 */
(function () {
  'use strict';

  const C = window.QORGAU_PLANS;
  const T = C.labels;
  const $ = (sel) => document.querySelector(sel);
  const pad = (n) => String(n).padStart(2, '0');

  function t(key, vars) {
    let text = Object.prototype.hasOwnProperty.call(T, key) ? T[key] : key;
    for (const [k, v] of Object.entries(vars || {})) text = text.split('{' + k + '}').join(String(v));
    return text;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function offsetText() {
    const m = Math.round(C.utc_offset_s / 60);
    const sign = m >= 0 ? '+' : '-';
    return sign + pad(Math.floor(Math.abs(m) / 60)) + ':' + pad(Math.abs(m) % 60);
  }

  /** A datetime-local value (the city's local time) as ISO 8601 with the city's offset. */
  function localToIso(value) {
    if (!value) return null;
    return (value.length === 16 ? value + ':00' : value) + offsetText();
  }

  /** An ISO time as the city's local "YYYY-MM-DD HH:MM". */
  function local(iso) {
    const d = new Date(Date.parse(iso) + C.utc_offset_s * 1000);
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' +
      pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes());
  }

  async function api(method, url, body) {
    const headers = { Accept: 'application/json' };
    headers[C.csrf_header] = '1';
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(url, { method, credentials: 'same-origin', cache: 'no-store', headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      return { ok: false, status: 0, body: { detail: t('error_offline') } };
    }
    if (resp.status === 401) {
      location.href = C.urls.login + '&lang=' + encodeURIComponent(C.lang);
      return { ok: false, status: 401, body: null };
    }
    let data = null;
    try { data = await resp.json(); } catch (err) { data = null; }
    return { ok: resp.ok, status: resp.status, body: data };
  }

  /** The API's answer as words: a string detail as it is, validation errors as "field: message". */
  function detailText(body) {
    const d = body && body.detail;
    if (typeof d === 'string') return d;
    if (Array.isArray(d)) return d.map((e) => (e.loc ? e.loc.filter((x) => x !== 'body').join('.') + ': ' : '') + e.msg).join('\n');
    return body ? JSON.stringify(body) : '';
  }

  function showError(text, hint) {
    const box = $('#p-error');
    box.textContent = t('error_prefix') + ': ' + text + (hint ? '\n' + hint : '');
    box.hidden = false;
  }

  function clearError() { $('#p-error').hidden = true; $('#p-error').textContent = ''; }

  function setStatus(state, text) {
    const s = $('#p-status');
    s.dataset.state = state;
    s.textContent = text;
  }

  // -- booths on the map -----------------------------------------------------------------------

  let map;
  const booths = new Map(); // id -> {b, marker, on}

  function boothStyle(on) {
    return on ? { radius: 8, color: '#0d47a1', weight: 2, fillColor: '#42a5f5', fillOpacity: 0.9 }
      : { radius: 7, color: '#757575', weight: 1.5, fillColor: '#e0e0e0', fillOpacity: 0.8 };
  }

  function paintBooth(e) {
    e.marker.setStyle(boothStyle(e.on));
    const node = e.marker.getElement();
    if (node) { node.dataset.boothId = e.b.id; node.dataset.selected = e.on ? '1' : '0'; }
  }

  function countBooths() {
    const n = [...booths.values()].filter((e) => e.on).length;
    $('#p-booth-count').textContent = t('booths_selected', { n, m: booths.size });
    $('#p-booth-count').dataset.selected = String(n);
  }

  function setAll(on) {
    for (const e of booths.values()) { e.on = on; paintBooth(e); }
    countBooths();
  }

  async function loadStreets() {
    const resp = await fetch(C.urls.streets, { credentials: 'same-origin' });
    if (!resp.ok) return;
    const data = await resp.json();
    const renderer = L.canvas({ pane: 'p-streets', padding: 0.3 });
    for (const f of data.features) {
      const style = f.properties.class === 'major' ? { color: '#9a948a', weight: 2.2 } : { color: '#c4bfb5', weight: 1 };
      const options = Object.assign({ renderer, interactive: false, smoothFactor: 1.5 }, style);
      for (const line of f.geometry.coordinates) L.polyline(line.map((c) => [c[1], c[0]]), options).addTo(map);
    }
    document.body.dataset.streets = '1';
  }

  function startMap() {
    map = L.map('p-booth-map', { zoomControl: true, attributionControl: false });
    map.createPane('p-streets').style.zIndex = '250';
    map.fitBounds(C.bounds, { padding: [6, 6] });
    const svg = L.svg({ padding: 0.2 });
    for (const b of C.booths) {
      const marker = L.circleMarker([b.lat, b.lon], Object.assign({ renderer: svg }, boothStyle(true))).addTo(map);
      marker.bindTooltip(b.name + ' (' + b.id + ')');
      const e = { b, marker, on: true };
      marker.on('click', () => { e.on = !e.on; paintBooth(e); countBooths(); });
      booths.set(b.id, e);
      paintBooth(e);
    }
    countBooths();
    loadStreets();
  }

  // -- the form --------------------------------------------------------------------------------

  function source() { return document.querySelector('input[name="source"]:checked').value; }

  function showSource() {
    document.querySelectorAll('.p-sub[data-source]').forEach((div) => { div.hidden = div.dataset.source !== source(); });
  }

  function readFile(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result));
      reader.onerror = () => reject(reader.error);
      reader.readAsText(file);
    });
  }

  async function requestBody() {
    const num = (id) => { const v = $(id).value; return v === '' ? null : Number(v); };
    const body = {
      date: $('#p-date').value || null,
      shift: $('#p-shift').value.trim(),
      patrols: num('#p-patrols'),
      lang: C.lang,
      timezone: C.timezone,
    };
    for (const [key, id] of [['walk_speed_mps', '#p-walk_speed'], ['dwell_min', '#p-dwell'], ['seed', '#p-seed'], ['time_limit_s', '#p-time_limit']]) {
      const v = num(id);
      if (v !== null) body[key] = v;
    }
    const chosen = [...booths.values()].filter((e) => e.on).map((e) => e.b);
    if (!chosen.length) throw new Error(t('error_no_booths'));
    if (chosen.length !== booths.size) body.booths = chosen.map((b) => ({ id: b.id, lat: b.lat, lon: b.lon, name: b.name }));
    if (source() === 'history') {
      body.history = { since: localToIso($('#p-since').value) };
      const until = localToIso($('#p-until').value);
      if (until) body.history.until = until;
    } else {
      const file = $('#p-file').files[0];
      if (!file) throw new Error(t('error_no_file'));
      const text = await readFile(file);
      if (/\.(geo)?json$/i.test(file.name)) {
        try { body.incidents_geojson = JSON.parse(text); } catch (err) { throw new Error(t('error_bad_file')); }
      } else {
        body.incidents_csv = text;
      }
    }
    return body;
  }

  let current = null; // the plan shown
  let pollTimer = null;

  async function submit(ev) {
    ev.preventDefault();
    clearError();
    let body;
    try { body = await requestBody(); } catch (err) { showError(err.message); return; }
    $('#p-make').disabled = true;
    setStatus('sending', t('status_sending'));
    hidePlan();
    const r = await api('POST', C.urls.plans, body);
    if (!r.ok) {
      $('#p-make').disabled = false;
      setStatus('failed', t('status_failed'));
      const server = r.status === 422 && typeof (r.body && r.body.detail) === 'string';
      showError(detailText(r.body), server ? t('error_thin') : '');
      return;
    }
    current = r.body.id;
    refreshList();
    poll(current, Date.now());
  }

  function poll(id, since) {
    clearTimeout(pollTimer);
    const step = async () => {
      if (current !== id) return;
      const r = await api('GET', C.urls.plans + '/' + id);
      const s = Math.round((Date.now() - since) / 1000);
      if (!r.ok) { pollTimer = setTimeout(step, 2000); return; }
      const rec = r.body;
      if (rec.status === 'done' || rec.status === 'failed') {
        $('#p-make').disabled = false;
        refreshList();
        showPlan(rec, s);
        return;
      }
      setStatus(rec.status, t('status_' + rec.status, { s }));
      pollTimer = setTimeout(step, 1000);
    };
    step();
  }

  function hidePlan() {
    stopDosage();
    for (const id of ['#p-summary', '#p-issue', '#p-downloads', '#p-map', '#p-dosage']) $(id).hidden = true;
    $('#p-map').removeAttribute('src');
    document.body.dataset.plan = '';
  }

  function fileLabel(name) {
    const m = /^patrol_(P\d+)\.gpx$/.exec(name);
    return m ? t('file_gpx', { patrol: m[1] }) : t('file_' + name);
  }

  function showPlan(rec, seconds) {
    current = rec.id;
    hidePlan();
    document.querySelectorAll('#p-list tr').forEach((tr) => { tr.dataset.current = tr.dataset.planId === rec.id ? '1' : '0'; });
    if (rec.status === 'failed') {
      setStatus('failed', t('status_failed'));
      showError(rec.error || '', /no (usable|incidents)|nothing to plan|too few|window/i.test(rec.error || '') ? t('error_thin') : '');
      return;
    }
    if (rec.status !== 'done') { poll(rec.id, Date.parse(rec.requested_at)); return; }
    clearError();
    const took = seconds !== undefined ? seconds
      : Math.round((Date.parse(rec.finished_at) - Date.parse(rec.started_at || rec.requested_at)) / 1000);
    setStatus('done', t('status_done', { s: took }));
    const sm = rec.summary || {};
    const summary = $('#p-summary');
    summary.textContent = t('summary', {
      patrols: sm.patrols, hotspots: sm.hotspots,
      share: Math.round((sm.risk_covered_share || 0) * 1000) / 10,
      kept: sm.incidents ? sm.incidents.kept : '',
    }) + (sm.shift ? ' · ' + sm.shift : '');
    summary.hidden = false;
    const files = Object.keys((rec.links && rec.links.files) || {});
    const wanted = files.filter((n) => C.downloads.includes(n) || /^patrol_P\d+\.gpx$/.test(n)).sort();
    const list = $('#p-downloads');
    list.replaceChildren(el('li', {}, el('b', {}, t('downloads') + ':')),
      ...wanted.map((n) => el('li', {}, el('a', { href: rec.links.files[n], download: n, 'data-file': n }, fileLabel(n)))));
    list.hidden = false;
    const frame = $('#p-map');
    frame.src = rec.links.map;
    frame.hidden = false;
    $('#p-issue').hidden = false;
    $('#p-issue-button').disabled = false;
    showIssued(rec.issued);
    document.body.dataset.plan = rec.id;
    if (rec.issued) loadDosage(rec.id);
  }

  function showIssued(issued) {
    const box = $('#p-issued');
    if (!issued) { box.textContent = ''; delete box.dataset.issued; return; }
    const units = Object.entries(issued.units || {}).map(([p, u]) => p + ' → ' + u).join(', ');
    box.textContent = t('issued', { time: local(issued.issued_at), by: issued.issued_by, units });
    box.dataset.issued = issued.plan_id || '1';
  }

  async function issue() {
    if (!current) return;
    const button = $('#p-issue-button');
    button.disabled = true;
    clearError();
    const r = await api('POST', C.urls.plans + '/' + current + '/issue', {});
    button.disabled = false;
    if (!r.ok) {
      const box = $('#p-error');
      box.textContent = t('issue_failed') + ': ' + detailText(r.body);
      box.hidden = false;
      return;
    }
    showIssued(r.body);
    refreshList();
    loadDosage(current);
  }

  // -- the dose delivered (an issued plan) -----------------------------------------------------

  let dosageTimer = null;

  function stopDosage() { clearTimeout(dosageTimer); dosageTimer = null; }

  const minutes = (x) => String(Math.round((x || 0) * 10) / 10);
  const percent = (x) => String(Math.round((x || 0) * 1000) / 10);

  function doseCell(key, value, text) {
    return el('td', { 'data-k': key, 'data-value': value }, text === undefined ? value : text);
  }

  function doseRow(attrs, first, t0) {
    return el('tr', attrs, ...first,
      doseCell('planned', t0.planned_min, minutes(t0.planned_min)),
      doseCell('delivered', t0.delivered_min, minutes(t0.delivered_min)),
      doseCell('share', t0.delivered_share, percent(t0.delivered_share)),
      doseCell('visits', t0.visits),
      doseCell('koper', t0.koper_visits));
  }

  /** The dose of plan ``id`` (GET /api/plans/{id}/dosage), asked again every dosage_refresh_s until it is final. */
  async function loadDosage(id) {
    stopDosage();
    if (current !== id) return;
    const box = $('#p-dosage');
    if (box.hidden) { $('#p-dosage-state').textContent = t('dose_loading'); box.hidden = false; }
    const r = await api('GET', C.urls.plans + '/' + id + '/dosage?lang=' + encodeURIComponent(C.lang));
    if (current !== id) return;
    const again = () => { dosageTimer = setTimeout(() => loadDosage(id), C.dosage_refresh_s * 1000); };
    if (!r.ok) {
      box.dataset.state = 'failed';
      $('#p-dosage-state').textContent = t('dose_failed') + ': ' + detailText(r.body);
      again();
      return;
    }
    showDosage(id, r.body);
    if (!r.body.final) again(); // after the end, late fixes still count for MAX_GAP (5 min)
  }

  function showDosage(id, d) {
    const box = $('#p-dosage');
    const span = { start: local(d.shift_start), end: local(d.shift_end).slice(11), time: local(d.measured_at).slice(11), s: C.dosage_refresh_s };
    $('#p-dosage-state').textContent = t('dose_state_' + d.state, span);
    $('#p-dosage-total').textContent = t('dose_total', {
      delivered: minutes(d.delivered_min), planned: minutes(d.planned_min), share: percent(d.delivered_share),
      visits: d.visits, koper: d.koper_visits,
    });
    $('#p-dosage-inside').textContent = t('dose_inside', {
      inside: minutes(d.in_hot_spots_min), tracked: minutes(d.tracked_min), share: percent(d.in_hot_spots_share),
    });
    const nothing = d.hot_spots_with_nothing || [];
    $('#p-dosage-nothing').textContent = t('dose_nothing', { spots: nothing.length ? nothing.map((h) => '#' + h).join(', ') : t('dose_none') });
    $('#p-dosage-nothing').dataset.spots = nothing.join(',');
    const units = d.patrol_units || {};
    $('#p-dosage-patrols tbody').replaceChildren(...Object.entries(d.patrols || {}).map(([p, v]) => {
      const row = doseRow({ 'data-patrol': p, 'data-unit': units[p] || '' }, [el('td', {}, p), el('td', {}, units[p] || '')], v);
      row.append(doseCell('long', v.long_visits));
      return row;
    }));
    const spots = Object.entries(d.hot_spots || {}).sort((a, b) => b[1].planned_min - a[1].planned_min || Number(a[0]) - Number(b[0]));
    $('#p-dosage-spots tbody').replaceChildren(...spots.map(([h, v]) =>
      doseRow({ 'data-hot-spot': h, 'data-nothing': nothing.includes(h) ? '1' : '0' }, [el('td', {}, '#' + h)], v)));
    $('#p-dosage-definition').textContent = t('dose_definition', { radius: d.radius_m });
    const base = C.urls.plans + '/' + id + '/dosage?lang=' + encodeURIComponent(C.lang);
    $('#p-dosage-md').href = base + '&format=md';
    $('#p-dosage-csv').href = base + '&format=csv';
    Object.assign(box.dataset, {
      state: d.state, final: d.final ? '1' : '0', plan: id, measuredAt: d.measured_at, deliveredShare: String(d.delivered_share), fixes: String(d.fixes),
    });
    box.hidden = false;
  }

  // -- past plans ------------------------------------------------------------------------------

  async function refreshList() {
    const r = await api('GET', C.urls.plans + '?limit=50');
    if (!r.ok) return;
    const rows = r.body.map((p) => {
      const req = p.request || {};
      const state = p.issued ? 'issued' : p.status;
      const open = el('button', { type: 'button', 'data-open': p.id }, t('open'));
      open.addEventListener('click', async () => {
        const one = await api('GET', C.urls.plans + '/' + p.id);
        if (one.ok) showPlan(one.body);
      });
      return el('tr', { 'data-plan-id': p.id, 'data-status': p.status, 'data-current': p.id === current ? '1' : '0' },
        el('td', {}, p.requested_at ? local(p.requested_at) : ''),
        el('td', {}, (req.date || '') + ' ' + (req.shift || '')),
        el('td', {}, req.patrols || ''),
        el('td', {}, el('span', { class: 'p-state', 'data-state': state }, t('state_' + state))),
        el('td', {}, p.requested_by || ''),
        el('td', {}, open));
    });
    $('#p-list tbody').replaceChildren(...rows);
    $('#p-list-empty').hidden = rows.length > 0;
  }

  function start() {
    startMap();
    document.querySelectorAll('input[name="source"]').forEach((r) => r.addEventListener('change', showSource));
    showSource();
    $('#p-form').addEventListener('submit', submit);
    $('#p-booths-all').addEventListener('click', () => setAll(true));
    $('#p-booths-none').addEventListener('click', () => setAll(false));
    $('#p-issue-button').addEventListener('click', issue);
    refreshList();
  }

  window.qorgauPlans = { get current() { return current; }, booths, refreshList, loadDosage };
  window.addEventListener('DOMContentLoaded', start);
})();
