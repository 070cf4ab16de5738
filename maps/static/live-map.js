/* Qorgau: the dispatcher's live map.
 *
 * Loads a snapshot of open alerts and units (GET /map/snapshot), then follows the service's
 * Server-Sent Events (GET /map/events): every committed change of an alert, a unit or a button
 * arrives as one event whose id is the change's global sequence number (the same on every
 * replica; the page treats it as an opaque string). A dropped stream reconnects by itself and
 * sends the last id it saw (Last-Event-ID), so whichever replica answers replays what was missed,
 * from memory or its database; only if it cannot (the gap too old or too long) does it answer
 * "reset", and the page loads a fresh snapshot. Actions go through the same HTTP API
 * as every other client (/api/alerts/{id}/assign ...), authenticated by the HttpOnly session
 * cookie plus the X-Qorgau-Request header that a cross-site page cannot send.
 *
 * Alerts and units are SVG paths (one DOM node each, carrying data-alert-id / data-unit-id);
 * the street basemap is one canvas. No request leaves the service's origin.
 */
(function () {
  'use strict';

  const C = window.QORGAU_CONFIG;
  const T = C.labels;
  const t = (key) => (Object.prototype.hasOwnProperty.call(T, key) ? T[key] : key);

  const OPEN = ['new', 'recommended', 'assigned', 'acknowledged', 'en_route', 'on_scene'];
  const OPEN_SET = new Set(OPEN);
  const PRIORITY_COLOUR = { 1: '#d50000', 2: '#ff6d00', 3: '#ffc400', 4: '#2962ff', 5: '#78909c' };
  const UNIT_COLOUR = {
    available: '#2e7d32', assigned: '#00838f', en_route: '#1565c0',
    on_scene: '#6a1b9a', off_duty: '#757575', offline: '#424242',
  };
  const STALE_COLOUR = '#bdbdbd';
  const ALERT_SHAPE = {
    new: 'diamond', recommended: 'circle', assigned: 'square', acknowledged: 'square',
    en_route: 'triangle', on_scene: 'plus', closed: 'ring', cancelled: 'ring', false_alarm: 'ring', test: 'ring',
  };
  const UNIT_SHAPE = { booth: 'house', foot: 'circle', car: 'car' };
  const FLASH_MS = 20000;

  // -- small helpers ---------------------------------------------------------------------------

  const $ = (sel) => document.querySelector(sel);
  const pad = (n) => String(n).padStart(2, '0');
  let clockSkewMs = 0; // server time - browser time
  const now = () => Date.now() + clockSkewMs;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[ch]));
  }

  function local(iso, withDate) {
    if (!iso) return '—';
    const d = new Date(Date.parse(iso) + C.utc_offset_s * 1000);
    const hms = pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds());
    if (!withDate) return hms;
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' + hms;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + ' ' + t('unit_s');
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' ' + t('unit_min');
    return Math.floor(m / 60) + ' ' + t('unit_h') + ' ' + (m % 60) + ' ' + t('unit_min');
  }

  const etaText = (s) => Math.floor(s / 60) + ':' + pad(Math.round(s % 60));
  const distText = (m) => (m < 1000 ? Math.round(m) + ' ' + t('unit_m') : (m / 1000).toFixed(1) + ' ' + t('unit_km'));
  const ageMs = (a) => now() - Date.parse(a.received_at);

  function describe(a) {
    if (a.source === 'sos') {
      return t('source_sos') + ' · ' + t('site_' + (a.site || 'other')) + (a.device_id ? ' · ' + a.device_id : '');
    }
    const cat = a.category ? (T['category_' + a.category] || a.category) : null;
    return t('source_app102') + (cat ? ' · ' + cat : '');
  }

  // -- shapes: a CircleMarker whose SVG path is a circle, square, triangle, ... ------------------

  function shapePath(shape, p, r) {
    const x = p.x, y = p.y;
    switch (shape) {
      case 'square': return `M${x - r},${y - r}h${2 * r}v${2 * r}h${-2 * r}z`;
      case 'diamond': { const q = r * 1.35; return `M${x},${y - q}L${x + q},${y}L${x},${y + q}L${x - q},${y}z`; }
      case 'triangle': { const q = r * 1.3; return `M${x},${y - q}L${x + q},${y + q * 0.75}L${x - q},${y + q * 0.75}z`; }
      case 'plus': {
        const a = r * 0.42, b = r * 1.25;
        return `M${x - a},${y - b}h${2 * a}v${b - a}h${b - a}v${2 * a}h${a - b}v${b - a}h${-2 * a}v${a - b}h${a - b}v${-2 * a}h${b - a}z`;
      }
      case 'house': return `M${x - r},${y + r}V${y - r * 0.15}L${x},${y - r * 1.2}L${x + r},${y - r * 0.15}V${y + r}z`;
      case 'car': return `M${x - r * 1.45},${y - r * 0.75}h${r * 2.9}v${r * 1.5}h${-r * 2.9}z`;
      default: return `M${x - r},${y}a${r},${r} 0 1,0 ${2 * r},0a${r},${r} 0 1,0 ${-2 * r},0`;
    }
  }

  const ShapeMarker = L.CircleMarker.extend({
    options: { shape: 'circle', data: null },
    _updatePath: function () {
      if (this._renderer instanceof L.SVG) {
        this._renderer._setPath(this, shapePath(this.options.shape, this._point, this._radius));
      } else {
        this._renderer._updateCircle(this);
      }
    },
    onAdd: function (map) {
      L.CircleMarker.prototype.onAdd.call(this, map);
      this._writeData();
    },
    setData: function (data) {
      this.options.data = data;
      this._writeData();
      return this;
    },
    setShape: function (shape) {
      if (shape !== this.options.shape) {
        this.options.shape = shape;
        this.redraw();
      }
      return this;
    },
    _writeData: function () {
      if (!this._path || !this.options.data) return;
      for (const [k, v] of Object.entries(this.options.data)) {
        if (v === null || v === undefined) this._path.removeAttribute('data-' + k);
        else this._path.setAttribute('data-' + k, v);
      }
    },
  });

  // -- state -----------------------------------------------------------------------------------

  const alerts = new Map(); // id -> {a, marker, li, shown, flashUntil}
  const units = new Map(); // id -> {u, marker, stale}
  const devices = new Map(); // SOS buttons: id -> {d, marker}
  const filters = { status: new Set(OPEN), source: new Set(['sos', 'app102']), priority: new Set([1, 2, 3, 4, 5]), hours: 0 };
  let map, alertRenderer, unitRenderer, routeRenderer, alertLayer, patrolLayer, boothLayer, routeLayer, deviceLayer;
  let planLayer, planRenderer;
  const plan = { id: null, routes: 0, stops: 0, hotSpots: 0 };
  let selectedId = null;
  let detail = null; // GET /api/alerts/{id} of the selected alert (with orders)
  let routeShown = null; // {alertId, unitId}
  let routeNote = '';
  let lastEventId = null;
  let source = null;
  let reconnectTimer = null;
  let reconnectDelay = 1000;
  let lastEventAt = null;
  let queue = [];
  let scheduled = false;
  let listDirty = false;
  let listOrder = [];
  let loading = false;
  let audio = null;

  const stats = {
    events: 0, flushes: 0, resets: 0, reconnects: 0, flashes: 0, snapshots: 0,
    updateMs: [], // per flush: time to apply the batch to the map and the list
    lastFlushMs: 0,
  };

  // -- alerts ----------------------------------------------------------------------------------

  function matches(a) {
    if (!filters.status.has(a.status)) return false;
    if (!filters.source.has(a.source)) return false;
    if (!filters.priority.has(Math.min(5, Math.max(1, a.priority)))) return false;
    if (filters.hours && ageMs(a) > filters.hours * 3600e3) return false;
    return true;
  }

  function alertStyle(a, selected, flashing) {
    const colour = PRIORITY_COLOUR[Math.min(5, a.priority)] || '#78909c';
    const open = OPEN_SET.has(a.status);
    const style = {
      shape: ALERT_SHAPE[a.status] || 'circle',
      radius: open ? (a.priority === 1 ? 9 : 8) : 5,
      color: selected ? '#000000' : open ? '#212121' : colour,
      weight: selected ? 3.5 : open ? 1.5 : 2,
      fillColor: colour,
      fillOpacity: !open ? 0 : a.status === 'assigned' ? 0.35 : 0.92,
      opacity: open ? 1 : 0.75,
      dashArray: a.status === 'test' ? '2 3' : null,
    };
    if (flashing) style.weight = 3;
    return style;
  }

  function alertData(a, e) {
    return {
      'alert-id': a.id, status: a.status, priority: a.priority, source: a.source,
      flash: e && e.flashUntil > now() ? '1' : null, selected: a.id === selectedId ? '1' : null,
    };
  }

  function alertTooltip(a) {
    return '<b>#' + a.id + ' · P' + a.priority + '</b> · ' + esc(t('status_' + a.status)) + '<br>' +
      esc(describe(a)) + '<br>' + esc(local(a.received_at)) + ' · ' + esc(duration(ageMs(a) / 1000));
  }

  function buildItem(a) {
    const li = el('li', { class: 'q-item', 'data-alert-id': a.id, tabindex: 0, onclick: () => select(a.id) });
    li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') select(a.id); });
    li.append(
      el('span', { class: 'q-prio' }),
      el('span', { class: 'q-what' }),
      el('span', { class: 'q-state' }),
      el('span', { class: 'q-when' }),
    );
    return li;
  }

  function fillItem(e) {
    const a = e.a, li = e.li;
    li.dataset.priority = a.priority;
    li.dataset.status = a.status;
    li.classList.toggle('q-selected', a.id === selectedId);
    li.classList.toggle('q-flash', e.flashUntil > now());
    li.classList.toggle('q-closed', !OPEN_SET.has(a.status));
    const [prio, what, state, when] = li.children;
    prio.textContent = 'P' + a.priority;
    prio.style.background = PRIORITY_COLOUR[Math.min(5, a.priority)];
    what.textContent = '#' + a.id + ' ' + describe(a) + (a.escalations ? ' ⚠' : '') + (a.duplicate_of ? ' ⧉' : '');
    state.textContent = t('status_' + a.status) + (a.assigned_unit_id ? ' · ' + unitName(a.assigned_unit_id) : '');
    when.textContent = local(a.received_at) + ' · ' + duration(ageMs(a) / 1000);
  }

  function applyAlert(a, fresh) {
    let e = alerts.get(a.id);
    if (!e) {
      e = { a, marker: null, li: buildItem(a), shown: false, flashUntil: 0 };
      alerts.set(a.id, e);
      const style = alertStyle(a, false, false);
      e.marker = new ShapeMarker([a.lat, a.lon], Object.assign(style, {
        renderer: alertRenderer, pane: 'q-alerts', bubblingMouseEvents: false, data: alertData(a, e),
      }));
      e.marker.on('click', () => select(a.id));
      e.marker.bindTooltip(() => alertTooltip(e.a), { direction: 'top', offset: [0, -8] });
      if (fresh && a.priority === 1 && OPEN_SET.has(a.status)) flash(e);
    } else {
      const before = e.a;
      e.a = a;
      if (before.lat !== a.lat || before.lon !== a.lon) e.marker.setLatLng([a.lat, a.lon]);
      if (a.id === selectedId && a.assigned_unit_id && a.assigned_unit_id !== before.assigned_unit_id) {
        showRoute(a.id, a.assigned_unit_id);
      }
    }
    restyle(e);
    show(e, matches(a));
    fillItem(e);
    listDirty = true;
    if (a.id === selectedId) renderDetails();
  }

  function restyle(e) {
    const flashing = e.flashUntil > now();
    const style = alertStyle(e.a, e.a.id === selectedId, flashing);
    e.marker.setShape(style.shape);
    e.marker.setRadius(style.radius);
    e.marker.setStyle(style);
    e.marker.setData(alertData(e.a, e));
  }

  function show(e, visible) {
    if (visible === e.shown) return;
    e.shown = visible;
    if (visible) alertLayer.addLayer(e.marker);
    else alertLayer.removeLayer(e.marker);
    listDirty = true;
  }

  function removeAlert(id) {
    const e = alerts.get(id);
    if (!e) return;
    show(e, false);
    e.li.remove();
    alerts.delete(id);
    listDirty = true;
  }

  function compareAlerts(x, y) {
    return x.a.priority - y.a.priority || Date.parse(x.a.received_at) - Date.parse(y.a.received_at) || x.a.id - y.a.id;
  }

  function renderList() {
    listDirty = false;
    const list = $('#q-alerts');
    const shown = [];
    for (const e of alerts.values()) if (e.shown) shown.push(e);
    shown.sort(compareAlerts);
    const order = shown.map((e) => e.a.id);
    const same = order.length === listOrder.length && order.every((id, i) => id === listOrder[i]);
    if (!same) {
      for (const e of alerts.values()) if (!e.shown && e.li.parentNode) e.li.remove();
      list.append(...shown.map((e) => e.li));
      listOrder = order;
    }
    let open = 0;
    for (const e of alerts.values()) if (OPEN_SET.has(e.a.status)) open += 1;
    $('#q-count').textContent = shown.length + ' / ' + open;
    $('#q-empty').hidden = shown.length > 0;
  }

  function refilter() {
    for (const e of alerts.values()) show(e, matches(e.a));
    if (listDirty) renderList();
  }

  // -- P1 flash and sound ----------------------------------------------------------------------

  function flash(e) {
    stats.flashes += 1;
    e.flashUntil = now() + FLASH_MS;
    const banner = $('#q-banner');
    banner.textContent = t('new_p1') + ' #' + e.a.id + ' · ' + describe(e.a);
    banner.dataset.alertId = e.a.id;
    banner.hidden = false;
    banner.classList.remove('q-blink');
    void banner.offsetWidth; // restart the animation
    banner.classList.add('q-blink');
    beep();
    setTimeout(() => {
      if (alerts.get(e.a.id) === e) { restyle(e); fillItem(e); }
      if (banner.dataset.alertId === String(e.a.id)) banner.hidden = true;
    }, FLASH_MS + 50);
  }

  function beep() {
    try {
      if (!audio) return; // browsers allow sound only after the dispatcher touched the page
      const o = audio.createOscillator(), g = audio.createGain();
      o.type = 'square';
      o.frequency.value = 880;
      g.gain.value = 0.08;
      o.connect(g).connect(audio.destination);
      const at = audio.currentTime;
      o.start(at);
      o.frequency.setValueAtTime(660, at + 0.18);
      o.stop(at + 0.4);
    } catch (err) { /* no sound device: the flash still shows */ }
  }

  function unlockAudio() {
    if (audio) return;
    try { audio = new (window.AudioContext || window.webkitAudioContext)(); } catch (err) { audio = null; }
  }

  // -- units -----------------------------------------------------------------------------------

  function unitName(id) {
    const e = units.get(id);
    return e ? e.u.name : id;
  }

  function isStale(u) {
    if (u.kind === 'booth') return false;
    const seen = Date.parse(u.position_ts || C.opened_at);
    return now() - seen > C.stale_after_s * 1000;
  }

  function unitStyle(u, stale) {
    const colour = stale ? STALE_COLOUR : UNIT_COLOUR[u.status] || '#424242';
    return {
      shape: UNIT_SHAPE[u.kind] || 'circle',
      radius: u.kind === 'booth' ? 7 : u.kind === 'car' ? 5.5 : 5,
      color: stale ? '#757575' : '#ffffff',
      weight: u.kind === 'booth' ? 2 : 1.5,
      fillColor: colour,
      fillOpacity: stale ? 0.55 : 0.95,
      opacity: 1,
      dashArray: stale ? '2 2' : null,
    };
  }

  function unitTooltip(e) {
    const u = e.u;
    const seen = u.position_ts ? duration((now() - Date.parse(u.position_ts)) / 1000) : '—';
    return '<b>' + esc(u.name) + '</b> (' + esc(t('unit_' + u.kind)) + ')<br>' + esc(t('unit_status_' + u.status)) +
      (u.alert_id ? ' · #' + u.alert_id : '') + (e.stale ? '<br><i>' + esc(t('stale')) + '</i>' : '') +
      (u.kind !== 'booth' ? '<br>' + esc(t('position_age')) + ': ' + esc(seen) : '');
  }

  function applyUnit(u) {
    let e = units.get(u.id);
    if (u.retired) {
      if (e) { e.layer.removeLayer(e.marker); units.delete(u.id); }
      return;
    }
    const stale = isStale(u);
    let changed;
    if (!e) {
      const layer = u.kind === 'booth' ? boothLayer : patrolLayer;
      e = { u, stale, layer, marker: null };
      e.marker = new ShapeMarker([u.lat, u.lon], Object.assign(unitStyle(u, stale), {
        renderer: unitRenderer, pane: 'q-units', bubblingMouseEvents: false,
      }));
      e.marker.bindTooltip(() => unitTooltip(e), { direction: 'top', offset: [0, -6] });
      units.set(u.id, e);
      layer.addLayer(e.marker);
      changed = true;
    } else {
      if (e.u.lat !== u.lat || e.u.lon !== u.lon) e.marker.setLatLng([u.lat, u.lon]);
      changed = e.u.status !== u.status || e.stale !== stale || e.u.alert_id !== u.alert_id;
      e.u = u;
      e.stale = stale;
      if (changed) e.marker.setStyle(unitStyle(u, stale));
    }
    if (!changed) return;
    e.marker.setData({ 'unit-id': u.id, 'unit-kind': u.kind, 'unit-status': u.status, stale: stale ? '1' : '0' });
    if (selectedId !== null) {
      const sel = alerts.get(selectedId);
      if (sel && (sel.a.assigned_unit_id === u.id || sel.a.recommendations.some((r) => r.unit_id === u.id))) renderDetails();
    }
  }

  function restaleUnits() {
    for (const e of units.values()) {
      const stale = isStale(e.u);
      if (stale !== e.stale) applyUnit(e.u);
    }
  }

  // -- SOS buttons (supervision) ---------------------------------------------------------------
  // Buttons are small grey dots (online, or not heard since the service started: the stream only
  // carries outages, returns and closed events); an offline one is a black square with a red ring
  // and a permanent label ("button offline"), so a silent or disconnected button is seen at a glance.

  function deviceStyle(d) {
    const offline = d.state === 'offline';
    return {
      shape: offline ? 'square' : 'circle',
      radius: offline ? 5 : 3,
      color: offline ? '#d50000' : '#546e7a',
      weight: offline ? 3 : 1,
      fillColor: offline ? '#212121' : '#90a4ae',
      fillOpacity: offline ? 1 : 0.8,
      opacity: 1,
    };
  }

  function deviceTooltip(d) {
    const seen = d.last_seen ? duration((now() - Date.parse(d.last_seen)) / 1000) : '—';
    const ev = d.event;
    return '<b>' + esc(t('device')) + ' ' + esc(d.id) + '</b> (' + esc(t('site_' + d.site)) + ')<br>' +
      (d.state === 'offline' ? esc(t('device_offline')) + '<br>' : '') + esc(t('device_last_seen')) + ': ' + esc(seen) +
      (ev ? '<br>' + esc(t('device_cause_' + ev.cause)) + (ev.drops > 1 ? ' · ' + esc(t('device_drops')) + ': ' + ev.drops : '') : '');
  }

  function applyDevice(d) {
    let e = devices.get(d.id);
    if (!e) {
      e = { d, marker: null };
      e.marker = new ShapeMarker([d.lat, d.lon], Object.assign(deviceStyle(d), {
        renderer: unitRenderer, pane: 'q-units', bubblingMouseEvents: false,
      }));
      devices.set(d.id, e);
      deviceLayer.addLayer(e.marker);
    } else {
      e.d = d;
      e.marker.setStyle(deviceStyle(d));
      e.marker.setShape(deviceStyle(d).shape);
    }
    e.marker.unbindTooltip();
    if (d.state === 'offline') {
      e.marker.bindTooltip(esc(t('device_offline')) + ' · ' + esc(d.id), {
        permanent: true, direction: 'right', offset: [6, 0], className: 'q-device-offline',
      });
    } else {
      e.marker.bindTooltip(() => deviceTooltip(e.d), { direction: 'top', offset: [0, -4] });
    }
    e.marker.setData({ 'device-id': d.id, 'device-state': d.state, 'device-site': d.site });
  }

  // -- applying events in batches, once per frame ----------------------------------------------

  function enqueue(kind, data) {
    queue.push([kind, data]);
    if (!scheduled) {
      scheduled = true;
      if (document.hidden) setTimeout(flush, 0);
      else requestAnimationFrame(flush);
    }
  }

  function flush() {
    scheduled = false;
    const started = performance.now();
    const batch = queue;
    queue = [];
    for (const [kind, data] of batch) {
      if (kind === 'alert') applyAlert(data, !loading);
      else if (kind === 'unit') applyUnit(data);
      else if (kind === 'device') applyDevice(data);
    }
    if (listDirty) renderList();
    const ms = performance.now() - started;
    stats.flushes += 1;
    stats.lastFlushMs = ms;
    stats.updateMs.push(ms);
    if (stats.updateMs.length > 5000) stats.updateMs.splice(0, stats.updateMs.length - 5000);
  }

  // -- snapshot and event stream ---------------------------------------------------------------

  function setConnection(state) {
    const node = $('#q-conn');
    node.dataset.state = state;
    node.querySelector('.q-conn-text').textContent = t('conn_' + state);
  }

  function sessionExpired() {
    setConnection('signed_out');
    if (source) source.close();
    const next = encodeURIComponent(location.pathname + location.search);
    location.href = C.urls.login + '?lang=' + encodeURIComponent(C.lang) + '&next=' + next;
  }

  async function resync() {
    if (source) { source.close(); source = null; }
    clearTimeout(reconnectTimer);
    setConnection('reconnecting');
    let resp;
    const asked = performance.now();
    try {
      resp = await fetch(C.urls.snapshot, { credentials: 'same-origin', cache: 'no-store' });
    } catch (err) {
      return retryLater();
    }
    if (resp.status === 401 || resp.status === 403) return sessionExpired();
    if (!resp.ok) return retryLater();
    const snap = await resp.json();
    const applying = performance.now();
    stats.snapshots += 1;
    clockSkewMs = Date.parse(snap.now) - Date.now();
    loading = true;
    flush(); // anything queued before the snapshot is older than it
    const seenAlerts = new Set(), seenUnits = new Set();
    for (const a of snap.alerts) { seenAlerts.add(a.id); applyAlert(a, false); }
    for (const u of snap.units) { seenUnits.add(u.id); applyUnit(u); }
    for (const d of snap.devices || []) applyDevice(d);
    for (const id of [...alerts.keys()]) if (!seenAlerts.has(id)) removeAlert(id);
    for (const [id, e] of [...units.entries()]) if (!seenUnits.has(id)) { e.layer.removeLayer(e.marker); units.delete(id); }
    renderList();
    loading = false;
    stats.snapshotApplyMs = performance.now() - applying; // draw every alert, unit and list entry
    stats.snapshotMs = performance.now() - asked; // the same plus the request
    lastEventId = snap.last_event_id;
    loadPlan();
    connect();
  }

  function retryLater() {
    setConnection('offline');
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(resync, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 10000);
  }

  function onEvent(kind) {
    return (ev) => {
      lastEventId = ev.lastEventId || lastEventId;
      lastEventAt = now();
      stats.events += 1;
      enqueue(kind, JSON.parse(ev.data));
    };
  }

  function connect() {
    const url = C.urls.events + '?after=' + encodeURIComponent(lastEventId || '');
    source = new EventSource(url, { withCredentials: true });
    source.onopen = () => {
      reconnectDelay = 1000;
      setConnection('live');
    };
    source.addEventListener('alert', onEvent('alert'));
    source.addEventListener('unit', onEvent('unit'));
    source.addEventListener('device', onEvent('device'));
    source.addEventListener('plan', (ev) => { lastEventId = ev.lastEventId || lastEventId; loadPlan(); });
    source.addEventListener('reset', () => {
      stats.resets += 1;
      resync();
    });
    source.onerror = () => {
      stats.reconnects += 1;
      if (source && source.readyState === EventSource.CLOSED) {
        // The service refused the stream (signed out, restarting): ask again from a snapshot.
        source = null;
        retryLater();
      } else {
        setConnection('reconnecting'); // the browser retries by itself, sending Last-Event-ID
      }
    };
  }

  // -- details, route, actions -----------------------------------------------------------------

  async function api(method, url, body) {
    const headers = { Accept: 'application/json' };
    headers[C.csrf_header] = '1';
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(url, { method, credentials: 'same-origin', headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      return { ok: false, status: 0, body: { detail: t('conn_offline') } };
    }
    if (resp.status === 401) { sessionExpired(); return { ok: false, status: 401, body: null }; }
    let data = null;
    try { data = await resp.json(); } catch (err) { data = null; }
    return { ok: resp.ok, status: resp.status, body: data };
  }

  function select(id) {
    const previous = selectedId;
    selectedId = id;
    for (const pid of [previous, id]) {
      const e = alerts.get(pid);
      if (e) { restyle(e); fillItem(e); }
    }
    const e = alerts.get(id);
    if (!e) return;
    e.flashUntil = 0;
    restyle(e);
    fillItem(e);
    e.li.scrollIntoView({ block: 'nearest' });
    if (!map.getBounds().contains(e.marker.getLatLng())) map.panTo(e.marker.getLatLng());
    detail = null;
    renderDetails();
    api('GET', C.urls.alert.replace('{id}', id)).then((r) => {
      if (r.ok && selectedId === id) { detail = r.body; renderDetails(); }
    });
    const unit = e.a.assigned_unit_id || (e.a.recommendations[0] && e.a.recommendations[0].unit_id);
    if (unit) showRoute(id, unit); else clearRoute();
  }

  function deselect() {
    const e = alerts.get(selectedId);
    selectedId = null;
    detail = null;
    if (e) { restyle(e); fillItem(e); }
    clearRoute();
    $('#q-details').hidden = true;
  }

  function clearRoute() {
    routeLayer.clearLayers();
    routeShown = null;
    routeNote = '';
  }

  async function showRoute(alertId, unitId) {
    routeShown = { alertId, unitId };
    const url = C.urls.route.replace('{id}', alertId) + '?unit_id=' + encodeURIComponent(unitId);
    const r = await api('GET', url);
    if (!r.ok || !routeShown || routeShown.alertId !== alertId || routeShown.unitId !== unitId) return;
    routeLayer.clearLayers();
    const latlngs = r.body.geometry.coordinates.map((c) => [c[1], c[0]]);
    const line = L.polyline(latlngs, { renderer: routeRenderer, pane: 'q-routes', color: '#0d47a1', weight: 5, opacity: 0.85, interactive: false });
    line.on('add', () => {
      line._path.setAttribute('data-route-alert-id', alertId);
      line._path.setAttribute('data-route-unit-id', unitId);
    });
    routeLayer.addLayer(line);
    const props = r.body.properties;
    routeNote = t('route') + ': ' + unitName(unitId) + ' · ' + distText(props.distance_m) + (props.eta_s != null ? ' · ' + t('eta') + ' ' + etaText(props.eta_s) : '');
    const note = $('#q-route-note');
    if (note) note.textContent = routeNote;
  }

  function row(label, value) {
    return el('tr', null, el('th', { text: label }), el('td', { text: value === null || value === undefined || value === '' ? '—' : value }));
  }

  function renderDetails() {
    const box = $('#q-details');
    const e = alerts.get(selectedId);
    if (!e) { box.hidden = true; return; }
    const a = e.a;
    box.hidden = false;
    box.dataset.alertId = a.id;
    box.replaceChildren();
    box.append(el('div', { class: 'q-details-head' },
      el('h2', { text: '#' + a.id + ' · P' + a.priority + ' · ' + t('status_' + a.status) }),
      el('button', { class: 'q-close', title: t('close_details'), 'aria-label': t('close_details'), onclick: deselect, text: '×' })));
    const table = el('table', { class: 'q-facts' });
    table.append(
      row(t('source'), describe(a)),
      row(t('received'), local(a.received_at, true) + ' (' + C.tz_label + ')'),
      row(t('age'), duration(ageMs(a) / 1000)),
      row(t('location'), a.lat.toFixed(5) + ', ' + a.lon.toFixed(5) + (a.location_unverified ? ' · ' + t('location_unverified') : '')),
    );
    if (a.text) table.append(row(t('text'), a.text));
    if (a.accuracy_m != null) table.append(row(t('accuracy'), distText(a.accuracy_m)));
    if (a.duplicate_of) table.append(row(t('duplicate_of'), '#' + a.duplicate_of));
    if (a.escalations) table.append(row(t('escalations'), String(a.escalations)));
    if (a.assigned_unit_id) table.append(row(t('assigned_unit'), unitName(a.assigned_unit_id)));
    if (a.proposed_unit_id) table.append(row(t('proposed_unit'), unitName(a.proposed_unit_id)));
    if (a.close_reason) table.append(row(t('reason'), a.close_reason));
    box.append(table);

    box.append(el('h3', { text: t('recommendations') }));
    const canAssign = C.can_act && (C.transitions[a.status] || []).includes('assigned');
    const recs = el('ol', { class: 'q-recs' });
    a.recommendations.forEach((r, i) => {
      const u = units.get(r.unit_id);
      const busy = u && u.u.alert_id && u.u.alert_id !== a.id;
      const item = el('li', { 'data-unit-id': r.unit_id, class: i === 0 ? 'q-top' : null, onclick: () => showRoute(a.id, r.unit_id) },
        el('span', { class: 'q-rec-name', text: unitName(r.unit_id) + ' (' + t('unit_' + r.unit_kind) + ')' }),
        el('span', { class: 'q-rec-eta', text: t('eta') + ' ' + etaText(r.eta_s) + ' · ' + distText(r.distance_m) }),
        u ? el('span', { class: 'q-rec-state', text: t('unit_status_' + u.u.status) + (u.stale ? ' · ' + t('stale') : '') }) : null);
      if (canAssign && a.assigned_unit_id !== r.unit_id && !busy) {
        item.append(el('button', { class: 'q-assign', 'data-unit-id': r.unit_id, text: t('assign'),
          onclick: (ev) => { ev.stopPropagation(); assign(a.id, r.unit_id, ev.target); } }));
      }
      recs.append(item);
    });
    if (!a.recommendations.length) recs.append(el('li', { class: 'q-muted', text: t('no_recommendations') }));
    box.append(recs);
    box.append(el('p', { id: 'q-route-note', class: 'q-muted', text: routeShown && routeShown.alertId === a.id ? routeNote : '' }));

    if (detail && detail.id === a.id && detail.orders && detail.orders.length) {
      box.append(el('h3', { text: t('orders') }));
      const ol = el('ul', { class: 'q-orders' });
      for (const o of detail.orders) {
        ol.append(el('li', { text: local(o.assigned_at) + ' · ' + unitName(o.unit_id) + ' · ' + o.assigned_by +
          (o.acknowledged_at ? ' · ' + t('acknowledged_at') + ' ' + local(o.acknowledged_at) : '') +
          (o.missed_at ? ' · ' + t('missed') : '') + (o.override ? ' · ' + t('override') : '') }));
      }
      box.append(ol);
    }

    if (C.can_act) {
      const allowed = C.transitions[a.status] || [];
      const actions = el('div', { class: 'q-actions' });
      const reason = el('input', { id: 'q-reason', type: 'text', placeholder: t('reason'), maxlength: 2000 });
      const buttons = [];
      for (const target of ['on_scene', 'closed', 'cancelled', 'false_alarm']) {
        if (!allowed.includes(target)) continue;
        buttons.push(el('button', { 'data-action': target, text: t('action_' + target), onclick: (ev) => transition(a.id, target, reason.value, ev.target) }));
      }
      if (allowed.includes('assigned') || a.status === 'new') {
        buttons.push(el('button', { 'data-action': 'recommend', text: t('action_recommend'), onclick: (ev) => recommend(a.id, ev.target) }));
      }
      if (buttons.length) {
        if (allowed.includes('cancelled') || allowed.includes('false_alarm')) actions.append(reason);
        actions.append(...buttons);
        box.append(actions);
      }
    } else {
      box.append(el('p', { class: 'q-muted', text: t('read_only') }));
    }
    box.append(el('p', { id: 'q-msg', class: 'q-msg', role: 'status', text: lastMessage && lastMessage.id === a.id ? lastMessage.text : '' }));
    if (lastMessage && lastMessage.id === a.id) $('#q-msg').dataset.ok = lastMessage.ok ? '1' : '0';
  }

  let lastMessage = null;

  function message(text, ok) {
    lastMessage = { id: selectedId, text, ok };
    const node = $('#q-msg');
    if (!node) return;
    node.textContent = text;
    node.dataset.ok = ok ? '1' : '0';
  }

  async function assign(alertId, unitId, button) {
    button.disabled = true;
    const r = await api('POST', C.urls.assign.replace('{id}', alertId), { unit_id: unitId });
    if (r.ok) {
      enqueue('alert', stripOrders(r.body));
      showRoute(alertId, unitId);
      message(t('assigned_ok') + ': ' + unitName(unitId), true);
    } else {
      button.disabled = false;
      message(t('action_failed') + ': ' + ((r.body && r.body.detail) || r.status), false);
    }
  }

  async function transition(alertId, target, reason, button) {
    if ((target === 'cancelled' || target === 'false_alarm') && !reason.trim()) {
      message(t('reason_required'), false);
      return;
    }
    button.disabled = true;
    const r = await api('POST', C.urls.transition.replace('{id}', alertId), { status: target, reason: reason || null });
    if (r.ok) enqueue('alert', stripOrders(r.body));
    else { button.disabled = false; message(t('action_failed') + ': ' + ((r.body && r.body.detail) || r.status), false); }
  }

  async function recommend(alertId, button) {
    button.disabled = true;
    const r = await api('POST', C.urls.recommend.replace('{id}', alertId));
    if (r.ok) enqueue('alert', stripOrders(r.body));
    else { button.disabled = false; message(t('action_failed') + ': ' + ((r.body && r.body.detail) || r.status), false); }
  }

  function stripOrders(a) {
    const copy = Object.assign({}, a);
    delete copy.orders;
    return copy;
  }

  // -- the issued patrol plan (a layer of its own, on by default) ------------------------------

  function fmt(key, vars) {
    let text = t(key);
    for (const [k, v] of Object.entries(vars)) text = text.split('{' + k + '}').join(String(v));
    return text;
  }

  function hhmm(iso) { return local(iso, false).slice(0, 5); }

  let planAsked = 0; // asks for the plan layer so far: only the newest ask's answer is drawn

  async function loadPlan() {
    if (!C.urls.plan) return;
    const mine = ++planAsked;
    let resp;
    try { resp = await fetch(C.urls.plan, { credentials: 'same-origin', cache: 'no-store' }); } catch (err) { return; }
    if (!resp.ok) return;
    const data = await resp.json();
    if (mine !== planAsked) return; // asked again meanwhile (a plan event): that answer is newer
    planLayer.clearLayers();
    plan.id = data.plan_id; plan.routes = 0; plan.stops = 0; plan.hotSpots = 0;
    const tag = (layer, attrs) => {
      layer.on('add', () => { const n = layer.getElement(); if (n) Object.assign(n.dataset, attrs); });
      return layer;
    };
    for (const f of data.features) {
      const p = f.properties;
      if (p.kind === 'hot_spot') {
        const c = f.geometry.coordinates;
        const m = L.circleMarker([c[1], c[0]], { renderer: planRenderer, radius: 9, color: '#c62828', weight: 1.5, dashArray: '3 3', fill: false });
        m.bindTooltip(esc(fmt('plan_hot_spot', { id: p.id })));
        tag(m, { planHotSpot: String(p.id) }).addTo(planLayer);
        plan.hotSpots += 1;
      }
    }
    for (const f of data.features) {
      const p = f.properties;
      if (p.kind === 'route') {
        const line = L.polyline(f.geometry.coordinates.map((c) => [c[1], c[0]]), { renderer: planRenderer, color: p.colour || '#6a1b9a', weight: 3, opacity: 0.75, dashArray: '8 5' });
        line.bindTooltip(esc(fmt('plan_patrol', { patrol: p.patrol, unit: p.unit_id ? unitName(p.unit_id) : '-' })));
        tag(line, { planRoute: p.patrol, planUnit: p.unit_id || '' }).addTo(planLayer);
        plan.routes += 1;
      } else if (p.kind === 'stop') {
        const c = f.geometry.coordinates;
        const m = L.circleMarker([c[1], c[0]], { renderer: planRenderer, radius: 5, color: '#fff', weight: 1.5, fillColor: p.colour || '#6a1b9a', fillOpacity: 1 });
        m.bindTooltip(esc(fmt('plan_patrol', { patrol: p.patrol, unit: p.unit_id ? unitName(p.unit_id) : '-' })) + '<br>' +
          esc(fmt('plan_stop', { seq: p.seq, arrive: hhmm(p.arrive), depart: hhmm(p.depart) })));
        tag(m, { planStop: p.patrol + ':' + p.seq }).addTo(planLayer);
        plan.stops += 1;
      }
    }
    document.body.dataset.plan = plan.id || '';
  }

  // -- streets ---------------------------------------------------------------------------------

  async function loadStreets() {
    const resp = await fetch(C.urls.streets, { credentials: 'same-origin' });
    if (!resp.ok) return;
    const data = await resp.json();
    const renderer = L.canvas({ pane: 'q-streets', padding: 0.3 });
    const layers = {};
    let lines = 0, points = 0;
    for (const f of data.features) {
      const cls = f.properties.class;
      lines += f.geometry.coordinates.length;
      for (const line of f.geometry.coordinates) points += line.length;
      const style = cls === 'major' ? { color: '#9a948a', weight: 2.4 } : { color: '#b9b3a8', weight: 1.1 };
      // One polyline per street line: the canvas strokes many small paths far faster than one huge
      // path, and redraws only those in view.
      const options = Object.assign({ renderer, interactive: false, opacity: 1, smoothFactor: 1.5 }, style);
      layers[cls] = L.layerGroup(f.geometry.coordinates.map((line) => L.polyline(line.map((c) => [c[1], c[0]]), options)));
    }
    const minorFrom = C.minor_streets_from_zoom;
    const update = () => {
      for (const [cls, layer] of Object.entries(layers)) {
        const want = cls === 'major' || map.getZoom() >= minorFrom;
        if (want && !map.hasLayer(layer)) layer.addTo(map);
        if (!want && map.hasLayer(layer)) map.removeLayer(layer);
      }
    };
    map.on('zoomend', update);
    update();
    map.attributionControl.addAttribution(esc(t('streets_attribution')));
    if (C.streets_attribution) map.attributionControl.addAttribution(esc(C.streets_attribution));
    window.qorgau.streets = { lines, points, classes: Object.keys(layers) };
    document.body.dataset.streets = String(lines);
  }

  // -- filters ---------------------------------------------------------------------------------

  function readFilters() {
    for (const name of ['status', 'source', 'priority']) {
      const set = filters[name];
      set.clear();
      document.querySelectorAll('input[data-filter="' + name + '"]').forEach((box) => {
        if (box.checked) set.add(name === 'priority' ? Number(box.value) : box.value);
      });
    }
    filters.hours = Number($('#q-window').value) || 0;
    refilter();
  }

  // -- start -----------------------------------------------------------------------------------

  function tick() {
    const t0 = performance.now();
    restaleUnits();
    for (const e of alerts.values()) {
      if (e.flashUntil && e.flashUntil < now()) { e.flashUntil = 0; restyle(e); }
      if (e.shown) fillItem(e);
    }
    if (filters.hours) refilter();
    const cutoff = now() - 24 * 3600e3;
    for (const e of [...alerts.values()]) if (!OPEN_SET.has(e.a.status) && Date.parse(e.a.received_at) < cutoff) removeAlert(e.a.id);
    if (listDirty) renderList();
    const last = $('#q-last');
    last.textContent = lastEventAt ? t('last_event') + ': ' + duration((now() - lastEventAt) / 1000) : '';
    stats.lastTickMs = performance.now() - t0;
  }

  function start() {
    map = window[C.map];
    map.getContainer().classList.toggle('q-no-tiles', !C.tiles);
    const panes = { 'q-streets': 250, 'q-plan': 410, 'q-routes': 420, 'q-units': 430, 'q-alerts': 440 };
    for (const [name, z] of Object.entries(panes)) map.createPane(name).style.zIndex = String(z);
    alertRenderer = L.svg({ pane: 'q-alerts', padding: 0.2 });
    unitRenderer = L.svg({ pane: 'q-units', padding: 0.2 });
    routeRenderer = L.svg({ pane: 'q-routes' });
    alertLayer = L.layerGroup().addTo(map);
    patrolLayer = L.layerGroup().addTo(map);
    boothLayer = L.layerGroup().addTo(map); // booths are always drawn
    deviceLayer = L.layerGroup().addTo(map);
    routeLayer = L.layerGroup().addTo(map);
    planRenderer = L.svg({ pane: 'q-plan' });
    planLayer = L.layerGroup().addTo(map);
    const overlays = { [t('layer_alerts')]: alertLayer, [t('layer_patrols')]: patrolLayer, [t('layer_devices')]: deviceLayer, [t('layer_plan')]: planLayer };
    L.control.layers(null, overlays, { collapsed: true }).addTo(map);
    if (C.bounds) map.fitBounds(C.bounds, { padding: [10, 10] });
    document.querySelectorAll('input[data-filter], #q-window').forEach((node) => node.addEventListener('change', readFilters));
    $('#q-banner').addEventListener('click', (ev) => {
      const id = Number(ev.currentTarget.dataset.alertId);
      if (id) select(id);
    });
    document.addEventListener('pointerdown', unlockAudio, { once: true });
    document.addEventListener('keydown', unlockAudio, { once: true });
    document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') deselect(); });
    readFilters();
    if (!C.tiles) loadStreets();
    resync();
    setInterval(tick, 5000);
  }

  window.qorgau = {
    stats,
    alerts,
    units,
    devices,
    filters,
    get lastEventId() { return lastEventId; },
    get selectedId() { return selectedId; },
    get connection() { const node = $('#q-conn'); return node ? node.dataset.state : undefined; },
    select,
    resync,
    plan,
    get planShown() { return map.hasLayer(planLayer); },
    streets: null,
  };

  window.addEventListener('DOMContentLoaded', start);
})();
