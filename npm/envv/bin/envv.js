#!/usr/bin/env node
// The `envv` command of the npm package: runs the envv binary that the platform package for
// this machine (an optional dependency, e.g. @envv/linux-x64) carries. Nothing is downloaded
// at install or run time. ENVV_BINARY=/path/to/envv overrides the lookup.
"use strict";

const { spawn } = require("child_process");

const PLATFORMS = {
  "linux x64": "@envv/linux-x64",
  "linux arm64": "@envv/linux-arm64",
  "darwin x64": "@envv/darwin-x64",
  "darwin arm64": "@envv/darwin-arm64",
  "win32 x64": "@envv/win32-x64",
};

function binaryPath() {
  if (process.env.ENVV_BINARY) return process.env.ENVV_BINARY;
  const platform = `${process.platform} ${process.arch}`;
  const pkg = PLATFORMS[platform];
  if (!pkg) {
    fail(`envv has no binary for ${platform} in this package; build it with \`cargo install --path .\` and set ENVV_BINARY`);
  }
  const exe = process.platform === "win32" ? "envv.exe" : "envv";
  try {
    return require.resolve(`${pkg}/bin/${exe}`);
  } catch (_) {
    fail(`${pkg} is not installed: reinstall without --no-optional / --omit=optional (npm installs only the platform package of this machine)`);
  }
}

function fail(msg) {
  process.stderr.write(`envv: ${msg}\n`);
  process.exit(2);
}

const child = spawn(binaryPath(), process.argv.slice(2), { stdio: "inherit" });

// Signals sent to this process (docker stop, a CI timeout) go on to envv, which passes them on
// to the program it runs; Ctrl-C in a terminal reaches both through the process group.
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => child.kill(sig));
}

child.on("error", (err) => fail(`cannot run ${err.path || "the envv binary"}: ${err.message}`));
child.on("exit", (code, signal) => {
  if (signal) {
    // Die of the same signal, so the caller sees what the child saw.
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code === null ? 1 : code);
});
