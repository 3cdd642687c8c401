// The chat widget on a tenant's site: a host page served from another origin (with a strict
// nonce-based CSP) embeds the snippet the console gives; a visitor chats, reloads, rates, is
// handed to a person whose reply arrives live; a site that is not allowed gets no widget.
// Prints the widget's sizes (gzip -9) and its open and first-token times.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createServer as createTcpServer, connect } from "node:net";
import { mkdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { createHmac } from "node:crypto";
import { ADMIN, BASE, fakeLlm, hydrationProblems, newContext, openPage, signIn, useProvider } from "../lib/browser.js";

const SHOTS = process.env.SCREENSHOTS_DIR || "/tmp/e2e-shots";
// What the widget loads before a visitor can type, gzip -9, may not grow past this.
const CEILING = 144 * 1024;
const NONCE = "host-nonce-42";
let host, stranger, publicId;

// A shop's page: only its own nonce'd scripts and our frame may run. `?w=` names another
// widget; `?id=&hash=&email=` makes the page identify its signed-in customer; `?via=` loads
// the widget through another address of the platform (the cuttable proxy below).
function hostServer() {
  return new Promise((resolve) => {
    const server = createServer((req, res) => {
      const query = new URL(req.url, "http://host").searchParams;
      const widget = query.get("w") || publicId;
      const base = query.get("via") || BASE;
      const identify = query.get("id")
        ? `<script nonce="${NONCE}">window.AgentWidget = window.AgentWidget || function () { (AgentWidget.q = AgentWidget.q || []).push(arguments); };
AgentWidget("identify", ${JSON.stringify({ id: query.get("id"), hash: query.get("hash"), name: "Ada", email: query.get("email") })});</script>`
        : "";
      res.writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": `default-src 'none'; script-src 'nonce-${NONCE}'; frame-src ${base}`,
      });
      res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>Shop</title></head>
<body><h1>Garden shop</h1><p>Spades, hoses and seeds.</p>${identify}
<script nonce="${NONCE}" src="${base}/widget.js" data-widget="${widget}" async></script>
</body></html>`);
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

// A TCP proxy in front of the platform whose network can be cut: `cut()` drops every open
// connection and refuses new ones until `restore()`.
function cuttableProxy() {
  const target = new URL(BASE);
  const sockets = new Set();
  let down = false;
  const server = createTcpServer((client) => {
    if (down) return client.destroy();
    const upstream = connect(Number(target.port), target.hostname);
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      sockets.add(a);
      a.on("close", () => { sockets.delete(a); b.destroy(); });
      a.on("error", () => b.destroy());
      a.pipe(b);
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({
    url: `http://127.0.0.1:${server.address().port}`,
    cut() { down = true; for (const s of sockets) s.destroy(); },
    restore() { down = false; },
    close() { for (const s of sockets) s.destroy(); server.close(); },
  })));
}

// The tenant's provider answers this at once (or a word every `llm.gap` ms).
const ANSWER = ["Parking ", "is ", "free ", "after ", "six ", "in ", "the ", "evening."];

// Opens the conversation titled `title` in the console and replies to it as a person.
async function replyAsPerson(admin, title, text) {
  if (!admin.url().endsWith("/conversations")) {
    await admin.goto(`${BASE}/conversations`);
    await admin.waitForSelector("body[data-hydrated=true]");
    const open = admin.getByRole("button", { name: `Open ${title}` }).first();
    await open.waitFor({ timeout: 15000 });
    await open.click();
  }
  await admin.getByLabel("Reply as a person (takes the conversation)").fill(text);
  await admin.getByRole("button", { name: "Send reply" }).click();
  await admin.locator("ol.transcript").getByText(text).first().waitFor();
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  host = await hostServer();
  stranger = await hostServer();
});
after(() => {
  host?.close();
  stranger?.close();
});

// `localhost` and `127.0.0.1` are different origins on the same loopback server.
const hostUrl = () => `http://localhost:${host.address().port}`;
const strangerUrl = () => `http://127.0.0.1:${stranger.address().port}`;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

test("the console creates a widget and gives its snippet", async () => {
  const page = await openPage(await newContext({ viewport: { width: 1280, height: 900 } }));
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/widgets`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByText("No widgets yet.").waitFor();
  await page.getByRole("button", { name: "New widget" }).click();
  await page.getByLabel("Name", { exact: true }).fill("Shop chat");
  await page.getByLabel(/Sites allowed to show it/).fill(hostUrl());
  await page.getByLabel(/Suggested questions/).fill("When are you open on Saturday?");
  await page.getByRole("button", { name: "Create widget" }).click();
  await page.getByText("Widget created.").waitFor();
  await page.getByText(/Identity secret of “Shop chat”/).waitFor();
  const snippet = await page.locator("textarea.snippet").first().inputValue();
  publicId = snippet.match(/data-widget="(wgt_[A-Za-z0-9]+)"/)[1];
  assert.ok(snippet.includes(`${BASE}/widget.js`), snippet);
  await page.getByRole("button", { name: "Preview" }).click();
  await page.frameLocator("iframe.widget-preview").getByRole("heading", { name: "Shop chat" }).waitFor();
  await page.screenshot({ path: `${SHOTS}/widgets-console-1280.png`, fullPage: true });
  await page.setViewportSize({ width: 375, height: 800 });
  await page.screenshot({ path: `${SHOTS}/widgets-console-375.png`, fullPage: true });
  await page.close();
});

test("a visitor chats on another site, comes back, rates, and a person's reply reaches them live", async () => {
  const visitor = await newContext({ viewport: { width: 1280, height: 800 } });
  const page = await openPage(visitor);
  const errors = [];
  page.on("console", (msg) => { if (msg.type() === "error") errors.push(msg.text()); });
  await page.goto(`${hostUrl()}/garden`);
  const launcher = page.getByRole("button", { name: "Chat with us" });
  await launcher.click();
  const frame = page.frameLocator('iframe[title="Chat"]');
  const input = frame.getByLabel("Your message");
  await frame.locator("#compose-input:focus").waitFor();
  await frame.getByText("Hi! How can we help?").waitFor();
  await frame.getByRole("button", { name: "When are you open on Saturday?" }).click();
  await frame.getByText(/automatic answer/i).first().waitFor();
  await frame.getByRole("list", { name: "Sources" }).first().waitFor();
  const helpful = frame.getByRole("button", { name: "Helpful" }).first();
  await helpful.click();
  await frame.locator('button[aria-label="Helpful"][aria-pressed="true"]').waitFor();
  await page.screenshot({ path: `${SHOTS}/widget-1280.png` });

  // The conversation survives a reload.
  await page.reload();
  await page.getByRole("button", { name: "Chat with us" }).click();
  await frame.getByText("When are you open on Saturday?", { exact: true }).waitFor();
  await frame.getByText(/automatic answer/i).first().waitFor();

  // An emergency goes to a person, whose reply appears without a reload.
  await input.fill("I smell gas in the basement");
  await input.press("Enter");
  await frame.getByText("We are getting a person from our team for you.").waitFor();
  const admin = await openPage();
  await signIn(admin, ADMIN);
  await admin.goto(`${BASE}/conversations`);
  await admin.waitForSelector("body[data-hydrated=true]");
  const open = admin.getByRole("button", { name: "Open When are you open on Saturday?" }).first();
  await open.waitFor({ timeout: 15000 });
  await open.click();
  await admin.getByLabel("Reply as a person (takes the conversation)").fill("This is Sam from the shop.");
  await admin.getByRole("button", { name: "Send reply" }).click();
  await admin.getByText("Reply sent.").waitFor();
  await frame.getByText("This is Sam from the shop.").waitFor({ timeout: 10000 });
  await frame.getByText("A person from our team has joined.").waitFor();
  await admin.close();

  // The visitor rates the conversation; Escape closes the panel and focus returns.
  await frame.getByRole("button", { name: "Rate" }).click();
  await frame.getByRole("button", { name: "5 of 5" }).click();
  await frame.getByText("You rated this conversation 5 of 5.").waitFor();
  await input.focus();
  await input.press("Escape");
  await page.locator('button[aria-expanded="false"]').waitFor();
  assert.equal(await launcher.evaluate((el) => el === document.activeElement), true);

  // A phone: the panel fills the screen.
  await page.setViewportSize({ width: 375, height: 740 });
  await launcher.click();
  await frame.locator("#compose-input:focus").waitFor();
  const box = await page.locator('iframe[title="Chat"]').boundingBox();
  assert.equal(Math.round(box.width), 375);
  await page.screenshot({ path: `${SHOTS}/widget-375.png` });
  assert.deepEqual(errors, []);
  await visitor.close();
});

test("the widget can be used with the keyboard alone", async () => {
  const page = await openPage(await newContext({ viewport: { width: 1280, height: 800 } }));
  await page.goto(`${hostUrl()}/keyboard`);
  const launcher = page.getByRole("button", { name: "Chat with us" });
  await launcher.waitFor();
  // The launcher is the page's only control: Tab reaches it, Enter opens the panel.
  await page.keyboard.press("Tab");
  assert.equal(await launcher.evaluate((el) => el === document.activeElement), true);
  await page.keyboard.press("Enter");
  const frame = page.frameLocator('iframe[title="Chat"]');
  await frame.locator("#compose-input:focus").waitFor();
  await page.keyboard.type("Is parking free?");
  await page.keyboard.press("Enter");
  await frame.getByText("Is parking free?", { exact: true }).last().waitFor();
  await frame.locator("li.msg.bot .rate-answer").last().waitFor();
  // Shift+Tab walks back to the answer's rating buttons; Space presses one.
  await frame.locator("#compose-input").focus();
  for (let i = 0; i < 2; i++) await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Space");
  await frame.locator('li.msg.bot button[aria-pressed="true"]').last().waitFor();
  await frame.locator("#compose-input").focus();
  await page.keyboard.press("Escape");
  await page.locator('button[aria-expanded="false"]').waitFor();
  assert.equal(await launcher.evaluate((el) => el === document.activeElement), true);
  await page.close();
});

test("a site that is not allowed gets no working widget", async () => {
  const page = await openPage(await newContext());
  await page.goto(`${strangerUrl()}/copy`);
  // The frame may not be shown there and its session is refused: no launcher ever appears.
  await page.waitForTimeout(3000);
  assert.equal(await page.getByRole("button", { name: "Chat with us" }).count(), 0);
  const direct = await fetch(`${BASE}/widget-api/v1/widgets/${publicId}/sessions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ origin: strangerUrl() }),
  });
  assert.equal(direct.status, 403);
  const frame = await fetch(`${BASE}/widget/${publicId}`);
  assert.match(frame.headers.get("content-security-policy"), new RegExp(`frame-ancestors 'self' ${BASE} ${hostUrl()}`));
  await page.close();
});

test("with enforced identity only visitors the site signed for get a widget", async () => {
  const admin = await openPage(await newContext());
  await signIn(admin, ADMIN);
  await admin.goto(`${BASE}/widgets`);
  await admin.waitForSelector("body[data-hydrated=true]");
  await admin.getByRole("button", { name: "New widget" }).click();
  await admin.getByLabel("Name", { exact: true }).fill("Members chat");
  await admin.getByLabel(/Sites allowed to show it/).fill(hostUrl());
  await admin.getByLabel("Identity verification").selectOption("enforced");
  await admin.getByRole("button", { name: "Create widget" }).click();
  await admin.getByText(/Identity secret of “Members chat”/).waitFor();
  const secret = (await admin.locator("code.secret").textContent()).trim();
  const snippets = await admin.locator("textarea.snippet").evaluateAll((areas) => areas.map((a) => a.value));
  const members = snippets.map((t) => t.match(/data-widget="(wgt_[A-Za-z0-9]+)"/)[1]).find((id) => id !== publicId);
  const sign = (id) => createHmac("sha256", secret).update(id).digest("hex");

  const page = await openPage(await newContext());
  const launcher = page.getByRole("button", { name: "Chat with us" });
  for (const query of [`w=${members}`, `w=${members}&id=customer-7&hash=${sign("customer-8")}`]) {
    await page.goto(`${hostUrl()}/account?${query}`);
    await page.waitForTimeout(2500);
    assert.equal(await launcher.count(), 0, `no widget for ${query}`);
  }
  await page.goto(`${hostUrl()}/account?w=${members}&id=customer-7&hash=${sign("customer-7")}&email=ada@customer.test`);
  await launcher.click();
  const frame = page.frameLocator('iframe[title="Chat"]');
  const input = frame.getByLabel("Your message");
  await input.fill("Is parking free?");
  await input.press("Enter");
  await frame.getByText(/automatic answer/i).first().waitFor();

  await admin.goto(`${BASE}/conversations`);
  await admin.waitForSelector("body[data-hydrated=true]");
  await admin.getByRole("button", { name: "Open Is parking free?" }).first().click();
  await admin.getByText("Ada <ada@customer.test> (verified by the site)").waitFor();
  await admin.close();
  await page.close();
});

test("with the language on auto, the widget speaks the visitor's browser language", async () => {
  const page = await openPage(await newContext({ viewport: { width: 1280, height: 800 }, locale: "de-DE" }));
  await page.goto(`${hostUrl()}/german`);
  await page.getByRole("button", { name: "Chat with us" }).click();
  const frame = page.frameLocator('iframe[title="Chat"]');
  await frame.getByLabel("Ihre Nachricht").waitFor();
  await frame.getByRole("button", { name: "Senden" }).waitFor();
  assert.equal(await frame.locator("html").getAttribute("lang"), "de");
  await page.close();
});

test("after the network drops, the widget reconnects and gets what it missed, once", async () => {
  const proxy = await cuttableProxy();
  const page = await openPage(await newContext({ viewport: { width: 1280, height: 800 } }));
  await page.goto(`${hostUrl()}/reconnect?via=${encodeURIComponent(proxy.url)}`);
  await page.getByRole("button", { name: "Chat with us" }).click();
  const frame = page.frameLocator('iframe[title="Chat"]');
  const input = frame.getByLabel("Your message");
  await frame.getByRole("button", { name: "New" }).click();
  const title = "Can you repair a garden hose?";
  await input.fill(title);
  await input.press("Enter");
  await frame.locator("li.msg.bot .rate-answer").last().waitFor();

  const admin = await openPage();
  await signIn(admin, ADMIN);
  await replyAsPerson(admin, title, "Yes, bring it by.");
  await frame.getByText("Yes, bring it by.").waitFor({ timeout: 10000 });

  // The visitor's network drops; the person writes twice; the network comes back.
  proxy.cut();
  await replyAsPerson(admin, title, "We are open until six.");
  await replyAsPerson(admin, title, "Ask for Sam.");
  await new Promise((r) => setTimeout(r, 1500));
  proxy.restore();
  await frame.getByText("Ask for Sam.").waitFor({ timeout: 15000 });
  for (const text of ["Yes, bring it by.", "We are open until six.", "Ask for Sam."]) {
    assert.equal(await frame.getByText(text, { exact: true }).count(), 1, text);
  }
  await admin.close();
  await page.close();
  proxy.close();
});

test("the widget's size, open time and first-token time", async () => {
  const parts = [
    ["loader /widget.js", "/widget.js"],
    ["frame HTML", `/widget/${publicId}`],
    ["boot.js", "/widget/pkg/boot.js"],
    ["JS glue", "/widget/pkg/widget.js"],
    ["WASM", "/widget/pkg/widget_bg.wasm"],
    ["CSS", "/widget/pkg/widget.css"],
  ];
  let total = 0;
  const rows = [];
  for (const [name, path] of parts) {
    const response = await fetch(`${BASE}${path}`, { headers: { "accept-encoding": "identity" } });
    assert.equal(response.status, 200, path);
    const raw = Buffer.from(await response.arrayBuffer());
    const gz = gzipSync(raw, { level: 9 }).length;
    total += gz;
    rows.push(`${name.padEnd(18)} ${String(raw.length).padStart(8)} B raw ${String(gz).padStart(7)} B gzip -9`);
  }
  console.log(`widget sizes\n${rows.join("\n")}\n${"total".padEnd(18)} ${String(total).padStart(25)} B gzip -9 (goal ≤ 100 KB; loader ≤ 3 KB)`);
  const loader = gzipSync(Buffer.from(await (await fetch(`${BASE}/widget.js`)).arrayBuffer()), { level: 9 }).length;
  assert.ok(loader <= 3 * 1024, `the loader is ${loader} B gzipped`);
  // The goal (100 KB) is not met yet; this ceiling keeps it from growing meanwhile.
  assert.ok(total <= CEILING, `the widget loads ${total} B gzipped before a visitor can type (ceiling ${CEILING} B)`);

  const page = await openPage(await newContext({ viewport: { width: 1280, height: 800 } }));
  await page.goto(`${hostUrl()}/timing`);
  const launcher = page.getByRole("button", { name: "Chat with us" });
  await launcher.waitFor();
  const frame = page.frameLocator('iframe[title="Chat"]');
  const opens = [];
  for (let i = 0; i < 20; i++) {
    const started = Date.now();
    await launcher.click();
    await frame.locator("#compose-input:focus").waitFor();
    opens.push(Date.now() - started);
    await frame.getByLabel("Your message").press("Escape");
    await page.locator('button[aria-expanded="false"]').waitFor();
  }

  // The tenant's provider is a fake on loopback that answers at once.
  const llm = await fakeLlm((request) => request.model === "fake-router" ? ["support"] : ANSWER);
  const admin = await openPage();
  await signIn(admin, ADMIN);
  await useProvider(admin, llm);
  try {
    const firsts = [];
    await launcher.click();
    await frame.getByRole("button", { name: "New" }).click();
    const input = frame.getByLabel("Your message");
    const answer = (n) => frame.locator("li.msg.bot .body").nth(n);
    for (let i = 0; i < 10; i++) {
      const answers = await frame.locator("li.msg.bot .body").count();
      const rated = await frame.locator("li.msg.bot .rate-answer").count();
      await input.fill(`Is parking free? (${i})`);
      const started = Date.now();
      await input.press("Enter");
      await answer(answers).filter({ hasText: /\S/ }).waitFor();
      firsts.push(Date.now() - started);
      await frame.locator("li.msg.bot .rate-answer").nth(rated).waitFor();
      assert.equal((await answer(answers).textContent()).trim(), ANSWER.join(""));
    }
    console.log(`widget open (click → input focused) p50 ${median(opens)} ms over ${opens.length}; first streamed token p50 ${median(firsts)} ms over ${firsts.length} (fake LLM answering at once)`);

    // Word by word: the first words show while the rest is still being written.
    llm.gap = 400;
    const answers = await frame.locator("li.msg.bot .body").count();
    await input.fill("Is parking free at night?");
    await input.press("Enter");
    await answer(answers).filter({ hasText: /^Parking/ }).waitFor();
    assert.notEqual((await answer(answers).textContent()).trim(), ANSWER.join(""));
    await answer(answers).filter({ hasText: "the evening." }).waitFor({ timeout: 10000 });
  } finally {
    llm.gap = 0;
    await admin.getByRole("button", { name: "Use the platform default" }).click();
    await admin.getByText("Back to the platform's provider.").waitFor();
    await admin.close();
    llm.close();
  }
  await page.close();
});

test("no page logged a hydration problem", () => {
  assert.deepEqual(hydrationProblems, []);
});
