// What `make run` serves, checked as a newcomer would use it: the release build, started on an
// empty data dir, signed into with the credentials it printed. Every console page must hydrate
// (a broken wasm-opt pass leaves the WASM dead in the browser while the server-rendered HTML
// looks fine), and a server function must answer: the demo knowledge base finds a passage.
import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { ADMIN, BASE, CONSOLE_PAGES, hydrationProblems, newContext, openPage, signIn } from "../lib/browser.js";

// Bytes on the wire for one static file and one Accept-Encoding.
function transferred(path, encoding) {
  return new Promise((resolve, reject) => {
    const req = request(`${BASE}${path}`, { headers: { "Accept-Encoding": encoding } }, (res) => {
      let bytes = 0;
      res.on("data", (chunk) => { bytes += chunk.length; });
      res.on("end", () => resolve({ status: res.statusCode, encoding: res.headers["content-encoding"], bytes }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("the release WASM and JS are served precompressed", async () => {
  for (const file of ["/pkg/agent-platform.wasm", "/pkg/agent-platform.js"]) {
    const raw = await transferred(file, "identity");
    const br = await transferred(file, "br");
    const gzip = await transferred(file, "gzip");
    assert.equal(raw.status, 200, file);
    assert.equal(br.encoding, "br", file);
    assert.equal(gzip.encoding, "gzip", file);
    assert.ok(br.bytes < raw.bytes && gzip.bytes < raw.bytes, file);
    console.log(`${file}: ${raw.bytes} bytes raw, ${gzip.bytes} gzip, ${br.bytes} brotli`);
  }
});

// What a page fetches of the console's code before it is interactive: the JS glue, the main WASM
// module and split loader, and the lazy chunks of `cargo leptos --split` (the page's own and the
// ones it shares), each counted gzipped. Every page is opened in a fresh browser context, so
// nothing comes from the cache. The sign-in page is a plain form: it must stay within 200 KB
// (it loads none); a console page is interactive once hydrated.
const SIGN_IN_BUDGET = 200 * 1024;
async function codeBeforeInteractive(path, storageState) {
  const context = await newContext({ storageState });
  const page = await openPage(context);
  const files = new Set();
  page.on("request", (req) => {
    const { pathname } = new URL(req.url());
    if (pathname.startsWith("/pkg/") && /\.(wasm|js)$/.test(pathname)) files.add(pathname);
  });
  await page.goto(`${BASE}${path}`);
  if (storageState) await page.waitForSelector("body[data-hydrated=true]");
  else await page.getByRole("button", { name: "Sign in" }).waitFor();
  const loaded = [...files];
  await context.close();
  let gzip = 0;
  for (const file of loaded) {
    const res = await transferred(file, "gzip");
    assert.equal(res.status, 200, file);
    gzip += res.bytes;
  }
  return { files: loaded.length, chunks: loaded.filter((f) => /\/(chunk|split)_/.test(f)).length, gzip };
}

test("each page loads only the code it uses; the sign-in page stays within 200 KB gzipped", async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  const storageState = await page.context().storageState();
  await page.close();
  const rows = [["/login", await codeBeforeInteractive("/login", undefined)]];
  for (const path of ["/", ...CONSOLE_PAGES]) rows.push([path, await codeBeforeInteractive(path, storageState)]);
  console.log("page            files  chunks  gzip bytes before interactive");
  for (const [path, { files, chunks, gzip }] of rows) {
    console.log(`${path.padEnd(16)}${String(files).padStart(5)}${String(chunks).padStart(8)}  ${gzip}`);
  }
  const signInPage = rows[0][1];
  assert.ok(signInPage.gzip <= SIGN_IN_BUDGET, `the sign-in page loads ${signInPage.gzip} B gzipped, over ${SIGN_IN_BUDGET}`);
  // Every console page is a lazy route: its code comes in chunks, not in the main module.
  for (const [path, { chunks }] of rows.slice(1)) assert.ok(chunks > 0, `${path} loaded no chunk of its own`);
});

test("sign in with the printed credentials; every console page hydrates", async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  for (const path of CONSOLE_PAGES) {
    await page.goto(`${BASE}${path}`);
    await page.waitForSelector("body[data-hydrated=true]");
  }
  await page.close();
});

test("the demo knowledge base answers a retrieval test (a server function)", async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/knowledge`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByRole("link", { name: /Customer handbook/ }).click();
  const form = page.getByRole("form", { name: "Search this knowledge base" });
  await form.getByLabel("Query").fill("When is the emergency line answered?");
  // The demo documents are ingested by a job right after the first start: search until they are.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const button = form.getByRole("button", { name: "Search" });
    await button.click();
    await page.locator(".search-summary").waitFor();
    await page.waitForFunction((el) => !el.disabled, await button.elementHandle());
    if ((await page.locator("table.hits").count()) > 0) break;
    assert.ok(Date.now() < deadline, "the demo knowledge base found nothing within a minute");
    await page.waitForTimeout(1000);
  }
  const hits = await page.locator("table.hits").textContent();
  assert.match(hits, /around the clock/);
  await page.close();
});

test("no page logged a hydration problem", () => {
  assert.deepEqual(hydrationProblems, []);
});
