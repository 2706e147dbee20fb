// The operator console in a real browser: the system Chromium driven by playwright-core.
// Run by tests/e2e_console_browser.rs, which starts the reaktor and passes:
//   CONSOLE_BASE   http://127.0.0.1:PORT
//   CONSOLE_TOKEN  an admin token
//   NODE_TOKEN     a token for node "n1" (switch load)
//   PLAN_JSON      a file with `reaktor plan --json` of the running topology
//   OUT_DIR        where the screenshots go
// Exits 0 when every check passed; prints what failed otherwise.
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";

const base = process.env.CONSOLE_BASE;
const token = process.env.CONSOLE_TOKEN;
const nodeToken = process.env.NODE_TOKEN;
const plan = JSON.parse(readFileSync(process.env.PLAN_JSON, "utf8"));
const outDir = process.env.OUT_DIR;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

function check(condition, message) {
  if (!condition) throw new Error(message);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sorted = (xs) => xs.map((x) => JSON.stringify(x)).sort();
function sameSet(a, b, what) {
  const [x, y] = [sorted(a), sorted(b)];
  check(JSON.stringify(x) === JSON.stringify(y), `${what} drawn differ from reaktor plan --json:\n drawn ${x.join(" ")}\n plan  ${y.join(" ")}`);
}

// ---- load: keep-alive HTTP requests and switch traffic, until stopped -----------------------
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
function request(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(base + path, { method, agent, headers: { ...headers, ...(body ? { "Content-Length": Buffer.byteLength(body) } : {}) } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("error", reject);
    req.setTimeout(5000, () => req.destroy(new Error("timeout")));
    if (body) req.write(body);
    req.end();
  });
}
let loading = false;
async function httpLoad(deadline) {
  while (loading && Date.now() < deadline) {
    await Promise.all(Array.from({ length: 8 }, () => request("GET", "/").catch(() => 0)));
  }
}
async function switchLoad(deadline) {
  const auth = { Authorization: `Bearer ${nodeToken}`, "Content-Type": "application/json" };
  // The node's receiving connection (SSE), so it is online and gets the messages.
  const receiver = http.get(base + "/v1/nodes/n1/messages?address=127.0.0.1:9", { headers: { ...auth, Accept: "text/event-stream" } }, (res) => res.resume());
  receiver.on("error", () => {});
  await sleep(300);
  const ports = Array.from({ length: 500 }, (_, i) => `port:${i}`);
  await request("POST", "/v1/nodes/n1/ports", JSON.stringify({ ports }), auth).catch(() => 0);
  const messages = JSON.stringify({ messages: Array.from({ length: 20 }, (_, i) => ({ port: `port:${i}`, body: "hello" })) });
  while (loading && Date.now() < deadline) {
    await Promise.all([
      request("POST", "/v1/nodes/n1/relet", "", auth).catch(() => 0),
      request("POST", "/v1/messages", messages, auth).catch(() => 0),
      request("POST", "/v1/messages", JSON.stringify({ messages: [{ port: "nobody:1", body: "x" }] }), auth).catch(() => 0),
    ]);
  }
  return receiver;
}

const userDataDir = mkdtempSync(join(tmpdir(), "reaktor-console-chromium-"));
let context;
let page;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
    viewport: { width: 1600, height: 1000 },
  });
  page = context.pages()[0] || (await context.newPage());
  const consoleErrors = [];
  // Script errors; the statuses the test asks for on purpose (401, 400) are no errors.
  page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  const outside = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) outside.push(r.url()); });

  // Without the token: 401.
  const refused = await page.goto(base + "/console");
  check(refused.status() === 401, `without a token /console answered ${refused.status()}`);

  // With it: the page, the topology drawn from the running plan.
  const opened = await page.goto(`${base}/console?token=${encodeURIComponent(token)}`);
  check(opened.status() === 200, `/console?token= answered ${opened.status()}`);
  await page.waitForSelector("#topology[data-ready=true]", { timeout: 15000 });
  const drawn = await page.evaluate(() => ({
    cores: [...document.querySelectorAll("#topology g.core")].map((g) => ({ core: Number(g.dataset.core), cpu: g.dataset.cpu === "" ? null : Number(g.dataset.cpu) })),
    nuklei: [...document.querySelectorAll("#topology g.nukleus")].map((g) => ({ name: g.dataset.instance, kind: g.dataset.kind, core: Number(g.dataset.core) })),
    streams: [...document.querySelectorAll("#topology path.stream")].map((p) => ({ from: p.dataset.from, to: p.dataset.to, rings: p.dataset.rings })),
  }));
  sameSet(drawn.cores, plan.cores.map((c) => ({ core: c.core, cpu: c.cpu })), "cores");
  sameSet(drawn.nuklei, plan.instances.map((i) => ({ name: i.name, kind: i.kind, core: i.core })), "nuklei");
  sameSet(drawn.streams, plan.links.map((l, k) => ({ from: plan.instances[l.a].name, to: plan.instances[l.b].name, rings: `${2 * k},${2 * k + 1}` })), "streams");

  // Live: ticks keep arriving.
  const seq = () => page.evaluate(() => Number(document.getElementById("process").dataset.seq || 0));
  const first = await (async () => { for (let i = 0; i < 100; i++) { const s = await seq(); if (s > 0) return s; await sleep(100); } return 0; })();
  check(first > 0, "no tick reached the page within 10 s");
  await sleep(2500);
  const later = await seq();
  check(later >= first + 2, `ticks do not keep coming (${first} then ${later} after 2.5 s)`);
  const numbers = () => page.evaluate(() => {
    const value = (id) => Number(document.querySelector(`[data-kpi=${id}] .value`).dataset.value || 0);
    const fps = (kind) => [...document.querySelectorAll(`#topology g.nukleus[data-kind=${kind}]`)].reduce((s, g) => s + Number(g.dataset.fps || 0), 0);
    return { rps: value("rps"), fps: value("fps"), ports: value("ports"), messages: value("messages"), tcp: fps("tcp"), http: fps("http"), switch: fps("switch"), status: document.getElementById("status").dataset.state };
  });
  const idle = await numbers();
  check(idle.status === "live", `status is ${idle.status}`);

  // Load: the numbers move.
  loading = true;
  const deadline = Date.now() + 30000;
  const loads = [httpLoad(deadline), switchLoad(deadline)];
  let busy = idle;
  for (let i = 0; i < 100; i++) {
    await sleep(250);
    busy = await numbers();
    if (busy.rps > 50 && busy.tcp > 0 && busy.http > 0 && busy.ports >= 500 && busy.messages > 0 && busy.switch > 0) break;
  }
  check(busy.rps > 50, `requests/s did not move under load: ${JSON.stringify(busy)} (idle ${JSON.stringify(idle)})`);
  check(busy.tcp > idle.tcp && busy.http > 0, `the tcp and http boxes did not move: ${JSON.stringify(busy)}`);
  check(busy.ports >= 500 && busy.messages > 0 && busy.switch > 0, `the switch's numbers did not move: ${JSON.stringify(busy)}`);
  await sleep(3000);

  // Click a box: its numbers and the planner's reason.
  const http0 = plan.instances.find((i) => i.kind === "http");
  await page.click(`#topology g.nukleus[data-instance="${http0.name}"]`);
  const detail = await page.textContent("#detail");
  check(detail.includes(http0.reasons[0]), `the detail panel lacks the plan's words for ${http0.name}: ${detail}`);
  check(/frames \/ s/.test(detail) && /cost per frame/.test(detail), `the detail panel lacks the numbers: ${detail}`);
  // A cross-core stream: its buffers.
  await page.click("#topology path.stream-hit >> nth=0", { force: true });
  const streamDetail = await page.textContent("#detail");
  check(streamDetail.includes("waiting"), `the stream's detail lacks its buffer: ${streamDetail}`);
  await page.click(`#topology g.nukleus[data-instance="${http0.name}"]`);

  // What-if: the running topology (without its tokens), planned.
  const text = await page.inputValue("#whatif-text");
  check(text.includes("[[core]]") && !text.includes(token) && !text.includes(nodeToken), "the what-if editor should show the running topology without its tokens");
  await page.click("#whatif-run");
  await page.waitForSelector("#whatif-result [data-ratio], #whatif-result [data-error]", { timeout: 20000 });
  const ratio = await page.getAttribute("#whatif-result [data-ratio]", "data-ratio");
  check(ratio !== null && Math.abs(Number(ratio) - 1) < 1e-6, `planning the running topology should predict the same throughput, got ratio ${ratio}`);
  // Everything on one core instead of two: predicted slower.
  const oneCore = text.replace(/\n\[\[core\]\]\nnuklei = \[[^\]]*\]\n/, "\n");
  check(oneCore !== text, "the test topology should list its cores as `[[core]]\\nnuklei = [...]`");
  const planOneCore = async () => {
    await page.fill("#whatif-text", oneCore);
    await page.click("#whatif-run");
    await page.waitForFunction(() => {
      const r = document.querySelector("#whatif-result [data-ratio]");
      return r && Number(r.dataset.ratio) < 0.9;
    }, null, { timeout: 20000 });
  };
  await planOneCore();
  const whatIfResult = await page.textContent("#whatif-result");
  check(/req\/s/.test(whatIfResult) && /Proposed/.test(whatIfResult), `the what-if shows no prediction: ${whatIfResult}`);
  await page.fill("#whatif-text", "[[core]\nnuklei = 1");
  await page.click("#whatif-run");
  await page.waitForSelector("#whatif-result [data-error]", { timeout: 20000 });
  const error = await page.textContent("#whatif-result [data-error]");
  check(/what-if\.toml:1:/.test(error), `a broken topology should say where: ${error}`);

  // The picture: the one-core what-if next to the live placement under load.
  await planOneCore();
  await page.click(`#topology g.nukleus[data-instance="${http0.name}"]`);
  await sleep(1500);
  await page.screenshot({ path: join(outDir, "console.png"), fullPage: true });
  await page.screenshot({ path: join(outDir, "console-top.png") });
  loading = false;
  const receiver = (await Promise.all(loads))[1];
  receiver.destroy();

  check(outside.length === 0, `the page fetched from elsewhere: ${outside.join(", ")}`);
  check(consoleErrors.length === 0, `the page logged errors: ${consoleErrors.join(" | ")}`);
  writeFileSync(join(outDir, "result.json"), JSON.stringify({ idle, busy, ticks: [first, later] }, null, 2));
  console.log(`console e2e: ok (rps ${busy.rps.toFixed(0)}, ticks ${first}..${later})`);
} catch (e) {
  console.error(`console e2e: FAILED: ${e.message}`);
  if (page) await page.screenshot({ path: join(outDir, "failure.png"), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  loading = false;
  agent.destroy();
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(process.exitCode || 0);
