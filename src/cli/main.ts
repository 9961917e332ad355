#!/usr/bin/env -S node --max-semi-space-size=4 --single-threaded-gc --heap-growing-percent=50
// A small young generation keeps the server under its memory promise (bench/README.md) at no cost in throughput.
import { CommanderError } from "commander";
import { ConfigError } from "../config/load.js";
import { buildProgram } from "./program.js";

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Usage errors exit 2 (help and version exit 0), so scripts can tell them from a failed check.
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else if (error instanceof ConfigError) {
    // EX_CONFIG: the service unit does not restart a process whose settings are refused.
    process.stderr.write(`trebuchet: ${error.message}\n`);
    process.exitCode = 78;
  } else {
    process.stderr.write(`trebuchet: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
