// A headless Chromium (Debian's, through playwright-core) driven one JSON command per line
// on stdin, one JSON answer per line on stdout: the end-to-end tests (tests/e2e/browser.py)
// use it to act in the desk page between steps of a call.
//
//   {"do":"goto","url":"..."}                       {"do":"fill","sel":"#user","text":"1001"}
//   {"do":"click","sel":"#btnHold"}                  {"do":"text","sel":"#state"}
//   {"do":"wait","sel":"#card.talking","ms":5000}    {"do":"eval","js":"1 + 1"}
//   {"do":"select","sel":"#wuCode","value":"complaint"}
//   {"do":"screenshot","path":"/tmp/desk.png"}       {"do":"close"}
// Answers: {"ok":true,"value":...} or {"ok":false,"error":"..."}.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
// FAKE_AUDIO=FILE.wav: the fake microphone plays that file (looped), for the browser phone.
const fakeAudio = process.env.FAKE_AUDIO ? ["--use-file-for-fake-audio-capture=" + process.env.FAKE_AUDIO] : [];
const browser = await chromium.launch({
  executablePath,
  // No background networking: the test machine's network is closed, and Chromium's own
  // connections would be refused many at a time.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required", ...fakeAudio],
});
const page = await browser.newPage({ viewport: { width: 1100, height: 1300 }, locale: "zh-CN" });
const consoleLines = [];
page.on("console", (m) => consoleLines.push(m.type() + ": " + m.text()));
page.on("pageerror", (e) => consoleLines.push("pageerror: " + e.message));

async function run(cmd) {
  const ms = cmd.ms ?? 5000;
  switch (cmd.do) {
    case "goto": await page.goto(cmd.url); return null;
    case "fill": await page.fill(cmd.sel, cmd.text, { timeout: ms }); return null;
    case "click": await page.click(cmd.sel, { timeout: ms }); return null;
    case "select": await page.selectOption(cmd.sel, cmd.value, { timeout: ms }); return null;
    case "text": return await page.textContent(cmd.sel, { timeout: ms });
    case "wait": await page.waitForSelector(cmd.sel, { timeout: ms, state: cmd.state ?? "visible" }); return null;
    case "waitText":
      await page.waitForFunction(([sel, text]) => (document.querySelector(sel)?.textContent ?? "").includes(text),
        [cmd.sel, cmd.text], { timeout: ms });
      return null;
    case "eval": return await page.evaluate(cmd.js);
    case "screenshot": await page.screenshot({ path: cmd.path, fullPage: true }); return cmd.path;
    case "console": return consoleLines.splice(0);
    case "close": await browser.close(); process.exit(0);
    default: throw new Error("unknown command " + cmd.do);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let answer;
  try {
    answer = { ok: true, value: await run(JSON.parse(line)) };
  } catch (e) {
    answer = { ok: false, error: String(e && e.message || e) };
  }
  process.stdout.write(JSON.stringify(answer ?? null) + "\n");
}
await browser.close();
