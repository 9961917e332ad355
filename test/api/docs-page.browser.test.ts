/**
 * The docs page in a real browser (Debian's chromium, headless, driven by
 * playwright-core): /docs renders every operation of the served document from this
 * server alone (no request leaves it, no Content-Security-Policy violation).
 */
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api.js";

const CHROMIUM = process.env.TREBUCHET_CHROMIUM ?? "/usr/bin/chromium";

let api: TestApi;
let browser: Browser;
let url: string;

beforeAll(async () => {
  api = await startTestApi("sqlite");
  url = await api.server.app.listen({ host: "127.0.0.1", port: 0 });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await api?.dispose();
});

describe("/docs in a browser", () => {
  it("renders every operation of /core/v1/openapi.json, from this server only", async () => {
    const document = (await (await fetch(`${url}/core/v1/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const operations = Object.values(document.paths).reduce(
      (count, item) => count + Object.keys(item).filter((key) => key !== "servers").length,
      0,
    );
    const page = await browser.newPage();
    const elsewhere: string[] = [];
    const problems: string[] = [];
    page.on("request", (request) => {
      if (!request.url().startsWith(url) && !request.url().startsWith("data:")) elsewhere.push(request.url());
    });
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(message.text());
    });
    page.on("pageerror", (error) => problems.push(error.message));
    await page.goto(`${url}/docs`);
    await page.waitForSelector(".opblock-tag", { timeout: 30_000 }).catch(async (error: Error) => {
      throw new Error(
        `${error.message}; page errors: ${problems.join("; ")}; elsewhere: ${elsewhere.join(", ")}`,
      );
    });
    // Tags start collapsed (docExpansion none): open them all.
    for (const tag of await page.locator(".opblock-tag").all()) {
      if ((await tag.getAttribute("data-is-open")) !== "true") await tag.click();
    }
    await expect.poll(() => page.locator(".opblock").count(), { timeout: 30_000 }).toBe(operations);
    expect(await page.locator(".info .title").innerText()).toContain("Trebuchet");
    expect(await page.locator(".opblock-summary-path", { hasText: "/validate_spec" }).count()).toBe(1);
    expect(elsewhere).toEqual([]);
    expect(problems).toEqual([]);
  }, 90_000);
});
