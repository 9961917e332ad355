import { execFile } from "node:child_process";
import { renameSync, rmSync, truncateSync } from "node:fs";
import { promisify } from "node:util";
import { HostError } from "../driver.js";
import { runTool } from "./run-tool.js";

const exec = promisify(execFile);
const GiB = 1024 ** 3;
const LONG_MS = 30 * 60_000;

/**
 * Shrinks a qcow2 image that nothing has open. An image that is one ext2/3/4 filesystem
 * has its filesystem shrunk first (e2fsck, then resize2fs, on a raw copy); an image that
 * holds no filesystem shrinks only if nothing was ever written past the new end. Anything
 * else (a partition table, another filesystem, data that does not fit) is refused with
 * the reason, and the image is left as it was.
 */
export async function shrinkImage(path: string, sizeInGb: number): Promise<void> {
  const bytes = sizeInGb * GiB;
  const raw = `${path}.shrinking.raw`;
  const rebuilt = `${path}.shrinking.qcow2`;
  try {
    await runTool("qemu-img", ["convert", "-O", "raw", path, raw], "reading the disk to shrink it", {
      timeoutMs: LONG_MS,
    });
    const found = await probe(raw);
    if (found.PTTYPE)
      throw new HostError(
        `the disk has a ${found.PTTYPE} partition table: only a disk that is one ext2/3/4 filesystem, or holds none, shrinks offline`,
      );
    if (found.TYPE && !/^ext[234]$/.test(found.TYPE))
      throw new HostError(`the disk holds a ${found.TYPE} filesystem, which does not shrink offline here`);
    if (found.TYPE) {
      await checkFilesystem(raw);
      await runTool("resize2fs", [raw, `${sizeInGb * 1024}M`], "shrinking the disk's filesystem", {
        timeoutMs: LONG_MS,
      });
    } else if (await writtenBeyond(path, bytes)) {
      throw new HostError(
        `the disk holds data beyond ${sizeInGb} GB and no filesystem Trebuchet can shrink: it would be lost`,
      );
    }
    truncateSync(raw, bytes);
    await runTool("qemu-img", ["convert", "-O", "qcow2", raw, rebuilt], "writing the shrunk disk", {
      timeoutMs: LONG_MS,
    });
    renameSync(rebuilt, path);
  } finally {
    rmSync(raw, { force: true });
    rmSync(rebuilt, { force: true });
  }
}

/** What blkid finds on an image (`TYPE`, `PTTYPE`, ...); nothing when it finds nothing. */
async function probe(raw: string): Promise<Record<string, string>> {
  try {
    const { stdout } = await exec("blkid", ["-p", "-o", "export", raw]);
    return Object.fromEntries(
      stdout
        .split("\n")
        .filter((line) => line.includes("="))
        .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
    );
  } catch (error) {
    // blkid exits 2 when the image holds nothing it knows.
    if ((error as { code?: number }).code === 2) return {};
    throw new HostError(`probing the disk failed: ${(error as Error).message}`);
  }
}

/** e2fsck before a resize, as resize2fs wants; it exits 1 when it repaired something. */
async function checkFilesystem(raw: string): Promise<void> {
  try {
    await exec("e2fsck", ["-f", "-y", raw], { timeout: LONG_MS });
  } catch (error) {
    const code = (error as { code?: number }).code;
    if (code === 1) return;
    const stderr = String((error as { stderr?: string }).stderr ?? "").trim();
    throw new HostError(`checking the disk's filesystem failed (e2fsck ${code}): ${stderr.slice(-300)}`);
  }
}

/** Was anything ever written to the image at or past `bytes`? (qemu-img map: allocated data ranges.) */
async function writtenBeyond(path: string, bytes: number): Promise<boolean> {
  const map = JSON.parse(await runTool("qemu-img", ["map", "--output=json", path], "mapping the disk")) as {
    start: number;
    length: number;
    data: boolean;
    zero: boolean;
  }[];
  return map.some((range) => range.data && !range.zero && range.start + range.length > bytes);
}
