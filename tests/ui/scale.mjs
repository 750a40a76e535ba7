// The topology page with 50 clusters and 500 services (gateway/tests/ui_scale.rs feeds
// the federation): what keeps it readable. Every wait is bounded.
//
//   ISTHMUS_UI_URL     https://127.0.0.1:PORT
//   ISTHMUS_UI_TOKEN   a token the node accepts
import { chromium } from "playwright-core";

const url = process.env.ISTHMUS_UI_URL;
const token = process.env.ISTHMUS_UI_TOKEN;
const BOUND = 60_000;
const expect = (what, holds) => { if (!holds) throw new Error(what); };

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(`${url}/ui/signin`);
  await page.fill('[data-field="token"]', token);
  await page.click('[data-action="signin"]');
  await page.waitForURL(`${url}/ui/`, { timeout: BOUND });
  await page.click('[data-page-link="topology"]');
  // Every cluster has reported.
  await page.waitForFunction(() => document.querySelectorAll("[data-cluster]").length === 50
    && document.querySelectorAll('[data-gateway-box][data-state="up"]').length === 50, null, { timeout: BOUND });

  const boxes = await page.evaluate(() => ({
    folded: document.querySelectorAll("details[data-cluster]:not([open])").length,
    open: [...document.querySelectorAll("details[data-cluster][open]")].map((d) => d.dataset.cluster),
  }));
  expect(`healthy clusters fold, the two with a problem stay open: ${JSON.stringify(boxes)}`,
    boxes.folded === 48 && boxes.open.join() === "c07,c31");

  const table = await page.evaluate(() => ({
    rows: document.querySelectorAll("#edges tbody tr").length,
    hidden: Number(document.getElementById("hidden-edges").dataset.hiddenEdges),
    first: [...document.querySelectorAll("#edges tbody tr")].slice(0, 2).map((r) => r.dataset.security),
  }));
  expect(`at most 200 rows, the rest counted: ${JSON.stringify(table)}`, table.rows === 200 && table.hidden === 1300);
  expect(`problems first: ${JSON.stringify(table)}`, table.first.join() === "partial,partial");

  // A filter narrows to one cluster's services (its 30 inbound edges, and the edges
  // it calls, whose keys name it too).
  const timing = await page.evaluate(() => {
    const input = document.getElementById("filter");
    const t0 = performance.now();
    input.value = "→c12/";
    input.dispatchEvent(new Event("input"));
    return performance.now() - t0;
  });
  const filtered = await page.evaluate(() => ({
    rows: document.querySelectorAll("#edges tbody tr").length,
    hidden: Number(document.getElementById("hidden-edges").dataset.hiddenEdges),
  }));
  expect(`the filter narrows to c12's 30 edges: ${JSON.stringify(filtered)}`, filtered.rows === 30 && filtered.hidden === 0);

  await page.evaluate(() => {
    const input = document.getElementById("filter");
    input.value = "";
    input.dispatchEvent(new Event("input"));
    document.getElementById("problems").click();
  });
  const problems = await page.$$eval("#edges tbody tr", (rows) => rows.map((r) => r.dataset.edge));
  expect(`problems only: ${problems}`, problems.join() === "c08→c07/svc0.shop,c32→c31/svc0.shop");
  console.log(`one render of 1500 edges filtered to 30: ${timing.toFixed(1)} ms`);
} catch (e) {
  for (const page of browser.contexts().flatMap((c) => c.pages())) {
    console.error(`page ${page.url()}:`, (await page.evaluate(() => document.body.innerText).catch(() => "?")).slice(0, 3000));
  }
  throw e;
} finally {
  await browser.close();
}
