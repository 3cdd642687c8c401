// What every browser test shares: Debian's Chromium driven by playwright-core, signing in, and
// a record of what pages logged about hydration.
import { before, after } from "node:test";
import { createServer } from "node:http";
import { chromium } from "playwright-core";

export const BASE = process.env.BASE_URL;
export const ADMIN = { email: process.env.DEMO_EMAIL, password: process.env.DEMO_PASSWORD };
export const CONSOLE_PAGES = ["/keys", "/members", "/audit", "/jobs", "/knowledge", "/workflows", "/conversations", "/bookings", "/widgets", "/integrations", "/agents", "/settings", "/account"];

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => { await browser?.close(); });

export function newContext(options) {
  return browser.newContext(options);
}

// What any page logged about hydration, checked by each file's last test. Leptos warns (debug
// builds) when a page reads a resource outside <Suspense/>, and logs mismatches and panics; a
// broken WASM module (a bad wasm-opt pass) throws a page error; each can leave forms
// mis-hydrated (no handlers) depending on timing, so none is tolerated.
export const hydrationProblems = [];
export async function openPage(context = browser) {
  const page = await context.newPage();
  page.on("console", (msg) => {
    if (/hydrat|outside a <Suspense|panicked/i.test(msg.text())) hydrationProblems.push(`${page.url()}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => hydrationProblems.push(`${page.url()}: ${err.message}`));
  return page;
}

export async function signIn(page, { email, password }) {
  await page.goto(`${BASE}/login`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((url) => !url.pathname.startsWith("/login"));
  await page.waitForSelector("body[data-hydrated=true]");
}

export async function api(path, key) {
  return fetch(`${BASE}${path}`, { headers: { Authorization: `Bearer ${key}` } });
}

// An OpenAI-compatible provider on loopback, streamed as the real one streams (role chunk,
// content chunks, finish, usage, [DONE]): `answer(request)` gives the words, sent at once or a
// word every `gap` ms. Records the requests.
export function fakeLlm(answer) {
  const fake = { gap: 0, requests: [] };
  const server = createServer(async (req, res) => {
    let text = "";
    for await (const chunk of req) text += chunk;
    const request = JSON.parse(text || "{}");
    fake.requests.push(request);
    const words = answer(request);
    const usage = { prompt_tokens: 10, completion_tokens: words.length, total_tokens: 10 + words.length };
    const head = { id: "chatcmpl-fake", created: 1, model: request.model };
    if (!request.stream) {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify({ ...head, object: "chat.completion", usage,
        choices: [{ index: 0, message: { role: "assistant", content: words.join("") }, finish_reason: "stop" }] }));
    }
    const chunk = (choices, extra = {}) => `data: ${JSON.stringify({ ...head, object: "chat.completion.chunk", choices, ...extra })}\n\n`;
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(chunk([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]));
    for (const word of words) {
      res.write(chunk([{ index: 0, delta: { content: word }, finish_reason: null }]));
      if (fake.gap) await new Promise((r) => setTimeout(r, fake.gap));
    }
    res.write(chunk([{ index: 0, delta: {}, finish_reason: "stop" }]));
    res.write(chunk([], { usage }));
    res.end("data: [DONE]\n\n");
  });
  fake.close = () => server.close();
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    fake.port = server.address().port;
    resolve(fake);
  }));
}

// Makes the fake the signed-in tenant's own provider (console → Settings).
export async function useProvider(page, llm) {
  await page.goto(`${BASE}/settings`);
  await page.waitForSelector("body[data-hydrated=true]");
  await page.getByLabel("Endpoint (base URL)").fill(`http://127.0.0.1:${llm.port}/v1`);
  await page.getByLabel("Chat model", { exact: true }).fill("fake-chat");
  await page.getByLabel(/^Router model/).fill("fake-router");
  await page.getByLabel("API key", { exact: true }).fill("sk-fake-e2e");
  await page.getByRole("button", { name: "Save provider" }).click();
  await page.getByText("Provider saved; it answers from the next message.").waitFor();
}
