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

// A bar for a share: green when high (delivery, conversion) or, with `lowIsGood`, when
// low (spend against a budget: green well below it, red at it).
function bar(ratio, lowIsGood) {
  const b = document.createElement("div");
  const pct = Math.max(0, Math.min(1, ratio || 0));
  const level = lowIsGood ? (pct >= 1 ? " bad" : pct >= 0.8 ? " warn" : "") : (pct < 0.5 ? " bad" : pct < 0.9 ? " warn" : "");
  b.className = "bar" + level;
  b.title = (pct * 100).toFixed(1) + "%";
  const i = document.createElement("i");
  i.style.width = (pct * 100).toFixed(1) + "%";
  b.appendChild(i);
  const wrap = document.createElement("span");
  wrap.appendChild(b);
  wrap.appendChild(document.createTextNode(" " + ((ratio || 0) * 100).toFixed(0) + "%"));
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
const money = (v, currency) => cell(v == null ? "–" : currency + " " + v.toFixed(2), "num");
const percent = (r) => r == null ? "–" : (r * 100).toFixed(0) + "%";

// "last 15 minutes", "last hour", "last 24 hours", "last 7 days".
function windowName(minutes) {
  if (minutes === 60) return "last hour";
  if (minutes === 10080) return "last 7 days";
  if (minutes % 60 === 0) return "last " + minutes / 60 + " hours";
  return "last " + minutes + " minutes";
}

// "1 min", "24 min", "2 h": the width of a chart bucket.
function bucketName(seconds) {
  if (seconds % 3600 === 0) return seconds / 3600 + " h";
  if (seconds % 60 === 0) return seconds / 60 + " min";
  return seconds + " s";
}
const time = (iso) => new Date(iso).toLocaleString();

// Whole numbers only on the count axis (no "0.5 sends").
const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

function drawChart(points, bucket) {
  const el = $("chart");
  const xs = points.map((p) => p.t);
  const column = (k) => (points.length ? points.map((p) => p[k]) : [0]);
  const data = [xs.length ? xs : [Date.now() / 1000], column("n"), column("approved"), column("blocked"), column("failed")];
  const width = Math.max(240, el.clientWidth);
  const per = " per " + bucketName(bucket);
  if (chart) {
    chart.setSize({ width, height: 220 });
    chart.setData(data);
    return;
  }
  chart = new uPlot({
    width, height: 220,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    series: [
      {},
      { label: "sends" + per, stroke: "#0969da", fill: "rgba(9,105,218,.12)", width: 2, paths: uPlot.paths.bars({ size: [0.8, 40] }) },
      { label: "approved", stroke: "#1a7f37", width: 2 },
      { label: "blocked", stroke: "#bc4c00", width: 2, dash: [6, 3] },
      { label: "failed", stroke: "#cf222e", width: 2 },
    ],
    axes: [{}, { size: 44, incrs: WHOLE, values: (u, ticks) => ticks.map((v) => v.toLocaleString()) }],
  }, data, el);
}

function render(s) {
  $("window-label").textContent = windowName(s.window_minutes) + ", updated " + new Date(s.generated_at).toLocaleTimeString();
  for (const k of ["sends", "started", "approved", "delivered", "failed", "blocked"]) $("t-" + k).textContent = s.totals[k];
  $("t-conversion").textContent = percent(s.totals.conversion);
  $("t-conversion").parentNode.title = s.totals.pending + " still pending, not counted as lost";
  drawChart(s.sends, s.bucket_seconds);
  fill("providers", s.providers.map((p) => [cell(p.provider), cell(p.circuit ? tag(p.circuit) : "–"), num(p.sent), num(p.delivered), num(p.failed), num(p.skipped), num(p.receipt_timeouts), cell(p.delivery_rate == null ? "–" : bar(p.delivery_rate)), num(p.mean_latency_ms), num(p.max_latency_ms)]), 10);
  fill("countries", s.countries.map((c) => [cell(c.country), num(c.started), num(c.approved), num(c.pending), cell(c.conversion == null ? "–" : bar(c.conversion))]), 5);
  fill("blocked", s.blocked.map((b) => [cell(b.reason), num(b.count)]), 2, "no sends or checks refused");
  fill("spend", s.spend.map((x) => [cell(x.service), cell(x.period), money(x.spent, x.currency), money(x.limit, x.currency), cell(x.percent == null ? "no limit" : bar(x.percent / 100, true))]), 5, "no priced sends in the current periods");
  fill("circuits", Object.entries(s.circuits).map(([name, st]) => [cell(name), cell(tag(st))]), 2, "no providers with circuits");
  fill("factors", s.factors.map((f) => [cell(f.factor), cell(f.outcome), cell((f.capped ? "≥ " : "") + f.count.toLocaleString(), "num")]), 3);
  fill("alerts", s.alerts.map((a) => [cell(time(a.created_at)), cell(a.text, "wrap")]), 2, "no alerts");
  if (!searching) fill("recent", s.recent.map(verificationRow), 7);
}

// A verification's row; its id opens its timeline.
function verificationRow(v) {
  const open = document.createElement("button");
  open.type = "button";
  open.className = "link mono";
  open.textContent = v.id;
  open.title = "show what happened to it";
  open.addEventListener("click", () => openTimeline(v.id));
  return [cell(time(v.created_at)), cell(v.service), cell(v.to, "mono"), cell(v.country), cell(v.channel), cell(tag(v.status)), cell(open)];
}

let searching = false;

async function find(q) {
  $("find-err").classList.add("hidden");
  if (!q) {
    searching = false;
    $("recent-title").textContent = "Recent verifications";
    poll();
    return;
  }
  const r = await fetch("/v1/stats/verifications?q=" + encodeURIComponent(q), { credentials: "same-origin" });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail; } catch (_) { /* not JSON */ }
    $("find-err").textContent = detail;
    $("find-err").classList.remove("hidden");
    return;
  }
  searching = true;
  $("recent-title").textContent = "Found";
  fill("recent", (await r.json()).map(verificationRow), 7, "no verification found");
}

async function openTimeline(id) {
  const r = await fetch("/v1/stats/verifications/" + encodeURIComponent(id), { credentials: "same-origin" });
  if (!r.ok) { status("timeline unavailable: " + r.statusText, true); return; }
  const t = await r.json();
  const v = t.verification;
  $("tl-title").textContent = v.id;
  const head = $("tl-head");
  head.replaceChildren(document.createTextNode([v.to, v.country, v.service, v.channel].join(" · ") + " "), tag(v.status));
  $("tl-list").replaceChildren(...t.entries.map((e) => {
    const li = document.createElement("li");
    const when = document.createElement("time");
    when.dateTime = e.at;
    when.textContent = new Date(e.at).toLocaleTimeString();
    li.className = "k-" + e.kind.replace(/[^a-z_]/g, "-");
    li.append(when, document.createTextNode(" " + e.text));
    return li;
  }));
  $("timeline").classList.remove("hidden");
  $("timeline").scrollIntoView({ block: "nearest" });
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
$("find").addEventListener("submit", (ev) => { ev.preventDefault(); find($("q").value.trim()); });
$("tl-close").addEventListener("click", () => $("timeline").classList.add("hidden"));
window.addEventListener("resize", () => { if (chart) chart.setSize({ width: Math.max(240, $("chart").clientWidth), height: 200 }); });

(async () => {
  const r = await fetch("/dashboard/session", { credentials: "same-origin" });
  if (r.ok) signedIn(await r.json()); else signedOut();
})();
