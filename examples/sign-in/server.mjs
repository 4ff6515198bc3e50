// An integrator's backend for <otpd-verify> (docs/sign-in-component.md), in plain Node (no
// packages): it serves a sign-in page that loads the component from otpd, and two routes
// the component calls — POST /api/start and POST /api/check — which pass the request on
// to otpd with the API key, kept here on the server, never in the page.
//
//   OTPD_URL=http://127.0.0.1:8080 OTPD_API_KEY=otpd_live_… node examples/sign-in/server.mjs
//
// PORT (default 3000; 0 picks a free one) and OTPD_SERVICE (default "default") are optional;
// OTPD_PASSKEYS=1 also offers "Use a passkey" (a username-less sign-in: the service needs
// its `passkeys` relying party, docs/passkeys.md) through POST /api/passkey/start and
// POST /api/passkey/finish.
// It prints "listening on http://127.0.0.1:PORT" when ready. A real backend would also
// rate-limit these routes per session, and on success sign the user in (set its session
// cookie) instead of only answering.
import http from "node:http";

const OTPD_URL = (process.env.OTPD_URL || "http://127.0.0.1:8080").replace(/\/$/, "");
const API_KEY = process.env.OTPD_API_KEY;
const SERVICE = process.env.OTPD_SERVICE || "default";
const PASSKEYS = process.env.OTPD_PASSKEYS === "1";
const passkeyAttributes = PASSKEYS
  ? ` passkey-start-url="/api/passkey/start" passkey-finish-url="/api/passkey/finish"`
  : "";
if (!API_KEY) {
  console.error("OTPD_API_KEY is required (an otpd API key of role verify)");
  process.exit(2);
}

const page = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Sign in</title>
  <style>
    body { font-family: system-ui, sans-serif; margin: 0; padding: 1.5rem; }
    main { max-width: 26rem; margin: 0 auto; }
    otpd-verify { --otpd-accent: #0b57d0; }
  </style>
  <script src="${OTPD_URL}/sdk/otpd-verify.js"></script>
</head>
<body>
  <main>
    <h1>Sign in</h1>
    <otpd-verify start-url="/api/start" check-url="/api/check" country="GB"${passkeyAttributes}></otpd-verify>
    <p id="result" role="status"></p>
  </main>
  <script>
    const box = document.querySelector("otpd-verify");
    box.addEventListener("verified", (e) => {
      document.getElementById("result").textContent = "Signed in as " + (e.detail.to || e.detail.entity);
    });
  </script>
</body>
</html>`;

/** Reads a JSON body (at most `limit` bytes). */
async function json(req, limit = 4096) {
  let text = "";
  for await (const chunk of req) {
    text += chunk;
    if (text.length > limit) throw new Error("body too large");
  }
  return JSON.parse(text || "{}");
}

/** Calls otpd and answers with its status, body and Retry-After. */
async function relay(res, path, body) {
  const reply = await fetch(OTPD_URL + path, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const headers = { "content-type": reply.headers.get("content-type") || "application/json" };
  const retry = reply.headers.get("retry-after");
  if (retry) headers["retry-after"] = retry;
  res.writeHead(reply.status, headers).end(await reply.text());
}

const server = http.createServer(async (req, res) => {
  try {
    if (req.method === "GET" && (req.url === "/" || req.url === "/index.html")) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(page);
    } else if (req.method === "POST" && req.url === "/api/start") {
      const { to, channel, locale } = await json(req);
      await relay(res, "/v1/verifications", { to, channel, locale, service: SERVICE });
    } else if (req.method === "POST" && req.url === "/api/check") {
      const { id, code } = await json(req);
      await relay(res, "/v1/verifications/check", { id, code });
    } else if (PASSKEYS && req.method === "POST" && req.url === "/api/passkey/start") {
      await relay(res, "/v1/passkeys/authentications", { service: SERVICE });
    } else if (PASSKEYS && req.method === "POST" && req.url === "/api/passkey/finish") {
      const { id, credential } = await json(req, 64 * 1024);
      if (!/^pka_[0-9a-f]{32}$/.test(String(id))) throw new Error("not a ceremony id");
      await relay(res, `/v1/passkeys/authentications/${id}/verify`, { credential });
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    }
  } catch {
    res.writeHead(400, { "content-type": "application/problem+json" })
      .end(JSON.stringify({ code: "invalid_request", status: 400, title: "Bad request" }));
  }
});

server.listen(Number(process.env.PORT ?? 3000), "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
