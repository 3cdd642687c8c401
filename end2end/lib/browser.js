// What every browser test shares: Debian's Chromium driven by playwright-core, signing in, and
// a record of what pages logged about hydration.
import { before, after } from "node:test";
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
