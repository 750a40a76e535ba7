// The UI in a real browser (Debian's chromium, driven by playwright-core), step by step
// with the Rust test that runs the mesh (gateway/tests/ui_browser.rs): this script
// prints `ok <step>` when a step holds and waits for a line on stdin before each step
// that needs the test to change the mesh first. Every wait is bounded.
//
//   ISTHMUS_UI_URL           https://127.0.0.1:PORT (a federation node's REST listener)
//   ISTHMUS_UI_TOKEN         a platform-admin token the node accepts
//   ISTHMUS_UI_READER_TOKEN  a reader token
//   ISTHMUS_UI_SHOTS         where to put screenshots (optional)
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const url = process.env.ISTHMUS_UI_URL;
const token = process.env.ISTHMUS_UI_TOKEN;
const readerToken = process.env.ISTHMUS_UI_READER_TOKEN;
const shots = process.env.ISTHMUS_UI_SHOTS;
// How long a change in the mesh may take to show: a report (every 2 s), an evaluation
// (every second here), the page's next read (every 3 s or on an event), with room for
// a loaded machine.
const SHOWN = 30_000;
// A gateway is lost after 20 s of silence.
const LOST = 60_000;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await lines.next()).value;
const ok = (step) => console.log(`ok ${step}`);
const shot = async (page, name) => { if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true }); };

async function signIn(page, secret) {
  await page.goto(`${url}/ui/signin`);
  await page.fill('[data-field="token"]', secret);
  await page.click('[data-action="signin"]');
  await page.waitForURL(`${url}/ui/`, { timeout: SHOWN });
}

async function show(page, name) {
  await page.click(`[data-page-link="${name}"]`);
  await page.waitForSelector(`[data-page="${name}"]:not([hidden])`, { timeout: SHOWN });
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  // The dev root is not the browser's: the test trusts it by not checking.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const csp = [];
  page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) csp.push(m.text()); });

  // Not signed in: the page sends the browser to the sign-in page.
  await page.goto(`${url}/ui/`);
  await page.waitForURL(`${url}/ui/signin`, { timeout: SHOWN });
  // A wrong token is refused.
  await page.fill('[data-field="token"]', "isthmus-admin-v1.wrong");
  await page.click('[data-action="signin"]');
  await page.waitForSelector('[data-error="token-refused"]', { timeout: SHOWN });
  ok("wrong-token-refused");

  // A reader sees the mesh and reaches no write: the page offers none but sign-out, the
  // session cookie writes nothing, and the reader's own token is refused on a write.
  {
    const readerContext = await browser.newContext({ ignoreHTTPSErrors: true });
    const reader = await readerContext.newPage();
    await signIn(reader, readerToken);
    await reader.waitForSelector('[data-gateway="west/ew"][data-state="up"]', { timeout: SHOWN });
    const actions = await reader.$$eval("[data-action], form, button", (els) =>
      els.map((e) => e.getAttribute("data-action") || e.getAttribute("action") || e.tagName));
    const writes = actions.filter((a) => a !== "signout" && a !== "/ui/signout");
    if (writes.length) throw new Error(`a reader is offered writes: ${writes}`);
    const statuses = await reader.evaluate(async (secret) => {
      const put = (headers) => fetch("/v1/policies/reader-was-here", {
        method: "PUT", headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ body: '{"rules":[]}' }),
      }).then((r) => r.status);
      return [await put({}), await put({ authorization: `Bearer ${secret}` })];
    }, readerToken);
    if (statuses[0] !== 401) throw new Error(`a write with the session cookie answered ${statuses[0]}`);
    if (statuses[1] !== 403) throw new Error(`a reader's write answered ${statuses[1]}`);
    await readerContext.close();
  }
  ok("reader-reads-only");

  await signIn(page, token);
  // The overview: both clusters up, their certificates, one root, nothing firing.
  await page.waitForSelector('[data-page="overview"]:not([hidden])', { timeout: SHOWN });
  for (const g of ["west/ew", "east/ew"]) {
    await page.waitForSelector(`[data-gateway="${g}"][data-state="up"]`, { timeout: SHOWN });
    await page.waitForSelector(`[data-gateway="${g}"] [data-expiry="intermediate"]`, { timeout: SHOWN });
    await page.waitForSelector(`[data-gateway="${g}"] [data-roots="steady"]`, { timeout: SHOWN });
  }
  await page.waitForSelector('#summary [data-open-alerts="0"]', { timeout: SHOWN });
  await shot(page, "overview");
  ok("overview");

  // The topology: clusters as boxes, the edge east → west/echo.demo under a closed lock.
  await show(page, "topology");
  const edge = '[data-edge="east→west/echo.demo"]';
  await page.waitForSelector(`${edge}[data-security="mutual_tls"] [data-lock="closed"]`, { timeout: SHOWN });
  await page.waitForSelector('[data-cluster="west"] [data-service="west/echo.demo"] [data-lock="closed"]', { timeout: SHOWN });
  await page.waitForSelector('[data-cluster="east"]', { timeout: SHOWN });
  await page.click(edge);
  await page.waitForSelector('#edge-detail[data-selected="east→west/echo.demo"] [data-decision="allow-demo/every-cluster"][data-decision-kind="allow"]', { timeout: SHOWN });
  ok("topology-mutual-tls");

  // (a) A gateway with a certificate from a foreign root, claiming to be west's, dials
  // east: the west → east hop shows a broken lock and an alert fires, both live.
  await next();
  const before = await page.evaluate(() => performance.timeOrigin);
  const started = Date.now();
  await page.waitForSelector('[data-edge="west→east"][data-security="failing"] [data-lock="broken"]', { timeout: SHOWN });
  await show(page, "alerts");
  const handshake = '#firing [data-alert="IsthmusHandshakeFailures"][data-alert-state="firing"]';
  await page.waitForSelector(`${handshake}[data-alert-labels*="reason=unknown_root"]`, { timeout: SHOWN });
  console.error(`broken lock and alert shown ${Date.now() - started} ms after the impostor dialled`);
  // The alert links to its edge, whose detail names the reason.
  await page.click(`${handshake} [data-edge-link="west→east"]`);
  await page.waitForSelector('#edge-detail[data-selected="west→east"] [data-failure="unknown_root"][data-side="accept"]', { timeout: SHOWN });
  await shot(page, "topology");
  ok("impostor-broken-lock-and-alert");

  // (c) A shadow deny rule is put and east calls echo: the policy page counts the
  // connections it would have denied (they went through: a connection a shadow deny
  // matches is counted as its finding, not again as the allow's), and the allow of the
  // first call, within the window.
  await next();
  await show(page, "policy");
  await page.waitForFunction(() => {
    const n = (sel) => Number(document.querySelector(sel)?.textContent || 0);
    return n('[data-rule="audit/audit-echo"] [data-count="shadow_deny"]') >= 3
      && n('[data-rule="allow-demo/every-cluster"] [data-count="allow"]') >= 1;
  }, null, { timeout: SHOWN });
  await page.waitForSelector('[data-rule="audit/audit-echo"] [data-edge-link="east→west/echo.demo"]', { timeout: SHOWN });
  await shot(page, "policy");
  ok("policy-would-deny");

  // (b) West's gateway stops: west shows lost, the page says its data is stale and
  // keeps showing the rest, and IsthmusGatewayLost fires.
  await next();
  await show(page, "overview");
  await page.waitForSelector('[data-gateway="west/ew"][data-state="lost"]', { timeout: LOST });
  await page.waitForSelector('[data-stale-cluster="west"]', { timeout: SHOWN });
  await page.waitForSelector('[data-gateway="east/ew"][data-state="up"]', { timeout: SHOWN });
  await page.waitForSelector('#overview-alerts [data-alert="IsthmusGatewayLost"][data-alert-labels*="cluster=west"]', { timeout: SHOWN });
  await shot(page, "west-lost");
  await show(page, "topology");
  await page.waitForSelector(`${edge}[data-fresh="stale"]`, { timeout: SHOWN });
  ok("west-lost-alert-fires");

  // West comes back: the alert resolves, with when it fired and ended.
  await next();
  await show(page, "alerts");
  const lost = '[data-alert="IsthmusGatewayLost"][data-alert-labels*="cluster=west"]';
  await page.waitForSelector(`#resolved ${lost}[data-alert-state="resolved"]`, { timeout: LOST });
  await page.waitForSelector(`#firing ${lost}`, { state: "detached", timeout: SHOWN });
  const after = await page.evaluate(() => performance.timeOrigin);
  if (before !== after) throw new Error("the page reloaded");
  await shot(page, "alerts");
  ok("west-back-alert-resolves");

  // Signing out ends the session: the API refuses the page's reads again.
  await page.click('[data-action="signout"]');
  await page.waitForURL(`${url}/ui/signin`, { timeout: SHOWN });
  const status = await page.evaluate(async () => (await fetch("/v1/mesh")).status);
  if (status !== 401) throw new Error(`after sign-out /v1/mesh answered ${status}`);
  if (csp.length) throw new Error(`CSP violations: ${csp.join("; ")}`);
  ok("signed-out");
} catch (e) {
  // What the page showed, for the reader of a failed run.
  for (const page of browser.contexts().flatMap((c) => c.pages())) {
    console.error(`page ${page.url()}:`, await page.evaluate(() => document.body.innerText).catch(() => "?"));
  }
  throw e;
} finally {
  await browser.close();
}
