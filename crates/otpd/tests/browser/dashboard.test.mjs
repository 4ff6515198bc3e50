// Drives the otpd dashboard in Debian's chromium (never a downloaded browser) with
// playwright-core. Started by crates/otpd/tests/e2e_dashboard.rs, which runs otpd, makes
// a scripted run and passes what the page must show:
//   OTPD_URL, OTPD_ADMIN_KEY, OTPD_EXPECT (JSON: totals and a masked/full number),
//   OTPD_SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium).
// Prints one line per check; exits non-zero on the first failure.
import { join } from "node:path";
import { check, withBrowser } from "./browser.mjs";

const url = process.env.OTPD_URL;
const adminKey = process.env.OTPD_ADMIN_KEY;
const expect = JSON.parse(process.env.OTPD_EXPECT);
const shots = process.env.OTPD_SCREENSHOT_DIR;

// Nothing but otpd itself may be fetched (the chart library is bundled).
await withBrowser(url, async ({ context, page, errors, foreign }) => {
  await page.goto(url + "/dashboard");
  await page.waitForSelector("#signin:not(.hidden)");
  check(true, "the sign-in form is shown");

  await page.fill("#key", "otpd_live_" + "x".repeat(32));
  await page.click("#signin button[type=submit]");
  await page.waitForSelector("#signin-err:not(.hidden)");
  const refused = await page.textContent("#signin-err");
  check(/refused/i.test(refused), "a wrong key is refused: " + refused.trim());
  check(await page.isHidden("#app"), "no data is shown after a refused sign-in");

  await page.fill("#key", adminKey);
  await page.click("#signin button[type=submit]");
  await page.waitForSelector("#app:not(.hidden)");
  await page.waitForFunction((n) => document.getElementById("t-sends").textContent === String(n), expect.sends, { timeout: 15000 });
  for (const k of ["sends", "started", "approved", "blocked"]) {
    const shown = (await page.textContent("#t-" + k)).trim();
    check(shown === String(expect[k]), `${k}: shows ${shown}, the run made ${expect[k]}`);
  }
  await page.waitForSelector("#chart canvas");
  check(true, "the send-volume chart is drawn (uPlot canvas)");
  const series = await page.evaluate(() => chart.series.slice(1).map((s) => s.label));
  check(series.length === 4 && /^sends per /.test(series[0]) && series.slice(1).join() === "approved,blocked,failed",
    "sends, approvals, blocks and failures are separate series: " + series.join(", "));
  const ticks = await page.evaluate(() => chart.axes[1]._splits);
  check(ticks.length > 1 && ticks.every((v) => Number.isInteger(v)), "the count axis has whole numbers only: " + ticks.join(", "));
  const conversion = (await page.textContent("#t-conversion")).trim();
  check(conversion === expect.conversion, `overall conversion ${conversion}, pending codes not counted as lost (${expect.conversion})`);
  check(/^last hour, updated /.test(await page.textContent("#window-label")), "the window reads \"last hour\"");
  await page.selectOption("#window", "1440");
  await page.waitForFunction(() => document.getElementById("window-label").textContent.startsWith("last 24 hours"));
  check(true, "the 1440-minute window reads \"last 24 hours\"");

  // Spend: green well below the budget, red at it; the currency shown.
  const spend = await page.$$eval("#spend tr", (rows) => rows.map((r) => ({
    text: r.textContent, bar: (r.querySelector(".bar") || {}).className })));
  const roomy = spend.find((r) => r.text.startsWith("roomy"));
  const tight = spend.find((r) => r.text.startsWith("tight"));
  check(roomy && roomy.bar === "bar" && roomy.text.includes("EUR 0.05") && roomy.text.includes("EUR 1.00"),
    "5% of a budget is a green bar, amounts in EUR: " + JSON.stringify(roomy));
  check(tight && tight.bar === "bar bad", "a budget spent to its limit is a red bar: " + JSON.stringify(tight));
  const alerts = await page.textContent("#alerts");
  check(alerts.includes(expect.budget_alert), "the budget alert reads as a sentence: " + alerts.trim());
  check(!alerts.includes("{") && !alerts.includes("\""), "no JSON in the alerts");
  const recent = await page.textContent("#recent");
  check(recent.includes(expect.masked), "recent verifications show the masked number " + expect.masked);
  const html = await page.content();
  check(!html.includes(expect.full), "the page never holds the full number");
  check(!html.includes(adminKey), "the page never holds the admin key");
  const stored = await page.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }));
  check(!stored.includes(adminKey) && stored === "{}{}", "nothing in sessionStorage or localStorage");
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name.endsWith("otpd_session"));
  check(session && session.httpOnly && session.sameSite === "Strict", "the session cookie is HttpOnly and SameSite=Strict");
  check(!(await page.evaluate(() => document.cookie)).includes("otpd_session"), "scripts cannot read the session cookie");
  // Find a verification by its number (typed in any common form), open its timeline.
  await page.fill("#q", expect.search);
  await page.click("#find button[type=submit]");
  await page.waitForFunction(() => document.getElementById("recent-title").textContent === "Found");
  const foundRows = await page.$$eval("#recent tr", (rows) => rows.map((r) => r.textContent));
  check(foundRows.length === 1 && foundRows[0].includes(expect.search_masked) && foundRows[0].includes("US"),
    "the search by number finds its verification, masked, with its country: " + foundRows.join(" | "));
  await page.click("#recent button.link");
  await page.waitForSelector("#timeline:not(.hidden) #tl-list li");
  const steps = await page.$$eval("#tl-list li", (items) => items.map((li) => li.textContent));
  const order = expect.timeline.map((t) => steps.findIndex((s) => s.includes(t)));
  check(order.every((i, n) => i >= 0 && (n === 0 || i > order[n - 1])),
    "the timeline tells what happened, in order: " + steps.join(" → "));
  check((await page.textContent("#tl-head")).includes(expect.search_masked + " · US"), "the timeline names the masked number and its country");
  await page.screenshot({ path: join(shots, "timeline.png"), fullPage: true });
  await page.fill("#q", "not a number");
  await page.click("#find button[type=submit]");
  await page.waitForSelector("#find-err:not(.hidden)");
  check(/international form/.test(await page.textContent("#find-err")), "a search that is no number says what it takes");
  await page.click("#tl-close");
  await page.fill("#q", "");
  await page.click("#find button[type=submit]");
  await page.waitForFunction(() => document.getElementById("recent-title").textContent === "Recent verifications");

  await page.screenshot({ path: join(shots, "dashboard.png"), fullPage: true });
  console.log("screenshot " + join(shots, "dashboard.png"));

  await page.setViewportSize({ width: 390, height: 844 });
  // The chart follows the width in its resize handler. A page's rendering update runs the
  // resize steps (the event) before the animation frame callbacks, so two frames after the
  // change the handler has run.
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, "readable on a phone: no sideways scrolling at 390 px (overflow " + overflow + " px)");
  const cut = await page.evaluate(() => [...document.querySelectorAll(".stat, #chart canvas, .panel h2, header.top > *:not(.hidden)")]
    .filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && (r.left < -1 || r.right > window.innerWidth + 1); })
    .map((e) => e.id || e.className || e.tagName));
  check(cut.length === 0, "on a 390 px phone no tile, chart or heading is cut off: " + cut.join(", "));
  await page.screenshot({ path: join(shots, "dashboard-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 1000 });

  await page.click("#signout");
  await page.waitForSelector("#signin:not(.hidden)");
  const after = await page.evaluate(async () => (await fetch("/v1/stats")).status);
  check(after === 401, "after sign-out the session no longer reads stats (" + after + ")");
  check(errors.length === 0, "no script errors: " + errors.join("; "));
  check(foreign.length === 0, "no request left otpd: " + foreign.join(", "));
});
