// The restock console: reads the gateway's /api/console/* with the operator's token (kept in
// sessionStorage, sent as an Authorization header, never as a cookie), follows the live
// server-sent events, and sends Complete and Cancel after a confirmation.
"use strict";

const state = {
  token: sessionStorage.getItem("restock-token") || "",
  who: null,
  snapshot: null,
  history: null,
  sort: { key: "sku", dir: 1 },
  filter: "",
  selected: null,
  stream: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h.Authorization = "Bearer " + state.token;
  return h;
}

function toast(message, isError) {
  const t = $("toast");
  t.textContent = message;
  t.className = isError ? "error" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, isError ? 10000 : 4000);
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({}, options, { headers: headers(options && options.headers) }));
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const err = new Error((body && body.error) || response.statusText);
    err.status = response.status;
    throw err;
  }
  return body;
}

// ---- sign in -------------------------------------------------------------------------------

async function start() {
  try {
    state.who = await api("/api/console/whoami");
  } catch (err) {
    if (err.status === 401) return askForToken(state.token ? err.message : "");
    $("live").textContent = "error: " + err.message;
    return;
  }
  $("sign-in-panel").hidden = true;
  $("main").hidden = false;
  $("who").textContent = state.who.name + " (" + state.who.role + ")";
  $("sign-out").hidden = !state.who.tokens_required;
  document.body.dataset.role = state.who.role;
  follow();
}

function askForToken(error) {
  $("main").hidden = true;
  $("sign-in-panel").hidden = false;
  $("sign-in-error").textContent = error || "";
  $("token").focus();
}

$("sign-in-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value.trim();
  sessionStorage.setItem("restock-token", state.token);
  $("token").value = "";
  start();
});

$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem("restock-token");
  state.token = "";
  if (state.stream) state.stream.abort();
  location.reload();
});

// ---- live updates (server-sent events over fetch, so the token goes in a header) ----------

async function follow() {
  const controller = new AbortController();
  state.stream = controller;
  try {
    const response = await fetch("/api/console/events", { headers: headers(), signal: controller.signal });
    if (response.status === 401) return askForToken("the token was refused");
    if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
    setLive(true);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        handleEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (err) {
    if (controller.signal.aborted) return;
  }
  setLive(false);
  setTimeout(follow, 2000);
}

function setLive(on) {
  $("live").textContent = on ? "live" : "reconnecting";
  $("live").className = "live " + (on ? "on" : "off");
}

function handleEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return;
  const payload = JSON.parse(data.join("\n"));
  if (name === "snapshot") {
    state.snapshot = payload;
    renderSnapshot();
  } else if (name === "history") {
    state.history = payload;
    renderCharts();
    renderProducts();
  }
}

// ---- rendering ------------------------------------------------------------------------------

function age(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function duration(seconds) {
  if (seconds == null) return "—";
  if (seconds < 120) return Math.round(seconds) + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function renderSnapshot() {
  renderPipeline();
  renderOpen();
  renderProducts();
  renderCharts();
}

function renderPipeline() {
  const list = $("pipeline");
  list.replaceChildren(...state.snapshot.pipeline.map((c) =>
    el("li", { class: c.state + (c.ended ? " ended" : "") + (c.count ? " busy" : ""), "data-state": c.state },
      el("strong", { text: String(c.count) }),
      c.ended ? c.state + " today" : c.state)));
}

function renderOpen() {
  const rows = state.snapshot.open.map((r) => {
    const stateCell = el("td", { class: "state" }, r.state);
    if (r.overdue) stateCell.append(" ", el("span", { class: "badge overdue", text: "overdue" }));
    const link = r.workflow_url
      ? el("a", { href: r.workflow_url, target: "_blank", rel: "noopener", text: "Temporal UI" })
      : "—";
    const complete = el("button", { type: "button", class: "complete", "data-sku": r.sku, text: "Complete" });
    complete.addEventListener("click", () => confirmAction("complete", r));
    const cancel = el("button", { type: "button", class: "cancel danger", "data-sku": r.sku, text: "Cancel" });
    cancel.addEventListener("click", () => confirmAction("cancel", r));
    if (state.who && state.who.role !== "admin") {
      complete.title = cancel.title = "needs an admin token";
    }
    return el("tr", { "data-sku": r.sku, class: r.overdue ? "overdue" : "" },
      el("td", { text: r.sku }), stateCell,
      el("td", { class: "num", text: r.quantity ? String(r.quantity) : "—" }),
      el("td", { class: "num", text: age(r.started_at) }),
      el("td", { class: "order", text: r.order_id }),
      el("td", {}, link),
      el("td", {}, complete, " ", cancel));
  });
  $("open").querySelector("tbody").replaceChildren(...rows);
  $("no-open").hidden = rows.length > 0;
}

function compare(a, b, key) {
  const x = a[key], y = b[key];
  if (x == null && y == null) return 0;
  if (x == null) return 1;
  if (y == null) return -1;
  if (typeof x === "string") return x.localeCompare(y);
  return x < y ? -1 : x > y ? 1 : 0;
}

function renderProducts() {
  if (!state.snapshot) return;
  const filter = state.filter.toUpperCase();
  const products = state.snapshot.products
    .filter((p) => !filter || p.sku.toUpperCase().includes(filter))
    .sort((a, b) => state.sort.dir * compare(a, b, state.sort.key));
  const rows = products.map((p) => {
    const soldOut = p.stock <= 0;
    const atReorder = !soldOut && p.stock <= p.reorder_point;
    const scale = Math.max(p.stock, p.reorder_point + p.reorder_quantity, 1);
    const fill = el("span", { class: "fill" });
    fill.style.width = Math.max(0, Math.min(100, (100 * p.stock) / scale)) + "%";
    const rop = el("span", { class: "rop" });
    rop.style.left = Math.min(100, (100 * p.reorder_point) / scale) + "%";
    const bar = el("span", { class: "bar", title: p.stock + " on hand, reorder at " + p.reorder_point }, fill, rop);
    const row = el("tr", {
      "data-sku": p.sku,
      class: (soldOut ? "sold-out" : atReorder ? "at-reorder" : "") + (p.sku === state.selected ? " selected" : ""),
    },
      el("td", { text: p.sku }),
      el("td", { text: p.name }),
      el("td", { class: "stock num" }, bar, el("span", { class: "units", text: String(p.stock) })),
      el("td", { class: "num", text: String(p.reorder_point) }),
      el("td", { text: p.policy }),
      el("td", { class: "num", text: p.demand_per_minute == null ? "—" : p.demand_per_minute.toFixed(1) }),
      el("td", { class: "num", text: duration(p.cover_seconds) }),
      el("td", {}, el("span", { class: "badge " + (p.ad_active ? "running" : "paused"), text: p.ad_active ? "running" : "paused" })),
      el("td", {}, sparkline(p.sku, p.stock)));
    row.addEventListener("click", () => { state.selected = p.sku; renderProducts(); renderCharts(); });
    return row;
  });
  $("products").querySelector("tbody").replaceChildren(...rows);
  $("truncated").hidden = !state.snapshot.products_truncated;
  for (const th of $("products").querySelectorAll("th[data-sort]")) {
    th.classList.toggle("sorted-asc", th.dataset.sort === state.sort.key && state.sort.dir > 0);
    th.classList.toggle("sorted-desc", th.dataset.sort === state.sort.key && state.sort.dir < 0);
  }
}

// The product's samples, ending with its stock now.
function series(sku, stockNow, reorderPointNow) {
  const points = ((state.history && state.history.stock[sku]) || []).map((p) => ({ t: p[0], stock: p[1], rop: p[2] }));
  points.push({ t: Date.now(), stock: stockNow, rop: reorderPointNow });
  return points;
}

// Where the charts' time axis starts: the first sample, but at least 5 minutes and at most
// an hour back.
function windowStart() {
  const now = Date.now();
  let first = now;
  if (state.history) {
    for (const points of Object.values(state.history.stock)) if (points.length) first = Math.min(first, points[0][0]);
    for (const m of state.history.sales_per_minute) first = Math.min(first, m[0]);
  }
  return Math.max(now - 3600000, Math.min(first, now - 300000));
}

function polyline(points, key, x, y, cls) {
  const d = points.map((p) => x(p.t).toFixed(1) + "," + y(p[key]).toFixed(1)).join(" ");
  return svg("polyline", { points: d, class: cls });
}

function sparkline(sku, stockNow) {
  const product = state.snapshot.products.find((p) => p.sku === sku);
  const points = series(sku, stockNow, product ? product.reorder_point : 0);
  const node = svg("svg", { class: "spark", viewBox: "0 0 100 20", preserveAspectRatio: "none" });
  const t0 = windowStart(), span = Date.now() - t0;
  const max = Math.max(1, ...points.map((p) => Math.max(p.stock, p.rop)));
  const x = (t) => (100 * (t - t0)) / span;
  const y = (v) => 19 - (18 * Math.max(0, v)) / max;
  node.append(polyline(points, "rop", x, y, "rop-line"), polyline(points, "stock", x, y, "stock-line"));
  return node;
}

function renderCharts() {
  if (!state.snapshot) return;
  const products = state.snapshot.products;
  if (!products.length) return;
  let product = products.find((p) => p.sku === state.selected);
  if (!product) {
    // The product most in need: sold out first, then closest to its reorder point.
    product = products.slice().sort((a, b) => (a.stock - a.reorder_point) - (b.stock - b.reorder_point))[0];
  }
  $("chart-sku").textContent = product.sku + " (at most " + Math.max(1, ...series(product.sku, product.stock, product.reorder_point).map((p) => Math.max(p.stock, p.rop))) + ")";
  const chart = $("stock-chart");
  const points = series(product.sku, product.stock, product.reorder_point);
  const t0 = windowStart(), span = Date.now() - t0;
  const max = Math.max(1, ...points.map((p) => Math.max(p.stock, p.rop)));
  const x = (t) => (600 * (t - t0)) / span;
  const y = (v) => 155 - (145 * Math.max(0, v)) / max;
  chart.replaceChildren(polyline(points, "rop", x, y, "rop-line"), polyline(points, "stock", x, y, "stock-line"));
  chart.setAttribute("aria-label", product.sku + ": stock over the last hour, at most " + max);

  const sales = $("sales-chart");
  const minutes = (state.history && state.history.sales_per_minute) || [];
  const peak = Math.max(1, ...minutes.map((m) => m[1]));
  const barWidth = Math.max(1, (600 * 60000) / span - 1);
  sales.replaceChildren(...minutes.filter(([t]) => t + 60000 > t0).map(([t, units]) => {
    const h = (150 * units) / peak;
    return svg("rect", { class: "bar-rect", x: Math.max(0, x(t)).toFixed(1), y: (155 - h).toFixed(1), width: barWidth.toFixed(1), height: h.toFixed(1) });
  }));
  sales.setAttribute("aria-label", "units sold per minute, at most " + peak);
  $("sales-peak").textContent = minutes.length ? "(peak " + peak + " a minute)" : "(no sales yet)";
}

for (const th of document.querySelectorAll("#products th[data-sort]")) {
  th.addEventListener("click", () => {
    const key = th.dataset.sort;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
    renderProducts();
  });
}

$("filter").addEventListener("input", (e) => { state.filter = e.target.value.trim(); renderProducts(); });

// ---- actions --------------------------------------------------------------------------------

let pending = null;

function confirmAction(kind, r) {
  pending = { kind, sku: r.sku, order: r.order_id };
  $("confirm-title").textContent = (kind === "complete" ? "Complete " : "Cancel ") + r.sku + "?";
  $("confirm-text").textContent = kind === "complete"
    ? "Tell the replenishment that factory order " + r.order_id + " was delivered; the units are added to stock once."
    : "Cancel the replenishment of " + r.sku + " (factory order " + r.order_id + "). No stock is added.";
  $("confirm-quantity-label").hidden = kind !== "complete";
  $("confirm-reason-label").hidden = kind !== "cancel";
  $("confirm-quantity").value = "";
  $("confirm-reason").value = "";
  $("confirm").showModal();
}

$("confirm-back").addEventListener("click", () => { pending = null; $("confirm").close(); });

$("confirm-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("confirm").close();
  const action = pending;
  pending = null;
  if (!action) return;
  const body = action.kind === "complete"
    ? { quantity: Number($("confirm-quantity").value || 0), factory_order_id: action.order }
    : { reason: $("confirm-reason").value };
  try {
    const done = await api("/api/console/replenishments/" + encodeURIComponent(action.sku) + "/" + action.kind, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    toast(action.sku + ": " + done.state, false);
  } catch (err) {
    toast(action.sku + ": refused (" + err.status + "): " + err.message, true);
  }
});

start();
