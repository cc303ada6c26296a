// Run a wasm32-wasip1 test binary under node's WASI: node wasi-run.mjs BINARY [ARGS ...].
import fs from "node:fs";
import { WASI } from "node:wasi";

const [bin, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [bin, ...args], env: process.env, returnOnExit: true });
const module = await WebAssembly.compile(fs.readFileSync(bin));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
