// otpd operator dashboard: signs in with an admin key (exchanged for an HttpOnly session
// cookie; the key is not kept), then polls /v1/stats and draws it. No data leaves otpd.
"use strict";

const POLL_MS = 5000;
const $ = (id) => document.getElementById(id);
let csrf = null;
let timer = null;
let chart = null;

function show(signedIn) {
  $("signin").classList.toggle("hidden", signedIn);
  $("app").classList.toggle("hidden", !signedIn);
  $("signout").classList.toggle("hidden", !signedIn);
  $("window").classList.toggle("hidden", !signedIn);
}

function status(text, err) {
  $("status").textContent = text;
  $("status").classList.toggle("err", !!err);
}

function cell(text, cls) {
  const td = document.createElement("td");
  if (text instanceof Node) td.appendChild(text); else td.textContent = text == null ? "–" : String(text);
  if (cls) td.className = cls;
  return td;
}

function tag(text) {
  const s = document.createElement("span");
  s.className = "tag t-" + text;
  s.textContent = text;
  return s;
}

function bar(ratio) {
  const b = document.createElement("div");
  const pct = Math.max(0, Math.min(1, ratio || 0));
  b.className = "bar" + (pct < 0.5 ? " bad" : pct < 0.9 ? " warn" : "");
  b.title = (pct * 100).toFixed(1) + "%";
  const i = document.createElement("i");
  i.style.width = (pct * 100).toFixed(1) + "%";
  b.appendChild(i);
  const wrap = document.createElement("span");
  wrap.appendChild(b);
  wrap.appendChild(document.createTextNode(" " + (pct * 100).toFixed(0) + "%"));
  return wrap;
}

function fill(id, rows, columns, emptyText) {
  const body = $(id);
  body.replaceChildren();
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(emptyText || "nothing in this window", "empty");
    td.colSpan = columns;
    tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  for (const cells of rows) {
    const tr = document.createElement("tr");
    for (const c of cells) tr.appendChild(c);
    body.appendChild(tr);
  }
}

const num = (v) => cell(v == null ? "–" : (Math.round(v * 100) / 100).toLocaleString(), "num");
const time = (iso) => new Date(iso).toLocaleString();

function drawChart(points, bucket) {
  const el = $("chart");
  const xs = points.map((p) => p.t);
  const ys = points.map((p) => p.n);
  const data = [xs.length ? xs : [Date.now() / 1000], ys.length ? ys : [0]];
  const width = Math.max(240, el.clientWidth);
  if (chart) {
    chart.setSize({ width, height: 200 });
    chart.setData(data);
    return;
  }
  chart = new uPlot({
    width, height: 200,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    series: [{}, { label: "sends / " + bucket + " s", stroke: "#0969da", fill: "rgba(9,105,218,.12)", width: 2, paths: uPlot.paths.bars({ size: [0.8, 40] }) }],
    axes: [{}, { size: 40 }],
  }, data, el);
}

function render(s) {
  $("window-label").textContent = "last " + s.window_minutes + " min, updated " + new Date(s.generated_at).toLocaleTimeString();
  for (const k of ["sends", "started", "approved", "delivered", "failed", "blocked"]) $("t-" + k).textContent = s.totals[k];
  drawChart(s.sends, s.bucket_seconds);
  fill("providers", s.providers.map((p) => [cell(p.provider), cell(p.circuit ? tag(p.circuit) : "–"), num(p.attempted), num(p.delivered), cell(p.delivery_rate == null ? "–" : bar(p.delivery_rate)), num(p.mean_latency_ms), num(p.max_latency_ms)]), 7);
  fill("countries", s.countries.map((c) => [cell(c.country), num(c.started), num(c.approved), cell(bar(c.conversion))]), 4);
  fill("blocked", s.blocked.map((b) => [cell(b.reason), num(b.count)]), 2, "no sends or checks refused");
  fill("spend", s.spend.map((x) => [cell(x.service), cell(x.period), num(x.spent), num(x.limit), cell(x.percent == null ? "no limit" : bar(x.percent / 100))]), 5, "no priced sends in the current periods");
  fill("circuits", Object.entries(s.circuits).map(([name, st]) => [cell(name), cell(tag(st))]), 2, "no providers with circuits");
  fill("alerts", s.alerts.map((a) => [cell(time(a.created_at)), cell(a.type), cell(JSON.stringify(a.data), "mono")]), 3, "no alerts");
  fill("recent", s.recent.map((v) => [cell(time(v.created_at)), cell(v.service), cell(v.to, "mono"), cell(v.channel), cell(tag(v.status)), cell(v.id, "mono")]), 6);
}

async function poll() {
  clearTimeout(timer);
  try {
    const r = await fetch("/v1/stats?window_minutes=" + $("window").value, { credentials: "same-origin" });
    if (r.status === 401) { signedOut("Your session ended; sign in again."); return; }
    if (!r.ok) throw new Error((await r.json()).detail || r.statusText);
    render(await r.json());
    status("live");
  } catch (e) {
    status("update failed: " + e.message, true);
  }
  timer = setTimeout(poll, POLL_MS);
}

function signedOut(message) {
  clearTimeout(timer);
  csrf = null;
  show(false);
  const err = $("signin-err");
  err.textContent = message || "";
  err.classList.toggle("hidden", !message);
  status("");
  $("key").focus();
}

function signedIn(session) {
  csrf = session.csrf_token;
  show(true);
  status("signed in as " + session.key_id);
  poll();
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = $("key").value.trim();
  $("key").value = "";
  const r = await fetch("/dashboard/session", {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ key }),
  });
  if (r.ok) { $("signin-err").classList.add("hidden"); signedIn(await r.json()); return; }
  let detail = r.statusText;
  try { detail = (await r.json()).detail; } catch (_) { /* not JSON */ }
  signedOut("Sign-in refused: " + detail);
});

$("signout").addEventListener("click", async () => {
  await fetch("/dashboard/session", { method: "DELETE", credentials: "same-origin", headers: { "x-csrf-token": csrf || "" } });
  signedOut("Signed out.");
});

$("window").addEventListener("change", poll);
window.addEventListener("resize", () => { if (chart) chart.setSize({ width: Math.max(240, $("chart").clientWidth), height: 200 }); });

(async () => {
  const r = await fetch("/dashboard/session", { credentials: "same-origin" });
  if (r.ok) signedIn(await r.json()); else signedOut();
})();
