// The UI in a real browser (Debian's chromium, driven by playwright-core), step by step
// with the Rust test that runs the mesh (gateway/tests/ui_browser.rs): this script
// prints `ok <step>` when a step holds and waits for a line on stdin before the next
// one, so that the test can change the mesh in between. Every wait is bounded.
//
//   ISTHMUS_UI_URL     https://127.0.0.1:PORT (a federation node's REST listener)
//   ISTHMUS_UI_TOKEN   a token the node accepts
//   ISTHMUS_UI_SHOTS   where to put screenshots (optional)
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const url = process.env.ISTHMUS_UI_URL;
const token = process.env.ISTHMUS_UI_TOKEN;
const shots = process.env.ISTHMUS_UI_SHOTS;
const BOUND = 60_000;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await lines.next()).value;
const ok = (step) => console.log(`ok ${step}`);

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  // The dev root is not the browser's: the test trusts it by not checking.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const csp = [];
  page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) csp.push(m.text()); });

  // Not signed in: the page sends the browser to the sign-in page.
  await page.goto(`${url}/ui/`);
  await page.waitForURL(`${url}/ui/signin`, { timeout: BOUND });
  // A wrong token is refused.
  await page.fill('[data-field="token"]', "isthmus-admin-v1.wrong");
  await page.click('[data-action="signin"]');
  await page.waitForSelector('[data-error="token-refused"]', { timeout: BOUND });
  ok("wrong-token-refused");

  await page.goto(`${url}/ui/signin`);
  await page.fill('[data-field="token"]', token);
  await page.click('[data-action="signin"]');
  await page.waitForURL(`${url}/ui/`, { timeout: BOUND });
  const edge = '[data-edge="east→west/echo.demo"]';
  await page.waitForSelector(`${edge}[data-security="mutual_tls"]`, { timeout: BOUND });
  await page.waitForSelector('[data-gateway="west/ew"][data-state="up"]', { timeout: BOUND });
  await page.waitForSelector('[data-cluster="east"]', { timeout: BOUND });
  if (shots) await page.screenshot({ path: `${shots}/topology.png`, fullPage: true });
  ok("signed-in-and-mutual-tls");

  // The test stops west's gateway; the page shows it lost without a reload.
  await next();
  const before = await page.evaluate(() => performance.timeOrigin);
  await page.waitForSelector('[data-gateway="west/ew"][data-state="lost"]', { timeout: BOUND });
  // West's edge is still shown, marked as old news; east is still up.
  await page.waitForSelector(`${edge}[data-fresh="stale"]`, { timeout: BOUND });
  await page.waitForSelector('[data-gateway="east/ew"][data-state="up"]', { timeout: BOUND });
  const after = await page.evaluate(() => performance.timeOrigin);
  if (before !== after) throw new Error("the page reloaded");
  if (shots) await page.screenshot({ path: `${shots}/west-lost.png`, fullPage: true });
  ok("west-lost-live");

  // Signing out ends the session: the API refuses the page's reads again.
  await page.click('[data-action="signout"]');
  await page.waitForURL(`${url}/ui/signin`, { timeout: BOUND });
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
