import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { HostError } from "../driver.js";

const exec = promisify(execFile);

/**
 * Runs one of the host's tools (qemu-img, genisoimage, QEMU, mmdebstrap, ...) and returns
 * its output; a failure is a transient HostError that says what was being done and ends
 * with the last lines the tool wrote to stderr.
 */
export async function runTool(
  file: string,
  args: string[],
  what: string,
  options: { timeoutMs?: number; cwd?: string } = {},
): Promise<string> {
  try {
    const { stdout } = await exec(file, args, {
      timeout: options.timeoutMs ?? 60_000,
      maxBuffer: 64 * 1024 * 1024,
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
    return stdout;
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? "").trim();
    throw new HostError(
      `${what} failed: ${stderr.split("\n").slice(-5).join(" ") || (error as Error).message}`,
      true,
    );
  }
}
