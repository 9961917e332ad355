import { readFileSync } from "node:fs";
import { projectPath } from "./paths.js";

/** Trebuchet's version, from its package.json (one place to change it). */
export const VERSION = (JSON.parse(readFileSync(projectPath("package.json"), "utf8")) as { version: string })
  .version;
