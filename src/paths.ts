import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The project's root (where package.json is), whether running from src/ (tests) or dist/ (the CLI). */
export const PROJECT_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("cannot find the project root (package.json)");
    dir = parent;
  }
  return dir;
})();

export const projectPath = (...parts: string[]) => join(PROJECT_ROOT, ...parts);
