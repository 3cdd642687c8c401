// The workflow editor: build by drag and drop, connect, configure, publish, run, see the trace
// and the compensation; undo/redo; keyboard-only building; versions; 200-node frame time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { createHmac } from "node:crypto";
import { ADMIN, BASE, fakeLlm, hydrationProblems, openPage, signIn, useProvider } from "../lib/browser.js";

const SHOTS = process.env.SCREENSHOTS_DIR || "/tmp/e2e-shots";

/// A partner API on loopback that always fails (run.sh lets tenants reach loopback).
async function failingApi() {
  const seen = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url} ${req.headers["idempotency-key"] || ""}`);
    res.writeHead(500, { "content-type": "application/json" });
    res.end('{"error":"the partner is down"}');
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => server.close() };
}

async function newWorkflow(page, name, { from, json } = {}) {
  await page.goto(`${BASE}/workflows`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByRole("form", { name: "New workflow" }).getByLabel("Name", { exact: true }).fill(name);
  if (from) await page.getByLabel("Start from").selectOption(from);
  if (json) await page.getByLabel("The export").fill(json);
  await page.getByRole("button", { name: "Create and open" }).click();
  await page.waitForURL(/\/workflows\/edit\?open=/);
  await page.getByTestId("canvas").waitFor();
}

const node = (page, id) => page.locator(`[data-node="${id}"]`);
const port = (page, id, name = "out") => page.locator(`[data-node="${id}"] [data-port="${name}"]`);

/// Fills a field of the open step's form and leaves it (the change is committed on leaving).
async function setField(page, label, value) {
  const field = page.getByTestId("node-panel").getByLabel(label, { exact: true });
  await field.fill(value);
  await field.press("Tab");
}

async function saved(page) {
  await page.getByTestId("save-state").filter({ hasText: "Saved" }).waitFor();
}

function localTime(daysAhead, hour) {
  const d = new Date();
  d.setDate(d.getDate() + daysAhead);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(hour)}:00`;
}

test("a workflow built by drag and drop is published, run, and its booking undone when a later step fails", async () => {
  const partner = await failingApi();
  // The tenant's model judges the lead, answering with the field the step asks for.
  const llm = await fakeLlm(() => ['{"qualified": ', "true}"]);
  const page = await openPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  await signIn(page, ADMIN);
  await useProvider(page, llm);
  await newWorkflow(page, "Book then charge");
  const canvas = page.getByTestId("canvas");
  await node(page, "start").waitFor();

  // Drag steps from the palette onto the canvas.
  const palette = (kind) => page.locator(`.wf-palette-item[data-kind="${kind}"]`);
  await palette("llm").dragTo(canvas, { targetPosition: { x: 320, y: 100 } });
  await node(page, "llm").waitFor();
  await setField(page, "Prompt", "Is {{ trigger.name }} worth a call?");
  await setField(page, "Output fields", "qualified = boolean");
  await palette("condition").dragTo(canvas, { targetPosition: { x: 320, y: 300 } });
  await node(page, "condition").waitFor();
  await setField(page, "Expression", "nodes.llm.qualified");
  await palette("booking").dragTo(canvas, { targetPosition: { x: 120, y: 100 } });
  await node(page, "booking").waitFor();
  await setField(page, "Starts at", "{{ trigger.when }}");
  await setField(page, "Name", "{{ trigger.name }}");
  assert.equal(await page.getByTestId("node-panel").getByLabel("Step name").inputValue(), "Booking");
  await setField(page, "Email", "{{ trigger.email }}");
  await palette("http").dragTo(canvas, { targetPosition: { x: 120, y: 480 } });
  await node(page, "http").waitFor();
  await setField(page, "URL", `${partner.url}/charge`);
  await palette("end").dragTo(canvas, { targetPosition: { x: 300, y: 480 } });
  await node(page, "finish").waitFor();
  // Columns by distance from the start, all in view.
  await page.getByRole("button", { name: "Tidy up" }).click();

  // Connect: drag an exit onto a step, click an exit then a step; a step cannot lead into the start.
  await port(page, "start").dragTo(node(page, "llm"));
  await port(page, "llm").dragTo(node(page, "condition"));
  await port(page, "condition", "true").dragTo(node(page, "booking"));
  await port(page, "booking").click();
  await node(page, "http").click();
  await port(page, "http").click();
  await node(page, "start").click();
  await page.getByText("Not connected: Start starts the run: nothing leads into it.").waitFor();
  await port(page, "http").dragTo(node(page, "finish"));
  assert.equal(await page.locator(".wf-edge").count(), 5);
  await saved(page);
  await page.getByText("No problems: ready to publish.").waitFor();

  // Undo and redo cover configuration edits and deletions.
  await node(page, "booking").click();
  await setField(page, "Note", "first call");
  await saved(page);
  await page.getByRole("button", { name: "Undo", exact: true }).click();
  assert.equal(await page.getByTestId("node-panel").getByLabel("Note", { exact: true }).inputValue(), "");
  await page.getByRole("button", { name: "Redo", exact: true }).click();
  assert.equal(await page.getByTestId("node-panel").getByLabel("Note", { exact: true }).inputValue(), "first call");
  await node(page, "finish").click();
  await page.keyboard.press("Delete");
  await node(page, "finish").waitFor({ state: "detached" });
  assert.equal(await page.locator(".wf-edge").count(), 4);
  await page.keyboard.press("Control+z");
  await node(page, "finish").waitFor();
  assert.equal(await page.locator(".wf-edge").count(), 5);

  // A problem shows on its step before publishing.
  await node(page, "booking").click();
  await setField(page, "Email", "");
  await node(page, "booking").locator(".wf-badge.problem").waitFor();
  await page.getByRole("button", { name: "Undo", exact: true }).click();
  await saved(page);
  await page.getByText("No problems: ready to publish.").waitFor();

  await page.getByLabel("Version note").fill("first version");
  await page.getByRole("button", { name: "Publish" }).click();
  await page.getByText("Published version 1.").first().waitFor();

  // Run it: the charge fails, the booking made before it is cancelled, as the trace shows.
  await page.getByRole("button", { name: "Run…" }).click();
  await page.getByLabel("Input (JSON, read as trigger.*)").fill(JSON.stringify({
    name: "Ada Lovelace", email: "ada@example.com", when: localTime(3, 11),
  }));
  await page.getByRole("button", { name: "Start the run" }).click();
  await page.getByTestId("run-status").filter({ hasText: "failed" }).waitFor({ timeout: 30000 });
  await page.getByTestId("run-compensation").filter({ hasText: "everything it did" }).waitFor({ timeout: 30000 });
  await node(page, "booking").locator(".wf-badge.trace").filter({ hasText: "undone" }).waitFor();
  await node(page, "llm").locator(".wf-badge.trace").filter({ hasText: "done" }).waitFor();
  const asked = llm.requests.find((r) => r.response_format);
  assert.deepEqual(asked?.response_format?.json_schema?.schema?.required, ["qualified"], JSON.stringify(llm.requests));
  await node(page, "http").locator(".wf-badge.trace").filter({ hasText: "failed" }).waitFor();
  const undo = page.getByTestId("run-compensations");
  await undo.getByRole("cell", { name: "done" }).waitFor();
  assert.ok(partner.seen.length >= 1 && partner.seen[0].startsWith("POST /charge wf:"), partner.seen.join("\n"));
  for (const width of [375, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: `${SHOTS}/workflow-run-${width}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });

  // Again with the same input, then the two runs side by side.
  await page.getByRole("button", { name: "Run again with this input" }).click();
  await page.getByRole("button", { name: "Runs" }).click();
  // The list may be read before the second run is saved: refresh until it shows.
  const rows = page.getByTestId("runs").locator("tbody tr");
  for (let i = 0; i < 50 && (await rows.count()) < 2; i++) {
    await page.getByRole("button", { name: "Refresh", exact: true }).click();
    await page.waitForTimeout(200);
  }
  await rows.nth(1).waitFor();
  const boxes = page.getByTestId("runs").getByRole("checkbox");
  await boxes.nth(0).check();
  await boxes.nth(1).check();
  await page.getByRole("button", { name: "Compare the two chosen" }).click();
  await page.getByTestId("comparison").getByRole("cell", { name: "booking", exact: true }).waitFor();
  partner.close();
  llm.close();
  await page.close();
});

test("a two-step workflow is made with the keyboard alone", async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  await newWorkflow(page, "Keyboard only");
  await node(page, "start").waitFor();
  // The palette's buttons add a step, which takes the focus.
  await page.locator('.wf-palette-item[data-kind="template"]').focus();
  await page.keyboard.press("Enter");
  await page.locator('[data-node="template"]:focus').waitFor();
  await page.keyboard.press("Enter");
  const text = page.getByTestId("node-panel").getByLabel("Template", { exact: true });
  await text.focus();
  await page.keyboard.type("Hello {{ trigger.name }}");
  await page.keyboard.press("Tab");
  // Tried with a sample trigger before anything is published.
  await page.getByTestId("test-step").locator("summary").click();
  await page.getByLabel("Trigger (trigger.*)").fill('{"name": "Ada"}');
  await page.getByRole("button", { name: "Test", exact: true }).click();
  await page.getByTestId("test-result").getByText('"text": "Hello Ada"').waitFor();
  // Arrows move the step.
  await node(page, "template").focus();
  const left = async () => parseFloat(await node(page, "template").evaluate((el) => el.style.left));
  const before = await left();
  await page.keyboard.press("ArrowRight");
  await page.keyboard.press("Shift+ArrowRight");
  assert.equal(await left(), before + 60);
  // Enter on an exit, then Enter on the step it should lead to.
  await port(page, "start").focus();
  await page.keyboard.press("Enter");
  await node(page, "template").focus();
  await page.keyboard.press("Enter");
  // (A straight edge has no height: attached, not "visible".)
  await page.locator(".wf-edge").waitFor({ state: "attached" });
  await saved(page);
  await page.getByText("No problems: ready to publish.").waitFor();
  // The exit can also be chosen in the form.
  await node(page, "start").focus();
  await page.keyboard.press("Enter");
  assert.equal(await page.getByTestId("node-panel").getByLabel("Then (out)").inputValue(), "template");
  await page.close();
});

test("versions are compared on the canvas and an old one restored into the draft", async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  await newWorkflow(page, "Lead qualification", { from: "Qualify a lead and book a call" });
  await page.getByText("No problems: ready to publish.").waitFor();
  await page.getByRole("button", { name: "Publish" }).click();
  await page.getByText("Published version 1.").first().waitFor();
  // Version 2: a wait before the booking's confirmation is replaced by a new step.
  await page.locator('.wf-palette-item[data-kind="wait"]').click();
  await node(page, "wait").waitFor();
  await page.getByRole("button", { name: "Tidy up" }).click();
  await port(page, "email_2").click();
  await node(page, "wait").click();
  await saved(page);
  await page.getByText("No problems: ready to publish.").waitFor();
  await page.getByRole("button", { name: "Publish" }).click();
  await page.getByText("Published version 2.").first().waitFor();
  await page.getByRole("button", { name: "Versions" }).click();
  await page.getByRole("button", { name: "Compare version 1 with the draft" }).click();
  await page.getByTestId("diff-summary").filter({ hasText: "1 added" }).waitFor();
  await node(page, "wait").and(page.locator(".wf-diff-added")).waitFor();
  await page.getByRole("button", { name: "Versions" }).click();
  await page.getByRole("button", { name: "Restore version 1 into the draft" }).click();
  await node(page, "wait").waitFor({ state: "detached" });
  assert.equal(await page.locator(".wf-node").count(), 6);
  await page.close();
});

test("a run waiting for approval is approved from its trace", async () => {
  const definition = {
    format: 1,
    nodes: [
      { id: "start", kind: "manual_trigger", name: "Start", position: { x: 0, y: 0 } },
      { id: "ask", kind: "approval", name: "Ask", config: { prompt: "Refund {{ trigger.amount }} EUR?" }, position: { x: 260, y: 0 } },
      { id: "done", kind: "end", name: "Done", config: { output: { comment: "{{ nodes.ask.comment }}" } }, position: { x: 520, y: 0 } },
    ],
    edges: [{ from: "start", to: "ask" }, { from: "ask", port: "approved", to: "done" }],
  };
  const page = await openPage();
  await signIn(page, ADMIN);
  await newWorkflow(page, "Refund approval", { from: "import", json: JSON.stringify(definition) });
  await page.getByText("No problems: ready to publish.").waitFor();
  await page.getByRole("button", { name: "Publish" }).click();
  await page.getByText("Published version 1.").first().waitFor();
  await page.getByRole("button", { name: "Run…" }).click();
  await page.getByLabel("Input (JSON, read as trigger.*)").fill('{"amount": 30}');
  await page.getByRole("button", { name: "Start the run" }).click();
  await page.getByText("Waiting at ask for a decision: Refund 30 EUR?").waitFor({ timeout: 30000 });
  await node(page, "ask").locator(".wf-badge.trace").filter({ hasText: "waiting" }).waitFor();
  await page.getByLabel("Comment", { exact: true }).fill("fine by me");
  await page.getByTestId("run-trace").getByRole("button", { name: "Approve", exact: true }).click();
  await page.getByTestId("run-status").filter({ hasText: "succeeded" }).waitFor({ timeout: 30000 });
  await page.getByText('Output: {"comment":"fine by me"}').waitFor();
  await page.close();
});

test("a webhook trigger's secret is shown once and a signed request starts a run", async () => {
  const definition = {
    format: 1,
    nodes: [
      { id: "hook", kind: "webhook_trigger", name: "Order placed", position: { x: 0, y: 0 } },
      { id: "done", kind: "end", name: "Done", config: { output: { order: "{{ trigger.order }}" } }, position: { x: 260, y: 0 } },
    ],
    edges: [{ from: "hook", to: "done" }],
  };
  const page = await openPage();
  await signIn(page, ADMIN);
  // A secret for HTTP steps, on the list page: saved, listed by name, never shown.
  await page.goto(`${BASE}/workflows`);
  await page.waitForSelector("body[data-hydrated=true]");
  const secrets = page.getByTestId("workflow-secrets");
  await secrets.getByLabel("Name").fill("CRM_TOKEN");
  await secrets.getByLabel("Value").fill("tok-e2e-secret");
  await secrets.getByRole("button", { name: "Save secret" }).click();
  await secrets.getByText("secrets.CRM_TOKEN").waitFor();
  assert.equal(await secrets.getByLabel("Value").inputValue(), "");
  assert.ok(!(await page.content()).includes("tok-e2e-secret"));
  for (const width of [375, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: `${SHOTS}/workflow-secrets-${width}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });

  await newWorkflow(page, "Orders hook", { from: "import", json: JSON.stringify(definition) });
  await node(page, "hook").focus();
  await page.keyboard.press("Enter");
  const panel = page.getByTestId("webhook-secret");
  await panel.getByText("No secret yet").waitFor();
  await panel.getByRole("button", { name: "Make a secret" }).click();
  const secret = (await panel.getByTestId("webhook-secret-value").textContent()).trim();
  assert.match(secret, /^whsec_/);
  await panel.getByRole("button", { name: /New secret/ }).waitFor();
  const url = (await panel.locator("code.secret").first().textContent()).trim();
  assert.match(url, /\/hooks\/workflows\/[0-9a-f-]{36}$/);
  for (const width of [375, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: `${SHOTS}/workflow-webhook-${width}.png` });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.getByText("No problems: ready to publish.").waitFor();
  await page.getByRole("button", { name: "Publish" }).click();
  await page.getByText("Published version 1.").first().waitFor();

  // What a partner's system does: sign the body with the secret and POST it.
  const body = JSON.stringify({ order: 42 });
  const timestamp = Math.floor(Date.now() / 1000);
  const digest = createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
  const path = new URL(url).pathname;
  const sent = await fetch(`${BASE}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-webhook-timestamp": String(timestamp), "x-webhook-signature": `sha256=${digest}`, "x-webhook-id": "order-42" },
    body,
  });
  assert.equal(sent.status, 202);
  const forged = await fetch(`${BASE}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-webhook-timestamp": String(timestamp), "x-webhook-signature": `sha256=${"0".repeat(64)}` },
    body,
  });
  assert.equal(forged.status, 401);
  await page.getByRole("button", { name: "Runs" }).click();
  await page.getByRole("cell", { name: "webhook" }).first().waitFor({ timeout: 30000 });
  await page.close();
});

test("the conversation graph opens as a workflow, is published, chosen for the playground and answers there", async () => {
  const page = await openPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  await signIn(page, ADMIN);
  await newWorkflow(page, "Our conversation graph", { from: "Conversation graph" });
  await node(page, "specialist").waitFor();
  await page.getByTestId("graph-note").waitFor();
  // Only steps that answer at once are offered; a booking is not.
  assert.ok(await page.locator('.wf-palette-item[data-kind="booking"]').isHidden());
  assert.ok(await page.locator('.wf-palette-item[data-kind="classifier"]').isVisible());
  await node(page, "specialist").click();
  await setField(page, "Context", "Answer in one short paragraph.");
  await saved(page);
  await page.getByText("No problems: ready to publish.").waitFor();
  await page.screenshot({ path: `${SHOTS}/conversation-graph-editor-1280.png` });
  await page.getByRole("button", { name: "Publish" }).click();
  await page.getByText("Published version 1.").first().waitFor();

  const choose = async (option) => {
    await page.goto(`${BASE}/workflows`);
    await page.waitForSelector("body[data-hydrated=true]");
    const graphs = page.getByTestId("conversation-graphs");
    await graphs.getByLabel("Graph for Playground").selectOption({ label: option });
    await graphs.getByText("Saved: the channel's next message is answered by this graph.").waitFor();
  };
  await choose("Our conversation graph (version 1)");
  for (const width of [375, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    await page.getByTestId("conversation-graphs").screenshot({ path: `${SHOTS}/conversation-graphs-${width}.png` });
  }
  await page.setViewportSize({ width: 1280, height: 900 });

  // The playground's next message goes through it: trigger, route, specialist.
  await page.goto(`${BASE}/conversations`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByLabel("Message", { exact: true }).fill("Is parking free?");
  await page.getByRole("button", { name: "Send" }).click();
  await page.getByText("Trace: 3 steps").first().click();
  await page.getByRole("cell", { name: "message_trigger" }).first().waitFor();
  await page.getByRole("cell", { name: "specialist" }).first().waitFor();

  // Back to the default graph for the other tests.
  await choose("The default graph");
  await page.close();
});

test("the editor stays responsive with 200 steps (frame times printed)", async () => {
  const nodes = [{ id: "start", kind: "manual_trigger", name: "Start", position: { x: 0, y: 0 } }];
  const edges = [];
  for (let i = 1; i < 200; i++) {
    nodes.push({
      id: `s${i}`, kind: "set", name: `Step ${i}`, config: { values: { n: `${i}` } },
      position: { x: (i % 20) * 230, y: Math.floor(i / 20) * 110 },
    });
    edges.push({ from: i === 1 ? "start" : `s${i - 1}`, to: `s${i}` });
  }
  const page = await openPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  await signIn(page, ADMIN);
  await newWorkflow(page, "Two hundred steps", { from: "import", json: JSON.stringify({ format: 1, nodes, edges }) });
  await node(page, "s199").waitFor();
  assert.equal(await page.locator(".wf-node").count(), 200);
  await page.getByRole("button", { name: "Zoom in" }).click();
  await page.getByRole("button", { name: "Zoom in" }).click();

  // Frame intervals while a gesture runs, from requestAnimationFrame.
  const measure = async (gesture) => {
    await page.evaluate(() => {
      window.__frames = [];
      let last = performance.now();
      const tick = (t) => { window.__frames.push(t - last); last = t; if (window.__frames.length < 1000) window.__rafId = requestAnimationFrame(tick); };
      window.__rafId = requestAnimationFrame(tick);
    });
    await gesture();
    return page.evaluate(() => {
      cancelAnimationFrame(window.__rafId);
      const f = window.__frames.slice(1).sort((a, b) => a - b);
      const at = (q) => f[Math.min(f.length - 1, Math.floor(q * f.length))];
      return { frames: f.length, p50: at(0.5), p95: at(0.95), max: f[f.length - 1] };
    });
  };
  const box = await node(page, "s10").boundingBox();
  const [x, y] = [box.x + box.width / 2, box.y + box.height / 2];
  const before = await node(page, "s10").evaluate((el) => el.style.left);
  const drag = await measure(async () => {
    await page.mouse.move(x, y);
    await page.mouse.down();
    for (let i = 1; i <= 60; i++) await page.mouse.move(x + i * 4, y + i * 2);
    await page.mouse.up();
  });
  assert.notEqual(await node(page, "s10").evaluate((el) => el.style.left), before);
  const canvas = await page.getByTestId("canvas").boundingBox();
  const pan = await measure(async () => {
    // Empty canvas below the last row.
    const y = canvas.y + canvas.height - 30;
    await page.mouse.move(canvas.x + 20, y);
    await page.mouse.down();
    for (let i = 1; i <= 60; i++) await page.mouse.move(canvas.x + 20 + i * 5, y - i * 2);
    await page.mouse.up();
  });
  console.log(`editor, 200 steps: drag ${JSON.stringify(drag)} ms; pan ${JSON.stringify(pan)} ms`);
  await page.close();
});

test("no workflow page logged a hydration problem", () => {
  assert.deepEqual(hydrationProblems, []);
});
