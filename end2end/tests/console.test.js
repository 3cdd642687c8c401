// Browser tests: Debian's Chromium driven by playwright-core against the real server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { createHmac } from "node:crypto";
import { ADMIN, BASE, CONSOLE_PAGES, api, hydrationProblems, newContext, openPage, signIn } from "../lib/browser.js";

const SHOTS = process.env.SCREENSHOTS_DIR || "/tmp/e2e-shots";

test("console pages hydrate under their Content Security Policy", async () => {
  const page = await openPage();
  const violations = [];
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy/i.test(msg.text())) violations.push(msg.text());
  });
  await signIn(page, ADMIN);
  for (const path of CONSOLE_PAGES) {
    const response = await page.goto(`${BASE}${path}`);
    assert.match(response.headers()["content-security-policy"], /script-src 'self' 'nonce-[A-Za-z0-9_-]+'/);
    await page.waitForSelector("body[data-hydrated=true]");
  }
  assert.deepEqual(violations, []);
  await page.goto(`${BASE}/jobs`);
  await page.getByRole("heading", { name: "Dead letters" }).waitFor();
  await page.getByText("No failed jobs.").waitFor();
  await page.getByText("No recurring jobs.").waitFor();
  await page.close();
});

test("sign in, create a key, use it, revoke it", async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  await page.getByRole("link", { name: "API keys" }).first().click();
  await page.waitForURL(`${BASE}/keys`);
  await page.getByLabel("Name", { exact: true }).fill("e2e key");
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.getByTestId("new-secret").textContent()).trim();
  assert.match(secret, /^apk_[A-Za-z0-9]{12}_[A-Za-z0-9]{32}$/);
  await page.getByRole("cell", { name: "e2e key", exact: true }).waitFor();

  const ok = await api("/api/v1/tenant", secret);
  assert.equal(ok.status, 200);
  assert.equal((await ok.json()).slug, "demo");

  await page.getByRole("button", { name: "Revoke e2e key" }).click();
  await page.getByText("revoked", { exact: true }).waitFor();
  const refused = await api("/api/v1/tenant", secret);
  assert.equal(refused.status, 401);
  assert.equal((await refused.json()).code, "unauthorized");
  await page.close();
});

test("an invited viewer joins through the link and cannot create a key", async () => {
  const admin = await openPage();
  await signIn(admin, ADMIN);
  await admin.goto(`${BASE}/members`);
  await admin.waitForSelector("body[data-hydrated=true]");
  await admin.getByText("No invitations yet.").waitFor();
  const email = `viewer-${Date.now()}@demo.local`;
  await admin.getByLabel("Email", { exact: true }).fill(email);
  await admin.getByRole("button", { name: "Invite", exact: true }).click();
  const link = (await admin.getByTestId("invitation-link").textContent()).trim();
  assert.match(link, /\/invite\?token=inv_[A-Za-z0-9]{43}$/);
  await admin.getByRole("cell", { name: email, exact: true }).waitFor();
  await admin.getByText("pending", { exact: true }).waitFor();
  await admin.close();

  const context = await newContext({ viewport: { width: 375, height: 740 } });
  const page = await openPage(context);
  await page.goto(link.replace(/^https?:\/\/[^/]+/, BASE));
  await page.getByText("You are invited to join").waitFor();
  await page.waitForSelector("body[data-hydrated=true]");
  const password = "vera-chooses-her-own";
  await page.getByLabel("Your name (new accounts)").fill("Vera Viewer");
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByLabel("Repeat the password (new accounts)").fill("a different one");
  await page.getByRole("button", { name: "Accept the invitation" }).click();
  await page.getByText("The passwords differ.").waitFor();
  // Fill only once the page has hydrated: hydration would otherwise reset what was typed,
  // and the browser would refuse to submit the emptied required fields.
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByLabel("Your name (new accounts)").fill("Vera Viewer");
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByLabel("Repeat the password (new accounts)").fill(password);
  await page.getByRole("button", { name: "Accept the invitation" }).click();
  await page.waitForURL(`${BASE}/`);
  // The link worked once.
  await page.goto(link.replace(/^https?:\/\/[^/]+/, BASE));
  await page.getByText("This invitation link is not valid").waitFor();
  await page.goto(`${BASE}/keys`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByText("Your role can view this page but not change it.").waitFor();
  assert.equal(await page.getByRole("button", { name: "Create key" }).count(), 0);

  // Going around the UI does not help: the server refuses.
  const res = await page.request.post(`${BASE}/_fn/issue_api_key`, {
    headers: { Origin: BASE, "Content-Type": "application/x-www-form-urlencoded" },
    data: "create[name]=sneaky&create[scopes][0]=tenant:read",
  });
  assert.match(await res.text(), /Forbidden/);
  await context.close();
});

test("settings are saved and the audit log can be filtered", async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/settings`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByLabel("Company name").fill("Demo Dental");
  await page.getByLabel("Time zone (IANA, e.g. Europe/Berlin)").fill("Europe/Berlin");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.getByText("Settings saved.").waitFor();
  await page.getByLabel("Time zone (IANA, e.g. Europe/Berlin)").fill("Mars/Olympus");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.getByText("timezone: is not an IANA time zone such as Europe/Berlin").waitFor();
  await page.reload();
  await page.waitForSelector("body[data-hydrated=true]");
  // The form renders once the tenant has loaded; wait for it rather than read too early.
  await page.waitForFunction(() => document.querySelector("#tenant-name")?.value === "Demo Dental");

  await page.goto(`${BASE}/audit`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByLabel("Action").fill("tenant.update");
  await page.getByRole("button", { name: "Filter" }).click();
  // The newest entry is a tenant.update already: wait for the filtered list itself.
  await page.waitForFunction(() => {
    const cells = [...document.querySelectorAll("tbody td:nth-child(3)")];
    return cells.length > 0 && cells.every((c) => c.textContent === "tenant.update");
  });
  const actions = await page.locator("tbody td:nth-child(3)").allTextContents();
  assert.ok(actions.length >= 1 && actions.every((a) => a === "tenant.update"), actions.join(","));
  await page.close();
});

test("a whole email pasted into the retrieval test is searched, and the page says what was cut", async () => {
  mkdirSync(SHOTS, { recursive: true });
  const page = await openPage(await newContext({ viewport: { width: 1280, height: 900 } }));
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/knowledge`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByRole("link", { name: "Customer handbook" }).click();
  await page.getByRole("heading", { name: "Retrieval test" }).waitFor();
  const email = "Hello, how do I reset my password? " + Array.from({ length: 300 }, (_, i) => `item${i}`).join(" ");
  await page.getByLabel("Query").fill(email);
  await page.getByRole("button", { name: "Search", exact: true }).click();
  const note = page.getByText(/^A long query: the vector search read its first \d+ of \d+ characters; the full-text search matched its first 128 distinct words and left out \d+\.$/);
  await note.waitFor();
  await page.getByRole("status").filter({ hasText: "hybrid" }).waitFor();
  await page.screenshot({ path: `${SHOTS}/knowledge-long-query-1280.png`, fullPage: true });
  await page.setViewportSize({ width: 375, height: 800 });
  await note.scrollIntoViewIfNeeded();
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, `the page is ${width} px wide on a 375 px phone`);
  await page.screenshot({ path: `${SHOTS}/knowledge-long-query-375.png`, fullPage: true });
  await page.close();
});

test("the playground answers with its trace, and an emergency waits for a person who takes over", async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/conversations`);
  await page.waitForSelector("body[data-hydrated=true]");
  const message = page.getByLabel("Message", { exact: true });
  await message.fill("What are your prices for a heat pump?");
  await page.getByRole("button", { name: "Send" }).click();
  await page.getByText("This is an automatic answer").first().waitFor();
  await page.getByText("Trace: 2 steps").click();
  await page.getByText("→ sales (rule: prices)").waitFor();

  await message.fill("I smell gas in the basement");
  await page.getByRole("button", { name: "Send" }).click();
  await page.getByText("call your local emergency number").first().waitFor();
  await page.getByText("Trace: 3 steps").waitFor();

  // The queue refreshes by itself.
  const open = page.getByRole("button", { name: "Open What are your prices for a heat pump?" }).first();
  await open.waitFor({ timeout: 15000 });
  await open.click();
  await page.getByLabel("Reply as a person (takes the conversation)").fill("This is Ana from the emergency line.");
  await page.getByRole("button", { name: "Send reply" }).click();
  await page.getByText("Reply sent.").waitFor();
  await page.getByRole("button", { name: "Hand back to the bot" }).waitFor();
  await page.getByText("This is Ana from the emergency line.").waitFor();
  await page.getByRole("button", { name: "Hand back to the bot" }).click();
  await page.getByText("The bot answers again.").waitFor();
  await page.close();
});

test("router rules and prompts are edited on the Agents page", async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/agents`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByRole("cell", { name: "prices", exact: true }).waitFor();
  await page.getByLabel("Name", { exact: true }).fill("warranty");
  await page.getByLabel("Send to").selectOption("support");
  await page.getByLabel("Pattern").fill("warranty, guarantee");
  await page.getByRole("button", { name: "Add rule" }).click();
  await page.getByText("Rule added.").waitFor();
  await page.getByRole("cell", { name: "warranty", exact: true }).waitFor();
  await page.getByLabel("Pattern").fill("(broken");
  await page.getByLabel("Name", { exact: true }).fill("bad");
  await page.getByLabel("Match").selectOption("regex");
  await page.getByRole("button", { name: "Add rule" }).click();
  await page.getByText(/not a valid regular expression/).waitFor();
  await page.getByRole("button", { name: "Delete rule warranty" }).click();
  await page.getByText("Rule deleted.").waitFor();

  // The sales prompt gets a new version; its changes against the default are shown.
  await page.getByLabel("System prompt").fill("You are the sales agent of {{company}}.\nBe brief.");
  await page.getByLabel("What changed").fill("shorter");
  await page.getByRole("button", { name: "Save prompt" }).click();
  await page.getByText("Prompt saved").waitFor();
  await page.getByRole("button", { name: "Compare v1 with v0" }).click();
  const diff = await page.getByTestId("prompt-diff").textContent();
  assert.match(diff, /\+Be brief\./);
  await page.close();
});

test("a tenant defines its own agent, routes to it and deletes it", async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/agents`);
  await page.waitForSelector("body[data-hydrated=true]");
  const agents = page.getByTestId("agents");
  await agents.getByRole("cell", { name: "sales", exact: true }).waitFor();
  await page.getByLabel("Agent name").fill("billing");
  await page.getByLabel("Handles").fill("invoices and refunds");
  await page.getByLabel("First prompt").fill("You are the billing agent of {{company}}.");
  await page.getByRole("button", { name: "Add agent" }).click();
  await page.getByText("Agent added").waitFor();
  await agents.getByRole("cell", { name: "billing", exact: true }).waitFor();
  // The rule editor can now send to it.
  await page.getByLabel("Send to").selectOption("billing");
  await page.getByLabel("Name", { exact: true }).fill("refunds");
  await page.getByLabel("Pattern").fill("refund");
  await page.getByRole("button", { name: "Add rule" }).click();
  await page.getByText("Rule added.").waitFor();
  await page.getByRole("button", { name: "Delete agent billing" }).click();
  await page.getByText(/router rules send messages to this agent/).waitFor();
  await page.getByRole("button", { name: "Delete rule refunds" }).click();
  await page.getByText("Rule deleted.").waitFor();
  await page.getByRole("button", { name: "Delete agent billing" }).click();
  await page.getByText(/the agent is deleted/).waitFor();
  await agents.getByRole("cell", { name: "billing", exact: true }).waitFor({ state: "detached" });
  await page.close();
});

test("a webhook endpoint gets a signed test event, and a Chatwoot inbox is connected and answered", async (t) => {
  const received = [];
  const receiver = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(204).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  // Never keeps the test process alive, whether or not the test gets to close it.
  receiver.unref();
  t.after(() => receiver.close());
  const url = `http://127.0.0.1:${receiver.address().port}/hooks`;
  const page = await openPage();
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/integrations`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByText("No endpoints yet.").waitFor();
  await page.getByRole("button", { name: "Add endpoint" }).click();
  await page.getByLabel("Endpoint URL (https://)").fill(url);
  await page.getByLabel(/^message\.created/).check();
  await page.getByLabel(/^handoff\.requested/).check();
  await page.getByRole("button", { name: "Add endpoint" }).click();
  await page.getByText("Endpoint added.").waitFor();
  const secret = (await page.getByTestId("webhook-secret").textContent()).trim();
  assert.match(secret, /^whsec_[A-Za-z0-9]{43}$/);
  await page.getByText("message.created, handoff.requested").waitFor();
  await page.getByRole("button", { name: "Send test event" }).click();
  await page.getByRole("cell", { name: "delivered" }).waitFor({ timeout: 20000 });
  // The tenant's own email provider: Mailgun needs its domain; SendGrid is saved with its key.
  await page.getByLabel("Provider", { exact: true }).selectOption("mailgun");
  await page.getByLabel("Sender (e.g. Shop <hello@shop.example>)").fill("Demo Dental <desk@demo.test>");
  await page.getByLabel("API key", { exact: true }).fill("key-e2e-12345678");
  await page.getByRole("button", { name: "Save email settings" }).click();
  await page.getByText("Mailgun needs the sending domain").waitFor();
  await page.getByLabel("Provider", { exact: true }).selectOption("sendgrid");
  await page.getByLabel("API key", { exact: true }).fill("SG.e2e-key-87654321");
  await page.getByRole("button", { name: "Save email settings" }).click();
  await page.getByText("Email settings saved.").waitFor();
  await page.getByText("stored, ends in …4321").waitFor();
  await page.getByRole("button", { name: "Use the platform's mail server" }).click();
  await page.getByText("Back to the platform's mail server.").waitFor();
  assert.equal(received.length, 1);
  const { headers, body } = received[0];
  assert.equal(headers["x-webhook-event"], "webhook.test");
  const digest = createHmac("sha256", secret).update(`${headers["x-webhook-timestamp"]}.`).update(body).digest("hex");
  assert.equal(headers["x-webhook-signature"], `sha256=${digest}`);
  assert.equal(JSON.parse(body).id, headers["x-webhook-id"]);
  // A Chatwoot inbox (after the webhook checks: its turn adds message.created deliveries):
  // connected in the console, a customer's message signed as Chatwoot signs it, answered
  // through the fake Chatwoot's API.
  const answers = [];
  const chatwoot = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      answers.push({ url: req.url, token: req.headers["api_access_token"], body: JSON.parse(Buffer.concat(chunks)) });
      res.writeHead(200, { "content-type": "application/json" }).end('{"id":1}');
    });
  });
  await new Promise((resolve) => chatwoot.listen(0, "127.0.0.1", resolve));
  chatwoot.unref();
  t.after(() => chatwoot.close());
  await page.getByLabel("Chatwoot address").fill(`http://127.0.0.1:${chatwoot.address().port}`);
  await page.getByLabel("Account id").fill("1");
  await page.getByLabel("Inbox id").fill("2");
  await page.getByLabel("Agent bot access token").fill("cw-e2e-token-5678");
  await page.getByRole("button", { name: "Connect Chatwoot" }).click();
  await page.getByText("Chatwoot settings saved.").waitFor();
  const cwSecret = (await page.getByTestId("chatwoot-secret").textContent()).trim();
  assert.match(cwSecret, /^cwsec_[A-Za-z0-9]{43}$/);
  const hookUrl = (await page.getByTestId("chatwoot-current").locator("code").first().textContent()).trim();
  const event = JSON.stringify({
    event: "message_created", id: 77, content: "When are you open?", message_type: "incoming", private: false,
    sender: { id: 9, name: "Ana", type: "contact" }, conversation: { id: 5, status: "pending", inbox_id: 2 },
    account: { id: 1 }, inbox: { id: 2 }, attachments: [],
  });
  const ts = Math.floor(Date.now() / 1000);
  const signature = createHmac("sha256", cwSecret).update(`${ts}.${event}`).digest("hex");
  const hook = await fetch(`${BASE}${new URL(hookUrl).pathname}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-chatwoot-timestamp": `${ts}`, "x-chatwoot-signature": `sha256=${signature}`, "x-chatwoot-delivery": "e2e-1" },
    body: event,
  });
  assert.equal(hook.status, 200);
  assert.equal((await hook.json()).status, "queued");
  for (let i = 0; i < 200 && answers.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(answers.length, 1, "the agents answered in Chatwoot");
  assert.equal(answers[0].url, "/api/v1/accounts/1/conversations/5/messages");
  assert.equal(answers[0].token, "cw-e2e-token-5678");
  assert.ok(answers[0].body.content.length > 0);
  await page.reload();
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByText("stored, ends in …5678").waitFor();
  assert.equal(await page.getByText("none yet").count(), 0, "the last event is shown");
  for (const width of [375, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: `${SHOTS}/integrations-${width}.png`, fullPage: true });
  }
  await page.close();
});

test("a booking is made, found in the week and the list, moved and cancelled", async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/bookings`);
  await page.waitForSelector("body[data-hydrated=true]");
  // The demo platform has no mail server: the page says customers are not emailed.
  await page.getByTestId("no-email").waitFor();
  // Two days ahead (the browser's day), at ten.
  const day = new Date();
  day.setDate(day.getDate() + 2);
  const ymd = `${day.getFullYear()}-${String(day.getMonth() + 1).padStart(2, "0")}-${String(day.getDate()).padStart(2, "0")}`;
  await page.getByRole("button", { name: "Book an appointment" }).click();
  await page.getByLabel("Starts (your business's local time)").fill(`${ymd}T10:00`);
  await page.getByLabel("Customer's name").fill("Maria Keys");
  await page.getByLabel("Customer's email").fill("maria@example.com");
  await page.getByLabel("Note (the customer sees it)").fill("First visit");
  await page.getByRole("button", { name: "Book", exact: true }).click();
  await page.getByText("Booked.").waitFor();
  await page.getByRole("heading", { name: /^Maria Keys · / }).waitFor();
  // The week that holds it (Monday first): this one or the next.
  const weekday = (new Date().getDay() + 6) % 7;
  if (weekday + 2 > 6) await page.getByRole("button", { name: "Next week" }).click();
  const slot = page.getByRole("button", { name: "10:00–10:30 Maria Keys" });
  await slot.waitFor();
  // Keyboard: the slot is focusable and opens the booking.
  await slot.focus();
  await page.keyboard.press("Enter");
  // Booking the same time again is refused and keeps what was typed.
  await page.getByRole("button", { name: "Book an appointment" }).click();
  await page.getByLabel("Starts (your business's local time)").fill(`${ymd}T10:15`);
  await page.getByLabel("Customer's name").fill("Second Customer");
  await page.getByLabel("Customer's email").fill("second@example.com");
  await page.getByRole("button", { name: "Book", exact: true }).click();
  await page.getByText("that time overlaps another booking").waitFor();
  assert.equal(await page.getByLabel("Customer's name").inputValue(), "Second Customer");
  await page.getByRole("button", { name: "Cancel", exact: true }).click();
  // Moved to eleven.
  await page.getByLabel("New start").fill(`${ymd}T11:00`);
  await page.getByRole("button", { name: "Move booking" }).click();
  await page.getByText("Booking moved.").waitFor();
  await page.getByRole("button", { name: "11:00–11:30 Maria Keys" }).waitFor();
  for (const width of [375, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: `${SHOTS}/bookings-${width}.png`, fullPage: true });
  }
  // The list finds it by customer.
  await page.getByRole("button", { name: "List" }).click();
  await page.getByLabel("Customer", { exact: true }).fill("maria");
  await page.getByRole("cell", { name: /maria@example\.com/ }).waitFor();
  // Cancelled, with a reason.
  await page.getByLabel("Reason (the customer reads it)").fill("The dentist is ill");
  await page.getByRole("button", { name: "Cancel booking" }).click();
  await page.getByText("Booking cancelled.").waitFor();
  await page.getByRole("cell", { name: "cancelled" }).waitFor();
  await page.getByText("The dentist is ill").waitFor();
  // The reference in the customer's emails opens the booking from a link.
  const reference = (await page.getByTestId("booking-reference").textContent()).trim();
  await page.goto(`${BASE}/bookings?open=${reference}`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByRole("heading", { name: /^Maria Keys · / }).waitFor();
  await page.close();
});

// An OpenAI-compatible provider on loopback whose chat model asks for `create_booking` with
// `booking` and, once the tool has answered, confirms; streamed as the real one streams.
function bookingLlm(booking) {
  const server = createServer(async (req, res) => {
    let text = "";
    for await (const chunk of req) text += chunk;
    const request = JSON.parse(text || "{}");
    const head = { id: "chatcmpl-e2e", created: 1, model: request.model };
    const usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 };
    if (!request.stream) {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify({ ...head, object: "chat.completion", usage,
        choices: [{ index: 0, message: { role: "assistant", content: "scheduling" }, finish_reason: "stop" }] }));
    }
    const chunk = (choices, extra = {}) => `data: ${JSON.stringify({ ...head, object: "chat.completion.chunk", choices, ...extra })}\n\n`;
    const offered = (request.tools || []).some((t) => t.function?.name === "create_booking");
    const answered = (request.messages || []).some((m) => m.role === "tool");
    res.writeHead(200, { "content-type": "text/event-stream" });
    if (offered && !answered) {
      const call = { index: 0, id: "call_e2e", type: "function", function: { name: "create_booking", arguments: JSON.stringify(booking) } };
      res.write(chunk([{ index: 0, delta: { role: "assistant", tool_calls: [call] }, finish_reason: null }]));
      res.write(chunk([{ index: 0, delta: {}, finish_reason: "tool_calls" }]));
    } else {
      res.write(chunk([{ index: 0, delta: { role: "assistant", content: "You are booked; see you then." }, finish_reason: null }]));
      res.write(chunk([{ index: 0, delta: {}, finish_reason: "stop" }]));
    }
    res.write(chunk([], { usage }));
    res.end("data: [DONE]\n\n");
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// A fake Google on the port run.sh gave the server (GOOGLE_*_URL): the consent screen agrees at
// once, the token endpoint swaps codes (and refresh tokens) for tokens, the Calendar API keeps
// events in memory.
function fakeGoogle() {
  const events = new Map();
  const revoked = [];
  const reply = (res, status, body) =>
    res.writeHead(status, { "content-type": "application/json" }).end(body === undefined ? "" : JSON.stringify(body));
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url, "http://google");
      const raw = Buffer.concat(chunks).toString();
      if (url.pathname === "/auth") {
        const back = new URL(url.searchParams.get("redirect_uri"));
        back.searchParams.set("state", url.searchParams.get("state"));
        back.searchParams.set("code", "4/e2e-code");
        return res.writeHead(302, { location: back.toString() }).end();
      }
      if (url.pathname === "/token") {
        return reply(res, 200, {
          access_token: "ya29.e2e", expires_in: 3599, refresh_token: "1//e2e-refresh", token_type: "Bearer",
          scope: "https://www.googleapis.com/auth/calendar.events https://www.googleapis.com/auth/calendar.freebusy",
        });
      }
      if (url.pathname === "/revoke") {
        revoked.push(new URLSearchParams(raw).get("token"));
        return reply(res, 200, {});
      }
      if (req.headers.authorization !== "Bearer ya29.e2e") return reply(res, 401, { error: { code: 401 } });
      if (url.pathname === "/calendar/v3/freeBusy") {
        const body = JSON.parse(raw);
        const busy = [...events.values()].filter((e) => e.status === "confirmed").map((e) => ({ start: e.start.dateTime, end: e.end.dateTime }));
        return reply(res, 200, { calendars: { [body.items[0].id]: { busy } } });
      }
      const [, id] = url.pathname.match(/^\/calendar\/v3\/calendars\/[^/]+\/events(?:\/(.+))?$/) || [];
      if (req.method === "POST") {
        const event = { ...JSON.parse(raw), status: "confirmed", updated: new Date().toISOString() };
        if (events.has(event.id)) return reply(res, 409, { error: { code: 409 } });
        events.set(event.id, event);
        return reply(res, 200, event);
      }
      if (req.method === "DELETE" && events.has(id)) {
        events.get(id).status = "cancelled";
        return reply(res, 204);
      }
      if (req.method === "GET") return reply(res, 200, { items: [], nextSyncToken: "sync-e2e" });
      return reply(res, 404, { error: { code: 404 } });
    });
  });
  return { server, events, revoked };
}

test("Google Calendar is connected over OAuth, takes an agent's booking and its cancellation, and is disconnected", async (t) => {
  const google = fakeGoogle();
  await new Promise((resolve) => google.server.listen(Number(process.env.E2E_GOOGLE_PORT), "127.0.0.1", resolve));
  google.server.unref();
  t.after(() => google.server.close());
  const page = await openPage();
  await signIn(page, ADMIN);
  await page.goto(`${BASE}/integrations`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByText("Not connected: bookings are kept in the platform's own calendar.").waitFor();
  // Through Google's consent screen and back.
  await page.getByRole("button", { name: "Connect Google Calendar" }).click();
  await page.waitForURL(/\/integrations\?google=connected/);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByText("Google Calendar connected: the agents book into it from now on.").waitFor();
  await page.getByTestId("google-current").locator(".badge", { hasText: "Connected" }).waitFor();
  for (const width of [375, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    mkdirSync(SHOTS, { recursive: true });
    await page.locator("#google").screenshot({ path: `${SHOTS}/google-${width}.png` });
  }
  // A customer books in the playground: the scheduling agent (a fake LLM that calls
  // create_booking, then answers) books into Google Calendar, with the customer as guest.
  const day = new Date();
  day.setUTCDate(day.getUTCDate() + 3);
  while ([0, 6].includes(day.getUTCDay())) day.setUTCDate(day.getUTCDate() + 1);
  const ymd = day.toISOString().slice(0, 10);
  const llm = await bookingLlm({ start: `${ymd} 10:00`, duration_minutes: 30, name: "Gus Calendar", email: "gus@example.com" });
  t.after(() => llm.close());
  await page.goto(`${BASE}/settings`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByLabel("Endpoint (base URL)").fill(`http://127.0.0.1:${llm.address().port}/v1`);
  await page.getByLabel("Chat model", { exact: true }).fill("fake-chat");
  await page.getByLabel(/^Router model/).fill("fake-router");
  await page.getByLabel("API key", { exact: true }).fill("sk-fake-e2e-booking");
  await page.getByRole("button", { name: "Save provider" }).click();
  await page.getByText("Provider saved; it answers from the next message.").waitFor();
  try {
    await page.goto(`${BASE}/conversations`);
    await page.waitForSelector("body[data-hydrated=true]");
    await page.getByLabel("Message", { exact: true }).fill(`Please book me on ${ymd} at 10:00. I am Gus Calendar, gus@example.com`);
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByText("You are booked; see you then.").first().waitFor();
  } finally {
    await page.goto(`${BASE}/settings`);
    await page.waitForSelector("body[data-hydrated=true]");
    await page.getByRole("button", { name: "Use the platform default" }).click();
    await page.getByText("Back to the platform's provider.").waitFor();
  }
  const event = [...google.events.values()].find((e) => e.attendees?.[0]?.email === "gus@example.com");
  assert.ok(event, "the agent's booking is an event in Google Calendar");
  // (The event is in UTC; the settings test moved the tenant's zone, the page shows local time.)
  assert.equal(new Date(event.end.dateTime) - new Date(event.start.dateTime), 30 * 60 * 1000);
  const reference = event.extendedProperties.private.platform_booking;
  assert.equal(event.id, reference.replaceAll("-", ""));
  // The Bookings page shows it, held by Google Calendar.
  await page.goto(`${BASE}/bookings?open=${reference}`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByRole("heading", { name: /^Gus Calendar · / }).waitFor();
  await page.getByText(/^10:00–10:30 \(/).waitFor();
  await page.getByText("Google Calendar", { exact: true }).waitFor();
  // Cancelled here, deleted there.
  await page.getByLabel("Reason (the customer reads it)").fill("Closed that day");
  await page.getByRole("button", { name: "Cancel booking" }).click();
  await page.getByText("Booking cancelled.").waitFor();
  assert.equal(event.status, "cancelled");
  // What the agents do while it needs reconnecting, then disconnecting (revoked at Google).
  await page.goto(`${BASE}/integrations`);
  await page.waitForSelector("body[data-hydrated=true]");
  const panel = page.locator("#google");
  await panel.getByLabel("Tell customers that booking is not possible right now, and offer a person").check();
  await panel.getByRole("button", { name: "Save", exact: true }).click();
  await panel.getByText("Saved.", { exact: true }).waitFor();
  await panel.getByRole("button", { name: "Disconnect" }).click();
  await panel.getByRole("button", { name: "Yes, disconnect" }).click();
  await page.getByText("Google Calendar disconnected; the platform's access is revoked.").waitFor();
  assert.deepEqual(google.revoked, ["1//e2e-refresh"]);
  await page.getByText("Not connected: bookings are kept in the platform's own calendar.").waitFor();
  await page.close();
});

test("no page logged a hydration problem", () => {
  assert.deepEqual(hydrationProblems, []);
});
