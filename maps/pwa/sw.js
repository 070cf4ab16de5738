/* Qorgau: the officer's handheld service worker (scope /unit).
 *
 * Keeps the page, its script and stylesheet, Leaflet and the city's streets in a cache, so the
 * handheld opens without a network; the page and the unit's order are fetched from the network
 * first and the last good copy is served when that fails. The event stream is never cached, and
 * nothing but same-origin GETs is touched: taps queued offline are the page's own business
 * (localStorage, sent again with their Idempotency-Key).
 */
'use strict';

const VERSION = __QORGAU_VERSION__;
const PRECACHE = __QORGAU_PRECACHE__;
const LIVE = __QORGAU_LIVE__;
const CACHE = 'qorgau-unit-' + VERSION;
const FRESH_FIRST = [/^\/unit$/, /^\/api\/units\/[^/]+\/order$/, /^\/api\/units\/[^/]+$/];

function usable(response) {
  return response && response.ok && !response.redirected && response.type === 'basic';
}

async function precache() {
  const cache = await caches.open(CACHE);
  await Promise.all(PRECACHE.map(async (url) => {
    try {
      const response = await fetch(url, { credentials: 'same-origin', cache: 'no-cache' });
      if (usable(response)) await cache.put(url, response);
    } catch (e) { /* offline while installing: the page fills the cache as it goes */ }
  }));
}

self.addEventListener('install', (event) => {
  event.waitUntil(precache().then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith('qorgau-unit-') && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

async function fromCache(request, path) {
  const cache = await caches.open(CACHE);
  return (await cache.match(request, { ignoreSearch: true })) || (await cache.match(path, { ignoreSearch: true }));
}

async function freshFirst(request, path) {
  try {
    const response = await fetch(request);
    if (usable(response)) {
      const cache = await caches.open(CACHE);
      await cache.put(path, response.clone());
    }
    return response;
  } catch (e) {
    const cached = await fromCache(request, path);
    if (cached) return cached;
    throw e;
  }
}

async function cachedFirst(request, path) {
  const cached = await fromCache(request, path);
  const refresh = fetch(request).then(async (response) => {
    if (usable(response)) await (await caches.open(CACHE)).put(path, response.clone());
    return response;
  });
  if (cached) {
    refresh.catch(() => null);
    return cached;
  }
  return refresh;
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  const path = url.pathname;
  if (LIVE.some((prefix) => path.startsWith(prefix))) return;
  if (FRESH_FIRST.some((re) => re.test(path))) {
    event.respondWith(freshFirst(request, path));
  } else if (PRECACHE.some((u) => new URL(u, self.location.origin).pathname === path)) {
    event.respondWith(cachedFirst(request, path));
  }
});
