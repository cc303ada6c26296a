#!/usr/bin/env node
// Render www/icons/hearth.svg to the PNG icons the web app manifest lists (192 and 512 px), with
// the system Chromium. The PNGs are committed; run this after changing the SVG.
import fs from "node:fs";
import path from "node:path";
import { launchBrowser, root } from "../tests/browser/harness.mjs";

const svg = fs.readFileSync(path.join(root, "www/icons/hearth.svg"), "utf8");
const browser = await launchBrowser();
try {
  for (const size of [192, 512]) {
    const page = await browser.newPage({ viewport: { width: size, height: size } });
    await page.setContent(`<style>html,body{margin:0;background:transparent}svg{display:block;width:${size}px;height:${size}px}</style>${svg}`);
    await page.screenshot({ path: path.join(root, `www/icons/hearth-${size}.png`), omitBackground: true });
    await page.close();
  }
} finally {
  await browser.close();
}
