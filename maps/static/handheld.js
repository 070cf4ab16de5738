/* Qorgau: the officer's handheld (/unit).
 *
 * Shows the unit's current order (GET /api/units/{id}/order), follows the unit's own event stream
 * (GET /unit/events: "order" and "withdrawn"), and sends the officer's taps through the same API
 * as the dispatcher's (POST .../order/status, PUT .../availability), authenticated by the HttpOnly
 * session cookie plus the X-Qorgau-Request header.
 *
 * Every tap goes into a queue kept in localStorage with a request id of its own, sent as the
 * Idempotency-Key header: a tap made without network waits there (the page lists what is
 * pending) and is sent when the network is back, and a repeat of a request that did arrive is
 * answered from the service's record instead of being applied twice.
 *
 * The phone's position (Geolocation watchPosition) goes to PUT .../position when it has moved
 * 10 m, at most every 5 s, and at least every 30 s while standing still; booths send none. A fix
 * the service flags as too imprecise is shown to the officer.
 */
(function () {
  'use strict';

  const C = window.QORGAU_UNIT;
  const T = C.labels;
  const t = (key) => (Object.prototype.hasOwnProperty.call(T, key) ? T[key] : key);
  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));

  const ACTION_STATUS = { ack: 'acknowledged', en_route: 'en_route', on_scene: 'on_scene', close: 'closed' };
  const ORDER_ACTIONS = Object.keys(ACTION_STATUS);
  const CLOSING = new Set(['closed', 'cancelled', 'false_alarm']);
  const KEY_QUEUE = 'qorgau.unit.' + C.unit.id + '.queue';
  const KEY_LAST = 'qorgau.unit.' + C.unit.id + '.last';
  const KEY_PLAN = 'qorgau.unit.' + C.unit.id + '.plan';

  const $ = (sel) => document.querySelector(sel);
  const pad = (n) => String(n).padStart(2, '0');

  const state = {
    order: null,
    unit: null,
    queue: load(KEY_QUEUE, []),
    connection: 'connecting',
    lastEventId: null,
    fix: null,
    stats: { events: 0, alarms: 0, vibrations: 0, beeps: 0, sent: 0, replayed: 0, positions: 0, refreshes: 0, staleRefreshes: 0 },
  };

  function load(key, fallback) {
    try {
      const v = JSON.parse(localStorage.getItem(key));
      return v === null || v === undefined ? fallback : v;
    } catch (e) {
      return fallback;
    }
  }

  function save(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
    } catch (e) { /* private mode or full: the page still works, without the offline copy */ }
  }

  function requestId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return 'h-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // -- formatting ------------------------------------------------------------------------------

  function localTime(iso) {
    if (!iso) return '—';
    const d = new Date(Date.parse(iso) + C.utc_offset_s * 1000);
    return pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds());
  }

  function duration(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + ' ' + t('u_s');
    if (s < 3600) {
      const m = Math.floor(s / 60);
      const r = s % 60;
      return m + ' ' + t('u_min') + (r ? ' ' + r + ' ' + t('u_s') : '');
    }
    const h = Math.floor(s / 3600);
    return h + ' ' + t('u_h') + ' ' + Math.floor((s % 3600) / 60) + ' ' + t('u_min');
  }

  function clock(s) {
    s = Math.max(0, Math.ceil(s));
    return Math.floor(s / 60) + ':' + pad(s % 60);
  }

  function number(x, digits) {
    try {
      return new Intl.NumberFormat(C.lang, { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(x);
    } catch (e) {
      return x.toFixed(digits);
    }
  }

  function distance(m) {
    if (m === null || m === undefined) return '—';
    return m < 1000 ? Math.round(m) + ' ' + t('u_m') : number(m / 1000, 1) + ' ' + t('u_km');
  }

  function metres(a, b) {
    const r = 6371008.8;
    const rad = Math.PI / 180;
    const dlat = (b.lat - a.lat) * rad;
    const dlon = (b.lon - a.lon) * rad;
    const h = Math.sin(dlat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dlon / 2) ** 2;
    return 2 * r * Math.asin(Math.min(1, Math.sqrt(h)));
  }

  // -- messages --------------------------------------------------------------------------------

  let messageTimer = null;

  function message(text, kind, sticky) {
    const box = $('#u-msg');
    box.textContent = text;
    box.dataset.kind = kind || 'info';
    box.hidden = false;
    clearTimeout(messageTimer);
    if (!sticky) messageTimer = setTimeout(() => { box.hidden = true; }, 12000);
  }

  function setConnection(value) {
    state.connection = value;
    const node = $('#u-conn');
    node.dataset.state = value;
    node.textContent = t('conn_' + value);
    document.body.dataset.conn = value;
    renderPending();
  }

  // -- the map ---------------------------------------------------------------------------------

  const map = L.map('u-map', { preferCanvas: true, zoomControl: true, attributionControl: false });
  if (C.bounds) map.fitBounds(C.bounds);
  else map.setView(C.center, 14);
  const streetsPane = map.createPane('u-streets');
  streetsPane.style.zIndex = 250;
  const streetRenderer = L.canvas({ pane: 'u-streets', padding: 0.3 });
  const routeLayer = L.polyline([], { color: '#1565c0', weight: 6, opacity: 0.85 }).addTo(map);
  const alertMarker = L.circleMarker([0, 0], { radius: 11, color: '#fff', weight: 3, fillColor: '#d50000', fillOpacity: 1 });
  const meMarker = L.circleMarker([0, 0], { radius: 8, color: '#fff', weight: 3, fillColor: '#1565c0', fillOpacity: 1 });
  const meAccuracy = L.circle([0, 0], { radius: 1, color: '#1565c0', weight: 1, fillOpacity: 0.08 });

  function loadStreets() {
    fetch(C.urls.streets, { credentials: 'same-origin' })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error('streets: HTTP ' + r.status))))
      .then((geojson) => {
        let points = 0;
        L.geoJSON(geojson, {
          renderer: streetRenderer,
          interactive: false,
          style: (f) => (f.properties && f.properties.class === 'major'
            ? { color: '#9e9e9e', weight: 3, opacity: 0.9 }
            : { color: '#bdbdbd', weight: 1.5, opacity: 0.9 }),
          onEachFeature: (f) => {
            for (const line of f.geometry.coordinates) points += line.length;
          },
        }).addTo(map);
        document.body.dataset.streets = String(points);
      })
      .catch(() => { document.body.dataset.streets = '0'; });
  }

  function myPosition() {
    if (state.fix) return { lat: state.fix.lat, lon: state.fix.lon, acc: state.fix.acc };
    if (state.unit) return { lat: state.unit.lat, lon: state.unit.lon, acc: null };
    return null;
  }

  function drawMe() {
    const me = myPosition();
    if (!me) return;
    meMarker.setLatLng([me.lat, me.lon]).addTo(map);
    if (me.acc) meAccuracy.setLatLng([me.lat, me.lon]).setRadius(me.acc).addTo(map);
    else meAccuracy.remove();
  }

  function drawOrder(fit) {
    const o = state.order;
    if (!o) {
      routeLayer.setLatLngs([]);
      alertMarker.remove();
      return;
    }
    routeLayer.setLatLngs(o.route || []);
    alertMarker.setLatLng([o.lat, o.lon]).addTo(map);
    if (fit) {
      const points = (o.route || []).slice();
      points.push([o.lat, o.lon]);
      const me = myPosition();
      if (me) points.push([me.lat, me.lon]);
      if (points.length > 1) map.fitBounds(L.latLngBounds(points), { padding: [24, 24], maxZoom: 17 });
      else map.setView([o.lat, o.lon], 16);
    }
  }

  // -- the patrol plan (issued by a commander: stops, their times, the route) -------------------

  const planLayer = L.layerGroup().addTo(map);
  let plan = null;

  function planText(key, vars) {
    let text = t(key);
    for (const [k, v] of Object.entries(vars)) text = text.split('{' + k + '}').join(String(v));
    return text;
  }

  function hm(iso) { return localTime(iso).slice(0, 5); }

  function renderPlan() {
    const section = document.getElementById('u-plan');
    planLayer.clearLayers();
    if (!plan) { section.hidden = true; document.body.dataset.plan = ''; return; }
    section.hidden = false;
    document.getElementById('u-plan-title').textContent = planText('plan_shift', { patrol: plan.patrol, shift: plan.shift });
    const now = Date.now();
    let next = null;
    const items = plan.stops.map((s) => {
      const li = document.createElement('li');
      li.dataset.seq = String(s.seq);
      const done = Date.parse(s.depart) <= now;
      li.dataset.done = done ? '1' : '0';
      if (!done && next === null) { next = s.seq; li.dataset.next = '1'; }
      li.textContent = planText('plan_stop', { seq: s.seq, arrive: hm(s.arrive), depart: hm(s.depart), dwell: s.dwell_min, spot: s.hot_spot });
      return li;
    });
    document.getElementById('u-plan-stops').replaceChildren(...items);
    const line = (plan.route && plan.route.coordinates) || [];
    L.polyline(line.map((c) => [c[1], c[0]]), { color: '#6a1b9a', weight: 4, opacity: 0.7, dashArray: '8 6' }).addTo(planLayer);
    for (const s of plan.stops) {
      L.circleMarker([s.lat, s.lon], { radius: 7, color: '#fff', weight: 2, fillColor: s.seq === next ? '#6a1b9a' : '#ba68c8', fillOpacity: 1 })
        .bindTooltip(String(s.seq), { permanent: true, direction: 'center', className: 'u-plan-seq' })
        .addTo(planLayer);
    }
    document.body.dataset.plan = plan.plan_id;
    if (!state.order && line.length > 1) map.fitBounds(L.latLngBounds(line.map((c) => [c[1], c[0]])), { padding: [24, 24], maxZoom: 17 });
  }

  function applyPlan(p) {
    plan = p && p.unit_id === C.unit.id ? p : null;
    save(KEY_PLAN, plan);
    renderPlan();
  }

  let planAsked = 0; // asks for the plan so far: only the newest ask's answer is shown

  function loadPlan() {
    if (!C.urls.plan) return Promise.resolve();
    const mine = ++planAsked;
    return fetch(C.urls.plan, { credentials: 'same-origin', cache: 'no-store' })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error('plan: HTTP ' + r.status))))
      .then((body) => { if (mine === planAsked) applyPlan(body.plan); })
      .catch(() => null); // offline: the plan kept from before stays shown
  }

  // -- the order -------------------------------------------------------------------------------

  function queuedFor(order) {
    return state.queue.filter((q) => q.kind === 'status' && order && q.body.alert_id === order.alert_id);
  }

  function effectiveStatus() {
    const o = state.order;
    if (!o) return null;
    let s = o.status;
    for (const q of queuedFor(o)) s = q.body.status;
    return s;
  }

  function effectiveUnitStatus() {
    let s = state.unit ? state.unit.status : null;
    for (const q of state.queue) if (q.kind === 'availability') s = q.body.status;
    return s;
  }

  function render() {
    const o = state.order;
    const section = $('#u-order');
    const status = effectiveStatus();
    if (o && !CLOSING.has(status)) {
      section.hidden = false;
      $('#u-none').hidden = true;
      section.dataset.orderId = o.order_id;
      section.dataset.alertId = String(o.alert_id);
      section.dataset.status = status;
      section.dataset.priority = o.priority;
      $('#u-priority').textContent = o.priority;
      $('#u-priority').dataset.priority = o.priority;
      $('#u-source').textContent = t('source_' + o.source);
      $('#u-site').textContent = o.site_label || (o.site ? t('site_' + o.site) : '');
      $('#u-street').textContent = o.street || t('street_unknown');
      $('#u-distance').textContent = fill(t('distance'), { d: distance(o.distance_m) });
      $('#u-eta').textContent = o.eta_s === null || o.eta_s === undefined ? '' : fill(t('eta'), { t: duration(o.eta_s) });
      const pending = status !== o.status ? ' ⏳' : '';
      $('#u-state').textContent = '#' + o.alert_id + ' · ' + t('status_' + status) + pending;
    } else {
      section.hidden = true;
      $('#u-none').hidden = false;
      delete section.dataset.orderId;
      delete section.dataset.alertId;
      delete section.dataset.status;
    }
    const unitStatus = effectiveUnitStatus();
    const chip = $('#u-unit-status');
    chip.textContent = unitStatus ? t('unit_status_' + unitStatus) : '';
    chip.dataset.status = unitStatus || '';
    const open = o && !CLOSING.has(status);
    const allowed = new Set(open ? C.transitions[status] || [] : []);
    for (const button of document.querySelectorAll('#u-actions button[data-action]')) {
      const action = button.dataset.action;
      if (ORDER_ACTIONS.includes(action)) {
        button.hidden = !open;
        button.disabled = !open || !allowed.has(ACTION_STATUS[action]);
      } else {
        button.disabled = Boolean(open) || unitStatus === action;
      }
    }
    tick();
    renderPending();
  }

  function tick() {
    const o = state.order;
    if (!o) return;
    const nowMs = Date.now();
    const ago = (nowMs - Date.parse(o.alert_at)) / 1000;
    $('#u-since').textContent = fill(t('since'), { t: duration(ago), at: localTime(o.alert_at) });
    const box = $('#u-deadline');
    if (o.ack_deadline && effectiveStatus() === 'assigned') {
      const left = (Date.parse(o.ack_deadline) - nowMs) / 1000;
      box.hidden = false;
      box.textContent = left > 0 ? fill(t('deadline'), { t: clock(left) }) : t('deadline_passed');
      box.dataset.left = String(Math.max(0, Math.ceil(left)));
      box.dataset.urgent = left <= 10 ? '1' : '0';
    } else {
      box.hidden = true;
    }
  }

  function alarm() {
    state.stats.alarms += 1;
    if (navigator.vibrate) {
      try {
        if (navigator.vibrate([400, 150, 400, 150, 800])) state.stats.vibrations += 1;
      } catch (e) { /* no vibrator */ }
    }
    beep();
    const section = $('#u-order');
    section.classList.remove('u-new');
    void section.offsetWidth; // restart the animation
    section.classList.add('u-new');
  }

  let audio = null;

  function audioContext() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!audio) audio = new Ctx();
    if (audio.state === 'suspended') audio.resume().catch(() => null);
    return audio;
  }

  // Browsers start sound only after a tap: the first tap anywhere unlocks it for later orders.
  document.addEventListener('pointerdown', () => audioContext(), { once: true, capture: true });

  function beep() {
    const ctx = audioContext();
    if (!ctx) return;
    try {
      const start = ctx.currentTime + 0.02;
      for (let i = 0; i < 3; i++) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = 'square';
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.0001, start + i * 0.35);
        gain.gain.exponentialRampToValueAtTime(0.3, start + i * 0.35 + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, start + i * 0.35 + 0.25);
        osc.connect(gain).connect(ctx.destination);
        osc.start(start + i * 0.35);
        osc.stop(start + i * 0.35 + 0.27);
      }
      state.stats.beeps += 1;
    } catch (e) { /* no sound: the vibration and the screen remain */ }
  }

  function describe(order) {
    return [t('source_' + order.source), order.site_label || (order.site ? t('site_' + order.site) : ''), order.street]
      .filter(Boolean).join(', ');
  }

  /* A new view of the unit's order: from the API (``body`` = {unit, order}) or the stream (``order``). */
  function applyOrder(order, how) {
    const before = state.order;
    if (order && CLOSING.has(order.status)) order = null;
    state.order = order;
    if (order) save(KEY_LAST, { unit: state.unit, order });
    else save(KEY_LAST, { unit: state.unit, order: null });
    const isNew = order && (!before || before.order_id !== order.order_id);
    if (isNew && how !== 'initial') {
      alarm();
      message(fill(t('new_order'), { p: order.priority, what: describe(order) }), 'new');
    }
    if (before && !order && how === 'refresh') {
      message(fill(t('withdrawn_gone'), { id: before.alert_id }), 'withdrawn', true);
    }
    render();
    if (isNew || (order && before && (order.route || []).length !== (before.route || []).length)) drawOrder(true);
    else drawOrder(false);
  }

  function applyBody(body, how) {
    if (body && body.unit) {
      state.unit = body.unit;
      drawMe();
    }
    applyOrder(body ? body.order : null, how);
  }

  function withdraw(data) {
    const o = state.order;
    if (o && (data.order_id === o.order_id || data.alert_id === o.alert_id)) {
      state.order = null;
      save(KEY_LAST, { unit: state.unit, order: null });
      render();
      drawOrder(false);
      const reason = ['reassigned', 'cancelled', 'closed'].includes(data.reason) ? data.reason : 'reassigned';
      message(fill(t('withdrawn_' + reason), { id: data.alert_id }), 'withdrawn', true);
    }
  }

  // -- talking to the service ------------------------------------------------------------------

  function headers(extra) {
    return Object.assign({ 'Content-Type': 'application/json', [C.csrf_header]: '1' }, extra || {});
  }

  function signedOut() {
    setConnection('signed_out');
    const box = $('#u-msg');
    box.textContent = t('session_expired') + ' ';
    const link = document.createElement('a');
    link.href = C.urls.login;
    link.textContent = t('sign_in_again');
    box.append(link);
    box.dataset.kind = 'error';
    box.hidden = false;
  }

  let refreshing = null;
  // order and withdrawn events applied so far: a refresh asked before one and answered after it
  // holds the state from before the event, so it is dropped and asked again
  let orderEvents = 0;

  function refresh(how) {
    if (refreshing) return refreshing;
    state.stats.refreshes += 1;
    const seen = orderEvents;
    let stale = false;
    refreshing = fetch(C.urls.order, { credentials: 'same-origin', cache: 'no-store' })
      .then(async (r) => {
        if (r.status === 401) return signedOut();
        if (!r.ok) throw new Error('HTTP ' + r.status);
        const body = await r.json();
        if (orderEvents !== seen) { stale = true; state.stats.staleRefreshes += 1; return; }
        applyBody(body, how);
      })
      .catch(() => {
        if (how === 'initial') {
          const last = load(KEY_LAST, null);
          if (last) applyBody(last, how);
        }
      })
      .finally(() => {
        refreshing = null;
        if (stale) refresh(how);
      });
    return refreshing;
  }

  function enqueue(kind, url, method, body, action) {
    state.queue.push({ id: requestId(), kind, url, method, body, action, at: new Date().toISOString() });
    save(KEY_QUEUE, state.queue);
    render();
    flush();
  }

  let flushing = false;

  async function flush() {
    if (flushing) return;
    flushing = true;
    try {
      while (state.queue.length) {
        const item = state.queue[0];
        let response;
        try {
          response = await fetch(item.url, {
            method: item.method,
            credentials: 'same-origin',
            headers: headers({ 'Idempotency-Key': item.id }),
            body: JSON.stringify(item.body),
          });
        } catch (e) {
          if (state.connection === 'live') setConnection('reconnecting');
          message(t('queued'), 'pending');
          break; // no network: the tap stays queued
        }
        if (response.status === 401) {
          signedOut();
          break;
        }
        if (response.status >= 500 || response.status === 429 || response.status === 408) break; // try later
        state.queue.shift();
        save(KEY_QUEUE, state.queue);
        state.stats.sent += 1;
        if (response.headers.get('Idempotent-Replay') === 'true') state.stats.replayed += 1;
        const what = t('action_' + item.action);
        let body = null;
        try {
          body = await response.json();
        } catch (e) { /* an empty answer */ }
        if (response.ok) {
          if (item.kind === 'availability') {
            state.unit = body;
            render();
          } else {
            applyBody(body, 'action');
          }
          message(fill(t('delivered'), { what }), 'ok');
        } else if (response.status === 409 && body && body.current && typeof body.current === 'object') {
          applyBody(body.current, 'action');
          message(fill(t('conflict'), { what, detail: body.detail }), 'error', true);
        } else {
          const detail = body && typeof body.detail === 'string' ? body.detail : 'HTTP ' + response.status;
          message(fill(t('refused'), { what, detail }), 'error', true);
          render();
        }
      }
    } finally {
      flushing = false;
      render();
    }
  }

  function renderPending() {
    const box = $('#u-pending');
    box.textContent = '';
    const offline = state.connection === 'offline' || !navigator.onLine;
    if (!state.queue.length && !offline) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    if (offline) box.append(Object.assign(document.createElement('div'), { textContent: t('offline_note') }));
    if (state.queue.length) {
      box.append(Object.assign(document.createElement('div'), { textContent: fill(t('pending'), { n: state.queue.length }) }));
      const list = document.createElement('ul');
      for (const q of state.queue) {
        const li = document.createElement('li');
        li.dataset.requestId = q.id;
        li.dataset.action = q.action;
        li.textContent = t('action_' + q.action) + ' · ' + localTime(q.at);
        list.append(li);
      }
      box.append(list);
    }
  }

  // -- the buttons -----------------------------------------------------------------------------

  function tapStatus(action, extra) {
    const o = state.order;
    if (!o) return;
    const body = Object.assign({ alert_id: o.alert_id, status: ACTION_STATUS[action] }, extra || {});
    enqueue('status', C.urls.status, 'POST', body, action);
  }

  const dialog = $('#u-close-dialog');

  document.getElementById('u-actions').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (!button || button.disabled) return;
    const action = button.dataset.action;
    if (action === 'close') {
      $('#u-close-form').reset();
      if (dialog.showModal) dialog.showModal();
      else dialog.setAttribute('open', '');
    } else if (action === 'available' || action === 'off_duty') {
      enqueue('availability', C.urls.availability, 'PUT', { status: action }, action);
    } else {
      tapStatus(action);
    }
  });

  $('#u-close-cancel').addEventListener('click', () => dialog.close());
  $('#u-close-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const form = event.target;
    const outcome = form.querySelector('input[name="outcome"]:checked');
    if (!outcome) {
      message(t('close_needs_outcome'), 'error');
      return;
    }
    const note = form.querySelector('#u-note').value.trim().slice(0, 500);
    dialog.close();
    tapStatus('close', note ? { outcome: outcome.value, note } : { outcome: outcome.value });
  });

  // -- the event stream ------------------------------------------------------------------------

  let source = null;
  let retryTimer = null;

  function connect() {
    clearTimeout(retryTimer);
    const url = state.lastEventId ? C.urls.events + '?after=' + encodeURIComponent(state.lastEventId) : C.urls.events;
    source = new EventSource(url);
    source.addEventListener('open', () => {
      setConnection('live');
      refresh('refresh');
      loadPlan();
      flush();
    });
    source.addEventListener('order', (e) => {
      state.stats.events += 1;
      orderEvents += 1;
      if (e.lastEventId) state.lastEventId = e.lastEventId;
      try {
        applyOrder(JSON.parse(e.data), 'event');
      } catch (err) { refresh('refresh'); }
    });
    source.addEventListener('withdrawn', (e) => {
      state.stats.events += 1;
      orderEvents += 1;
      if (e.lastEventId) state.lastEventId = e.lastEventId;
      try {
        withdraw(JSON.parse(e.data));
      } catch (err) { refresh('refresh'); }
    });
    source.addEventListener('plan', (e) => {
      state.stats.events += 1;
      if (e.lastEventId) state.lastEventId = e.lastEventId;
      // a notice of an issue (any replica's) carries no stops: the plan is fetched; a whole plan is shown as it is
      let p = null;
      try { p = JSON.parse(e.data); } catch (err) { p = null; }
      if (p && Array.isArray(p.stops)) applyPlan(p); else loadPlan();
    });
    source.addEventListener('reset', () => { refresh('refresh'); loadPlan(); });
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error): find out whether we are still signed in, then retry.
        setConnection(navigator.onLine ? 'reconnecting' : 'offline');
        refresh('refresh');
        retryTimer = setTimeout(connect, 5000);
      } else {
        setConnection(navigator.onLine ? 'reconnecting' : 'offline');
      }
    });
  }

  window.addEventListener('online', () => {
    if (state.connection !== 'live') setConnection('reconnecting');
    flush();
    refresh('refresh');
    sendPosition(true);
    if (!source || source.readyState === EventSource.CLOSED) connect();
  });
  window.addEventListener('offline', () => setConnection('offline'));

  // -- the phone's position --------------------------------------------------------------------

  const minInterval = (C.position_min_interval_s || 5) * 1000;
  const minMove = C.position_min_move_m || 10;
  const keepalive = (C.position_keepalive_s || 30) * 1000;
  let lastSent = null; // {lat, lon, at}
  let sending = false;
  let sendTimer = null;
  let watching = null;

  function showFix(kind, text) {
    const box = $('#u-fix');
    box.hidden = false;
    box.dataset.kind = kind;
    box.textContent = text;
  }

  async function sendPosition(force) {
    const fix = state.fix;
    if (!fix || sending) return;
    const nowMs = Date.now();
    if (lastSent) {
      const elapsed = nowMs - lastSent.at;
      const moved = metres(lastSent, fix);
      if (elapsed < minInterval) {
        if (moved >= minMove || force) {
          clearTimeout(sendTimer);
          sendTimer = setTimeout(() => sendPosition(false), minInterval - elapsed + 20);
        }
        return;
      }
      if (moved < minMove && elapsed < keepalive && !force) return;
    }
    sending = true;
    const at = Date.now();
    const fresh = at - fix.ts < 10000;
    const body = { lat: fix.lat, lon: fix.lon, accuracy_m: fix.acc, ts: new Date(fresh ? fix.ts : at).toISOString() };
    try {
      const r = await fetch(C.urls.position, {
        method: 'PUT', credentials: 'same-origin', headers: headers(), body: JSON.stringify(body),
      });
      if (r.status === 401) {
        signedOut();
        return;
      }
      lastSent = { lat: fix.lat, lon: fix.lon, at };
      state.stats.positions += 1;
      const answer = await r.json().catch(() => ({}));
      if (r.status === 409) {
        stopWatching();
        showFix('fixed', t('booth_fixed'));
      } else if (r.ok && answer.flagged) {
        showFix('flagged', fill(t('fix_flagged'), { acc: Math.round(fix.acc), max: Math.round(answer.accuracy_max_m) }));
      } else if (r.ok && answer.accepted) {
        showFix('ok', fill(t('fix_ok'), { acc: Math.round(fix.acc), at: localTime(new Date(at).toISOString()) }));
      } else {
        const detail = answer.reason || (typeof answer.detail === 'string' ? answer.detail : 'HTTP ' + r.status);
        showFix('refused', fill(t('fix_refused'), { detail }));
      }
    } catch (e) {
      /* offline: a position is not worth queueing; the next fix goes out when the network is back */
    } finally {
      sending = false;
    }
  }

  function onFix(position) {
    const c = position.coords;
    const first = state.fix === null;
    state.fix = { lat: c.latitude, lon: c.longitude, acc: c.accuracy, ts: position.timestamp || Date.now() };
    drawMe();
    if (first && !state.order) map.setView([c.latitude, c.longitude], 16); // no order: show where I am
    sendPosition(false);
  }

  function onFixError(error) {
    showFix(error.code === 1 ? 'denied' : 'none', error.code === 1 ? t('fix_denied') : t('fix_unavailable'));
  }

  function stopWatching() {
    if (watching !== null) navigator.geolocation.clearWatch(watching);
    watching = null;
  }

  if (C.unit.kind === 'booth') {
    showFix('fixed', t('booth_fixed'));
  } else if (navigator.geolocation) {
    watching = navigator.geolocation.watchPosition(onFix, onFixError, {
      enableHighAccuracy: true, maximumAge: 0, timeout: 60000,
    });
    setInterval(() => sendPosition(false), 5000); // standing still: the keep-alive
  } else {
    showFix('none', t('fix_unavailable'));
  }

  // -- start -----------------------------------------------------------------------------------

  if ('serviceWorker' in navigator && C.urls.sw) {
    navigator.serviceWorker.register(C.urls.sw, { scope: C.urls.sw_scope }).catch(() => null);
  }

  window.qorgau = {
    get order() { return state.order; },
    get unit() { return state.unit; },
    get queue() { return state.queue.slice(); },
    get connection() { return state.connection; },
    get fix() { return state.fix; },
    get plan() { return plan; },
    get status() { return effectiveStatus(); },
    stats: state.stats,
    flush,
    refresh: () => refresh('refresh'),
  };

  loadStreets();
  plan = load(KEY_PLAN, null);
  if (plan && (plan.unit_id !== C.unit.id || Date.parse(plan.shift_end) <= Date.now())) plan = null; // another unit's, or over
  renderPlan();
  setConnection(navigator.onLine ? 'connecting' : 'offline');
  render();
  refresh('initial').then(() => {
    flush();
    connect();
  });
  setInterval(tick, 1000);
  setInterval(() => {
    if (state.connection !== 'live') {
      refresh('refresh');
      flush();
    }
  }, 10000);
})();
