// opencore admin dashboard: plain DOM, no framework. Every value that comes from a
// client (user names, agents) is set with textContent, never parsed as HTML.
"use strict";

const REFRESH_MS = 2000;
let timer = null;
let lastStats = null;

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { "X-Requested-With": "opencore-admin" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  return { status: response.status, data };
}

function showSignin(message) {
  if (timer) { clearInterval(timer); timer = null; }
  $("dashboard").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("signin-view").hidden = false;
  $("signin-error").textContent = message || "";
}

function showDashboard(user) {
  $("signin-view").hidden = true;
  $("dashboard").hidden = false;
  $("signout").hidden = false;
  if (user) $("who").textContent = "signed in as " + (user.username || user.name);
  refresh();
  if (!timer) timer = setInterval(refresh, REFRESH_MS);
}

async function signin(event) {
  event.preventDefault();
  const result = await api("POST", "/admin/api/signin", {
    username: $("username").value, password: $("password").value,
  });
  $("password").value = "";
  if (result.status === 200) showDashboard(result.data.user);
  else showSignin((result.data && result.data.message) || "sign-in failed");
}

async function signout() {
  await api("POST", "/admin/api/signout");
  showSignin("");
}

async function closeConnection(id) {
  const result = await api("DELETE", "/admin/api/connections/" + encodeURIComponent(id));
  $("status").textContent = (result.data && result.data.message) || ("status " + result.status);
  refresh();
}

function renderConnections(page) {
  const body = $("connections").tBodies[0];
  body.replaceChildren();
  $("connection-count").textContent = "(" + page.total + ")";
  for (const c of page.items) {
    const row = el("tr");
    row.dataset.id = c.id;
    const user = c.user ? c.user.username || c.user.name : "(not signed in)";
    const agent = c.agent ? c.agent + (c.version ? " " + c.version : "") : "";
    for (const value of [c.id, user, c.transport, c.peer, agent, c.connected, c.last_activity,
      c.requests, c.errors, c.in_flight, c.outbound_bytes, c.watches.join(", "), c.queues.join(", ")]) {
      row.appendChild(el("td", value));
    }
    const cell = el("td");
    const button = el("button", "close", "close");
    button.dataset.id = c.id;
    button.addEventListener("click", () => closeConnection(c.id));
    cell.appendChild(button);
    row.appendChild(cell);
    body.appendChild(row);
  }
}

function renderActors(tree) {
  $("actor-count").textContent = "(" + tree.count + ")";
  const byParent = new Map();
  for (const actor of tree.actors) {
    const key = actor.parent === null ? 0 : actor.parent;
    if (!byParent.has(key)) byParent.set(key, []);
    byParent.get(key).push(actor);
  }
  const known = new Set(tree.actors.map((a) => a.id));
  const build = (list) => {
    const ul = el("ul");
    for (const actor of list) {
      const li = el("li");
      li.appendChild(el("span", actor.kind, "kind"));
      li.appendChild(el("span", " " + actor.name + " "));
      li.appendChild(el("span", "handled " + actor.handled + ", mailbox " + actor.mailbox +
        ", restarts " + actor.restarts + ", age " + Math.round(actor.age_ms / 1000) + " s", "muted"));
      const children = byParent.get(actor.id);
      if (children) li.appendChild(build(children));
      ul.appendChild(li);
    }
    return ul;
  };
  // Roots: no parent, or a parent that is already gone.
  const roots = tree.actors.filter((a) => a.parent === null || !known.has(a.parent));
  $("actors").replaceChildren(...build(roots).children);
}

function table(headers, rows) {
  const t = el("table");
  const head = el("tr");
  for (const h of headers) head.appendChild(el("th", h));
  t.appendChild(head);
  for (const r of rows) {
    const tr = el("tr");
    for (const v of r) tr.appendChild(el("td", v));
    t.appendChild(tr);
  }
  return t;
}

function renderQueues(q) {
  const bus = q.bus.kind + (q.bus.up ? " up" : " DOWN") + (q.bus.last_error ? " (" + q.bus.last_error + ")" : "");
  $("queues").replaceChildren(
    el("p", "bus: " + bus + "; published " + q.published + " (" + q.rates.published_per_s.toFixed(1) +
      "/s), delivered " + q.delivered + " (" + q.rates.delivered_per_s.toFixed(1) + "/s)"),
    table(["queue", "connections"], q.consumers.map((c) => [c.queue, c.connections.join(", ")])));
}

function renderWatches(w) {
  $("watches").replaceChildren(
    table(["collection", "watchers", "events", "events/s", "feed"],
      w.collections.map((c) => [c.collection, c.watchers, c.events, c.events_per_s.toFixed(1), c.feed])),
    table(["watch", "connection"], w.watches.map((x) => [x.id, x.connection])));
}

function renderRates(stats) {
  const now = Date.now();
  const rows = [["requests total", stats.counters.requests], ["errors total", stats.counters.errors]];
  if (lastStats) {
    const seconds = Math.max((now - lastStats.at) / 1000, 0.001);
    rows.push(["requests/s", ((stats.counters.requests - lastStats.requests) / seconds).toFixed(1)]);
    rows.push(["errors/s", ((stats.counters.errors - lastStats.errors) / seconds).toFixed(1)]);
  }
  lastStats = { at: now, requests: stats.counters.requests, errors: stats.counters.errors };
  const body = $("rates").tBodies[0];
  body.replaceChildren(...rows.map(([k, v]) => {
    const tr = el("tr");
    tr.appendChild(el("th", k));
    tr.appendChild(el("td", v));
    return tr;
  }));
}

async function refresh() {
  const [connections, actors, queues, watches, stats] = await Promise.all([
    api("GET", "/admin/api/connections?limit=500"), api("GET", "/admin/api/actors"),
    api("GET", "/admin/api/queues"), api("GET", "/admin/api/watches"), api("GET", "/admin/stats"),
  ]);
  if (connections.status === 401 || connections.status === 403) {
    showSignin(connections.data && connections.data.message);
    return;
  }
  if (connections.status === 200) renderConnections(connections.data);
  if (actors.status === 200) renderActors(actors.data);
  if (queues.status === 200) renderQueues(queues.data);
  if (watches.status === 200) renderWatches(watches.data);
  if (stats.status === 200) renderRates(stats.data);
}

async function start() {
  $("signin-form").addEventListener("submit", signin);
  $("signout").addEventListener("click", signout);
  // Already signed in (cookie)? Otherwise show the form.
  const probe = await api("GET", "/admin/api/health");
  if (probe.status === 200) showDashboard(null);
  else showSignin("");
}

document.addEventListener("DOMContentLoaded", start);
